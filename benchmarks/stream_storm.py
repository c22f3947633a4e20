"""Many identical streamed updates at once: the case where Gradio's streamed audio intermittently failed to
decode (first reported with 18 simultaneous identical requests to the page's streaming /speak endpoint).

    python benchmarks/stream_storm.py [--clients 18] [--chunks 40] [--app-rounds 1]

Why it failed: a streamed (rate, samples) update is written by Gradio to a cache file named by the hash
of its samples (processing_utils.save_audio_to_cache: truncate, then write), then read back and decoded
for the HLS stream. Identical requests running together make identical chunks, so they write and read the
SAME file at the same time: one truncates it while another reads it, and ffmpeg cannot decode the half
file (pydub's CouldntDecodeError). app.py now yields each update as WAV bytes (app._wav_bytes), which
Gradio streams from memory: no shared file, and a WAV it parses with the stdlib (no ffmpeg per chunk).

Part 1 runs Gradio's own per-chunk path in --clients threads, the old way and ours. Part 2 (--app-rounds
> 0) sends --clients identical /speak requests at once to a fresh app with max_concurrent_requests =
--clients (as on a GPU profile; on the cpu profile requests run one at a time and never overlap).
"""

import argparse
import collections
import concurrent.futures
import re
import sys
import tempfile
import time

import numpy as np

from _serve import ROOT, start_app

TEXT = "你好，欢迎使用语音合成服务。"
RATE = 22050
DECODE_FAILURE = re.compile(r"CouldntDecodeError|Decoding failed|ffmpeg returned error|Invalid data found", re.I)


def gradio_chunk_path(update, cache_dir):
    """What Gradio does with one streamed update before encoding it: (rate, pcm bytes)."""
    from gradio import processing_utils
    from gradio.audio_stream_encoder import decode_to_pcm

    if isinstance(update, bytes):  # streamed as given (components/audio.py: postprocess, stream_output)
        data = update
    else:
        path = processing_utils.save_audio_to_cache(update[1], update[0], "wav", cache_dir=cache_dir)
        with open(path, "rb") as f:
            data = f.read()
    rate, _, pcm = decode_to_pcm(data)
    return rate, pcm


def storm(make_update, clients, chunks):
    """Counter of outcomes of `clients` threads each pushing `chunks` identical updates."""
    cache_dir = tempfile.mkdtemp(prefix="sambert-storm-")
    samples = (0.25 * np.sin(np.arange(RATE // 2) * 0.05)).astype(np.float32)  # one 0.5 s chunk

    def client(_):
        outcomes = collections.Counter()
        for _ in range(chunks):
            try:
                rate, pcm = gradio_chunk_path(make_update(samples), cache_dir)
                outcomes["ok" if rate == RATE and len(pcm) == 2 * len(samples) else "short"] += 1
            except Exception as err:  # noqa: BLE001 - counted by kind
                outcomes[type(err).__name__] += 1
        return outcomes

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return sum(pool.map(client, range(clients)), collections.Counter())


def one_request(url):
    from gradio_client import Client

    try:
        Client(url, verbose=False).predict(TEXT, None, "neutral", None, 1.0, 0.0, 1.0, api_name="/speak")
        return "ok"
    except Exception as err:  # noqa: BLE001
        return f"{type(err).__name__}: {str(err)[:160]}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=18)
    parser.add_argument("--chunks", type=int, default=40, help="updates per client in part 1")
    parser.add_argument("--app-rounds", type=int, default=1, help="rounds of identical /speak requests (0: skip)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from app import _wav_bytes

    old = storm(lambda s: (RATE, (s * 32767).astype(np.int16)), args.clients, args.chunks)
    new = storm(lambda s: _wav_bytes([s], RATE), args.clients, args.chunks)
    total = args.clients * args.chunks
    print(f"part 1: {args.clients} threads x {args.chunks} identical 0.5 s updates through Gradio's chunk path")
    print(f"  (rate, samples) updates [before]: {total - old['ok']} of {total} failed {dict(old)}")
    print(f"  WAV bytes updates [now]:          {total - new['ok']} of {total} failed {dict(new)}")

    if args.app_rounds:
        url, _, log = start_app(["--max-queue", str(4 * args.clients)],
                                {"SAMBERT_MAX_CONCURRENT_REQUESTS": str(args.clients)})
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(one_request, [url] * (args.clients * args.app_rounds)))
        failed = [r for r in results if r != "ok"]
        decode_errors = [line for line in log.read_text(errors="replace").splitlines() if DECODE_FAILURE.search(line)]
        print(f"part 2: {len(results)} identical /speak requests, {args.clients} at once, through the app "
              f"({time.perf_counter() - started:.0f} s): {len(results) - len(failed)} completed, {len(failed)} failed, "
              f"{len(decode_errors)} decode errors in the server log")
        for why in sorted(set(failed))[:5]:
            print("  client:", why)


if __name__ == "__main__":
    main()
