"""The mel spectrogram the universal HiFi-GAN (jik876 V1, 22050 Hz) was trained on.

    universal_mel(wav_22050) -> [80, T] natural-log mel, one frame per 256 samples

Analysis as in jik876/hifi-gan's training data: the waveform is reflect-padded by (n_fft - hop) / 2 on
both sides and cut into frames without centring, a periodic Hann window of 1024, magnitude
sqrt(re^2 + im^2 + 1e-9), 80 Slaney-style mel filters (Slaney mel scale, area-normalised) from 0 to
8000 Hz, then log(max(x, 1e-5)). T = len(wav) // 256 for a length that is a multiple of 256.
Our own numpy filterbank keeps librosa out of the runtime.
"""

from functools import lru_cache

import numpy as np
import torch

SAMPLE_RATE = 22050
N_FFT, HOP, WIN = 1024, 256, 1024
N_MELS, FMIN, FMAX = 80, 0.0, 8000.0
LOG_FLOOR = 1e-5

# Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
_LINEAR_STEP = 200.0 / 3
_KNEE_HZ = 1000.0
_KNEE_MEL = _KNEE_HZ / _LINEAR_STEP
_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(hz):
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _LINEAR_STEP
    return np.where(hz >= _KNEE_HZ, _KNEE_MEL + np.log(np.maximum(hz, 1e-10) / _KNEE_HZ) / _LOG_STEP, linear)


def mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= _KNEE_MEL, _KNEE_HZ * np.exp(_LOG_STEP * (mel - _KNEE_MEL)), mel * _LINEAR_STEP)


@lru_cache(maxsize=4)
def mel_filterbank(sample_rate=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX):
    """[n_mels, n_fft // 2 + 1] triangles evenly spaced in mel, each scaled to unit area in Hz."""
    bins_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bins_hz - lower) / (centre - lower)
    falling = (upper - bins_hz) / (upper - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return (triangles * (2.0 / (upper - lower))).astype(np.float32)


def universal_mel(wav):
    """Mono waveform at 22050 Hz in [-1, 1] (numpy or tensor, [T] or [1, T]) -> float32 tensor [80, frames]."""
    x = torch.as_tensor(np.asarray(wav) if not torch.is_tensor(wav) else wav, dtype=torch.float32)
    if x.dim() == 2 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 1:
        raise ValueError(f"universal_mel expects a mono waveform, got shape {tuple(x.shape)}")
    pad = (N_FFT - HOP) // 2
    if x.numel() <= pad:
        raise ValueError(f"universal_mel needs more than {pad} samples, got {x.numel()}")
    x = torch.nn.functional.pad(x[None, None], (pad, pad), mode="reflect")[0, 0]
    spec = torch.stft(x, N_FFT, hop_length=HOP, win_length=WIN, window=torch.hann_window(WIN),
                      center=False, onesided=True, return_complex=True)
    magnitude = torch.sqrt(spec.real ** 2 + spec.imag ** 2 + 1e-9)
    mel = torch.from_numpy(mel_filterbank()) @ magnitude
    return torch.log(torch.clamp(mel, min=LOG_FLOOR))
