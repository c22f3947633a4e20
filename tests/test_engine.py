"""The streaming engine: exactness of streamed mel and chunked audio, profiles, limits, cancellation,
out-of-memory fallback. Runs on the CPU in seconds with the small KAN-TTS fixture voice."""

import gc
from pathlib import Path

import numpy as np
import pytest
import torch

from sambert import profiles
from sambert.chunked_vocoder import ChunkedVocoder, context_of
from sambert.profiles import ProfileError
from sambert.timings import Span, to_srt

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "kantts_16k_small.pt"


def snr_db(reference, test):
    reference, test = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    noise = np.sum((reference - test) ** 2)
    return float("inf") if noise == 0 else 10 * np.log10(np.sum(reference**2) / noise)


# ---- profiles ------------------------------------------------------------------------------------


def test_every_tier_is_shipped_and_valid():
    assert set(profiles.available()) == {"cpu", "gpu-lt8gb", "gpu-8gb", "gpu-12-16gb"}
    lt8 = profiles.load_profile("gpu-lt8gb")
    assert (lt8.acoustic_device, lt8.vocoder_device, lt8.dtype) == ("cuda", "cpu", "float16")
    assert profiles.load_profile("gpu-12-16gb").max_concurrent_requests == 2
    # every fallback chain ends, each step smaller
    for name in profiles.available():
        seen = []
        while name:
            assert name not in seen
            seen.append(name)
            name = profiles.load_profile(name).fallback


def test_auto_choice_without_cuda_is_cpu_and_says_why(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    profile = profiles.choose_profile(environ={})
    assert profile.name == "cpu"
    assert "no CUDA" in profile.reason


def test_auto_choice_follows_free_cuda_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Test GPU")
    for free_gb, expected in ((23, "gpu-12-16gb"), (7.5, "gpu-8gb"), (3, "gpu-lt8gb"), (0.1, "cpu")):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a, f=free_gb: (int(f * 2**30), 24 * 2**30))
        profile = profiles.choose_profile(environ={})
        assert profile.name == expected, free_gb
        assert "Test GPU" in profile.reason


def test_profile_from_environment_with_key_overrides():
    env = {"SAMBERT_PROFILE": "gpu-8gb", "SAMBERT_MEL_BLOCK_FRAMES": "12", "SAMBERT_VOCODER_DEVICE": "cpu"}
    profile = profiles.choose_profile(environ=env)
    assert (profile.name, profile.mel_block_frames, profile.vocoder_device) == ("gpu-8gb", 12, "cpu")
    assert "SAMBERT_PROFILE" in profile.reason and "mel_block_frames=12" in profile.reason
    # an explicit argument wins over the environment
    assert profiles.choose_profile("cpu", {"max_text_length": 99}, environ=env).max_text_length == 99


def test_unknown_profile_or_key_lists_the_valid_ones():
    with pytest.raises(ProfileError, match="valid profiles: .*gpu-8gb"):
        profiles.choose_profile("gpu-4090", environ={})
    with pytest.raises(ProfileError, match="valid keys: .*mel_block_frames"):
        profiles.choose_profile("cpu", {"block": 3}, environ={})
    with pytest.raises(ProfileError, match="integer"):
        profiles.choose_profile("cpu", environ={"SAMBERT_MEL_BLOCK_FRAMES": "many"})
    with pytest.raises(ProfileError, match="dtype"):
        profiles.choose_profile("cpu", {"dtype": "int8"}, environ={})


# ---- timings -------------------------------------------------------------------------------------


def test_srt_cues_split_at_words():
    words = [Span("今天", 0.0, 0.5), Span("天气", 0.5, 1.0), Span("很好", 1.0, 1.6)]
    srt = to_srt([Span("今天天气很好。", 0, 1.6)], [words], max_chars=4)
    assert srt.splitlines()[:6] == ["1", "00:00:00,000 --> 00:00:01,000", "今天天气", "", "2",
                                    "00:00:01,000 --> 00:00:01,600"]
