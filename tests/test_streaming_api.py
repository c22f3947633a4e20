"""Streaming for apps and agents, end to end through the app's server: `stream_format: "sse"` on
/v1/audio/speech (audio deltas, word and character timings) and the WebSocket /v1/audio/speech/ws
(text in pieces, audio and timings back, cancel, close codes, login, rate and admission limits)."""

import base64
import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest_app import AUTH, ROOT, app_server, ffmpeg_decode, ffmpeg_exe, locked_server  # noqa: F401

TWO_SENTENCES = "你好。天气很好。"


def post(server, body, timeout=120):
    request = urllib.request.Request(server.url + "/v1/audio/speech", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(request, timeout=timeout)


def sse_events(server, **body):
    with post(server, dict(body, stream_format="sse")) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        blocks = r.read().decode().split("\n\n")
    assert blocks[-1] == ""
    events = []
    for block in blocks[:-1]:
        assert block.startswith("data: "), block[:80]
        events.append(json.loads(block[len("data: "):]))
    return events


def health(server):
    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as r:
        return json.load(r)


def rate(server):
    """The sample rate of the server's (default) voice."""
    return server.voices[0]["sample_rate"]


def ws_url(server):
    return server.url.replace("http://", "ws://") + "/v1/audio/speech/ws"


def send(ws, **message):
    ws.send(json.dumps(message, ensure_ascii=False))


def first_answer(ws):
    """The server's first message after our config (a refused connection may close before it arrives)."""
    try:
        send(ws, type="config")
    except ConnectionClosed:
        pass
    return json.loads(ws.recv(timeout=30))


def receive_until(ws, stop, timeout=60):
    """Messages in order (dicts; bytes for audio) up to and including the first for which stop(m) holds."""
    received = []
    while not received or not stop(received[-1]):
        message = ws.recv(timeout=timeout)
        received.append(message if isinstance(message, bytes) else json.loads(message))
    return received


def receive_all(ws, timeout=60):
    """(messages in order, the close code) once the server has closed the connection."""
    received = []
    try:
        while True:
            message = ws.recv(timeout=timeout)
            received.append(message if isinstance(message, bytes) else json.loads(message))
    except ConnectionClosed:
        return received, ws.close_code


def audio_of(messages):
    return b"".join(m for m in messages if isinstance(m, bytes))


def of_type(messages, kind):
    return [m for m in messages if isinstance(m, dict) and m["type"] == kind]


def check_timings(spans, audio_seconds):
    """Each span ends after it starts, the next starts where or after it ends, and they cover the audio."""
    for span in spans:
        assert span["end"] > span["start"], span
    for before, after in zip(spans, spans[1:]):
        assert after["start"] >= before["end"], (before, after)
    assert spans[0]["start"] < 0.3
    assert audio_seconds - 0.5 < spans[-1]["end"] <= audio_seconds


# ---- the pieces, without a server ---------------------------------------------------------------

def test_char_spans_are_the_syllables_of_each_character():
    from sambert.server.timed import char_spans
    from sambert.timings import Span

    # 今天 (two syllables of two units each), a break, 玩 (erhua folded in: 玩儿 is one syllable)
    units = [Span("j_c", 0.0, 0.1), Span("in_c", 0.1, 0.3), Span("t_c", 0.3, 0.35), Span("ian_c", 0.35, 0.6),
             Span("#1", 0.6, 0.6), Span("ga", 0.6, 0.65), Span("uanr_c", 0.65, 0.9), Span("#4", 0.9, 1.0)]
    words = [Span("今天", 0.0, 0.6), Span("玩儿", 0.6, 0.9)]
    assert char_spans(words, units) == [Span("今", 0.0, 0.3), Span("天", 0.3, 0.6),
                                        Span("玩", 0.6, 0.75), Span("儿", 0.75, 0.9)]  # shared evenly


def test_text_is_cut_at_sentence_ends_and_long_clauses():
    from sambert.server.ws import CLAUSE_CHARS, cut

    assert cut("他说：“你好。”我们走吧！还有") == (["他说：“你好。”", "我们走吧！"], "还有")
    assert cut("第一行\n第二") == (["第一行\n"], "第二")
    clause = "甲" * (CLAUSE_CHARS - 10) + "，" + "乙" * 20
    assert cut(clause) == (["甲" * (CLAUSE_CHARS - 10) + "，"], "乙" * 20)  # after the last comma in reach
    number = "丙" * (CLAUSE_CHARS - 3) + "123456"
    assert cut(number) == (["丙" * (CLAUSE_CHARS - 3)], "123456")  # never inside a number


# ---- SSE ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sse(app_server):  # noqa: F811
    """The plain wav response and the SSE events of the same request, with word and character timings."""
    body = {"input": TWO_SENTENCES, "response_format": "wav"}
    with post(app_server, body) as r:
        plain = r.read()
    events = sse_events(app_server, **body, timestamp_granularities=["word", "char"])
    return plain, events


def test_sse_audio_deltas_joined_are_the_plain_response(sse, app_server):  # noqa: F811
    plain, events = sse
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) > 2  # streamed in pieces, not one blob at the end
    assert b"".join(base64.b64decode(e["audio"]) for e in deltas) == plain
    done = events[-1]
    assert done["type"] == "speech.audio.done" and [e["type"] for e in events].count("speech.audio.done") == 1
    samples = (len(plain) - 44) // 2
    assert done["duration"] == pytest.approx(samples / rate(app_server), abs=1e-3)
    assert done["usage"]["input_tokens"] == len(TWO_SENTENCES)
    assert done["usage"]["total_tokens"] == done["usage"]["input_tokens"] + done["usage"]["output_tokens"] > 0


