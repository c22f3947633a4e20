"""Reference-audio prosody: measured pitch level and range, dynamics and speaking rate of synthetic
voiced signals whose true values we know; the controls they map to; clear errors for bad files."""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile

from sambert import reference
from sambert.reference import DEFAULT_NEUTRAL, ReferenceAudioError, analyse, analyse_file, to_controls


def voiced(f0=200.0, syllables_per_second=4.5, seconds=3.0, rate=22050, vibrato=0.05):
    """A harmonic 'voice' at f0 (with slow vibrato), amplitude-modulated into syllables."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + vibrato * np.sin(2 * np.pi * 0.7 * t))) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(np.pi * syllables_per_second * t), 0, None) ** 2
    return (0.3 * wave * envelope).astype(np.float32), rate


@pytest.mark.parametrize("f0", [110.0, 200.0, 320.0])
def test_pitch_level_is_measured(f0):
    prosody = analyse(*voiced(f0=f0))
    assert abs(12 * np.log2(prosody.f0_median_hz / f0)) < 0.5  # within half a semitone


@pytest.mark.parametrize("rate", [3.0, 4.5, 7.0])
def test_speaking_rate_is_counted_from_syllable_peaks(rate):
    assert analyse(*voiced(syllables_per_second=rate)).syllable_rate == pytest.approx(rate, rel=0.15)


def test_wider_vibrato_is_a_wider_pitch_range():
    narrow = analyse(*voiced(vibrato=0.02)).f0_range_st
    wide = analyse(*voiced(vibrato=0.15)).f0_range_st
    assert wide > 2 * narrow


def test_controls_follow_the_reference_relative_to_neutral():
    neutral = analyse(*voiced(f0=200, syllables_per_second=4.5))
    same = to_controls(neutral, neutral)
    assert same == {"speed": 1.0, "pitch": 0.0, "pitch_scale": 1.0, "energy": 1.0}
    excited = to_controls(analyse(*voiced(f0=260, syllables_per_second=6.5, vibrato=0.1)), neutral)
    assert excited["speed"] > 1.25 and excited["pitch"] > 0 and excited["pitch_scale"] > 1.2
    calm = to_controls(analyse(*voiced(f0=160, syllables_per_second=3.0, vibrato=0.02)), neutral)
    assert calm["speed"] < 0.8 and calm["pitch"] < 0 and calm["pitch_scale"] < 1.0
    # a reference far outside the voice's range is held to the limits
    extreme = to_controls(analyse(*voiced(f0=80, syllables_per_second=12)), DEFAULT_NEUTRAL)
    assert extreme["pitch"] == reference.LIMITS["pitch"][0] and extreme["speed"] == reference.LIMITS["speed"][1]


def test_files_are_read_and_resampled(tmp_path):
    audio, rate = voiced(f0=150, rate=44100)
    soundfile.write(tmp_path / "ref.flac", audio, rate)
    assert analyse_file(tmp_path / "ref.flac").f0_median_hz == pytest.approx(150, rel=0.03)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_formats_soundfile_cannot_read_go_through_ffmpeg(tmp_path):
    audio, rate = voiced(f0=180, rate=16000)
    soundfile.write(tmp_path / "ref.wav", audio, rate)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "ref.wav"), "-c:a", "aac", str(tmp_path / "ref.m4a")],
                   check=True)
    assert analyse_file(tmp_path / "ref.m4a").f0_median_hz == pytest.approx(180, rel=0.05)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 20), "not a readable audio file"),
    (lambda p: p.write_text("just some text, not audio " * 50), "not a readable audio file"),
    (lambda p: soundfile.write(p, np.zeros(16000, np.float32), 16000), "silent"),
    (lambda p: soundfile.write(p, np.zeros(100, np.float32), 16000), "at least 0.5 s"),
    (lambda p: soundfile.write(p, np.full(16000 * 31, 0.1, np.float32), 16000), "the limit is 30 s"),
    (lambda p: soundfile.write(p, np.random.default_rng(0).normal(0, 0.1, 32000).astype(np.float32), 16000),
     "no voiced speech"),
])
def test_bad_references_get_clear_errors(tmp_path, make, message):
    if "readable" in message and shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    path = tmp_path / "ref.wav"
    make(path)
    with pytest.raises(ReferenceAudioError, match=message):
        analyse_file(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ReferenceAudioError, match="nothing.wav.*does not exist"):
        analyse_file(tmp_path / "nothing.wav")
