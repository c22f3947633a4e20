"""What the UI and the HTTP API share: the engine, one admission limit, the metrics, and reference-audio
style transfer. Both paths start a request with `Service.open()` and iterate the returned `Job`.
"""

import logging
import os
import re
import threading
import time
import weakref

from sambert import reference
from sambert.frontend import english
from sambert.server import ratelimit
from sambert.server.limiter import Busy, ClientGone, Limiter
from sambert.server.metrics import Metrics

log = logging.getLogger(__name__)

EMOTION_NAMES = {"neutral": "中性", "happy": "开心", "angry": "生气", "sad": "悲伤", "fear": "害怕",
                 "hate": "厌恶", "surprise": "惊讶", "arousal": "激昂"}
_SURROGATE = re.compile("[\ud800-\udfff]")
# Read by every voice to measure its own neutral style, the baseline a reference recording is compared to.
CALIBRATION_TEXT = "今天天气很好，我们一起去公园散散步，顺便买点水果回家。"
# A request that neither makes audio nor has it taken for this long is cancelled and its slot freed:
# whatever went wrong (a consumer that stopped pulling without closing, a stuck stage) holds no slot.
# Read by every voice at start-up: the first request of a cold process is about twice as slow
# (kernels picked and cached for each new shape), and two sentences take the vocoder through the
# growing chunk sizes a real request uses.
WARM_UP_TEXT = "欢迎使用语音合成。今天天气很好，我们一起去公园散步吧。"
STALL_SECONDS = float(os.environ.get("SAMBERT_STALL_SECONDS", "60"))


class Stalled(RuntimeError):
    """The request made no progress for the stall limit and was cancelled."""


