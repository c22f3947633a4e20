"""Hardening of the running app: a corpus of bad input through the page's endpoints (gradio_client, or the
raw Gradio call route where gradio_client cannot even encode the input) and the HTTP API; body, upload and
reference-audio limits; the per-client rate limit; Gradio's file routes serve nothing they must not;
start-up faults; a CUDA out-of-memory injected into a request through the app.

Every bad request must get a clear message (gradio.Error -> AppError on the client; HTTP 4xx with a JSON
message), hold no synthesis slot afterwards, and leave the server answering the next good request."""

import http.client
import json
import math
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import numpy as np
import pytest
import soundfile

from conftest_app import app_server  # noqa: F401  (session fixture: the server subprocess)

TEXT = "你好，欢迎使用语音合成服务。"
UI_ENDPOINTS = ["/synthesize", "/speak"]

# (id, changes to a good request, what the HTTP API's message says, what the page's says when it differs).
# The page's sliders and dropdowns check their own ranges and choices before our code runs.
REQUEST_CASES = [
    ("empty", {"text": ""}, "nothing to read", None),
    ("whitespace", {"text": " \n\t\u3000 "}, "nothing to read", None),
    ("punctuation only", {"text": "。，！？……"}, "nothing to read", None),
    ("emoji only", {"text": "😀🎉👍🏽"}, "nothing to read", None),
    ("control characters only", {"text": "\x00\x01\x1b\x7f"}, "nothing to read", None),
    ("invisible characters only", {"text": "\u200b\u200d\ufeff\u202e"}, "nothing to read", None),
    ("unpaired surrogate", {"text": "\ud800你好"}, "unpaired UTF-16 surrogate", None),
    ("100k characters", {"text": "好" * 100_000}, "100000 characters; the limit", None),
    ("unknown voice", {"voice": "alloy"}, "unknown voice 'alloy'", "alloy is not in the list of choices"),
    ("unknown emotion", {"emotion": "bored"}, "no emotion 'bored'", "bored is not in the list of choices"),
    ("speed 0", {"speed": 0}, "speed must be a number", "less than minimum"),
    ("speed negative", {"speed": -1}, "speed must be a number", "less than minimum"),
    ("speed 1e9", {"speed": 1e9}, "speed must be a number", "greater than maximum"),
    ("speed NaN", {"speed": math.nan}, "speed must be a number", None),
    ("speed infinite", {"speed": math.inf}, "speed must be a number", "speed must be a number|greater than maximum"),
    ("pitch 100", {"pitch": 100}, "pitch must be a number", "greater than maximum"),
    ("pitch -100", {"pitch": -100}, "pitch must be a number", "less than minimum"),
    ("pitch NaN", {"pitch": math.nan}, "pitch must be a number", None),
    ("volume negative", {"volume": -1}, "volume must be a number", "less than minimum"),
    ("volume 100", {"volume": 100}, "volume must be a number", "greater than maximum"),
    ("volume NaN", {"volume": math.nan}, "volume must be a number", None),
]

# Inputs that are odd but readable: the Chinese around them is spoken, the rest dropped (both paths).
SPOKEN_CASES = [("emoji mixed in", "你好😀，世界🎉。"), ("control characters mixed in", "你好\x00\x07\x1b世界。")]

# HTTP API only: (id, body, content type, status, message)
BODY_CASES = [
    ("invalid UTF-8", b'{"input": "\xff\xfe\xe4\xbd"}', "application/json", 400, "not valid UTF-8 JSON"),
    ("malformed JSON", b"{not json", "application/json", 400, "not valid JSON"),
    ("empty body", b"", "application/json", 400, "request body must be a JSON object"),
    ("JSON array", b"[1, 2]", "application/json", 400, "request body must be a JSON object"),
    ("deeply nested JSON", b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "not valid UTF-8 JSON"),
    ("input a number", b'{"input": 42}', "application/json", 400, "input: Input should be a valid string"),
    ("input missing", b'{"voice": "x"}', "application/json", 400, "input: Field required"),
    ("speed a word", b'{"input": "\\u4f60\\u597d", "speed": "fast"}', "application/json", 400, "speed: Input should"),
    ("unknown format", b'{"input": "\\u4f60\\u597d", "response_format": "ogg"}', "application/json", 400,
     "valid formats: wav, pcm, mp3, flac, opus"),
    ("not JSON content type", b'{"input": "\\u4f60\\u597d"}', "text/plain", 400, "Content-Type: application/json"),
]


def _sine(seconds, rate=16000, level=0.3):
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * 200 * t)).astype(np.float32), rate


def _write(path, samples_rate, **kwargs):
    soundfile.write(path, *samples_rate, **kwargs)


