"""The running app, end to end over HTTP: Gradio endpoints through gradio_client, the OpenAI-shaped
speech API in every format (decoded back with ffmpeg/soundfile), streaming, errors, health, metrics."""

import io
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
import soundfile

from conftest_app import app_server  # noqa: F401  (session fixture: the server subprocess)

TEXT = "你好，欢迎使用语音合成服务。"
LONG_TEXT = "今天天气很好，我们一起去公园散步。" * 4
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (apt install ffmpeg)")


def rms(audio):
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def post_speech(server, timeout=120, **body):
    request = urllib.request.Request(server.url + "/v1/audio/speech", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(request, timeout=timeout)


def error_of(server, data, content_type="application/json"):
    """(status, message) of a request the API must refuse."""
    request = urllib.request.Request(server.url + "/v1/audio/speech", data=data, headers={"Content-Type": content_type})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=60)
    return caught.value.code, json.load(caught.value)["error"]["message"]


def ffmpeg_decode(data):
    """(int16 samples, sample rate) of any encoded audio, decoded by ffmpeg at its own rate."""
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=sample_rate", "-of", "csv=p=0",
                            "-i", "pipe:0"], input=data, capture_output=True, check=True)
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "s16le", "-ac", "1", "pipe:1"],
                             input=data, capture_output=True, check=True)
    return np.frombuffer(decoded.stdout, np.int16), int(probe.stdout.split()[0])


@pytest.fixture(scope="module")
def client(app_server):  # noqa: F811
    gradio_client = pytest.importorskip("gradio_client")
    return gradio_client.Client(app_server.url, verbose=False)


def voice_of(server):
    return server.voices[0]


# ---- Gradio endpoints (what the page calls), through gradio_client ----------------------------------


def test_synthesize_endpoint_returns_the_voice_rate_wav_and_subtitles(app_server, client):  # noqa: F811
    voice = voice_of(app_server)
    wav, srt, status = client.predict(TEXT, voice["name"], "neutral", None, 1.0, 0.0, 1.0, api_name="/synthesize")
    audio, rate = soundfile.read(wav)
    assert rate == voice["sample_rate"]
    assert len(audio) > 0.3 * rate and rms(audio) > 1e-3
    cues = open(srt, encoding="utf-8").read()
    assert cues.startswith("1\n00:00:00,") and "-->" in cues
    assert "RTF" in status and "首音" in status


@needs_ffmpeg
def test_speak_endpoint_streams_playable_audio_then_gives_the_wav(app_server):  # noqa: F811
    from gradio_client import Client

    voice = voice_of(app_server)
    client = Client(app_server.url, verbose=False, download_files=False)  # URLs, as the page gets them
    job = client.submit(TEXT * 2, voice["name"], voice["emotions"][-1], None, 1.0, 0.5, 0.8, api_name="/speak")
    updates = list(job)
    streams = [u[0]["url"] for u in updates if isinstance(u[0], dict) and u[0].get("is_stream")]
    assert streams, updates
    # The stream is an HLS playlist of AAC (ADTS) segments: fetch them all and decode them as one stream
    # (a speech's first segment may be its leading silence).
    with urllib.request.urlopen(streams[-1], timeout=30) as r:
        playlist = r.read().decode()
    segments = [line for line in playlist.splitlines() if line and not line.startswith("#")]
    assert segments, playlist
    adts = b"".join(urllib.request.urlopen(urllib.parse.urljoin(streams[-1], s), timeout=30).read() for s in segments)
    samples, rate = ffmpeg_decode(adts)
    assert len(samples) > 0.3 * rate and rms(samples / 32768) > 1e-3
    wav, srt, status = job.outputs()[-1][1:]
    with urllib.request.urlopen(wav["url"], timeout=30) as r:
        audio, rate = soundfile.read(io.BytesIO(r.read()))
    assert rate == voice["sample_rate"] and rms(audio) > 1e-3
    assert "首音" in status


