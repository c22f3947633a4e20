"""The streaming engine: text in, audio chunks out, with memory that does not grow with the text.

Per request: the text is cut into sentences (exact cut points of SAM-BERT: its phone-level stage
sees one sentence). Per sentence the phone-level stage runs once (`encode`), then the autoregressive
decoder's frames are collected into blocks of `mel_block_frames`, each block goes through the streamed
post-net, and the post-net's final frames through the chunked vocoder. Every piece of state is local to
the request, so requests run side by side; their model calls take turns, the most urgent first.

    engine = Engine()                                   # profile for this machine, installed voices
    for chunk in engine.stream("你好。", voice=None):    # float32 mono chunks
        ...
    result = engine.synthesize("你好。")                 # audio + timings + stats
"""

import heapq
import itertools
import logging
import math
import os
import re
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from sambert.chunked_vocoder import ChunkedVocoder, context_of
from sambert.frontend import Frontend, FrontendError, Lexicon, read_speech
from sambert.profiles import Profile, ProfileError, choose_profile, cpu_vocoder_dtype, load_profile
from sambert.stats import PeakMemory, Stats
from sambert.timings import Span, to_srt, unit_spans, word_spans

log = logging.getLogger(__name__)

# A new request is due this long after it starts (see Synthesis.deadline): a listener who waits a little
# longer for the first audio hears nothing wrong, one whose audio runs out hears a gap. Measured with four
# streams starting together on two cores (benchmarks/concurrent_streams.py): due at their start, the
# first stream ran dry while the other three got their first audio (stalls of 0.08-0.12 s).
NEW_REQUEST_GRACE_SECONDS = 0.5
SENTENCE_PAUSE_SECONDS = 0.28  # silence between sentences, as KAN-TTS's synthesis script puts
# Where the text may be cut before the frontend sees it: after a sentence end, so the normalisation
# of numbers, dates... never straddles a cut. Lets a long text start speaking before it is all parsed.
_PIECE_END = re.compile(r"(?<=[。！？!?；;\n])")
CONTROL_RANGES = {"speed": (0.25, 4.0), "pitch": (-12.0, 12.0), "pitch_scale": (0.0, 4.0), "energy": (0.0, 4.0),
                  "volume": (0.0, 4.0)}


class EngineError(ValueError):
    """A request the engine refuses (unknown voice or emotion, text too long, control out of range)."""


class TextTooLong(EngineError):
    pass


@dataclass
class Result:
    audio: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int
    units: list  # [Span(unit symbol, start, end)] over the whole audio
    words: list  # [Span(word characters, start, end)]
    sentences: list  # [Span(normalised sentence, start, end)]
    stats: Stats
    words_by_sentence: list = field(default_factory=list, repr=False)

    def srt(self, max_chars=20):
        return to_srt(self.sentences, self.words_by_sentence, max_chars)

    def write(self, path):
        import soundfile

        soundfile.write(str(path), self.audio, self.sample_rate, subtype="PCM_16")


