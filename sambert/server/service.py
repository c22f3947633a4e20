"""What the UI and the HTTP API share: the engine, one admission limit, the metrics, and reference-audio
style transfer. Both paths start a request with `Service.open()` and iterate the returned `Job`.
"""

import re
import threading
import time

from sambert import reference
from sambert.server import ratelimit
from sambert.server.limiter import Busy, Limiter
from sambert.server.metrics import Metrics

EMOTION_NAMES = {"neutral": "中性", "happy": "开心", "angry": "生气", "sad": "悲伤", "fear": "害怕",
                 "hate": "厌恶", "surprise": "惊讶", "arousal": "激昂"}
_SURROGATE = re.compile("[\ud800-\udfff]")
# Read by every voice to measure its own neutral style, the baseline a reference recording is compared to.
CALIBRATION_TEXT = "今天天气很好，我们一起去公园散散步，顺便买点水果回家。"


class Service:
    def __init__(self, engine, max_waiting=16, wait_timeout=None, auth=None, rate_limit=None):
        self.engine = engine
        self.limiter = Limiter(engine.profile.max_concurrent_requests, max_waiting)
        self.metrics = Metrics()
        self.wait_timeout = wait_timeout  # seconds a request may wait for a slot (None: as long as it takes)
        self.auth = auth  # (user, password) or None
        # Per-client request rate on the HTTP API: a spec such as "120/minute", or None for no limit.
        self.rate_limit_spec = rate_limit
        parsed = ratelimit.parse(rate_limit) if rate_limit else None
        self.rate_limit = ratelimit.RateLimit(*parsed) if parsed else None
        self.ui_queue_depth = None  # set by the UI: a callable giving the length of Gradio's queue
        self._neutral = {}
        self._neutral_lock = threading.Lock()

    def voices(self):
        """The installed voices as plain data (for /v1/voices and the UI's dropdowns)."""
        return [{"name": v.name, "display_name": v.display_name, "sample_rate": v.sample_rate,
                 "speakers": list(v.speakers), "emotions": emotions_of(v)} for v in self.engine.voices]

    def open(self, endpoint, text, voice=None, emotion=None, reference_audio=None, **controls):
        """Admit and start one request; returns a Job to iterate for float32 chunks.

        Raises Busy when the limit is reached, ValueError (EngineError, FrontendError,
        ReferenceAudioError) for bad input; both are counted in the metrics.
        """
        started = time.perf_counter()
        if isinstance(text, str) and _SURROGATE.search(text):
            # JSON may escape one half of a UTF-16 pair (\ud800); no part of the engine can encode it
            self.metrics.record(endpoint, "bad_request")
            raise ValueError("text contains an invalid character (an unpaired UTF-16 surrogate); send valid Unicode")
        try:
            slot = self.limiter.acquire(self.wait_timeout)
        except Busy:
            self.metrics.record(endpoint, "busy")
            raise
        try:
            if reference_audio is not None:
                controls = self.apply_reference(voice, reference_audio, controls)
            synthesis = self.engine.stream(text, voice=voice, emotion=emotion or None, **controls)
        except BaseException as err:
            slot.release()
            self.metrics.record(endpoint, "bad_request" if isinstance(err, ValueError) else "error")
            raise
        return Job(self, endpoint, synthesis, slot, started)

    def apply_reference(self, voice, path, controls):
        """`controls` moved towards the style of the recording at `path` (sliders still apply on top)."""
        style = reference.to_controls(reference.analyse_file(path), self.neutral_style(voice))
        merged = dict(controls)
        merged["speed"] = merged.get("speed", 1.0) * style["speed"]
        merged["pitch"] = merged.get("pitch", 0.0) + style["pitch"]
        merged["pitch_scale"] = merged.get("pitch_scale", 1.0) * style["pitch_scale"]
        merged["energy"] = merged.get("energy", 1.0) * style["energy"]
        return merged

    def neutral_style(self, voice):
        """The voice's own neutral prosody, measured once from its reading of CALIBRATION_TEXT."""
        v = self.engine.voice(voice)
        with self._neutral_lock:
            if v.name not in self._neutral:
                audio = self.engine.synthesize(CALIBRATION_TEXT, voice=v.name).audio
                try:
                    self._neutral[v.name] = reference.analyse(audio, v.sample_rate)
                except reference.ReferenceAudioError:  # e.g. an untrained test voice: no voiced speech
                    self._neutral[v.name] = reference.DEFAULT_NEUTRAL
            return self._neutral[v.name]


class Job:
    """One admitted request. Iterate it for audio; it holds its slot until it ends or is closed, then
    records its outcome (ok, error, or cancelled when the consumer stopped early)."""

    def __init__(self, service, endpoint, synthesis, slot, started):
        self.synthesis = synthesis
        self.sample_rate = synthesis.sample_rate
        self.stats = synthesis.stats
        self._service, self._endpoint, self._slot, self._started = service, endpoint, slot, started
        self._outcome = None

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self.synthesis)
        except StopIteration:
            self._finish("ok")
            raise
        except BaseException:
            self._finish("error")
            raise

    def close(self):
        self._finish("cancelled")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _finish(self, outcome):
        if self._outcome is not None:
            return
        self._outcome = outcome
        self.synthesis.close()
        self._slot.release()
        self._service.metrics.record(self._endpoint, outcome, time.perf_counter() - self._started, self.stats)


def emotions_of(voice):
    """A voice's emotion names, neutral first; just neutral for a voice trained without emotions."""
    names = [e.removeprefix("emotion_") for e in voice.emotions] or ["neutral"]
    return ["neutral"] + [e for e in names if e != "neutral"]