# (id, writes the file at the given path, message). Ten minutes are refused from the header (WAV) or
# after the limit's worth of decoding (ffmpeg's -t), never read whole.
REFERENCE_CASES = [
    ("corrupt WAV", lambda p: p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10), "not a readable audio file"),
    ("empty file", lambda p: p.write_bytes(b""), "is an empty file"),
    ("0 s", lambda p: _write(p, (np.zeros(0, np.float32), 16000)), "reference audio is empty"),
    ("50 ms", lambda p: _write(p, _sine(0.05)), "at least 0.5 s"),
    ("10 minutes", lambda p: _write(p, _sine(600, rate=8000), subtype="PCM_16"), "lasts 600.0 s; the limit is 30 s"),
    ("silence", lambda p: _write(p, (np.zeros(32000, np.float32), 16000)), "silent"),
    ("NaN samples", lambda p: _write(p, (np.full(16000, np.nan, np.float32), 16000), subtype="FLOAT"),
     "invalid samples"),
    ("text renamed .wav", lambda p: p.write_text("这不是音频文件。\n" * 100, encoding="utf-8"),
     "not a readable audio file"),
]


# ---- helpers -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(app_server):  # noqa: F811
    gradio_client = pytest.importorskip("gradio_client")
    return gradio_client.Client(app_server.url, verbose=False)


def request_of(server, changes):
    good = {"text": TEXT, "voice": server.voices[0]["name"], "emotion": "neutral", "speed": 1.0, "pitch": 0.0,
            "volume": 1.0}
    return {**good, **changes}


