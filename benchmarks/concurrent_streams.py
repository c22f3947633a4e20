"""Several listeners at once: N concurrent streamed API requests on this machine, and whether each one's
audio keeps ahead of its playback once its first chunk has come.

    python benchmarks/concurrent_streams.py [--streams 1 2 4] [--chars 100]

For each N: a fresh app (the bundled voice, cpu profile, one intra-op thread a request, as the tests start
it) allowed N requests at once (SAMBERT_MAX_CONCURRENT_REQUESTS=N), then N clients POST the same-length,
different texts to /v1/audio/speech (pcm) at the same moment and read as the bytes come. A stream keeps up
when no chunk arrives after the audio delivered before it has finished playing (playback starting at its
first byte); "worst stall" is the longest such wait (0 when it kept up). Every response must decode to the
length its text gives alone (asked before the run), else it counts as failed.
"""

import argparse
import json
import threading
import time
import urllib.request

from _common import PARAGRAPH, print_table
from _serve import start_app

BYTES_PER_SAMPLE = 2


def texts_of(n, chars):
    """n different texts of `chars` characters, cut from the paragraph at different places."""
    text = PARAGRAPH * (n * chars // len(PARAGRAPH) + 2)
    return [text[k * chars:(k + 1) * chars - 1] + "。" for k in range(n)]


def stream(url, text):
    """(arrival times, byte counts, total bytes) of one streamed pcm response."""
    body = json.dumps({"input": text, "response_format": "pcm"}).encode()
    request = urllib.request.Request(url + "/v1/audio/speech", data=body, headers={"Content-Type": "application/json"})
    start, times, sizes = time.perf_counter(), [], []
    with urllib.request.urlopen(request, timeout=600) as response:
        rate = int(response.headers["X-Sample-Rate"])
        while chunk := response.read1(65536):
            times.append(time.perf_counter() - start)
            sizes.append(len(chunk))
    return rate, times, sizes


def worst_stall(rate, times, sizes):
    """Longest wait past the end of the audio delivered so far, with playback from the first byte."""
    delivered, stall = 0.0, 0.0
    for t, size in zip(times, sizes):
        if delivered:
            stall = max(stall, (t - times[0]) - delivered)
        delivered += size / BYTES_PER_SAMPLE / rate
    return stall


def run(n, chars):
    url, _, _ = start_app(env={"SAMBERT_MAX_CONCURRENT_REQUESTS": str(n)})
    texts = texts_of(n, chars)
    expected = [sum(stream(url, text)[2]) for text in texts]  # alone, one after another
    results = [None] * n
    barrier = threading.Barrier(n)

    def client(k):
        barrier.wait()
        try:
            results[k] = stream(url, texts[k])
        except Exception as err:  # noqa: BLE001 - any failure is a failed stream, counted below
            results[k] = err

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = []
    for k, (result, length) in enumerate(zip(results, expected)):
        if isinstance(result, Exception) or sum(result[2]) != length:
            rows.append([n, k, "failed", "-", "-", "-", "-", repr(result)[:60] if isinstance(result, Exception) else
                         f"{sum(result[2])} of {length} bytes"])
            continue
        rate, times, sizes = result
        audio = sum(sizes) / BYTES_PER_SAMPLE / rate
        stall = worst_stall(rate, times, sizes)
        rows.append([n, k, "ok", f"{times[0] * 1000:.0f}", f"{audio:.1f}", f"{times[-1]:.1f}",
                     f"{(times[-1] - times[0]) / audio:.2f}", f"{stall:.2f} s" if stall > 0 else "kept up"])
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--chars", type=int, default=100)
    args = ap.parse_args()
    rows = [row for n in args.streams for row in run(n, args.chars)]
    print_table(["streams", "client", "result", "first byte ms", "audio s", "total s",
                 "delivery after first byte / audio", "worst stall"], rows)


if __name__ == "__main__":
    main()
