"""The chunked vocoder calls its generator with window lengths from a small fixed set (oneDNN keeps
compiled kernels for every new input length, so memory grew with the number of distinct sentence
lengths), and stays exact while doing so."""

import numpy as np
import torch

from sambert.chunked_vocoder import ChunkedVocoder, context_of
from sambert.models import KanttsHifiGan


def snr_db(reference, test):
    reference, test = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    noise = np.sum((reference - test) ** 2)
    return float("inf") if noise == 0 else 10 * np.log10(np.sum(reference**2) / noise)


def small_non_causal():
    """A KAN-TTS HiFi-GAN, non-causal (context on both sides, like the MB-MelGAN), with random weights,
    narrow and with a small hop so it runs in a blink."""
    torch.manual_seed(0)
    vocoder = KanttsHifiGan({"in_channels": 80, "channels": 32, "kernel_size": 7, "upsample_scales": [4, 4, 2, 2],
                             "upsample_kernal_sizes": [8, 8, 4, 4], "resblock_kernel_sizes": [3, 7, 11],
                             "resblock_dilations": [[1, 3, 5]] * 3, "causal": False}).eval()
    vocoder.remove_weight_norm()
    return vocoder


def test_window_lengths_come_from_a_small_set_and_chunks_stay_exact():
    vocoder = small_non_causal()
    left, right = context_of(vocoder)
    assert left > 0 and right > 0
    seen = []

    def run(mel):
        seen.append(mel.shape[-1])
        return vocoder(mel)

    # the CPU profile's chunks (16, 32, 64, then 96 frames) with the history vocoded before each
    chunks = {n + min(left, done) + right for n, done in ((16, 0), (32, 16), (64, 48), (96, 112))}
    windows = set(range(16, 96 + left + right + 16, 16))  # the last window, rounded up to 16 frames
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for frames in range(20, 300, 13):  # 22 utterances, every one a different length
            mel = torch.randn(80, frames, generator=generator)
            whole = vocoder(mel[None])[0, 0]
            cv = ChunkedVocoder(run, vocoder.hop, 96, context_of(vocoder), first_chunk_frames=16)
            seen.clear()
            audio = torch.cat([cv.push(mel[:, i : i + 24]) for i in range(0, frames, 24)] + [cv.finish()])
            assert audio.shape == whole.shape
            assert snr_db(whole, audio) >= 60, frames
            # an utterance shorter than a rounded window is vocoded at its own length (padding would
            # change its audio); every other window has one of the fixed lengths
            allowed = chunks | windows | ({frames} if frames < max(windows) else set())
            assert set(seen) <= allowed, (frames, sorted(set(seen) - allowed))
            # what a server warms up covers every length but a short utterance's own
            warmed = set(cv.window_lengths()) | ({frames} if frames < max(cv.window_lengths()) else set())
            assert set(seen) <= warmed, (frames, sorted(set(seen) - warmed))