def test_reference_audio_steers_the_synthesis_and_bad_ones_are_refused(app_server, client, tmp_path):  # noqa: F811
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    voice = voice_of(app_server)
    plain, _, _ = client.predict(TEXT, voice["name"], "neutral", None, 1.0, 0.0, 1.0, api_name="/synthesize")
    # A fast "speaker": harmonic voice at 180 Hz, 8 syllables a second (neutral reading is ~4.5).
    rate = 16000
    t = np.arange(3 * rate) / rate
    phase = 2 * np.pi * np.cumsum(180 * (1 + 0.05 * np.sin(2 * np.pi * t))) / rate
    fast = sum(np.sin(k * phase) / k for k in range(1, 6)) * np.clip(np.sin(np.pi * 8 * t), 0, None) ** 2
    soundfile.write(tmp_path / "fast.wav", 0.3 * fast, rate)
    styled, _, _ = client.predict(TEXT, voice["name"], "neutral", handle_file(str(tmp_path / "fast.wav")),
                                  1.0, 0.0, 1.0, api_name="/synthesize")
    assert soundfile.info(styled).frames < 0.8 * soundfile.info(plain).frames  # spoken faster

    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    with pytest.raises(AppError, match="reference audio"):
        client.predict(TEXT, voice["name"], "neutral", handle_file(str(tmp_path / "corrupt.wav")),
                       1.0, 0.0, 1.0, api_name="/synthesize")


def test_ui_errors_are_messages(app_server, client):  # noqa: F811
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="nothing to read"):
        client.predict("。。。", voice_of(app_server)["name"], "neutral", None, 1.0, 0.0, 1.0, api_name="/synthesize")


# ---- HTTP API ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["wav", "pcm", "mp3", "flac", "opus"])
def test_every_response_format_decodes(app_server, fmt):  # noqa: F811
    if fmt not in ("wav", "pcm") and shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    voice = voice_of(app_server)
    with post_speech(app_server, model="tts-1", input=TEXT, voice=voice["name"], response_format=fmt) as r:
        data, headers = r.read(), r.headers
    assert int(headers["X-Sample-Rate"]) == voice["sample_rate"]
    if fmt == "pcm":
        samples, rate = np.frombuffer(data, "<i2"), voice["sample_rate"]
    elif fmt == "wav":
        samples, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    else:  # a streamed FLAC's header cannot hold the total length, which soundfile needs
        samples, rate = ffmpeg_decode(data)
    assert rate == (48000 if fmt == "opus" else voice["sample_rate"])
    assert len(samples) > 0.3 * rate
    assert rms(samples / 32768) > 1e-3


@pytest.mark.parametrize("fmt", ["pcm", "mp3"])
def test_speech_streams_before_synthesis_ends(app_server, fmt):  # noqa: F811
    if fmt == "mp3" and shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    start = time.perf_counter()
    with post_speech(app_server, input=LONG_TEXT, response_format=fmt) as r:
        first = b""
        while len(first) < 1000:  # past any container header: encoded audio
            first += r.read1(4096)
        first_at = time.perf_counter() - start
        with urllib.request.urlopen(app_server.url + "/healthz", timeout=10) as h:
            running_then = json.load(h)["running"]
        rest = r.read()
    total = time.perf_counter() - start
    assert first
    assert running_then == 1  # the request was still synthesizing when its first bytes had arrived
    assert first_at < total / 2, (first_at, total)
    if fmt == "pcm":
        assert len(first) + len(rest) > 5 * 2 * voice_of(app_server)["sample_rate"]  # more than 5 s of audio


def test_bad_requests_get_clear_400s_and_the_server_goes_on(app_server):  # noqa: F811
    cases = [
        (json.dumps({"input": TEXT, "response_format": "ogg"}).encode(), "valid formats: wav, pcm, mp3, flac, opus"),
        (json.dumps({"input": TEXT, "voice": "alloy"}).encode(), "unknown voice 'alloy'"),
        (json.dumps({"input": TEXT, "emotion": "bored"}).encode(), "no emotion 'bored'"),
        (json.dumps({"input": "  "}).encode(), "nothing to read"),
        (json.dumps({"input": TEXT, "speed": 0}).encode(), "speed must be"),
        (json.dumps({"voice": "x"}).encode(), "input: Field required"),
        (b'{"input": "\xff\xfe"}', "error parsing the body"),
        (b"{not json", "not valid JSON"),
    ]
    for body, message in cases:
        status, text = error_of(app_server, body)
        assert status == 400 and message in text, (body, status, text)
    with post_speech(app_server, input=TEXT, response_format="wav") as r:
        assert r.status == 200 and len(r.read()) > 1000


