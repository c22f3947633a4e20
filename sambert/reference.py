"""Prosody of a reference recording, turned into the engine's controls.

A user may give a short recording ("say it like this"). We measure four things a listener hears as
speaking style — pitch level, pitch range, loudness dynamics and speaking rate — and express each as a
ratio or difference to the same measures of the voice's own neutral speech. Those become the variance
adaptor's controls (speed, pitch shift, pitch scale, energy scale), so it works for every voice, with
or without trained emotions.

    prosody = analyse_file("angry.wav")                     # ReferenceAudioError for bad input
    controls = to_controls(prosody, neutral=DEFAULT_NEUTRAL) # {"speed":..., "pitch":..., ...}

Analysis runs at 16 kHz: f0 by normalised autocorrelation in 40 ms frames (10 ms hop), energy as
frame RMS in dB, speaking rate as the count of energy-envelope peaks (about one per syllable in
Mandarin) per second of active speech.
"""

import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 16000
HOP = RATE // 100  # 10 ms
FRAME = RATE * 40 // 1000  # 40 ms: two periods of the lowest f0 we look for
F0_MIN, F0_MAX = 60.0, 500.0
MIN_SECONDS, MAX_SECONDS = 0.5, 30.0
MAX_FILE_BYTES = 20 * 2**20
ACTIVE_DB = 35.0  # frames within this many dB of the loudest one are speech
SILENT_RMS = 1e-4  # below this (-80 dBFS) the whole recording is silence
VOICING = 0.45  # normalised autocorrelation peak above which a frame is voiced
SYLLABLE_DIP_DB = 3.0  # energy must fall this much between two syllable peaks
# Bounds of what a reference may do to the voice: beyond these the models leave their training range.
LIMITS = {"speed": (0.5, 2.0), "pitch": (-2.0, 2.0), "pitch_scale": (0.5, 2.0), "energy": (0.5, 2.0)}


class ReferenceAudioError(ValueError):
    """A reference recording we cannot use; the message says why."""


@dataclass(frozen=True)
class Prosody:
    seconds: float  # duration of the analysed audio
    f0_median_hz: float  # pitch level
    f0_range_st: float  # pitch range: standard deviation of voiced f0, in semitones
    energy_range_db: float  # loudness dynamics: standard deviation of active frames' level
    syllable_rate: float  # syllables (energy peaks) per second of active speech


# Typical Mandarin read speech, for a voice whose own neutral speech cannot be measured.
DEFAULT_NEUTRAL = Prosody(seconds=0.0, f0_median_hz=200.0, f0_range_st=3.5, energy_range_db=6.0, syllable_rate=4.5)


def analyse_file(path, max_seconds=MAX_SECONDS):
    """Prosody of an audio file (anything soundfile or ffmpeg reads)."""
    return analyse(*load(path, max_seconds), max_seconds=max_seconds)


def load(path, max_seconds=MAX_SECONDS):
    """(mono float32 samples, sample rate); ReferenceAudioError for a missing, empty, corrupt or too long file."""
    path = Path(path)
    if not path.is_file():
        raise ReferenceAudioError(f"reference audio {path.name!r} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise ReferenceAudioError(f"reference audio {path.name!r} is an empty file")
    if size > MAX_FILE_BYTES:
        raise ReferenceAudioError(f"reference audio {path.name!r} is {size / 2**20:.1f} MB; the limit is "
                                  f"{MAX_FILE_BYTES // 2**20} MB")
    try:
        audio, rate = _read_soundfile(path, max_seconds)
    except ReferenceAudioError:
        raise
    except Exception:  # a format libsndfile does not know (mp3 on old builds, webm, m4a): ask ffmpeg
        audio, rate = _read_ffmpeg(path, max_seconds), RATE
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    return audio.astype(np.float32, copy=False), rate


def _read_soundfile(path, max_seconds):
    import soundfile

    with soundfile.SoundFile(str(path)) as f:
        if f.frames > max_seconds * f.samplerate:
            raise ReferenceAudioError(f"reference audio {path.name!r} lasts {f.frames / f.samplerate:.1f} s; "
                                      f"the limit is {max_seconds:g} s")
        return f.read(dtype="float32", always_2d=False), f.samplerate


def _read_ffmpeg(path, max_seconds):
    if shutil.which("ffmpeg") is None:
        raise ReferenceAudioError(f"reference audio {path.name!r} is not WAV/FLAC/OGG and ffmpeg is not installed")
    # Read one second more than allowed, so an over-long file is told apart from one exactly at the limit.
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path), "-t", str(max_seconds + 1),
           "-f", "s16le", "-ac", "1", "-ar", str(RATE), "pipe:1"]
    done = subprocess.run(cmd, capture_output=True, timeout=60)
    if done.returncode != 0 or not done.stdout:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no audio stream"]
        # ffmpeg names the file by its full path: keep the server's folders out of a message users see
        reason = reason[0].replace(str(path), path.name)
        raise ReferenceAudioError(f"reference audio {path.name!r} is not a readable audio file ({reason})")
    audio = np.frombuffer(done.stdout, np.int16).astype(np.float32) / 32768
    if len(audio) > max_seconds * RATE:
        raise ReferenceAudioError(f"reference audio {path.name!r} is longer than the limit of {max_seconds:g} s")
    return audio


