"""Neural networks of a Sambert-HiFiGAN voice, in plain PyTorch with KAN-TTS's parameter names."""

from sambert.models.hifigan import HifiGanV1, KanttsHifiGan, load_universal_hifigan
from sambert.models.sambert import PhonePlan, SamBert

__all__ = ["HifiGanV1", "KanttsHifiGan", "PhonePlan", "SamBert", "load_universal_hifigan"]