def test_sse_timestamps_come_before_their_audio_are_monotonic_and_cover_it(sse, app_server):  # noqa: F811
    plain, events = sse
    audio_seconds = (len(plain) - 44) / 2 / rate(app_server)
    timings = [e for e in events if e["type"] == "speech.timestamps"]
    assert [t["sentence"] for t in timings] == [0, 1]
    assert events[0]["type"] == "speech.timestamps"  # the first sentence's timings precede any audio
    # the second sentence's timings arrive before the audio of the second sentence: the audio before them
    # is shorter than the second sentence's start
    before = events[: events.index(timings[1])]
    heard = sum(len(base64.b64decode(e["audio"])) for e in before if e["type"] == "speech.audio.delta") - 44
    assert heard / 2 / rate(app_server) <= timings[1]["words"][0]["start"]
    words = [w for t in timings for w in t["words"]]
    assert "".join(w["text"] for w in words) == "你好天气很好"
    check_timings(words, audio_seconds)
    chars = [c for t in timings for c in t["chars"]]
    assert [c["text"] for c in chars] == list("你好天气很好")
    check_timings(chars, audio_seconds)
    for word in words:  # each word's characters divide exactly its time
        own = [c for c in chars if word["start"] <= c["start"] and c["end"] <= word["end"]]
        assert "".join(c["text"] for c in own) == word["text"]
        assert own[0]["start"] == word["start"] and own[-1]["end"] == word["end"]


def test_sse_timestamps_match_the_subtitles_of_the_same_text(sse, app_server):  # noqa: F811
    gradio_client = pytest.importorskip("gradio_client")
    client = gradio_client.Client(app_server.url, verbose=False)
    _, srt_path, _ = client.predict(TWO_SENTENCES, None, "neutral", None, 1.0, 0.0, 1.0, api_name="/synthesize")
    cues = re.findall(r"(\d+):(\d+):(\d+),(\d+) --> (\d+):(\d+):(\d+),(\d+)\n(.+)", open(srt_path, encoding="utf-8").read())
    timings = [e for e in sse[1] if e["type"] == "speech.timestamps"]
    assert len(cues) == len(timings) == 2
    for cue, timing in zip(cues, timings):
        *clock, text = cue
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, clock)
        assert text == "".join(w["text"] for w in timing["words"])
        assert (h1 * 3600 + m1 * 60 + s1) * 1000 + ms1 == round(timing["words"][0]["start"] * 1000)
        assert (h2 * 3600 + m2 * 60 + s2) * 1000 + ms2 == round(timing["words"][-1]["end"] * 1000)


@pytest.mark.parametrize("field, value, words", [("stream_format", "ndjson", "unknown stream_format"),
                                                  ("timestamp_granularities", ["segment"], "unknown timestamp")])
def test_sse_options_are_checked(app_server, field, value, words):  # noqa: F811
    with pytest.raises(urllib.error.HTTPError) as refused:
        post(app_server, {"input": "你好。", "stream_format": "sse", field: value})
    assert refused.value.code == 400
    assert words in json.load(refused.value)["error"]["message"]


# ---- WebSocket ---------------------------------------------------------------------------------

def test_ws_speaks_the_first_sentence_before_the_last_piece_is_sent(app_server):  # noqa: F811
    pieces = ["今天", "天气很", "好。我", "们去", "公园吧。"]
    with connect(ws_url(app_server), open_timeout=30) as ws:
        send(ws, type="config", response_format="pcm")
        ready = receive_until(ws, lambda m: True)[0]
        assert ready["type"] == "ready" and ready["sample_rate"] == rate(app_server)
        for piece in pieces[:3]:
            send(ws, type="text", text=piece)
        early = receive_until(ws, lambda m: isinstance(m, bytes))  # pieces 4 and 5 are not sent yet
        assert of_type(early, "speech.timestamps")[0]["words"][0]["text"] == "今天天气"
        for piece in pieces[3:]:
            send(ws, type="text", text=piece)
        send(ws, type="end")
        rest, code = receive_all(ws)
    messages = early + rest
    assert code == 1000
    segments = of_type(messages, "segment")
    assert [s["text"] for s in segments] == ["今天天气很好。", "我们去公园吧。"]
    done = of_type(messages, "done")[0]
    audio = np.frombuffer(audio_of(messages), "<i2")
    assert done["audio_seconds"] == pytest.approx(len(audio) / rate(app_server), abs=1e-3) == segments[-1]["end"]
    words = [w for t in of_type(messages, "speech.timestamps") for w in t["words"]]
    check_timings(words, len(audio) / rate(app_server))
    assert segments[1]["start"] > segments[0]["end"]  # the pause between sentences is in the audio