class Synthesis:
    """One streaming request. Iterate it for audio chunks (float32 numpy, mono); `units`, `words`,
    `sentences` and `stats` fill in as it runs. close() (or dropping it) stops the work at once."""

    def __init__(self, engine, voice, sentences, controls, stats, setup_seconds):
        self.sample_rate = voice.sample_rate
        self.voice = voice
        self.units, self.words, self.sentences, self.words_by_sentence = [], [], [], []
        self.stats = stats
        self._busy = setup_seconds  # seconds of work so far (frontend, models), not consumer time
        self._busy_open = True  # until the end is logged
        self._memory = PeakMemory([engine.profile.acoustic_device, engine.profile.vocoder_device])
        self._memory.reset()
        self._started = time.perf_counter()
        self._first_audio_at = None  # when the consumer got the first chunk
        self._chunks = engine._generate(self, voice, sentences, controls)

    def deadline(self):
        """When the listener runs out of audio, playing from the first chunk on; before that chunk, the
        request's start plus NEW_REQUEST_GRACE_SECONDS (new requests go in the order they came)."""
        if self._first_audio_at is None:
            return self._started + NEW_REQUEST_GRACE_SECONDS
        return self._first_audio_at + self.stats.audio_seconds

    def __iter__(self):
        return self

    def __next__(self):
        start = time.perf_counter()
        try:
            chunk = next(self._chunks)
        except StopIteration:
            if self._busy_open:
                self._busy_open = False
                self._account(start)
                log.info("synthesis %s: %s", "done" if self.stats.completed else "stopped", self.stats.summary())
            raise
        except BaseException:
            self._account(start)
            raise
        self._account(start)
        if self.stats.time_to_first_audio is None:
            self.stats.time_to_first_audio = self._busy
            self._first_audio_at = time.perf_counter()
        self.stats.audio_seconds += len(chunk) / self.sample_rate
        return chunk

    def close(self):
        """Stop generating; the request's tensors (plan, caches, buffers) are released with it."""
        self._chunks.close()
        if self._busy_open and not self.stats.completed:
            self._busy_open = False
            log.info("synthesis stopped by the consumer: %s", self.stats.summary())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _account(self, start):
        self._busy += time.perf_counter() - start
        self.stats.compute_seconds = self._busy
        self.stats.peak_memory_bytes = max(self.stats.peak_memory_bytes, self._memory.peak())
        self.stats.peak_memory_kind = self._memory.kind


