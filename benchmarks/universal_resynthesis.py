"""Copy-synthesis through the universal HiFi-GAN: recording -> log-mel -> vocoder -> log-mel again,
and how far the two mels are apart. Checks our V1 generator, its pretrained weights and the mel
front-end it was trained with, on real Mandarin speech.

    python benchmarks/universal_resynthesis.py                 # speech made with espeak-ng (cmn)
    python benchmarks/universal_resynthesis.py --wav rec.wav   # any recording (resampled to 22050 Hz)

Prints, over the frames with speech, the log-mel L1 distance (natural log, mean over bins and frames)
and the mel cepstral distortion (dB; DCT coefficients 1-12 of the log-mel), for the resynthesis and,
as a yardstick, for the same recording delayed by half a hop (a change no listener would notice).
"""

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sambert.melspec import universal_mel  # noqa: E402
from sambert.models import load_universal_hifigan  # noqa: E402

SAMPLE_RATE = 22050
TEXT = "今天天气很好，我们一起去公园散步吧。春天的风吹在脸上，暖洋洋的。"


def espeak_recording(text):
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is not installed (apt-get install -y espeak-ng), or pass --wav")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "cmn", "-w", str(path), text], check=True)
        return sf.read(path, dtype="float32")


def to_22050(wav, sr):
    if wav.ndim > 1:
        wav = wav.mean(axis=1)
    if sr != SAMPLE_RATE:
        from scipy.signal import resample_poly  # only for recordings at another rate

        g = math.gcd(sr, SAMPLE_RATE)
        wav = resample_poly(wav, SAMPLE_RATE // g, sr // g).astype(np.float32)
    return wav


def mel_cepstra(log_mel, n=13):
    """Orthonormal DCT-II of each log-mel frame [80, T] -> [n, T]."""
    bins = log_mel.shape[0]
    k = torch.arange(n, dtype=torch.float64)[:, None]
    m = torch.arange(bins, dtype=torch.float64)[None, :]
    basis = torch.cos(math.pi / bins * (m + 0.5) * k) * math.sqrt(2.0 / bins)
    basis[0] /= math.sqrt(2.0)
    return basis @ log_mel.double()


def distances(reference, other):
    """(log-mel L1, MCD) over the frames where the reference speaks: within 40 dB of its loudest frame
    (in digital silence the log floor turns inaudible noise into large log differences)."""
    a, b = universal_mel(reference), universal_mel(other)
    t = min(a.shape[1], b.shape[1])
    a, b = torch.as_tensor(a)[:, :t].double(), torch.as_tensor(b)[:, :t].double()
    level = torch.logsumexp(2 * a, dim=0)  # log energy of each frame
    speech = level > level.max() - 40 / 10 * math.log(10)
    a, b = a[:, speech], b[:, speech]
    l1 = (a - b).abs().mean().item()
    diff = (mel_cepstra(a) - mel_cepstra(b))[1:]
    mcd = (10.0 / math.log(10.0) * torch.sqrt(2.0 * (diff**2).sum(0))).mean().item()
    return l1, mcd, speech.float().mean().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wav", help="a recording to resynthesise (default: espeak-ng speaking --text)")
    parser.add_argument("--text", default=TEXT)
    parser.add_argument("--out", help="write the resynthesised audio here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    wav, sr = sf.read(args.wav, dtype="float32") if args.wav else espeak_recording(args.text)
    wav = to_22050(wav, sr)
    vocoder = load_universal_hifigan()
    with torch.no_grad():
        mel = torch.as_tensor(universal_mel(wav)).float()
        resynth = vocoder(mel[None])[0, 0].numpy()
    if args.out:
        sf.write(args.out, resynth, SAMPLE_RATE)

    source = args.wav or f"espeak-ng cmn: {args.text}"
    print(f"recording: {source} ({len(wav) / SAMPLE_RATE:.2f} s at {SAMPLE_RATE} Hz)")
    print(f"{'':28s} {'log-mel L1':>10s} {'MCD (dB)':>9s}  (over speech frames)")
    for name, other in (("universal HiFi-GAN", resynth), ("yardstick: half-hop delay", np.pad(wav, (128, 0)))):
        l1, mcd, share = distances(wav, other)
        print(f"{name:28s} {l1:10.3f} {mcd:9.2f}  ({share:.0%} of frames)")


if __name__ == "__main__":
    main()