def analyse(audio, rate, max_seconds=MAX_SECONDS):
    """Prosody of mono samples at `rate` Hz."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1 or not len(audio) or not rate:
        raise ReferenceAudioError("reference audio is empty")
    seconds = len(audio) / rate
    if seconds < MIN_SECONDS:
        raise ReferenceAudioError(f"reference audio lasts {seconds:.2f} s; it needs at least {MIN_SECONDS} s of speech")
    if seconds > max_seconds:
        raise ReferenceAudioError(f"reference audio lasts {seconds:.1f} s; the limit is {max_seconds:g} s")
    if not np.all(np.isfinite(audio)):
        raise ReferenceAudioError("reference audio contains invalid samples (NaN or infinity)")
    audio = _resample(audio, rate, RATE)
    frames = _frames(audio)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    if rms.max() < SILENT_RMS:
        raise ReferenceAudioError("reference audio is silent")
    level = 20 * np.log10(np.maximum(rms, 1e-10))
    active = level > level.max() - ACTIVE_DB
    f0 = _f0(frames) * active
    voiced = f0 > 0
    if voiced.sum() < 5:
        raise ReferenceAudioError("no voiced speech found in the reference audio")
    semitones = 12 * np.log2(f0[voiced])
    return Prosody(
        seconds=seconds,
        f0_median_hz=float(np.median(f0[voiced])),
        f0_range_st=float(np.std(semitones)),
        energy_range_db=float(np.std(level[active])),
        syllable_rate=float(_syllable_count(level, active) / (active.sum() * HOP / RATE)),
    )


def to_controls(reference, neutral=DEFAULT_NEUTRAL):
    """Engine controls that move `neutral` speech towards the `reference` style.

    Pitch shift is in the acoustic model's units, which are standard deviations of the speaker's
    normalised pitch: the level difference in semitones divided by the neutral range in semitones.
    """
    level_st = 12 * math.log2(reference.f0_median_hz / neutral.f0_median_hz)
    controls = {
        "speed": reference.syllable_rate / neutral.syllable_rate,
        "pitch": level_st / max(neutral.f0_range_st, 1.0),
        "pitch_scale": reference.f0_range_st / max(neutral.f0_range_st, 0.5),
        "energy": reference.energy_range_db / max(neutral.energy_range_db, 1.0),
    }
    return {name: round(float(np.clip(value, *LIMITS[name])), 3) for name, value in controls.items()}


def _resample(audio, rate, target):
    # Linear interpolation is enough here: we look at f0 below 500 Hz and frame energies.
    if rate == target:
        return audio
    n = int(round(len(audio) * target / rate))
    return np.interp(np.arange(n) * (rate / target), np.arange(len(audio)), audio).astype(np.float32)


def _frames(audio):
    if len(audio) < FRAME:
        audio = np.pad(audio, (0, FRAME - len(audio)))
    count = 1 + (len(audio) - FRAME) // HOP
    index = np.arange(FRAME)[None, :] + HOP * np.arange(count)[:, None]
    return audio[index]


def _f0(frames):
    """f0 per frame in Hz (0 where unvoiced): the strongest normalised autocorrelation peak in the f0 range."""
    x = (frames - frames.mean(axis=1, keepdims=True)) * np.hanning(FRAME)
    spectrum = np.fft.rfft(x, n=2 * FRAME, axis=1)
    corr = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :FRAME]
    # Divide by the window's own autocorrelation so long lags are not penalised for overlapping less.
    window = np.hanning(FRAME)
    window_corr = np.fft.irfft(np.abs(np.fft.rfft(window, n=2 * FRAME)) ** 2)[:FRAME]
    corr = corr / np.maximum(corr[:, :1], 1e-12) / np.maximum(window_corr / window_corr[0], 1e-3)
    low, high = int(RATE / F0_MAX), int(RATE / F0_MIN)
    lags = low + np.argmax(corr[:, low:high], axis=1)
    peak = corr[np.arange(len(corr)), lags]
    # Parabolic interpolation around the peak lag for a sub-sample period.
    left, right = corr[np.arange(len(corr)), lags - 1], corr[np.arange(len(corr)), np.minimum(lags + 1, FRAME - 1)]
    denom = left - 2 * peak + right
    shift = np.where(np.abs(denom) > 1e-9, 0.5 * (left - right) / np.where(denom == 0, 1, denom), 0.0)
    f0 = RATE / (lags + np.clip(shift, -0.5, 0.5))
    return np.where(peak > VOICING, f0, 0.0)


def _syllable_count(level, active):
    """Energy-envelope peaks at least 100 ms apart with a dip of SYLLABLE_DIP_DB between them."""
    smooth = np.convolve(level, np.ones(5) / 5, mode="same")  # 50 ms
    peaks = []
    for i in np.flatnonzero(active):
        window = smooth[max(0, i - 7): i + 8]
        if smooth[i] < window.max():
            continue
        dip = peaks and smooth[peaks[-1]: i + 1].min() > min(smooth[peaks[-1]], smooth[i]) - SYLLABLE_DIP_DB
        if peaks and (i - peaks[-1] < 10 or dip):
            if smooth[i] > smooth[peaks[-1]]:
                peaks[-1] = i  # the same syllable: keep its louder peak
            continue
        peaks.append(i)
    return max(len(peaks), 1)
