"""The running app, end to end over HTTP: Gradio endpoints through gradio_client, the OpenAI-shaped
speech API in every format (decoded back with ffmpeg: container, codec and the whole request's length),
streaming, errors, health, metrics; emotions through the serving stack with the fixture voices."""

import io
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
import soundfile

# session fixtures: the server subprocesses
from conftest_app import (FORMATS, app_server, assert_decodes_to, ffmpeg_decode, ffmpeg_exe,  # noqa: F401
                          fixture_voices_server)

TEXT = "你好，欢迎使用语音合成服务。"
LONG_TEXT = "今天天气很好，我们一起去公园散步。" * 4
needs_ffmpeg = pytest.mark.skipif(ffmpeg_exe() is None, reason="no ffmpeg (apt install ffmpeg, or pip install "
                                  "-r requirements.txt)")
# The page writes its WAV with soundfile, which scales float by 32768 and rounds down where the API scales
# by 32767 and truncates: the two are up to two int16 steps apart, never more.
PAGE_STEPS = 2


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


def pcm_of(server, **body):
    """The int16 samples of one speech request as raw pcm (what the other formats must decode to)."""
    with post_speech(server, **body, response_format="pcm") as r:
        return np.frombuffer(r.read(), "<i2")


def metrics_of(server):
    """{'name{labels}': value} of every sample line in /metrics (comments left out)."""
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        lines = r.read().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if line and line[0] != "#"}


@pytest.fixture(scope="module")
def client(app_server):  # noqa: F811
    gradio_client = pytest.importorskip("gradio_client")
    return gradio_client.Client(app_server.url, verbose=False)


def voice_of(server):
    return server.voices[0]


@pytest.fixture(scope="module")
def whole(app_server, client):  # noqa: F811
    """TEXT as the page's /synthesize endpoint writes it (int16): the whole request, by a path that shares
    none of the API's encoding or streaming, for the API's responses to be compared with."""
    wav, _, _ = client.predict(TEXT, voice_of(app_server)["name"], "neutral", None, 1.0, 0.0, 1.0,
                               api_name="/synthesize")
    samples, rate = soundfile.read(wav, dtype="int16")
    assert rate == voice_of(app_server)["sample_rate"] and rms(samples / 32768) > 1e-3
    return samples


def assert_same_pcm(got, expected):
    """Equal length, and samples within PAGE_STEPS."""
    assert len(got) == len(expected), (len(got), len(expected))
    assert np.abs(got.astype(np.int32) - expected).max() <= PAGE_STEPS


def srt_end(cues):
    """Seconds where the last subtitle cue ends."""
    h, m, s = cues.strip().split("\n\n")[-1].splitlines()[1].split(" --> ")[1].replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


# ---- Gradio endpoints (what the page calls), through gradio_client ----------------------------------


def test_synthesize_endpoint_returns_the_whole_request_as_wav_with_subtitles(app_server, client, whole):  # noqa: F811
    voice = voice_of(app_server)
    wav, srt, status = client.predict(TEXT, voice["name"], "neutral", None, 1.0, 0.0, 1.0, api_name="/synthesize")
    assert soundfile.info(wav).samplerate == voice["sample_rate"]
    assert_same_pcm(pcm_of(app_server, input=TEXT, voice=voice["name"]), whole)  # the API says the same
    seconds = len(whole) / voice["sample_rate"]
    cues = open(srt, encoding="utf-8").read()
    assert cues.startswith("1\n00:00:00,") and seconds - 0.5 < srt_end(cues) <= seconds + 0.001
    assert f"**时长** {seconds:.1f} s" in status


@needs_ffmpeg
def test_speak_endpoint_streams_playable_audio_then_gives_the_wav(app_server):  # noqa: F811
    from gradio_client import Client

    voice = voice_of(app_server)
    client = Client(app_server.url, verbose=False, download_files=False)  # URLs, as the page gets them
    job = client.submit(TEXT * 2, voice["name"], "neutral", None, 1.0, 0.5, 0.8, api_name="/speak")
    updates = list(job)
    streams = [u[0]["url"] for u in updates if isinstance(u[0], dict) and u[0].get("is_stream")]
    assert streams, updates
    expected = pcm_of(app_server, input=TEXT * 2, voice=voice["name"], pitch=0.5, volume=0.8)
    # The stream is an HLS playlist of AAC (ADTS) segments: fetch them all and decode them as one stream.
    with urllib.request.urlopen(streams[-1], timeout=30) as r:
        playlist = r.read().decode()
    segments = [line for line in playlist.splitlines() if line and not line.startswith("#")]
    assert segments, playlist
    adts = b"".join(urllib.request.urlopen(urllib.parse.urljoin(streams[-1], s), timeout=30).read() for s in segments)
    streamed = ffmpeg_decode(adts)
    assert streamed.codec == "aac"
    # all of it (at the stream's rate; each segment's AAC frames add up to a frame of padding)
    seconds = len(streamed.samples) / streamed.rate
    assert 0 <= seconds - len(expected) / voice["sample_rate"] < 0.05 * len(segments), (seconds, len(segments))
    wav, srt, status = job.outputs()[-1][1:]
    with urllib.request.urlopen(wav["url"], timeout=30) as r:
        audio, rate = soundfile.read(io.BytesIO(r.read()), dtype="int16")
    assert rate == voice["sample_rate"]
    assert_same_pcm(audio, expected)
    assert f"**时长** {len(expected) / rate:.1f} s" in status


def differs(a, b):
    """Two int16 signals differ audibly: other lengths, or a difference of a tenth of their level."""
    return len(a) != len(b) or rms((a.astype(np.float64) - b) / 32768) > 0.1 * rms(b / 32768)