def http_speech(server, body, content_type="application/json", headers=None, timeout=120):
    """(status, headers, bytes) of POST /v1/audio/speech; `body` is bytes or a dict (JSON, NaN allowed)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(server.url + "/v1/audio/speech", data=data,
                                     headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def http_body(r):
    return {"input": r["text"], "voice": r["voice"], "emotion": r["emotion"], "speed": r["speed"],
            "pitch": r["pitch"], "volume": r["volume"], "response_format": "wav"}


def ui_error(server, client, endpoint, args):
    """The message of the error the page's endpoint gives for `args`. Through gradio_client when it can
    send them; NaN and lone surrogates it cannot encode, so those go through Gradio's raw call route."""
    from gradio_client.exceptions import AppError

    try:
        json.dumps(args, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return raw_ui_error(server, endpoint, args)
    with pytest.raises(AppError) as caught:
        client.predict(*args, api_name=endpoint)
    return str(caught.value)


# the page's last three inputs (数字读法, 英文读法, 本次词典) at their defaults: Gradio's raw call route, unlike
# gradio_client, does not fill in inputs a caller leaves out
READING_DEFAULTS = ["auto", "auto", ""]


def raw_ui_error(server, endpoint, args):
    data = json.dumps({"data": list(args) + READING_DEFAULTS}).encode()
    start = urllib.request.Request(f"{server.url}/gradio_api/call{endpoint}", data=data,
                                   headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(start, timeout=30) as r:
        event_id = json.load(r)["event_id"]
    with urllib.request.urlopen(f"{server.url}/gradio_api/call{endpoint}/{event_id}", timeout=120) as r:
        events = r.read().decode()
    assert "event: error" in events, events[-500:]
    return json.loads(events.split("event: error\ndata:", 1)[1].split("\n", 1)[0])["error"]


def assert_idle(server, timeout=10):
    """No synthesis slot is held and nothing waits (a refused request must not keep one)."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(server.url + "/healthz", timeout=10) as r:
            health = json.load(r)
        if health["running"] == 0 and health["waiting"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert health["running"] == 0 and health["waiting"] == 0, health


@pytest.fixture(scope="module", autouse=True)  # autouse: made before the module's first test
def spoken(app_server):  # noqa: F811
    """TEXT as pcm, asked for before the corpus: what a good request must still give afterwards."""
    status, _, data = http_speech(app_server, {"input": TEXT, "response_format": "pcm"})
    assert status == 200
    return data


def raw_exchange(port, head, body_size, chunk=b"\0" * 65536):
    """Send `head` then up to `body_size` bytes, stopping when the server hangs up; the response it sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        sent = 0
        try:
            while sent < body_size:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # refused before the whole body: what a limit should do
        return read_response(s)


def read_response(s):
    """Status line, headers and body of the HTTP/1.1 response on socket `s` (which has Content-Length)."""

    def more(data):
        piece = s.recv(4096)
        assert piece, f"the server closed the connection after {len(data)} bytes: {data[:300]!r}"
        return data + piece

    data = b""
    while b"\r\n\r\n" not in data:
        data = more(data)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body = more(body)
    return (head + b"\r\n\r\n" + body).decode("utf-8", "replace")


# ---- the bad-input corpus ----------------------------------------------------------------------------


@pytest.mark.parametrize("case_id, changes, http_message, ui_message", REQUEST_CASES, ids=[c[0] for c in REQUEST_CASES])
def test_bad_request_is_refused_clearly_on_both_paths(app_server, client, case_id, changes, http_message,  # noqa: F811
                                                      ui_message):
    import re

    r = request_of(app_server, changes)
    status, _, data = http_speech(app_server, http_body(r))
    message = json.loads(data)["error"]["message"]
    assert status == 400 and http_message in message, (status, message)
    args = [r["text"], r["voice"], r["emotion"], None, r["speed"], r["pitch"], r["volume"]]
    for endpoint in UI_ENDPOINTS:
        text = ui_error(app_server, client, endpoint, args)
        assert re.search(ui_message or re.escape(http_message), text), (endpoint, text)
        assert "Traceback" not in text
    assert_idle(app_server)


@pytest.mark.parametrize("case_id, body, content_type, status, message", BODY_CASES, ids=[c[0] for c in BODY_CASES])
def test_bad_body_is_refused_clearly(app_server, case_id, body, content_type, status, message):  # noqa: F811
    got, _, data = http_speech(app_server, body, content_type)
    error = json.loads(data)["error"]
    assert got == status and message in error["message"], (got, error)
    assert_idle(app_server)


def test_bodies_over_the_limit_are_refused_before_they_are_read(app_server):  # noqa: F811
    from sambert.server.api import MAX_BODY_BYTES

    # Declared too large: answered 413 at once, without waiting for the body.
    head = (f"POST /v1/audio/speech HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {3 * MAX_BODY_BYTES}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", app_server.port), timeout=30) as s:
        s.sendall(head + b'{"input": "')
        answer = read_response(s)
    assert answer.startswith("HTTP/1.1 413") and "over the limit" in answer, answer
    # Chunked (no length given): refused once the limit is passed.
    connection = http.client.HTTPConnection("127.0.0.1", app_server.port, timeout=60)
    pieces = [b'{"input": "', *[b"a" * 65536] * (2 * MAX_BODY_BYTES // 65536), b'"}']
    connection.request("POST", "/v1/audio/speech", body=iter(pieces), encode_chunked=True,
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 413 and "over the limit" in json.load(response)["error"]["message"]
    connection.close()
    assert_idle(app_server)


@pytest.mark.parametrize("case_id, text", SPOKEN_CASES, ids=[c[0] for c in SPOKEN_CASES])
def test_odd_but_readable_text_speaks_its_chinese(app_server, client, case_id, text):  # noqa: F811
    status, headers, plain = http_speech(app_server, {"input": "你好，世界。", "response_format": "pcm"})
    status, headers, odd = http_speech(app_server, {"input": text, "response_format": "pcm"})
    assert status == 200
    # The same four syllables: the dropped characters add no speech (allow for a pause at the emoji).
    assert 0.7 * len(plain) < len(odd) < 1.5 * len(plain)
    wav, _, _ = client.predict(text, app_server.voices[0]["name"], "neutral", None, 1.0, 0.0, 1.0,
                               api_name="/synthesize")
    assert 0.7 * len(plain) / 2 < soundfile.info(wav).frames < 1.5 * len(plain) / 2


@pytest.mark.parametrize("case_id, make, message", REFERENCE_CASES, ids=[c[0] for c in REFERENCE_CASES])
def test_bad_reference_audio_is_refused_clearly(app_server, client, tmp_path, case_id, make, message):  # noqa: F811
    from gradio_client import handle_file

    path = tmp_path / "reference.wav"
    make(path)
    for endpoint in UI_ENDPOINTS:
        args = [TEXT, app_server.voices[0]["name"], "neutral", handle_file(str(path)), 1.0, 0.0, 1.0]
        text = ui_error(app_server, client, endpoint, args)
        assert message in text, (endpoint, text)
        assert "/" not in text  # names the file, never the server's folders
    assert_idle(app_server)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_ten_minutes_of_aac_are_refused_after_decoding_the_limit_only(app_server, client, tmp_path):  # noqa: F811
    from gradio_client import handle_file

    path = tmp_path / "long.m4a"  # a format soundfile does not read: decoded by ffmpeg, which stops at the limit
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=200:r=8000:d=600", "-c:a", "aac",
                    "-b:a", "16k", str(path)], check=True)
    started = time.monotonic()
    text = ui_error(app_server, client, "/synthesize",
                    [TEXT, app_server.voices[0]["name"], "neutral", handle_file(str(path)), 1.0, 0.0, 1.0])
    assert "longer than the limit of 30 s" in text
    assert time.monotonic() - started < 10


def test_huge_upload_is_refused_by_the_upload_route(app_server):  # noqa: F811
    boundary = uuid.uuid4().hex
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"huge.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()
    size = len(part) + 25 * 2**20 + len(f"\r\n--{boundary}--\r\n")
    head = (f"POST /gradio_api/upload HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode() + part
    answer = raw_exchange(app_server.port, head, 25 * 2**20)
    assert answer.startswith("HTTP/1.1 413") and "maximum allowed size" in answer, answer[:300]


def test_after_the_corpus_the_server_still_speaks_on_both_paths(app_server, client, spoken):  # noqa: F811
    assert_idle(app_server)
    status, _, data = http_speech(app_server, {"input": TEXT, "response_format": "pcm"})
    assert status == 200 and data == spoken  # the same audio as before the corpus (CPU: deterministic)
    wav, _, _ = client.predict(TEXT, app_server.voices[0]["name"], "neutral", None, 1.0, 0.0, 1.0,
                               api_name="/synthesize")
    assert soundfile.info(wav).frames == len(spoken) // 2
