"""Time from the end of the first sentence's text to its first audio bytes: over the WebSocket (the text
typed in as an LLM writes it, a few characters every 50 ms) beside the same over HTTP (the sentence
sent whole in one POST /v1/audio/speech, pcm, as soon as it is complete).

    python benchmarks/ws_latency.py [--repeat 5]
"""

import argparse
import json
import statistics
import time
import urllib.request

from _serve import start_app
from websockets.sync.client import connect

FIRST = "今天天气很好，我们一起去公园散步吧。"
REST = "顺便买点水果回家。"
PIECE_CHARS, PIECE_SECONDS = 3, 0.05  # an LLM's pace: a token of a few characters every 50 ms


def pieces(text):
    return [text[i : i + PIECE_CHARS] for i in range(0, len(text), PIECE_CHARS)]


def over_ws(url):
    """Seconds from sending the piece that completes the first sentence to the first audio message."""
    with connect(url.replace("http://", "ws://") + "/v1/audio/speech/ws", open_timeout=30) as ws:
        ws.send(json.dumps({"type": "config", "response_format": "pcm"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        for piece in pieces(FIRST):
            time.sleep(PIECE_SECONDS)
            ws.send(json.dumps({"type": "text", "text": piece}, ensure_ascii=False))
        sentence_end = time.perf_counter()
        while not isinstance(message := ws.recv(timeout=120), bytes):
            pass  # the timings come first
        first_audio = time.perf_counter()
        for piece in pieces(REST):
            ws.send(json.dumps({"type": "text", "text": piece}, ensure_ascii=False))
        ws.send(json.dumps({"type": "end"}))
        for _ in ws:
            pass
    return first_audio - sentence_end


def over_http(url):
    """Seconds from sending the complete first sentence to the first audio bytes of the response."""
    body = json.dumps({"input": FIRST, "response_format": "pcm"}).encode()
    request = urllib.request.Request(url + "/v1/audio/speech", data=body, headers={"Content-Type": "application/json"})
    sent = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as r:
        r.read1(1)
        first_audio = time.perf_counter()
        r.read()
    return first_audio - sent


def row(name, seconds):
    ms = sorted(s * 1000 for s in seconds)
    return f"{name:<10} median {statistics.median(ms):6.0f} ms   min {ms[0]:6.0f}   max {ms[-1]:6.0f}   " \
           f"({', '.join(f'{m:.0f}' for m in ms)})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    url, _, _ = start_app()
    print(f"app: {url}; first sentence {FIRST!r} ({len(FIRST)} characters), typed {PIECE_CHARS} characters "
          f"every {PIECE_SECONDS * 1000:.0f} ms over the WebSocket")
    ws, http = [], []
    for _ in range(args.repeat):  # interleaved, so both see the same machine load
        ws.append(over_ws(url))
        http.append(over_http(url))
    print("end of the first sentence's text -> its first audio bytes")
    print(row("WebSocket", ws))
    print(row("HTTP", http))


if __name__ == "__main__":
    main()