def test_an_emotion_changes_the_audio_on_both_paths(fixture_voices_server):  # noqa: F811
    from gradio_client import Client

    server = fixture_voices_server
    voice = server.voices[0]
    assert voice["emotions"] == ["neutral", "happy", "angry", "sad", "fear", "hate", "surprise", "arousal"]
    neutral = pcm_of(server, input=TEXT, voice=voice["name"], emotion="neutral")
    assert np.array_equal(pcm_of(server, input=TEXT, voice=voice["name"]), neutral)  # neutral is the default
    sad = pcm_of(server, input=TEXT, voice=voice["name"], emotion="sad")
    assert differs(sad, neutral)
    # The page's endpoints pass the emotion on too: /speak's WAV is the API's sad reading.
    job = Client(server.url, verbose=False).submit(TEXT, voice["name"], "sad", None, 1.0, 0.0, 1.0, api_name="/speak")
    wav = job.result(timeout=120)[1]
    assert_same_pcm(soundfile.read(wav, dtype="int16")[0], sad)


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


@pytest.mark.parametrize("fmt", [*FORMATS, None], ids=[*FORMATS, "default"])  # None: no response_format sent
def test_every_response_format_is_its_container_and_codec_with_the_whole_audio(app_server, whole, fmt):  # noqa: F811
    if fmt != "pcm" and ffmpeg_exe() is None:
        pytest.skip("no ffmpeg (apt install ffmpeg, or pip install -r requirements.txt)")
    voice, rate = voice_of(app_server), voice_of(app_server)["sample_rate"]
    body = {"model": "tts-1", "input": TEXT, "voice": voice["name"]} | ({"response_format": fmt} if fmt else {})
    with post_speech(app_server, **body) as r:
        data, headers = r.read(), r.headers
    fmt = fmt or "mp3"  # OpenAI's default format
    assert headers["Content-Type"] == FORMATS[fmt][0] and int(headers["X-Sample-Rate"]) == rate
    assert_decodes_to(data, fmt, whole, rate, steps=PAGE_STEPS)


@pytest.mark.parametrize("fmt", ["pcm", "mp3"])
def test_speech_streams_before_synthesis_ends(app_server, fmt):  # noqa: F811
    if fmt == "mp3" and ffmpeg_exe() is None:
        pytest.skip("no ffmpeg")
    start = time.perf_counter()
    with post_speech(app_server, input=LONG_TEXT, response_format=fmt) as r:
        first = b""
        while len(first) < 1000:  # past any container header: encoded audio
            piece = r.read1(4096)
            assert piece, f"the stream ended after {len(first)} bytes"
            first += piece
        first_at = time.perf_counter() - start
        with urllib.request.urlopen(app_server.url + "/healthz", timeout=10) as h:
            running_then = json.load(h)["running"]
        r.read()
    total = time.perf_counter() - start
    assert running_then == 1  # the request was still synthesizing when its first bytes had arrived
    assert first_at < total / 2, (first_at, total)


def test_bad_requests_get_clear_400s_and_the_server_goes_on(app_server, whole):  # noqa: F811
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
    assert_same_pcm(pcm_of(app_server, input=TEXT), whole)


def test_voices_health_and_metrics(app_server):  # noqa: F811
    with urllib.request.urlopen(app_server.url + "/healthz", timeout=10) as r:
        health = json.load(r)
    assert health == {"status": "ok", "profile": "cpu", "voices": len(app_server.voices), "running": 0, "waiting": 0}
    voice = voice_of(app_server)
    assert voice["display_name"] and voice["emotions"][0] == "neutral"
    before = metrics_of(app_server)
    pcm_of(app_server, input=TEXT)
    error_of(app_server, json.dumps({"input": "  "}).encode())
    after = metrics_of(app_server)

    def grew(key):
        return after.get(key, 0) - before.get(key, 0)

    speech = '{endpoint="speech"}'
    assert grew('sambert_requests_total{endpoint="speech",outcome="ok"}') == 1
    assert grew('sambert_requests_total{endpoint="speech",outcome="bad_request"}') == 1
    assert grew(f"sambert_errors_total{speech}") == 1
    assert grew(f"sambert_request_duration_seconds_count{speech}") == 1  # synthesized requests only
    assert grew(f"sambert_request_duration_seconds_sum{speech}") > 0
    assert grew('sambert_request_duration_seconds_bucket{endpoint="speech",le="+Inf"}') == 1
    assert grew(f"sambert_time_to_first_audio_seconds_count{speech}") == 1
    assert after["sambert_queue_depth"] == after["sambert_requests_in_progress"] == 0
    assert after["sambert_concurrency_limit"] == 1  # the cpu profile's
    assert after["sambert_peak_memory_bytes"] > 0 and after["sambert_process_resident_memory_bytes"] > 2**26


def test_a_client_that_goes_away_frees_its_slot(app_server):  # noqa: F811
    cancelled = 'sambert_requests_total{endpoint="speech",outcome="cancelled"}'
    before = metrics_of(app_server).get(cancelled, 0)
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
    while metrics_of(app_server).get(cancelled, 0) == before and time.monotonic() < deadline:
        time.sleep(0.1)  # the outcome is recorded just after the slot is freed
    assert metrics_of(app_server).get(cancelled, 0) == before + 1


def test_concurrent_requests_all_complete(app_server):  # noqa: F811
    expected = pcm_of(app_server, input=TEXT)
    results = []

    def one():
        try:
            results.append(pcm_of(app_server, input=TEXT))
        except Exception as err:  # noqa: BLE001 - reported below, with the rest
            results.append(err)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 3 and all(isinstance(r, np.ndarray) and np.array_equal(r, expected) for r in results), \
        results


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