@pytest.mark.skipif(ffmpeg_exe() is None, reason="no ffmpeg")
def test_ws_mp3_segments_join_into_one_mp3_stream(app_server):  # noqa: F811
    with connect(ws_url(app_server), open_timeout=30) as ws:
        send(ws, type="config", response_format="mp3")
        send(ws, type="text", text=TWO_SENTENCES)
        send(ws, type="end")
        messages, code = receive_all(ws)
    assert code == 1000 and len(of_type(messages, "segment")) == 2
    decoded = ffmpeg_decode(audio_of(messages))
    assert (decoded.container, decoded.codec, decoded.rate) == ("mp3", "mp3", rate(app_server))
    # each segment's MP3 adds the encoder's delay in front and pads its end to a whole frame (1105, 1152)
    extra = len(decoded.samples) - of_type(messages, "done")[0]["audio_seconds"] * rate(app_server)
    assert 0 <= extra <= 2 * (1105 + 1152), extra


def test_ws_holds_a_clause_until_flush(app_server):  # noqa: F811
    with connect(ws_url(app_server), open_timeout=30) as ws:
        send(ws, type="config")
        receive_until(ws, lambda m: m["type"] == "ready")
        send(ws, type="text", text="你好")  # no sentence end: waits for more text
        with pytest.raises(TimeoutError):
            ws.recv(timeout=2)
        send(ws, type="flush")
        spoken = receive_until(ws, lambda m: isinstance(m, dict) and m["type"] == "segment")
    assert spoken[-1]["text"] == "你好" and audio_of(spoken)


def test_ws_cancel_frees_the_slot_at_once_and_the_connection_goes_on(app_server):  # noqa: F811
    with connect(ws_url(app_server), open_timeout=30) as ws:
        send(ws, type="config")
        receive_until(ws, lambda m: m["type"] == "ready")
        send(ws, type="text", text="今天天气很好，我们一起去公园散步，顺便买点水果回家。" * 3)
        receive_until(ws, lambda m: isinstance(m, bytes))
        assert health(app_server)["running"] == 1
        send(ws, type="cancel")
        receive_until(ws, lambda m: isinstance(m, dict) and m["type"] == "cancelled", timeout=10)
        assert health(app_server)["running"] == 0  # at once: no waiting for the watchdog or the text's end
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1)  # nothing more of the cancelled text
        send(ws, type="text", text="好。")
        send(ws, type="end")
        after, code = receive_all(ws)
    assert code == 1000 and audio_of(after)
    assert [s["text"] for s in of_type(after, "segment")] == ["好。"]


@pytest.mark.parametrize("messages, code, words", [
    (["{not json"], 4400, "not valid JSON"),
    ([{"type": "text", "text": "你好。"}], 4400, "first message must be"),
    ([{"type": "config", "voice": "alloy"}], 4400, "unknown voice 'alloy'"),
    ([{"type": "config", "speed": 9}], 4400, "speed must be"),
    ([{"type": "config", "format": "pcm"}], 4400, "unknown config field 'format'"),
    ([{"type": "config"}, {"type": "text", "text": "好" * 2001}], 4413, "limit is 2000"),
    ([b"\x00\x01"], 4400, "binary messages are not accepted"),
    ([{"type": "config", "lexicon": {"银行": "yin2"}}], 4400, "must be 2 toned pinyin syllable"),
    ([{"type": "config", "normalization": {"numbers": "roman"}}], 4400, "numbers must be one of auto"),
], ids=["bad-json", "text-before-config", "unknown-voice", "bad-speed", "unknown-field", "oversized-piece", "binary",
        "bad-lexicon", "bad-mode"])
def test_ws_bad_messages_get_an_error_message_and_a_close_code(app_server, messages, code, words):  # noqa: F811
    with connect(ws_url(app_server), open_timeout=30) as ws:
        for message in messages:
            ws.send(message if isinstance(message, (str, bytes)) else json.dumps(message))
        received, closed_with = receive_all(ws, timeout=30)
    errors = of_type(received, "error")
    assert len(errors) == 1 and errors[0]["code"] == code and words in errors[0]["message"], received
    assert closed_with == code
    assert health(app_server)["running"] == 0


