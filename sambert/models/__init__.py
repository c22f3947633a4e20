"""Neural networks of a Sambert-HiFiGAN voice, in plain PyTorch with KAN-TTS's parameter names."""

from sambert.models.hifigan import KanttsHifiGan
from sambert.models.sambert import PhonePlan, SamBert

__all__ = ["KanttsHifiGan", "PhonePlan", "SamBert"]