class Engine:
    """Voices + a hardware profile; `stream()` and `synthesize()` serve requests (thread-safe)."""

    def __init__(self, profile=None, model_dir=None, device=None, voices=None, overrides=None):
        if isinstance(profile, Profile):
            profile = profile if not overrides else load_profile(profile.name, overrides).with_reason(profile.reason)
        else:
            profile = choose_profile(profile, overrides)
        if device is not None:
            profile = replace(profile, acoustic_device=str(device), vocoder_device=str(device),
                              reason=f"{profile.reason}; device={device}")
        _check_devices(profile)
        self.profile = profile
        self.voices = list(voices) if voices is not None else _load_voices(model_dir)
        if not self.voices:
            raise EngineError("no voices: pass model_dir=<ModelScope model dir> or install a bundle in assets/voices")
        self.frontend = Frontend()
        self.frontend.sentences("你好。")  # loads the word segmenter now, not during the first request
        self._profile_lock = threading.Lock()
        self._device_override = device
        # Test switch: N > 0 makes the N-th vocoder call from now raise one CUDA out-of-memory error.
        self.inject_oom = int(os.environ.get("SAMBERT_INJECT_OOM", "0") or 0)
        self._place()
        log.info("engine ready: %s", self.describe())

    # ---- what the UI shows -------------------------------------------------------------------

    def describe(self):
        """One line for the status bar: profile, why, and where each model runs."""
        return f"profile {self.profile.name} ({self.profile.reason}); {self.placement}"

    @property
    def placement(self):
        """Where each model runs and in which dtype, e.g. 'acoustic cuda float16, vocoder cpu float32'."""
        return _placement(self.profile, self.voices[0].vocoder)

    def voice(self, name=None):
        """The voice called `name` (its name or display name); the first voice when None."""
        if name is None:
            return self.voices[0]
        for v in self.voices:
            if name in (v.name, v.display_name):
                return v
        names = ", ".join(v.name for v in self.voices)
        raise EngineError(f"unknown voice {name!r}; installed voices: {names}")

    def sample_rate(self, voice=None):
        return self.voice(voice).sample_rate

    def warm_up_vocoder(self, voice=None):
        """Run the voice's vocoder once at every window length its chunked vocoders use (a request's
        first sentence starts with small chunks, later ones do not), so that the kernels oneDNN compiles
        per length are there before the first request and memory does not grow as texts bring them in."""
        v, profile = self.voice(voice), self.profile
        device = torch.device(profile.vocoder_device)
        lengths = set()
        for first in (profile.vocoder_first_chunk_frames, None):
            lengths.update(ChunkedVocoder(None, v.hop, profile.vocoder_chunk_frames, _context(v.vocoder, profile),
                                          first_chunk_frames=first).window_lengths())
        for n in sorted(lengths):
            self._vocode(None, v, torch.zeros(1, v.acoustic.n_mels, n), device, profile)

    # ---- requests ----------------------------------------------------------------------------

    def stream(self, text, voice=None, emotion=None, speed=1.0, pitch=0.0, energy=1.0, volume=1.0,
               pitch_scale=1.0, speaker=None, lexicon=None, normalization=None):
        """Start a request; returns a `Synthesis` to iterate for float32 mono chunks.

        speed: speaking rate (2.0 = twice as fast); pitch: shift in the acoustic model's pitch units
        (added to the predicted, normalised pitch); pitch_scale: pitch range around the mean; energy:
        scale of the predicted energy; volume: output gain. lexicon: this request's words, a Lexicon
        or {"word": "pin1 yin1"}, over the frontend's server-wide lexicon; normalization: reading modes,
        {"numbers": "auto|digits|cardinal", "english": "auto|words|letters"} (frontend/modes.py). Bad
        input raises EngineError / FrontendError / LexiconError here, before any audio is produced.
        """
        start = time.perf_counter()
        v = self.voice(voice)
        if not isinstance(text, str):
            raise EngineError(f"text must be a string, got {type(text).__name__}")
        limit = self.profile.max_text_length
        if len(text) > limit:
            raise TextTooLong(f"text has {len(text)} characters; the limit of profile "
                              f"{self.profile.name!r} is {limit}")
        emotion = _check_emotion(v, emotion)
        speaker = _check_speaker(v, speaker)
        # SSML is compiled before the text is cut into pieces; its <prosody> scales the request's controls
        plain, prosody = read_speech(text)
        controls = dict(speed=speed, pitch=pitch, pitch_scale=pitch_scale, energy=energy, volume=volume)
        if prosody:
            controls.update(speed=speed * prosody["speed"], pitch=pitch + prosody["pitch"],
                            volume=volume * prosody["volume"])
        for name, value in controls.items():
            low, high = CONTROL_RANGES[name]
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
                raise EngineError(f"{name} must be a number in [{low}, {high}], got {value!r}")
            if name == "speed" and value <= 0:
                raise EngineError(f"speed must be > 0, got {value!r}")
        controls.update(emotion=emotion, speaker=speaker)
        if lexicon is not None and not isinstance(lexicon, Lexicon):
            lexicon = Lexicon.from_mapping(lexicon)
        sentences = self._sentences(plain, lexicon, normalization, v.inventory.english_phones)
        stats = Stats(profile=self.profile.name, device=_placement(self.profile, v.vocoder), chars=len(text))
        return Synthesis(self, v, sentences, controls, stats, time.perf_counter() - start)

    def synthesize(self, text, **kwargs):
        """The whole request at once: Result with audio, sample rate, timings and stats."""
        request = self.stream(text, **kwargs)
        chunks = list(request)
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return Result(audio, request.sample_rate, request.units, request.words, request.sentences,
                      request.stats, request.words_by_sentence)

    # ---- internals ---------------------------------------------------------------------------

    def _sentences(self, text, lexicon=None, normalization=None, english_phones=False):
        """Lazily parsed sentences. The first readable piece is parsed now, so text with nothing to
        read fails before streaming starts; the rest is parsed as the audio gets there."""
        pieces = [p for p in _PIECE_END.split(text) if p.strip()]
        first, errors = None, []
        for i, piece in enumerate(pieces):
            try:
                first = self.frontend.sentences(piece, lexicon, normalization, english_phones)
                break
            except FrontendError as err:
                errors.append(err)
        if first is None:
            raise errors[0] if len(errors) == 1 else FrontendError(
                f"nothing to read in the text ({text!r:.80})")

        def lazily():
            yield from first
            for piece in pieces[i + 1 :]:
                try:
                    yield from self.frontend.sentences(piece, lexicon, normalization, english_phones)
                except FrontendError as err:
                    if "nothing to read" not in str(err):
                        raise
                    # a piece of punctuation only, between readable ones: nothing to say

        return lazily()

    def _generate(self, request, voice, sentences, controls):
        pause = np.zeros(int(SENTENCE_PAUSE_SECONDS * voice.sample_rate), np.float32)
        offset = 0.0  # seconds of audio before the current sentence
        for index, sentence in enumerate(sentences):
            if index:
                yield pause
                offset += len(pause) / voice.sample_rate
            samples = 0
            for audio in self._sentence_audio(request, voice, sentence, controls, offset, first=not index):
                audio = _to_output(audio, controls["volume"])
                samples += len(audio)
                yield audio
            request.sentences.append(Span(sentence.text, offset, offset + samples / voice.sample_rate))
            request.stats.sentences += 1
            offset += samples / voice.sample_rate
        request.stats.completed = True

    def _sentence_audio(self, request, voice, sentence, controls, offset, first):
        """One sentence's audio; after a CUDA out-of-memory, again with the next smaller profile,
        skipping the samples already sent (the output is the same up to the dtype's rounding)."""
        sent = 0
        timed = []  # the timings are recorded by the first attempt only

        def on_plan(plan):
            if not timed:
                self._record_timings(request, voice, sentence, plan, offset)
                timed.append(True)

        while True:
            profile = self.profile
            done = 0
            try:
                for audio in self._sentence_once(request, voice, sentence, controls, profile, on_plan, first):
                    fresh = audio[max(0, sent - done):]
                    done += len(audio)
                    if len(fresh):
                        sent += len(fresh)
                        yield fresh
                return
            except torch.cuda.OutOfMemoryError as err:
                self._fall_back(profile, request, err)

    def _sentence_once(self, request, voice, sentence, controls, profile, on_plan, first):
        ac_device, voc_device = torch.device(profile.acoustic_device), torch.device(profile.vocoder_device)
        ling, emotion, speaker = (torch.from_numpy(a)[None].to(ac_device) for a in voice.inventory.encode(
            sentence.units, emotion=controls["emotion"], speaker=controls["speaker"]))
        # The phone-level stage runs once per sentence and decides the integer durations: fp32, so
        # FP16 rounding can never move a unit's length by a frame.
        with self._model_call(request, ac_device, profile, autocast=False):
            plan = voice.acoustic.encode(ling, emotion, speaker, speed=controls["speed"],
                                         pitch_shift=controls["pitch"], pitch_scale=controls["pitch_scale"],
                                         energy_scale=controls["energy"])
        on_plan(plan)
        vocoder = ChunkedVocoder(
            # a whole sentence shorter than the last rounded window is vocoded at its own length: without
            # oneDNN, which would keep kernels for that length (see _cpu_kernels)
            run=lambda mel: self._vocode(request, voice, mel, voc_device, profile,
                                         onednn=mel.shape[-1] in fixed_lengths),
            hop=voice.hop,
            chunk_frames=profile.vocoder_chunk_frames,
            context=_context(voice.vocoder, profile),
            # later sentences have the earlier ones' audio in front of them: no need to start small
            first_chunk_frames=profile.vocoder_first_chunk_frames if first else None,
        )
        fixed_lengths = set(vocoder.window_lengths())
        for mel in mel_blocks(voice.acoustic, plan, profile.mel_block_frames,
                              lambda fp16=True: self._model_call(request, ac_device, profile, autocast=fp16)):
            audio = vocoder.push(mel.T.to(voc_device))
            if len(audio):
                yield audio
        audio = vocoder.finish()
        if len(audio):
            yield audio

    def _vocode(self, request, voice, mel, device, profile, onednn=True):
        if self.inject_oom > 0:
            with self._profile_lock:
                self.inject_oom -= 1
                inject = self.inject_oom == 0
            if inject:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by SAMBERT_INJECT_OOM)")
        with self._model_call(request, device, profile, cpu_bf16=cpu_vocoder_dtype(profile, voice.vocoder) == "bfloat16",
                              onednn=onednn):
            return voice.vocoder(mel.to(device)).float()

    @contextmanager
    def _model_call(self, request, device, profile, autocast=True, cpu_bf16=False, onednn=False):
        """One model call: its turn (see _Turns; `request` None is the warm-up), no autograd, FP16
        autocast where the profile asks for it and the module is on CUDA (autocast keeps norms and
        softmax in fp32); BF16 autocast for a call on the CPU that asks for it (the vocoder's, see
        profiles.cpu_vocoder_dtype). On the CPU only `onednn` calls use oneDNN: see _cpu_kernels."""
        if device.type == "cuda":
            dtype, enabled = torch.float16, autocast and profile.dtype == "float16"
        else:
            dtype, enabled = torch.bfloat16, cpu_bf16
        deadline = float("-inf") if request is None else request.deadline()
        kernels = _cpu_kernels(onednn) if device.type == "cpu" else nullcontext()
        with _TURNS.take(deadline), kernels, torch.inference_mode(), torch.autocast(device.type, dtype, enabled=enabled):
            yield

    def _record_timings(self, request, voice, sentence, plan, offset):
        frame_seconds = voice.hop / voice.sample_rate
        units = unit_spans(sentence.units, plan.durations.tolist(), offset, frame_seconds)
        words = word_spans(sentence.units, sentence.unit_chars, units, sentence.text)
        request.units += units
        request.words += words
        request.words_by_sentence.append(words)

    def _fall_back(self, failed, request, err):
        """After a CUDA out-of-memory under profile `failed`: free the cache and step down to its
        fallback (once, even when several requests hit the error together)."""
        if failed.fallback is None:
            raise EngineError(f"CUDA out of memory with profile {failed.name!r}, the smallest: {err}") from err
        with self._profile_lock:
            if self.profile is failed:
                smaller = load_profile(failed.fallback)
                if self._device_override is not None:
                    smaller = replace(smaller, acoustic_device=self._device_override,
                                      vocoder_device=self._device_override)
                self.profile = smaller.with_reason(f"fallback from {failed.name} after CUDA out of memory")
                self._place()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        message = f"CUDA out of memory under {failed.name}; retried the sentence with {self.profile.name}"
        request.stats.fallbacks.append(message)
        log.warning("%s (%s)", message, err)

    def _place(self):
        """Move every voice's modules to the profile's devices (once, not per chunk), between model calls."""
        with _TURNS.take(float("-inf")):
            for v in self.voices:
                v.acoustic.to(self.profile.acoustic_device)
                v.vocoder.to(self.profile.vocoder_device)


