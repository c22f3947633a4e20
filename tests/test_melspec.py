"""The universal HiFi-GAN's mel analysis (sambert/melspec.py)."""

import numpy as np
import pytest
import torch

from sambert.melspec import HOP, LOG_FLOOR, SAMPLE_RATE, hz_to_mel, mel_filterbank, mel_to_hz, universal_mel


def test_slaney_scale_is_linear_below_1khz_and_logarithmic_above():
    assert hz_to_mel(1000.0) == pytest.approx(15.0)
    assert hz_to_mel(500.0) == pytest.approx(7.5)
    assert hz_to_mel(6400.0) == pytest.approx(15.0 + 27.0)  # 27 mels per factor 6.4 above the knee
    hz = np.array([0.0, 300.0, 1000.0, 2500.0, 8000.0])
    assert np.allclose(mel_to_hz(hz_to_mel(hz)), hz)


def test_filters_are_unit_area_triangles_up_to_8khz():
    fb = mel_filterbank()
    assert fb.shape == (80, 513)
    bin_hz = SAMPLE_RATE / 1024
    # Slaney normalisation: each triangle's area in Hz is 1 (up to the coarse FFT sampling).
    areas = fb.sum(1) * bin_hz
    assert np.allclose(areas, 1.0, atol=0.07)
    assert fb[:, int(8000 / bin_hz) + 2:].max() == 0.0  # nothing above fmax
    centres = fb.argmax(1)
    assert np.all(np.diff(centres) >= 0)


def test_frame_count_and_silence_floor():
    mel = universal_mel(np.zeros(HOP * 50, np.float32))
    assert mel.shape == (80, 50)
    assert torch.allclose(mel, torch.full_like(mel, np.log(LOG_FLOOR)), atol=1e-3)


def test_a_tone_lights_the_band_that_holds_its_frequency():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    for hz in (300.0, 1500.0, 5000.0):
        mel = universal_mel((0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32))
        loudest = int(mel[:, 10:-10].mean(1).argmax())
        expected = int(mel_filterbank()[:, int(round(hz / (SAMPLE_RATE / 1024)))].argmax())
        assert abs(loudest - expected) <= 1


def test_tensor_and_array_inputs_agree_and_bad_shapes_are_refused():
    wav = np.random.default_rng(0).standard_normal(HOP * 20).astype(np.float32) * 0.1
    assert torch.allclose(universal_mel(wav), universal_mel(torch.from_numpy(wav)[None]))
    with pytest.raises(ValueError, match="mono"):
        universal_mel(np.zeros((2, 1000), np.float32))
    with pytest.raises(ValueError, match="samples"):
        universal_mel(np.zeros(100, np.float32))