class Service:
    def __init__(self, engine, max_waiting=16, wait_timeout=None, auth=None, rate_limit=None,
                 stall_seconds=None):
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
        self.stall_seconds = STALL_SECONDS if stall_seconds is None else stall_seconds
        self._jobs = weakref.WeakSet()  # admitted requests, for the watchdog
        self._jobs_lock = threading.Lock()
        threading.Thread(target=_watch, args=(weakref.ref(self),), name="sambert-watchdog", daemon=True).start()

    def voices(self):
        """The installed voices as plain data (for /v1/voices and the UI's dropdowns). `english_phones`:
        whether the voice reads English words as words, so a client knows if normalization english
        "words" is allowed (it is a 400 on a voice without)."""
        return [{"name": v.name, "display_name": v.display_name, "sample_rate": v.sample_rate,
                 "speakers": list(v.speakers), "emotions": emotions_of(v),
                 "english_phones": v.inventory.english_phones} for v in self.engine.voices]

    def open(self, endpoint, text, voice=None, emotion=None, reference_audio=None, gone=None, **controls):
        """Admit and start one request; returns a Job to iterate for float32 chunks.

        Raises Busy when the limit is reached, ClientGone when the `gone` event was set while it waited,
        ValueError (EngineError, FrontendError, ReferenceAudioError) for bad input; all are counted in
        the metrics.
        """
        started = time.perf_counter()
        if isinstance(text, str) and _SURROGATE.search(text):
            # JSON may escape one half of a UTF-16 pair (\ud800); no part of the engine can encode it
            self.metrics.record(endpoint, "bad_request")
            raise ValueError("text contains an invalid character (an unpaired UTF-16 surrogate); send valid Unicode")
        try:
            slot = self.limiter.acquire(self.wait_timeout, gone)
        except Busy:
            self.metrics.record(endpoint, "busy")
            raise
        except ClientGone:
            self.metrics.record(endpoint, "gone")
            raise
        try:
            if reference_audio is not None:
                controls = self.apply_reference(voice, reference_audio, controls)
            synthesis = self.engine.stream(text, voice=voice, emotion=emotion or None, **controls)
        except BaseException as err:
            slot.release()
            self.metrics.record(endpoint, "bad_request" if isinstance(err, ValueError) else "error")
            raise
        job = Job(self, endpoint, synthesis, slot, started)
        with self._jobs_lock:
            self._jobs.add(job)
        return job

    def cancel_stalled(self):
        """Cancel every request with no progress for stall_seconds (the watchdog calls this each second)."""
        with self._jobs_lock:
            jobs = list(self._jobs)
        now = time.monotonic()
        for job in jobs:
            if job.idle_since(now) > self.stall_seconds:
                job.cancel_stalled(self.stall_seconds)

    def warm_up(self):
        """One short synthesis per voice and its vocoder at every chunk length, so the first visitor's
        request is as fast as later ones and memory does not grow as requests come; yields (voice name,
        seconds) as each is done."""
        # SAMBERT_INJECT_OOM counts the vocoder calls of requests, not the warm-up's
        injected, self.engine.inject_oom = self.engine.inject_oom, 0
        try:
            for voice in self.engine.voices:
                started = time.perf_counter()
                if voice.inventory.english_phones:
                    english.dictionary()  # read once, here rather than in the first English request
                self.engine.synthesize(WARM_UP_TEXT, voice=voice.name)
                self.engine.warm_up_vocoder(voice.name)
                yield voice.name, time.perf_counter() - started
        finally:
            self.engine.inject_oom = injected

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
    """One admitted request. Iterate it for audio; it holds its slot until it ends, is closed or stalls,
    then records its outcome (ok, error, cancelled when the consumer stopped early, stalled when the
    watchdog ended it)."""

    def __init__(self, service, endpoint, synthesis, slot, started):
        self.synthesis = synthesis
        self.sample_rate = synthesis.sample_rate
        self.stats = synthesis.stats
        self._service, self._endpoint, self._slot, self._started = service, endpoint, slot, started
        self._outcome = None
        self._outcome_lock = threading.Lock()
        self._running = threading.Lock()  # held while the engine works inside next()
        self._progress = time.monotonic()  # last time a chunk was asked for or made

    def __iter__(self):
        return self

    def __next__(self):
        self._progress = time.monotonic()
        with self._running:
            self._check_stalled()
            try:
                chunk = next(self.synthesis)
            except StopIteration:
                self._finish("ok")
                raise
            except BaseException:
                self._finish("error")
                raise
            self._progress = time.monotonic()
            self._check_stalled()  # stalled while the engine worked: its late chunk goes nowhere
            return chunk

    def idle_since(self, now):
        """Seconds without progress (0 once the job has ended)."""
        return 0.0 if self._outcome is not None else now - self._progress

    def cancel_stalled(self, limit):
        """Called by the watchdog: frees the slot now; the synthesis is closed here if it is idle, or
        by the consumer's thread as soon as the engine returns."""
        if not self._settle("stalled"):
            return
        log.warning("%s request cancelled: no progress for %.0f s (slot freed)", self._endpoint, limit)
        self._slot.release()
        if self._running.acquire(blocking=False):
            try:
                self.synthesis.close()
            finally:
                self._running.release()

    def _check_stalled(self):
        if self._outcome == "stalled":
            self.synthesis.close()
            raise Stalled(f"request cancelled: no progress for {self._service.stall_seconds:g} s")

    def close(self):
        with self._running:  # never from inside next(); waits for the engine's current step
            self._finish("cancelled")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _settle(self, outcome):
        """Record the outcome once; False when the job had already ended."""
        with self._outcome_lock:
            if self._outcome is not None:
                return False
            self._outcome = outcome
        self._service.metrics.record(self._endpoint, outcome, time.perf_counter() - self._started, self.stats)
        return True

    def _finish(self, outcome):
        if self._settle(outcome):
            self.synthesis.close()
            self._slot.release()


def emotions_of(voice):
    """A voice's emotion names, neutral first; just neutral for a voice trained without emotions."""
    names = [e.removeprefix("emotion_") for e in voice.emotions] or ["neutral"]
    return ["neutral"] + [e for e in names if e != "neutral"]


def _watch(service_ref):
    """The watchdog thread: ends when its Service is gone."""
    while (service := service_ref()) is not None:
        service.cancel_stalled()
        del service
        time.sleep(1.0)
