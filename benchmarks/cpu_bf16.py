"""bf16 against float32 for the vocoders on a CPU with native bf16 (avx512_bf16 / AMX): speed and
how far the audio moves (profile key cpu_vocoder_dtype; `auto` picks bf16 on such CPUs).

    python benchmarks/cpu_bf16.py [--repeats 3]

Mels: the bundled default voice's own, for the evaluation sentences (../shared/eval/sentences.txt, or this
folder's paragraph without it), one vocoder call per sentence, one thread (BENCH_THREADS).
Vocoders: the default voice's MB-MelGAN with its real weights (speed and quality) and a full-size 16 kHz
KAN-TTS HiFi-GAN (the official voices' generator, random weights: speed only).
Quality: SNR of the bf16 audio against the float32 audio, and the mean |log-spectrogram| distance between
the two (1024-point STFT, hop 256, natural log). Intelligibility is a separate, slower run:
    python benchmarks/intelligibility.py --sources ours --cpu-vocoder-dtype float32|bfloat16
"""

import argparse
import time

import numpy as np
import torch

from _common import FULL_KANTTS_HIFIGAN_PARAMS, PARAGRAPH, ROOT, print_table, quiet_threads, snr_db

from sambert.frontend import Frontend
from sambert.models.hifigan import KanttsHifiGan
from sambert.profiles import cpu_has_native_bf16
from sambert.voices import load_bundled

SENTENCES = ROOT.parent / "shared" / "eval" / "sentences.txt"
DEFAULT_VOICE = ROOT / "assets" / "voices" / "default_female"


def sentence_mels(voice):
    texts = SENTENCES.read_text(encoding="utf-8").splitlines() if SENTENCES.is_file() else PARAGRAPH.split("。")
    mels = []
    with torch.no_grad():
        for sentence in Frontend().sentences("。".join(t.strip() for t in texts if t.strip())):
            out = voice.acoustic.infer(*(torch.from_numpy(a)[None] for a in voice.inventory.encode(sentence.units)))
            mels.append(out["postnet_outputs"][0, : int(out["LR_length_rounded"])].T[None].contiguous())
    return mels


def log_spectrogram(audio):
    x = torch.from_numpy(np.ascontiguousarray(audio))
    spec = torch.stft(x, 1024, 256, window=torch.hann_window(1024), return_complex=True)
    return spec.abs().clamp_min(1e-5).log()


def vocode(vocoder, mels, bf16):
    """Audio per mel and the best-of-`repeats` wall time of the whole set (after one warm-up call)."""
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        vocoder(mels[0])
        start = time.perf_counter()
        audio = [vocoder(mel)[0, 0].float().numpy() for mel in mels]
    return audio, time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="timings: best of this many passes")
    args = ap.parse_args()
    quiet_threads()
    print(f"native bf16 on this CPU (oneDNN): {cpu_has_native_bf16()}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")
    voice = load_bundled(DEFAULT_VOICE)
    mels = sentence_mels(voice)
    frames = sum(m.shape[-1] for m in mels)
    torch.manual_seed(0)
    kantts = KanttsHifiGan(FULL_KANTTS_HIFIGAN_PARAMS).eval()
    kantts.remove_weight_norm()
    rows = []
    vocoders = ((f"{type(voice.vocoder).__name__} (default voice)", voice.vocoder, voice.sample_rate, voice.hop, True),
                ("KAN-TTS HiFi-GAN 16 kHz, full size", kantts, 16000, 200, False))
    for name, vocoder, rate, hop, judge in vocoders:
        seconds = frames * hop / rate
        timed = {}
        for bf16 in (False, True):
            runs = [vocode(vocoder, mels, bf16) for _ in range(args.repeats)]
            timed[bf16] = (runs[0][0], min(t for _, t in runs))
        (fp32, t32), (bf, t16) = timed[False], timed[True]
        snr = snr_db(np.concatenate(fp32), np.concatenate(bf)) if judge else None
        mel_distance = None
        if judge:
            pairs = [(log_spectrogram(a), log_spectrogram(b)) for a, b in zip(fp32, bf)]
            mel_distance = float(np.mean([(x - y).abs().mean().item() for x, y in pairs]))
        rows.append([name, f"{seconds:.1f}", f"{t32 / seconds:.3f}", f"{t16 / seconds:.3f}", f"{t32 / t16:.2f}x",
                     "-" if snr is None else f"{snr:.1f} dB", "-" if mel_distance is None else f"{mel_distance:.3f}"])
    print(f"{len(mels)} sentences, {frames} frames of the default voice's mel")
    print_table(["vocoder", "audio s", "RTF fp32", "RTF bf16", "speed-up", "SNR bf16 vs fp32",
                 "mean |log-spec| bf16 vs fp32"], rows)


if __name__ == "__main__":
    main()