class _Turns:
    """Model calls take turns, the most urgent first (earliest deadline: see Synthesis.deadline).

    One call at a time in the process (_TURNS): the decoder's steps are small operations whose Python
    side holds the GIL, so calls from several threads at once were no faster (measured with four
    streams on two cores: 8.9 s for all their audio against 8.3 s in turns) and their order was left
    to chance. In turns, the listener closest to running out of audio is served first and a new
    request gets its first audio before the others' buffered audio runs out. It also lets a call set
    process-wide switches for itself (_cpu_kernels). Moving the modules (_place) takes a turn too."""

    def __init__(self):
        self._changed = threading.Condition()
        self._busy = False
        self._waiting = []  # heap of (deadline, arrival number)
        self._arrivals = itertools.count()

    @contextmanager
    def take(self, deadline):
        with self._changed:
            ticket = (deadline, next(self._arrivals))
            heapq.heappush(self._waiting, ticket)
            self._changed.wait_for(lambda: not self._busy and self._waiting[0] == ticket)
            heapq.heappop(self._waiting)
            self._busy = True
        try:
            yield
        finally:
            with self._changed:
                self._busy = False
                self._changed.notify_all()


_TURNS = _Turns()


@contextmanager
def _cpu_kernels(onednn):
    """A model call on the CPU with oneDNN (`onednn`) or without it, inside its turn.

    oneDNN compiles and keeps kernels for every new input length (up to 1024 of them). Sentences have as
    many unit counts as there are sentences: measured with the default voice, 99 unit counts through the
    acoustic model's unit-level stage added 45 MB with oneDNN (its LSTMs and convolutions) and 3 MB
    without, and 100 vocoder lengths 140-220 MB. So the acoustic model runs without it, and so do the
    vocoder's calls on a whole short sentence at its own length (chunked_vocoder); the vocoder's other
    calls come in a fixed set of lengths and are 1.35x faster with oneDNN, so they keep it."""
    was = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(was and onednn)
    try:
        yield
    finally:
        torch._C._set_mkldnn_enabled(was)


