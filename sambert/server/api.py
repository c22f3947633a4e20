"""The HTTP API: OpenAI-shaped speech endpoint, voice list, health and metrics.

    POST /v1/audio/speech   {"model": "sambert", "input": "你好。", "voice": "...", "response_format": "mp3",
                             "speed": 1.0}  (extensions: "emotion", "pitch", "volume")
                            -> the audio, streamed as it is synthesized (chunked transfer); with
                            "stream_format": "sse", server-sent events with base64 audio and word
                            timings (sse.py; "timestamp_granularities": ["word", "char"])
    WS   /v1/audio/speech/ws  text in pieces, audio and timings back as it is spoken (ws.py)
    POST /v1/g2p            {"input": "他长(zhang3)大了。", "lexicon": {"word": "pin1 yin1"}, "normalization": {...},
                             "voice": "..."} -> per sentence the normalised text and per character its pinyin
                            and source (model, lexicon, inline, ssml; dictionary, letters for Latin words);
                            the speech endpoint takes the same fields
    GET  /v1/voices         installed voices with their emotions and whether they read English words
    GET  /healthz           200 when the engine is loaded (for load balancers)
    GET  /metrics           Prometheus text

Errors are JSON in OpenAI's shape, {"error": {"message", "type", "param"}}: 400 for bad input, 401
without credentials (when SAMBERT_AUTH is set), 413 for a body over MAX_BODY_BYTES, 429 when the queue
is full or a client is over its rate limit (ratelimit.py), with Retry-After.
"""

import asyncio
import base64
import secrets
import threading

import anyio
from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from sambert.server.encode import FORMATS, check_format, encode
from sambert.server.limiter import Busy, ClientGone
from sambert.server.ratelimit import client_of, retry_after
from sambert.server.sse import MEDIA_TYPE as SSE_MEDIA_TYPE
from sambert.server.sse import sse_stream
from sambert.server.timed import check_granularities
from sambert.server.ws import Close, Session

# Room for the longest text a profile accepts (5000 characters, as JSON \u escapes ~30 KB) many times over,
# so an over-long text still gets its clear "too long" message; a body larger than this is not read at all.
MAX_BODY_BYTES = 1 << 20


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use (instructions...)

    model: str = "sambert"  # accepted and ignored: the voice picks the model
    input: str
    voice: str | None = None
    response_format: str = "mp3"
    speed: float = 1.0
    emotion: str | None = None
    pitch: float = 0.0
    volume: float = 1.0
    stream_format: str = "audio"  # "audio": the bytes themselves; "sse": server-sent events (sse.py)
    timestamp_granularities: list[str] = ["word"]  # with "sse": "word" and/or "char" timings
    lexicon: dict[str, str] | None = None  # this request's words, {"银行": "yin2 hang2"}, over the server's
    normalization: dict[str, str] | None = None  # reading modes, {"numbers": "auto|digits|cardinal"}


class G2pRequest(BaseModel):
    input: str
    voice: str | None = None  # English words are read as words only by a voice with English phones
    lexicon: dict[str, str] | None = None
    normalization: dict[str, str] | None = None


