"""The HTTP API: OpenAI-shaped speech endpoint, voice list, health and metrics.

    POST /v1/audio/speech   {"model": "sambert", "input": "你好。", "voice": "...", "response_format": "mp3",
                             "speed": 1.0}  (extensions: "emotion", "pitch", "volume")
                            -> the audio, streamed as it is synthesized (chunked transfer)
    GET  /v1/voices         installed voices with their emotions
    GET  /healthz           200 when the engine is loaded (for load balancers)
    GET  /metrics           Prometheus text

Errors are JSON in OpenAI's shape, {"error": {"message", "type", "param"}}: 400 for bad input, 401
without credentials (when SAMBERT_AUTH is set), 429 when the queue is full.
"""

import base64
import secrets

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from sambert.server.encode import FORMATS, check_format, encode
from sambert.server.limiter import Busy


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


class ApiError(Exception):
    def __init__(self, status, message, kind="invalid_request_error", param=None, headers=None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.headers = status, message, kind, param, headers


def create_api(service):
    app = FastAPI(title="sambert", docs_url="/v1/docs", redoc_url=None, openapi_url="/v1/openapi.json")

    @app.exception_handler(ApiError)
    async def api_error(request, err):
        return _error(err.status, err.message, err.kind, err.param, err.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, err):  # FastAPI's own (e.g. a body that is not UTF-8), in our error shape
        return _error(err.status_code, str(err.detail), headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request, err):
        problems = err.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return _error(400, "request body is not valid JSON (send UTF-8 JSON with Content-Type: application/json)")
        first = problems[0]
        field = ".".join(str(part) for part in first.get("loc", ())[1:]) or "body"
        return _error(400, f"{field}: {first.get('msg', 'invalid value')}", param=field)

    def authorized(request: Request):
        if service.auth is None:
            return
        user, password = service.auth
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and secrets.compare_digest(value.encode(), password.encode()):
            return
        if scheme.lower() == "basic":
            try:
                given = base64.b64decode(value, validate=True)
            except ValueError:
                given = b""
            if secrets.compare_digest(given, f"{user}:{password}".encode()):
                return
        raise ApiError(401, "authentication required: HTTP basic auth (user:password) or Bearer <password>",
                       kind="authentication_error", headers={"WWW-Authenticate": 'Basic realm="sambert"'})

    @app.post("/v1/audio/speech", dependencies=[Depends(authorized)])
    async def speech(body: SpeechRequest):
        try:
            fmt = check_format(body.response_format)
        except ValueError as err:
            raise ApiError(400, str(err), param="response_format") from None
        try:
            job = await run_in_threadpool(service.open, "speech", body.input, voice=body.voice, emotion=body.emotion,
                                          speed=body.speed, pitch=body.pitch, volume=body.volume)
        except Busy as err:
            raise ApiError(429, str(err), kind="rate_limit_error", headers={"Retry-After": "5"}) from None
        except ValueError as err:
            raise ApiError(400, str(err)) from None
        headers = {"X-Sample-Rate": str(job.sample_rate), "Cache-Control": "no-store",
                   "X-Accel-Buffering": "no"}  # tells nginx-style proxies not to buffer the stream
        return ClosingStream(encode(job, job.sample_rate, fmt), media_type=FORMATS[fmt][0], headers=headers)

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


class ClosingStream(StreamingResponse):
    """A streamed body from a blocking iterator, each step in a worker thread; the iterator is closed
    however the response ends (done, error, or the client going away), which frees the request's slot."""

    def __init__(self, source, **kwargs):
        self._source = source
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


def _error(status, message, kind="invalid_request_error", param=None, headers=None):
    return JSONResponse({"error": {"message": message, "type": kind, "param": param}}, status_code=status,
                        headers=headers)