def mel_blocks(acoustic, plan, block_frames, model_call=lambda fp16=True: torch.no_grad()):
    """The sentence's final (post-net) mel, [frames, n_mels] float32 blocks, as the decoder runs.

    Decoder steps are gathered until `block_frames` frames are pending, then pushed through the
    streamed post-net, which returns the frames whose lookahead it has. `model_call(fp16)` is the
    context each model call runs in (turn, inference mode, autocast); the post-net runs in fp32.
    """
    with model_call(False):
        postnet = acoustic.postnet_stream(plan)
    steps = acoustic.decode(plan)
    block = []
    while True:
        with model_call(True):
            step = next(steps, None)
        if step is not None:
            block.append(step)
        if block and (step is None or sum(b.shape[1] for b in block) >= block_frames):
            with model_call(False):
                mel = postnet.push(torch.cat(block, dim=1).float())
            block = []
            if mel.shape[1]:
                yield mel[0]
        if step is None:
            break
    with model_call(False):
        mel = postnet.finish()
    if mel.shape[1]:
        yield mel[0]


def _load_voices(model_dir):
    """The voices of `model_dir` (or $SAMBERT_MODEL_DIR), else every bundled voice."""
    from sambert import voices

    model_dir = model_dir or os.environ.get(voices.MODEL_DIR_ENV)
    if model_dir:
        return voices.load_model_dir(model_dir)
    return [voices.load_bundled(p) for p in voices.bundled_voice_dirs()]