def test_ws_reads_with_the_config_lexicon_and_modes_as_the_http_api(app_server):  # noqa: F811
    fields = {"lexicon": {"长大": "chang2 da4"}, "normalization": {"numbers": "digits"}}
    text = "他长大了12岁。"

    def ws_audio(**config):
        with connect(ws_url(app_server), open_timeout=30) as ws:
            send(ws, type="config", response_format="pcm", **config)
            send(ws, type="text", text=text)
            send(ws, type="end")
            messages, code = receive_all(ws)
        assert code == 1000, messages
        return audio_of(messages)

    with post(app_server, {"input": text, "response_format": "pcm", **fields}) as r:
        http = r.read()
    fixed = ws_audio(**fields)
    assert fixed == http  # synthesis is deterministic: the same reading, the same samples
    assert ws_audio() != fixed


def test_speak_command_writes_what_the_http_api_says(app_server, tmp_path):  # noqa: F811
    import soundfile

    with post(app_server, {"input": "你好。", "response_format": "pcm"}) as r:
        plain = np.frombuffer(r.read(), "<i2")
    out = tmp_path / "out.wav"
    done = subprocess.run([sys.executable, "-m", "sambert", "speak", "--server", app_server.url, "-o", str(out),
                           "--timestamps"], input="你好。".encode(), cwd=ROOT, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    spoken, spoken_rate = soundfile.read(str(out), dtype="int16")
    assert spoken_rate == rate(app_server) and np.array_equal(spoken, plain)
    assert re.fullmatch(r"\s+0\.000\s+\d\.\d{3}  你好\n", done.stderr.decode()), done.stderr.decode()


def test_speak_command_says_why_the_server_refused(app_server, tmp_path):  # noqa: F811
    done = subprocess.run([sys.executable, "-m", "sambert", "speak", "--server", app_server.url, "--voice", "alloy",
                           "-o", str(tmp_path / "out.wav"), "你好。"], cwd=ROOT, capture_output=True, timeout=120)
    assert done.returncode == 2 and "unknown voice 'alloy'" in done.stderr.decode() and "4400" in done.stderr.decode()


# ---- a second server: login, rate limit, idle timeout, a queue for 16 sessions -------------------

def basic_auth():
    return {"Authorization": "Basic " + base64.b64encode(":".join(AUTH).encode()).decode()}


def test_ws_needs_the_login_basic_or_bearer(locked_server):  # noqa: F811
    for headers, code in (({}, 4401), ({"Authorization": "Bearer wrong"}, 4401),
                          ({"Authorization": f"Bearer {AUTH[1]}"}, None), (basic_auth(), None)):
        with connect(ws_url(locked_server), additional_headers=headers, open_timeout=30) as ws:
            answer = first_answer(ws)
            if code is None:
                assert answer["type"] == "ready"
            else:
                assert answer["code"] == code and "authentication required" in answer["message"]
                assert receive_all(ws, timeout=30)[1] == code


def test_ws_counts_against_the_rate_limit_of_the_http_api(locked_server):  # noqa: F811
    headers = dict(basic_auth(), **{"X-Forwarded-For": "203.0.113.7"})  # one remote client behind a proxy
    codes = []
    for _ in range(3):  # the limit is 2/minute
        with connect(ws_url(locked_server), additional_headers=headers, open_timeout=30) as ws:
            answer = first_answer(ws)
            codes.append(answer.get("code") if answer["type"] == "error" else answer["type"])
    assert codes == ["ready", "ready", 4429]


def test_ws_closes_an_idle_connection(locked_server):  # noqa: F811
    with connect(ws_url(locked_server), additional_headers=basic_auth(), open_timeout=30) as ws:
        send(ws, type="config")
        started = time.monotonic()
        received, code = receive_all(ws, timeout=30)
    assert code == 4408 and of_type(received, "error")[0]["code"] == 4408
    assert 1.5 < time.monotonic() - started < 10


@pytest.mark.timeout(240)
def test_16_concurrent_ws_sessions_all_complete(locked_server):  # noqa: F811
    results = [None] * 16

    def session(i):
        with connect(ws_url(locked_server), additional_headers=basic_auth(), open_timeout=60) as ws:
            send(ws, type="config")
            send(ws, type="text", text="好。")
            send(ws, type="end")
            results[i] = receive_all(ws, timeout=180)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(200)
    for i, result in enumerate(results):
        assert result is not None, f"session {i} did not finish"
        messages, code = result
        assert code == 1000 and of_type(messages, "done") and len(audio_of(messages)) > 4000, (i, messages[-2:])
    assert health(locked_server)["running"] == 0 and health(locked_server)["waiting"] == 0