def test_voices_health_and_metrics(app_server):  # noqa: F811
    with urllib.request.urlopen(app_server.url + "/healthz", timeout=10) as r:
        assert json.load(r)["status"] == "ok"
    voice = voice_of(app_server)
    assert voice["display_name"] and voice["emotions"][0] == "neutral"
    with post_speech(app_server, input=TEXT, response_format="pcm") as r:
        r.read()
    with urllib.request.urlopen(app_server.url + "/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        metrics = r.read().decode()
    ok_line = 'sambert_requests_total{endpoint="speech",outcome="ok"}'
    ok = [line for line in metrics.splitlines() if line.startswith(ok_line)]
    assert ok and int(ok[0].split()[-1]) >= 1
    for name in ("sambert_errors_total", "sambert_queue_depth 0", "sambert_ui_queue_depth 0",
                 "sambert_request_duration_seconds_bucket", "sambert_peak_memory_bytes",
                 "sambert_time_to_first_audio_seconds_count"):
        assert name in metrics


def test_a_client_that_goes_away_frees_its_slot(app_server):  # noqa: F811
    r = post_speech(app_server, input=LONG_TEXT, response_format="wav")
    r.read1(1024)
    r.close()  # hang up mid-stream
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(app_server.url + "/healthz", timeout=10) as h:
            if json.load(h)["running"] == 0:
                break
        time.sleep(0.2)
    else:
        pytest.fail("the abandoned request still holds its slot")
    with urllib.request.urlopen(app_server.url + "/metrics", timeout=10) as m:
        assert 'outcome="cancelled"' in m.read().decode()


def test_concurrent_requests_all_complete(app_server):  # noqa: F811
    results = []

    def one():
        with post_speech(app_server, input=TEXT, response_format="pcm") as r:
            results.append(len(r.read()))

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 3 and min(results) > 1000


# ---- the shared admission limit (real threads) --------------------------------------------------------


def test_limiter_admits_up_to_its_limit_queues_the_next_and_refuses_beyond():
    from sambert.server.limiter import Busy, Limiter

    limiter = Limiter(concurrency=2, max_waiting=1)
    first, second = limiter.acquire(), limiter.acquire()
    admitted = []
    waiter = threading.Thread(target=lambda: admitted.append(limiter.acquire()))
    waiter.start()
    deadline = time.monotonic() + 5
    while limiter.waiting != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert limiter.waiting == 1 and not admitted
    with pytest.raises(Busy, match="2 requests running and 1 waiting"):
        limiter.acquire()
    first.release()
    first.release()  # idempotent: a second release must not free someone else's slot
    waiter.join(5)
    assert len(admitted) == 1 and limiter.active == 2 and limiter.waiting == 0
    busy = Limiter(concurrency=1, max_waiting=5)
    busy.acquire()
    with pytest.raises(Busy, match="within 0.05 s"):
        busy.acquire(timeout=0.05)
    assert busy.waiting == 0  # a waiter that gave up leaves the line
    second.release()
    admitted[0].release()
    assert limiter.active == 0


def test_beyond_the_queue_bound_the_api_answers_429(app_server):  # noqa: F811
    # The test server admits 1 request at a time (cpu profile) with 4 waiting (--max-queue 4).
    def health():
        with urllib.request.urlopen(app_server.url + "/healthz", timeout=10) as h:
            return json.load(h)

    release = threading.Event()

    def hold(text):
        try:
            with post_speech(app_server, input=text, response_format="pcm") as r:
                r.read1(1024)
                release.wait(60)  # not reading: the server's send blocks, and the slot stays taken
        except OSError:
            pass

    # minutes of audio: more than the socket buffers take, so the first request holds its slot
    threads = [threading.Thread(target=hold, args=(LONG_TEXT * 16 if i == 0 else TEXT,)) for i in range(5)]
    for t in threads:
        t.start()
        time.sleep(0.1)
    deadline = time.monotonic() + 30
    while (state := health())["waiting"] < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state["running"] == 1 and state["waiting"] == 4, state
    status, message = error_of(app_server, json.dumps({"input": TEXT}).encode())
    release.set()
    assert status == 429 and "server busy" in message
    for t in threads:
        t.join(120)
    deadline = time.monotonic() + 30
    while health()["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    final = health()
    assert final["running"] == 0 and final["waiting"] == 0
