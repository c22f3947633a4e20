"""Under load nothing crosses or gets lost: 50 speech requests from 8 clients at once against the app serving
two fixture voices (conftest_app.fixture_voices_server: 4 requests synthesizing at once, 16 waiting), mixing
texts, voices, emotions and every response format. Each response must be its own request's audio as that
request gives it alone: the same samples for pcm, wav and flac (lossless, and synthesis on the CPU is
deterministic), the same decoded length for mp3 and opus (lossy)."""

import itertools
import json
import random
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest_app import FORMATS, assert_decodes_to, ffmpeg_exe, fixture_voices_server  # noqa: F401

TEXTS = ["你好。", "今天天气很好。", "我们一起去公园散步吧！", "请稍等，马上就好。"]
EMOTIONS = ["neutral", "sad"]
REQUESTS, CLIENTS = 50, 8
OK = 'sambert_requests_total{endpoint="speech",outcome="ok"}'


def speech(server, fmt, text, voice, emotion):
    """(headers, body) of one speech request."""
    body = {"input": text, "voice": voice, "emotion": emotion, "response_format": fmt}
    request = urllib.request.Request(server.url + "/v1/audio/speech", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        return r.headers, r.read()


def get(server, path):
    with urllib.request.urlopen(server.url + path, timeout=10) as r:
        return r.read().decode()


def ok_count(server):
    return float(next(line.split()[-1] for line in get(server, "/metrics").splitlines() + [f"{OK} 0"]
                      if line.startswith(OK)))


@pytest.mark.timeout(180)
def test_fifty_mixed_requests_from_eight_clients_each_get_their_own_audio(fixture_voices_server):  # noqa: F811
    if ffmpeg_exe() is None:
        pytest.skip("no ffmpeg to encode and decode mp3/flac/opus (pip install -r requirements.txt)")
    server = fixture_voices_server
    voices = [v["name"] for v in server.voices]
    rate = server.voices[0]["sample_rate"]
    kinds = list(itertools.product(TEXTS, voices, EMOTIONS))
    solo = {kind: np.frombuffer(speech(server, "pcm", *kind)[1], "<i2") for kind in kinds}
    # Every kind sounds different from every other, so a response that went to the wrong request shows.
    assert len({audio.tobytes() for audio in solo.values()}) == len(kinds)

    plan = list(itertools.islice(zip(itertools.cycle(FORMATS), itertools.cycle(kinds)), REQUESTS))
    random.Random(0).shuffle(plan)
    ok_before = ok_count(server)
    seen = {"running": 0, "waiting": 0}
    done = threading.Event()

    def watch():  # the most requests synthesizing and waiting at once, while the clients run
        while not done.is_set():
            health = json.loads(get(server, "/healthz"))
            seen.update({key: max(seen[key], health[key]) for key in seen})
            time.sleep(0.02)

    def one(request):
        fmt, kind = request
        try:
            headers, data = speech(server, fmt, *kind)
            assert headers["Content-Type"] == FORMATS[fmt][0] and int(headers["X-Sample-Rate"]) == rate
            assert_decodes_to(data, fmt, solo[kind], rate)
        except Exception as err:  # noqa: BLE001 - every failure is counted and shown below
            return f"{fmt} {kind}: {type(err).__name__}: {err}"[:500]
        return None

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(CLIENTS) as clients:
            failures = [f for f in clients.map(one, plan) if f]
    finally:
        done.set()
        watcher.join()
    assert not failures, f"{len(failures)} of {REQUESTS} requests failed:\n" + "\n".join(failures)
    assert seen["running"] > 1, seen  # requests really ran side by side in the engine
    health = json.loads(get(server, "/healthz"))
    assert (health["running"], health["waiting"]) == (0, 0)
    assert ok_count(server) - ok_before == REQUESTS  # each one counted once, as completed