class ApiError(Exception):
    def __init__(self, status, message, kind="invalid_request_error", param=None, headers=None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.headers = status, message, kind, param, headers


def create_api(service):
    app = FastAPI(title="sambert", docs_url="/v1/docs", redoc_url=None, openapi_url="/v1/openapi.json")
    app.add_middleware(BodyLimit, prefix="/v1/", limit=MAX_BODY_BYTES)

    @app.exception_handler(ApiError)
    async def api_error(request, err):
        return _error(err.status, err.message, err.kind, err.param, err.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, err):  # FastAPI's own, in our error shape
        message = str(err.detail)
        if message == "There was an error parsing the body":  # FastAPI's words for a body that is not UTF-8
            message = "request body is not valid UTF-8 JSON (there was an error parsing the body)"
        return _error(err.status_code, message, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request, err):
        problems = err.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return _error(400, "request body is not valid JSON (send UTF-8 JSON with Content-Type: application/json)")
        first = problems[0]
        field = ".".join(str(part) for part in first.get("loc", ())[1:]) or "body"
        if field == "body":  # no body, or one that is not a JSON object (a list, or sent as text/plain)
            return _error(400, 'request body must be a JSON object such as {"input": "你好"} '
                          "(Content-Type: application/json)", param=field)
        return _error(400, f"{field}: {first.get('msg', 'invalid value')}", param=field)

    def login_problem(headers):
        """None when the request may pass (no login configured, or good credentials), else the message."""
        if service.auth is None:
            return None
        user, password = service.auth
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and secrets.compare_digest(value.encode(), password.encode()):
            return None
        if scheme.lower() == "basic":
            try:
                given = base64.b64decode(value, validate=True)
            except ValueError:
                given = b""
            if secrets.compare_digest(given, f"{user}:{password}".encode()):
                return None
        return "authentication required: HTTP basic auth (user:password) or Bearer <password>"

    def seconds_to_wait(connection, endpoint):
        """0 when the client is within its rate limit (spending one request), else the seconds until it is."""
        client = client_of(connection.client.host if connection.client else None,
                           connection.headers.get("x-forwarded-for"))
        if service.rate_limit is None or client is None:
            return 0
        wait = service.rate_limit.check(client)
        if wait:
            service.metrics.record(endpoint, "rate_limited")
        return wait

    def rate_message(wait):
        return f"rate limit: at most {service.rate_limit_spec} per client; try again in {retry_after(wait)} s"

    def authorized(request: Request):
        problem = login_problem(request.headers)
        if problem:
            raise ApiError(401, problem, kind="authentication_error",
                           headers={"WWW-Authenticate": 'Basic realm="sambert"'})

    def within_rate(request: Request):
        wait = seconds_to_wait(request, "speech")
        if wait:
            raise ApiError(429, rate_message(wait), kind="rate_limit_error", headers={"Retry-After": retry_after(wait)})

    @app.post("/v1/audio/speech", dependencies=[Depends(authorized), Depends(within_rate)])
    async def speech(body: SpeechRequest, request: Request):
        try:
            fmt = check_format(body.response_format)
        except ValueError as err:
            raise ApiError(400, str(err), param="response_format") from None
        if body.stream_format not in ("audio", "sse"):
            raise ApiError(400, f"unknown stream_format {body.stream_format!r}; valid: audio, sse", param="stream_format")
        try:
            granularities = check_granularities(body.timestamp_granularities)
        except ValueError as err:
            raise ApiError(400, str(err), param="timestamp_granularities") from None
        gone = threading.Event()  # set when the client hangs up while the request waits for a slot
        watcher = asyncio.create_task(_watch_disconnect(request, gone))
        try:
            job = await run_in_threadpool(service.open, "speech", body.input, voice=body.voice, emotion=body.emotion,
                                          speed=body.speed, pitch=body.pitch, volume=body.volume,
                                          lexicon=body.lexicon, normalization=body.normalization, gone=gone)
        except Busy as err:
            raise ApiError(429, str(err), kind="rate_limit_error", headers={"Retry-After": "5"}) from None
        except ClientGone as err:
            raise ApiError(499, str(err)) from None  # nobody reads it; the status shows in the access log
        except ValueError as err:
            raise ApiError(400, str(err)) from None
        finally:
            watcher.cancel()
        headers = {"X-Sample-Rate": str(job.sample_rate), "Cache-Control": "no-store",
                   "X-Accel-Buffering": "no"}  # tells nginx-style proxies not to buffer the stream
        if body.stream_format == "sse":
            return ClosingStream(sse_stream(job, fmt, granularities, len(body.input)), job,
                                 media_type=SSE_MEDIA_TYPE, headers=headers)
        return ClosingStream(encode(job, job.sample_rate, fmt), job, media_type=FORMATS[fmt][0], headers=headers)

    @app.post("/v1/g2p", dependencies=[Depends(authorized), Depends(within_rate)])
    async def g2p(body: G2pRequest):
        """The reading the speech endpoint would use, to check before synthesising."""
        limit = service.engine.profile.max_text_length
        if len(body.input) > limit:
            raise ApiError(400, f"input has {len(body.input)} characters; the limit is {limit}", param="input")
        try:
            english_phones = service.engine.voice(body.voice).inventory.english_phones
            sentences = await run_in_threadpool(service.engine.frontend.sentences, body.input, body.lexicon,
                                                body.normalization, english_phones)
        except ValueError as err:  # FrontendError, LexiconError, SsmlError, ModeError, EngineError (voice)
            raise ApiError(400, str(err)) from None
        return {"object": "g2p", "sentences": [{"text": s.text, "pinyin": s.pinyin, "chars": s.readings}
                                               for s in sentences]}

    @app.websocket("/v1/audio/speech/ws")
    async def speech_ws(websocket: WebSocket):
        await websocket.accept()
        session = Session(websocket, service)
        problem = login_problem(websocket.headers)
        if problem:
            return await session.close(Close.LOGIN, problem)
        wait = seconds_to_wait(websocket, "ws")
        if wait:
            return await session.close(Close.BUSY, rate_message(wait))
        await session.run()

    @app.get("/v1/voices", dependencies=[Depends(authorized)])
    async def voices():
        return {"object": "list", "data": service.voices(), "default": service.engine.voices[0].name}

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "profile": service.engine.profile.name, "voices": len(service.engine.voices),
                "running": service.limiter.active, "waiting": service.limiter.waiting}

    @app.get("/metrics", dependencies=[Depends(authorized)])
    async def metrics():
        text = service.metrics.render(service.limiter, service.ui_queue_depth)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    return app


class BodyLimit:
    """Refuses request bodies over `limit` bytes under `prefix` with 413, before or while reading them
    (a Content-Length that says too much, or a chunked body that turns out too long)."""

    def __init__(self, app, prefix, limit):
        self.app, self.prefix, self.limit = app, prefix, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            return await self.app(scope, receive, send)
        too_large = f"request body over the limit of {self.limit // 1024} KiB"
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            return await _error(413, too_large)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, too_large)
            return message

        await self.app(scope, counted, send)


class ClosingStream(StreamingResponse):
    """A streamed body from a blocking iterator over `job`, each step in a worker thread; the iterator
    and the job are closed however the response ends (done, error, or the client going away), which
    frees the request's slot even when the body never started."""

    def __init__(self, source, job, **kwargs):
        self._source, self._job = source, job
        super().__init__(self._pull(), **kwargs)

    async def _pull(self):
        while (data := await anyio.to_thread.run_sync(next, self._source, None)) is not None:
            yield data

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._source.close)
                await anyio.to_thread.run_sync(self._job.close)


async def _watch_disconnect(request, gone):
    """Sets `gone` once the client disconnects (the body is already read, so the next message the
    server receives from it is the disconnect)."""
    while not await request.is_disconnected():
        await asyncio.sleep(0.25)
    gone.set()


def _error(status, message, kind="invalid_request_error", param=None, headers=None):
    return JSONResponse({"error": {"message": message, "type": kind, "param": param}}, status_code=status,
                        headers=headers)
