"""`stream_format: "sse"` on POST /v1/audio/speech: the audio as server-sent events, as OpenAI's speech
API sends them, with our word (and character) timings between them.

    data: {"type": "speech.timestamps", "sentence": 0, "words": [{"text": "今天", "start": 0.0, "end": 0.42}, ...]}
    data: {"type": "speech.audio.delta", "audio": "<base64 bytes of the requested response_format>"}
    ...
    data: {"type": "speech.audio.done", "usage": {"input_tokens": ..., "output_tokens": ..., "total_tokens": ...}}

The deltas joined are the bytes the plain (`stream_format: "audio"`) response would carry. A sentence's
timings come before its first audio. A failure after the stream began ends it with
{"type": "error", "error": {"message", "type"}} (the status line was sent long before).
"""

import base64
import json
import logging

from sambert.server.encode import encode
from sambert.server.timed import Timed

log = logging.getLogger(__name__)
MEDIA_TYPE = "text/event-stream"


def event(data):
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


def delta(data):
    return event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})


def sse_stream(job, fmt, granularities, input_chars):
    """Iterator of SSE bytes for an admitted Job; closing it stops the synthesis."""
    timed = Timed(job, granularities)
    audio = encode(timed, job.sample_rate, fmt)
    header = b""  # bytes made before any audio (wav's header) go out with the first audio, after its timings
    try:
        for data in audio:
            if not timed.samples:
                header += data
                continue
            for timing in timed.take():
                yield event(timing)
            yield delta(header + data)
            header = b""
        for timing in timed.take():
            yield event(timing)
        if header:
            yield delta(header)
        # We have no tokenizer: a character of the input counts as an input token, a mel frame of the
        # output (hop samples) as an output token.
        frames = round(timed.samples / job.synthesis.voice.hop)
        yield event({"type": "speech.audio.done", "duration": round(timed.seconds, 4),
                     "usage": {"input_tokens": input_chars, "output_tokens": frames,
                               "total_tokens": input_chars + frames}})
    except Exception as err:  # noqa: BLE001 - the client must hear why its stream ends here
        log.warning("speech stream failed: %s", err)
        kind = "invalid_request_error" if isinstance(err, ValueError) else "server_error"
        yield event({"type": "error", "error": {"message": str(err), "type": kind}})
    finally:
        audio.close()