def _check_devices(profile):
    for device in (profile.acoustic_device, profile.vocoder_device):
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise ProfileError(f"profile {profile.name!r} puts a model on {device}, but CUDA is not available; "
                               "use profile 'cpu' or device='cpu'")


def _check_emotion(voice, emotion):
    if not emotion:
        return None  # the units' own field: neutral
    name = emotion.removeprefix("emotion_")
    if name != "neutral" and name not in [e.removeprefix("emotion_") for e in voice.emotions]:
        raise EngineError(f"voice {voice.name!r} has no emotion {emotion!r}; its emotions: {', '.join(voice.emotions)}")
    return name


def _check_speaker(voice, speaker):
    if speaker is None:
        return voice.speakers[0]
    if speaker not in voice.speakers:
        raise EngineError(f"voice {voice.name!r} has no speaker {speaker!r}; its speakers: {', '.join(voice.speakers)}")
    return speaker


def _context(vocoder, profile):
    if profile.vocoder_context_frames == "auto":
        return context_of(vocoder)
    left, right = context_of(vocoder)
    n = profile.vocoder_context_frames
    return n, (n if right else 0)


def _placement(profile, vocoder):
    def dtype(device, cpu_dtype="float32"):
        if torch.device(device).type == "cpu":
            return cpu_dtype
        return "float16" if profile.dtype == "float16" else "float32"

    return (f"acoustic {profile.acoustic_device} {dtype(profile.acoustic_device)}, "
            f"vocoder {profile.vocoder_device} {dtype(profile.vocoder_device, cpu_vocoder_dtype(profile, vocoder))}")


def _to_output(audio, volume):
    audio = audio.detach().float().cpu().numpy()
    if volume != 1.0:
        audio = np.clip(audio * volume, -1.0, 1.0)
    return audio.astype(np.float32, copy=False)


def synth_to_file(text, output, voice=None, emotion=None, profile=None, model_dir=None, device=None,
                  srt=None, **controls):
    """What `python -m sambert synth` does: synthesize `text` into the WAV file `output` (and the
    subtitles into `srt` when given); returns the Result, whose stats the CLI prints."""
    engine = Engine(profile=profile, model_dir=model_dir, device=device)
    log.info("%s", engine.describe())
    result = engine.synthesize(text, voice=voice, emotion=emotion, **controls)
    result.write(output)
    if srt:
        Path(srt).write_text(result.srt(), encoding="utf-8")
    return result
