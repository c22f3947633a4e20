"""WebSocket speech for voice agents: text comes in pieces (as an LLM writes it), each sentence is spoken
as soon as it is complete, and its audio and timings go back while the rest of the text arrives.

    WS /v1/audio/speech/ws  (the HTTP API's login: basic or Bearer; its per-client rate limit, one
                             request per connection; its admission limit, one request per segment)

Client -> server, JSON text messages:
    {"type": "config", "voice": ..., "emotion": ..., "response_format": "pcm" | "mp3", "speed": 1.0,
     "pitch": 0.0, "volume": 1.0, "timestamp_granularities": ["word", "char"],
     "lexicon": {"曾乐": "zeng1 yue4"}, "normalization": {"numbers": "digits"}}      first, once
                                            (lexicon and normalization as on POST /v1/audio/speech)
    {"type": "text", "text": "今天天气"}     any number; spoken sentence by sentence
    {"type": "flush"}                       speak what is buffered now, even without a sentence end
    {"type": "end"}                         flush, finish speaking, then "done" and close (1000)
    {"type": "cancel"}                      stop speaking, drop the buffered text; "cancelled" once the
                                            synthesis slot is free; the connection stays open
Server -> client:
    {"type": "ready", "voice", "sample_rate", "response_format", "timestamp_granularities"}
    {"type": "speech.timestamps", "sentence": n, "words": [{"text", "start", "end"}], "chars": [...]}
        before that sentence's audio; seconds from the start of the connection's audio
    binary messages: the audio (pcm: 16-bit little-endian mono at sample_rate; mp3: MP3 frames)
    {"type": "segment", "text", "start", "end"}   after each spoken segment
    {"type": "warning", "message", "text"}         a segment with nothing readable was skipped
    {"type": "done", "audio_seconds", "sentences"} then close 1000
    {"type": "error", "code", "message"}           then close with that code (Close below)

A segment is a sentence (up to 。！？!?；; or a newline, with any closing quotes), or, for a clause
without such an end, its first CLAUSE_CHARS characters (cut after a comma or a space where there is
one). Segments after the first start with the engine's pause between sentences, so the audio joins
as one recording. A client that reads slowly holds the synthesis back (each send waits for the
socket to drain); one that stops reading loses its slot to the stall watchdog (service.py).
"""

import asyncio
import enum
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from functools import partial

import anyio

from starlette.websockets import WebSocketDisconnect

from sambert.engine import CONTROL_RANGES, SENTENCE_PAUSE_SECONDS, EngineError
from sambert.frontend import Lexicon, modes
from sambert.server.encode import check_format, encode
from sambert.server.limiter import Busy, ClientGone
from sambert.server.service import emotions_of
from sambert.server.timed import Timed, check_granularities

log = logging.getLogger(__name__)

FORMATS = ("pcm", "mp3")  # formats whose segments join into one stream by plain concatenation
IDLE_SECONDS = float(os.environ.get("SAMBERT_WS_IDLE_SECONDS", "60"))  # no message and nothing to say
MAX_PIECE_CHARS = 2000  # one text message
MAX_MESSAGE_CHARS = 65_536  # one message before it is parsed (a whole piece as JSON \u escapes fits)
MAX_TEXT_CHARS = 20_000  # all text over one connection
CLAUSE_CHARS = 80
CONFIG_FIELDS = {"type", "voice", "emotion", "response_format", "speed", "pitch", "volume",
                 "timestamp_granularities", "lexicon", "normalization"}
_SENTENCE = re.compile(r".*?[。！？!?；;\n]+[”’」』）)》】\"']*", re.S)
_SOFT_BREAKS = "，,、：:"


class Close(enum.IntEnum):
    """Close codes: 4000 + the HTTP status the same problem gets from POST /v1/audio/speech."""

    DONE = 1000
    FAILED = 1011  # synthesis or encoding failed, or the request stalled
    BAD_MESSAGE = 4400  # not JSON, unknown type, text before config, unknown voice, bad value
    LOGIN = 4401
    IDLE = 4408  # no message for IDLE_SECONDS while nothing was being spoken
    TOO_LARGE = 4413  # a message or piece over its limit, or over MAX_TEXT_CHARS in all
    BUSY = 4429  # the server's waiting line is full, or the client is over its rate limit


class _Fail(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Config:
    voice: str
    emotion: str | None
    response_format: str
    controls: dict
    granularities: tuple
    sample_rate: int


_END = object()  # queued after the last segment


def cut(buffer, clause_chars=CLAUSE_CHARS):
    """(segments ready to speak, the rest to keep buffering)."""
    segments = []
    while True:
        sentence = _SENTENCE.match(buffer)
        if sentence:
            segments.append(sentence.group())
            buffer = buffer[sentence.end():]
            continue
        if len(buffer) <= clause_chars:
            return segments, buffer
        head = buffer[:clause_chars]
        at = max(head.rfind(mark) for mark in _SOFT_BREAKS + " ") + 1
        if at == 0:  # no comma or space: cut at the limit, but not inside a number or a Latin word
            at = clause_chars
            while at > 1 and head[at - 1].isascii() and head[at - 1].isalnum():
                at -= 1
            at = at if at > 1 else clause_chars
        segments.append(buffer[:at])
        buffer = buffer[at:]


class Session:
    """One connection, already accepted: `run()` reads the client's messages while a second task speaks;
    `close()` refuses it with a reason instead."""

    def __init__(self, websocket, service):
        self.ws, self.service = websocket, service
        self.config = None
        self.buffer = ""
        self.received_chars = 0
        self.ended = False
        self.closed = False
        self.segments = asyncio.Queue()
        self.speaking = False
        self.gone = threading.Event()  # set to make the segment waiting for a slot leave the line
        self.audio_seconds = 0.0  # sent so far, pauses included: the next segment's time offset
        self.sentences = 0
        self.speaker = None

    async def run(self):
        self.speaker = asyncio.create_task(self._speak_all())
        try:
            await self._receive_all()
        except _Fail as fail:
            await self.close(fail.code, fail.message)
        finally:
            await self._stop_speaking()

    # ---- the client's messages ---------------------------------------------------------------

    async def _receive_all(self):
        while True:
            try:
                message = await asyncio.wait_for(self.ws.receive(), IDLE_SECONDS)
            except asyncio.TimeoutError:
                if self.speaking or not self.segments.empty():
                    continue
                raise _Fail(Close.IDLE, f"no message for {IDLE_SECONDS:g} s; closing the idle connection") from None
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                raise _Fail(Close.BAD_MESSAGE, "binary messages are not accepted: send JSON text messages")
            await self._handle(text)

    async def _handle(self, raw):
        if len(raw) > MAX_MESSAGE_CHARS:
            raise _Fail(Close.TOO_LARGE, f"message of {len(raw)} characters; the limit is {MAX_MESSAGE_CHARS}")
        try:
            message = json.loads(raw)
        except ValueError as err:
            raise _Fail(Close.BAD_MESSAGE, f"message is not valid JSON ({err})") from None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind not in ("config", "text", "flush", "end", "cancel"):
            raise _Fail(Close.BAD_MESSAGE, 'every message is a JSON object whose "type" is config, text, '
                        f"flush, end or cancel; got {raw[:80]!r}")
        if self.config is None and kind != "config":
            raise _Fail(Close.BAD_MESSAGE, f'the first message must be {{"type": "config", ...}}, not {kind!r}')
        if kind == "config":
            if self.config is not None:
                raise _Fail(Close.BAD_MESSAGE, "config was already sent; open a new connection to change it")
            self.config = self._configure(message)
            await self._send({"type": "ready", "voice": self.config.voice, "sample_rate": self.config.sample_rate,
                              "response_format": self.config.response_format,
                              "timestamp_granularities": list(self.config.granularities)})
        elif kind == "cancel":
            await self._cancel()
        elif self.ended:
            raise _Fail(Close.BAD_MESSAGE, f"{kind!r} after end")
        elif kind == "text":
            self._add_text(message.get("text"))
        else:  # flush, end
            if self.buffer:
                self.segments.put_nowait(self.buffer)
                self.buffer = ""
            if kind == "end":
                self.ended = True
                self.segments.put_nowait(_END)

    def _configure(self, message):
        unknown = sorted(set(message) - CONFIG_FIELDS)
        if unknown:
            raise _Fail(Close.BAD_MESSAGE, f"unknown config field {unknown[0]!r}; fields: "
                        f"{', '.join(sorted(CONFIG_FIELDS - {'type'}))}")
        try:
            voice_name, emotion = message.get("voice"), message.get("emotion") or None
            if not isinstance(voice_name, (str, type(None))) or not isinstance(emotion, (str, type(None))):
                raise ValueError("voice and emotion must be strings")
            voice = self.service.engine.voice(voice_name)
            if emotion and emotion.removeprefix("emotion_") not in emotions_of(voice):
                raise ValueError(f"voice {voice.name!r} has no emotion {emotion!r}; its emotions: "
                                 f"{', '.join(emotions_of(voice))}")
            fmt = message.get("response_format", "pcm")
            if fmt not in FORMATS:
                raise ValueError(f"response_format {fmt!r} cannot be streamed in segments; use one of {', '.join(FORMATS)}")
            check_format(fmt)
            controls = {}
            for name, default in (("speed", 1.0), ("pitch", 0.0), ("volume", 1.0)):
                value = message.get(name, default)
                low, high = CONTROL_RANGES[name]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                    raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
                controls[name] = float(value)
            granularities = message.get("timestamp_granularities", ["word"])
            if not isinstance(granularities, list):
                raise ValueError('timestamp_granularities must be a list such as ["word", "char"]')
            granularities = check_granularities(granularities)
            # checked once here, so a bad entry or mode closes the connection before any text is spoken
            lexicon = message.get("lexicon")
            if lexicon is not None:
                controls["lexicon"] = Lexicon.from_mapping(lexicon)
            normalization = message.get("normalization")
            modes.english_words(normalization, voice.inventory.english_phones)
            controls["normalization"] = normalization
        except (ValueError, EngineError) as err:
            raise _Fail(Close.BAD_MESSAGE, str(err)) from None
        return Config(voice.name, emotion, fmt, controls, granularities, voice.sample_rate)

    def _add_text(self, piece):
        if not isinstance(piece, str):
            raise _Fail(Close.BAD_MESSAGE, 'a text message is {"type": "text", "text": "<a string>"}')
        if len(piece) > MAX_PIECE_CHARS:
            raise _Fail(Close.TOO_LARGE, f"text piece of {len(piece)} characters; the limit is {MAX_PIECE_CHARS} "
                        "(send long text in several messages)")
        self.received_chars += len(piece)
        if self.received_chars > MAX_TEXT_CHARS:
            raise _Fail(Close.TOO_LARGE, f"more than {MAX_TEXT_CHARS} characters over this connection; open a new one")
        segments, self.buffer = cut(self.buffer + piece)
        for segment in segments:
            self.segments.put_nowait(segment)

    async def _cancel(self):
        self.buffer = ""
        while not self.segments.empty():
            self.segments.get_nowait()
        await self._stop_speaking()
        await self._send({"type": "cancelled"})  # sent once the slot is free
        self.gone = threading.Event()
        self.speaker = asyncio.create_task(self._speak_all())
        if self.ended:  # the client had ended: nothing is left to say
            self.segments.put_nowait(_END)

    async def _stop_speaking(self):
        self.gone.set()
        self.speaker.cancel()
        await asyncio.gather(self.speaker, return_exceptions=True)

    # ---- speaking ----------------------------------------------------------------------------

    async def _speak_all(self):
        try:
            while (segment := await self.segments.get()) is not _END:
                if not any(ch.isalnum() for ch in segment):
                    continue  # punctuation or emoji only: nothing to say
                self.speaking = True
                try:
                    await self._speak(segment)
                finally:
                    self.speaking = False
            await self._send({"type": "done", "audio_seconds": round(self.audio_seconds, 4),
                              "sentences": self.sentences})
            await self.close(Close.DONE, "done")
        except (WebSocketDisconnect, OSError):
            pass  # the client went away; run() ends the session
        except _Fail as fail:
            await self.close(fail.code, fail.message)

    async def _speak(self, segment):
        job = await self._open(segment)
        if job is None:
            return
        lead_in = SENTENCE_PAUSE_SECONDS if self.audio_seconds else 0.0
        timed = Timed(job, self.config.granularities, offset=self.audio_seconds, first=self.sentences, lead_in=lead_in)
        audio = encode(timed, job.sample_rate, self.config.response_format)
        pulling = None
        try:
            while True:
                # Shielded: a cancel stops this task at once, while the thread's step runs to its end
                pulling = asyncio.ensure_future(_in_thread(partial(next, audio, None)))
                data = await asyncio.shield(pulling)
                if data is None:
                    break
                for event in timed.take():
                    await self._send(event)
                await self.ws.send_bytes(data)
            for event in timed.take():
                await self._send(event)
        except (WebSocketDisconnect, OSError):
            raise
        except Exception as err:  # noqa: BLE001 - Stalled, an encoder or a later sentence failing
            log.warning("websocket speech failed: %s", err)
            raise _Fail(Close.FAILED, f"synthesis failed: {err}") from None
        finally:
            await asyncio.shield(_release(job, audio, pulling))
            start = self.audio_seconds + lead_in
            self.audio_seconds += timed.seconds
            self.sentences += len(job.synthesis.words_by_sentence)
        await self._send({"type": "segment", "text": segment, "start": round(start, 4),
                          "end": round(self.audio_seconds, 4)})

    async def _open(self, segment):
        """The admitted Job for `segment`, or None when it was cancelled while waiting or has nothing
        to read; a full waiting line ends the session."""
        config, gone = self.config, self.gone
        opening = asyncio.ensure_future(_in_thread(partial(
            self.service.open, "ws", segment, voice=config.voice, emotion=config.emotion, gone=gone,
            **config.controls)))
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            # cancelled while the worker thread still waits: a slot it gets later is given back at once
            opening.add_done_callback(lambda done: done.exception() is None and done.result().close())
            raise
        except Busy as err:
            raise _Fail(Close.BUSY, str(err)) from None
        except ClientGone:
            return None
        except ValueError as err:  # e.g. a segment in a script the frontend cannot read
            await self._send({"type": "warning", "message": f"not spoken: {err}", "text": segment})
            return None

    # ---- sending -----------------------------------------------------------------------------

    async def _send(self, message):
        await self.ws.send_text(json.dumps(message, ensure_ascii=False))

    async def close(self, code, message):
        """Say why (unless it is the normal end) and close with `code`; only the first call counts."""
        if self.closed:
            return
        self.closed = True
        try:
            if code != Close.DONE:
                await self._send({"type": "error", "code": int(code), "message": message})
            await self.ws.close(int(code), reason=message.encode()[:120].decode("utf-8", "ignore"))
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass  # already gone


async def _release(job, audio, pulling):
    """Free the job's slot (after the engine's current step), let the step in flight end, close the encoder."""
    await _in_thread(job.close)
    if pulling is not None:
        await asyncio.wait([pulling])
        pulling.exception()  # retrieved: a failure of the step nobody waits for any more is not logged as lost
    await _in_thread(audio.close)


async def _in_thread(call):
    # anyio's worker threads, as the HTTP API's: asyncio's default pool has only cores + 4 threads, which
    # requests waiting for a slot could fill, leaving none for the request that holds it.
    return await anyio.to_thread.run_sync(call)
