"""Stage 4b: fine-tune the teacher's MB-MelGAN on the student's own mels, so the voice sounds like the teacher.

The student's mel is blurrier than the teacher's (tools/voice/README.md, seventh session: its decoder,
not its prosody, is where the intelligibility goes), and the vocoder was trained on sharp mels only. As
HiFi-GAN's authors fine-tune on Tacotron 2's mels, we teach the vocoder to turn the student's mel into the
audio the teacher's vocoder makes from the teacher's mel:

- inputs: the bundled student's mel for each training sentence, decoded free-running (as at synthesis)
  on the teacher's durations, pitch and energy, so it lines up frame by frame with the teacher's mel;
  cached once in /work/data/voice/student_mel/;
- target: the original MB-MelGAN on the teacher's mel, in float (no int8 step, which is noise);
- loss: multi-resolution STFT (spectral convergence + log magnitude) on the full band and on the four
  sub-band signals, as MB-MelGAN's generator is pre-trained (Yang et al. 2020); no discriminator, a low
  rate and few steps from the adversarially trained weights;
- every --ckpt-every steps: checkpoint (resumable) and the held-out full-band STFT distance of the tuned
  and the original vocoder on the student's mels, both against the target.

Measured (tools/voice/README.md, tenth session): the distance falls only ~1% (1.159 -> 1.146 in 3,000
steps) and the Whisper CER does not move beyond noise, so the bundle keeps the original vocoder. What the
student's mel lacks, a vocoder trained without a discriminator does not put back.

    python tools/voice/finetune_vocoder.py --steps 3000
    python tools/voice/finetune_vocoder.py --export DIR      (the bundled voice with the tuned vocoder)
"""

import argparse
import hashlib
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import DATA, FEATURES, MBMELGAN  # noqa: E402
from train import load_example  # noqa: E402

from sambert.models.mbmelgan import load_mbmelgan  # noqa: E402
from sambert.models.sambert import PhonePlan  # noqa: E402
from sambert.voices import load_bundled  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "assets" / "voices" / "default_female"
STUDENT_MEL = DATA / "student_mel"
CKPT = DATA / "vocoder_ft" / "last.pt"
# (fft, hop, window) per resolution: MB-MelGAN's full-band and sub-band settings at 24 kHz / 6 kHz
FULL_BAND = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))
SUB_BAND = ((384, 30, 150), (683, 60, 300), (171, 10, 60))
# mel frames on each side of a training segment that only feed the loss region: the vocoder's receptive
# field is 23 frames to the left, 22 to the right (sambert/models/mbmelgan.py), so without them a short
# segment trains the network on its own edge padding, not on speech (it drifted away from the original on
# whole sentences, even on the sentences it trained on)
CONTEXT = 24
HOP, SUB_HOP = 300, 75


@torch.no_grad()
def student_mel(acoustic, example):
    """The student's post-net mel, decoded step by step as at synthesis, on the teacher's durations,
    pitch and energy (so it has the teacher's frame count): [T, n_mels]."""
    ling, emotion, speaker = example["ling"][None], example["emotion"][None], example["speaker"][None]
    durations = example["durations"][None].long()
    text, spk, emo = acoustic._units(ling, emotion, speaker)
    text = acoustic.variance_adaptor.embed_prosody(text, example["pitch"][None], example["energy"][None])
    n_frames = int(durations.sum())
    band = int(acoustic._band_width(durations))
    plan = PhonePlan(durations=durations[0], log_durations=None, pitch=None, energy=None,
                     memory=acoustic._memory(text, spk, emo, durations, -(-n_frames // acoustic.r)),
                     x_band_width=band, h_band_width=band, n_frames=n_frames)
    dec = torch.cat(list(acoustic.decode(plan)), dim=1)
    return acoustic.mel_postnet(dec)[0]


def cache_student_mels(paths):
    acoustic = load_bundled(BUNDLE).acoustic.eval()
    STUDENT_MEL.mkdir(parents=True, exist_ok=True)
    started, done = time.time(), 0
    for path in paths:
        out = STUDENT_MEL / f"{path.stem}.npy"
        if out.exists():
            continue
        mel = student_mel(acoustic, load_example(path)).numpy().astype(np.float16)
        np.save(STUDENT_MEL / f"{path.stem}.tmp.npy", mel)
        (STUDENT_MEL / f"{path.stem}.tmp.npy").replace(out)
        done += 1
        if done % 200 == 0:
            print(f"student mels: {done} new, {time.time() - started:.0f} s", flush=True)


def pairs(prefix):
    """(student mel, teacher mel) [T, n_mels] float32 of every cached sentence of a split."""
    out = []
    for path in sorted(FEATURES.glob(f"{prefix}_*.npz")):
        cached = STUDENT_MEL / f"{path.stem}.npy"
        if cached.exists():
            out.append((torch.from_numpy(np.load(cached).astype(np.float32)),
                        torch.from_numpy(np.load(path)["mel"].astype(np.float32))))
    return out


def stft_distance(x, y, resolutions):
    """Multi-resolution STFT loss: mean over resolutions of spectral convergence + L1 of log magnitudes.
    x, y [B, C, n] (every channel is a signal)."""
    x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    total = 0.0
    for n_fft, hop, win in resolutions:
        window = torch.hann_window(win)
        mx = torch.stft(x, n_fft, hop, win, window, return_complex=True).abs().clamp_min(1e-7)
        my = torch.stft(y, n_fft, hop, win, window, return_complex=True).abs().clamp_min(1e-7)
        total = total + torch.linalg.norm(my - mx) / torch.linalg.norm(my) + (mx.log() - my.log()).abs().mean()
    return total / len(resolutions)


def float_vocoder(vocoder, mel):
    """Sub-bands and audio without the int8 step: [B, n_mels, T] -> ([B, 4, n], [B, 1, 4n])."""
    bands = vocoder.subbands(mel)
    return bands, vocoder.pqmf(bands)


def batch(data, size, frames, rng):
    """Segments of `frames` mel frames plus CONTEXT on each side: [B, n_mels, frames + 2 * CONTEXT] twice."""
    student, teacher = [], []
    length = frames + 2 * CONTEXT
    while len(student) < size:
        s, t = data[rng.randrange(len(data))]
        if len(s) <= length:
            continue
        start = rng.randrange(len(s) - length)
        student.append(s[start:start + length])
        teacher.append(t[start:start + length])
    return torch.stack(student).transpose(1, 2), torch.stack(teacher).transpose(1, 2)


def centre(signal, per_frame):
    """Drop the CONTEXT frames at each end, whose samples see the segment's padding instead of speech."""
    return signal[..., CONTEXT * per_frame: signal.shape[-1] - CONTEXT * per_frame]


@torch.no_grad()
def heldout(vocoder, data, targets):
    """Mean full-band STFT distance of the vocoder's audio of the student's mels to the targets."""
    was_training = vocoder.training
    vocoder.eval()
    score = np.mean([float(stft_distance(float_vocoder(vocoder, s.T[None])[1], target, FULL_BAND))
                     for (s, _), target in zip(data, targets)])
    vocoder.train(was_training)
    return score


def train(args):
    torch.manual_seed(0)
    rng = random.Random(0)
    data, held = pairs("train"), pairs("heldout")[: args.heldout]
    print(f"{len(data)} training sentences, {len(held)} held out", flush=True)
    original = load_mbmelgan(MBMELGAN).requires_grad_(False)
    tuned = load_mbmelgan(MBMELGAN).train()
    assert max(original.context_frames) <= CONTEXT and original.hop == HOP, "CONTEXT/HOP no longer fit the vocoder"
    optimizer = torch.optim.Adam(tuned.parameters(), lr=args.lr, betas=(0.5, 0.9))
    step = 0
    if CKPT.exists():
        state = torch.load(CKPT, weights_only=True)
        tuned.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        print(f"resumed at step {step}", flush=True)
    CKPT.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():  # the targets and the original's score never change: computed once
        targets = [float_vocoder(original, t.T[None])[1] for _, t in held]
    before = heldout(original, held, targets) if held else None
    started = time.time()
    while step < args.steps:
        student, teacher = batch(data, args.batch, args.frames, rng)
        with torch.no_grad():
            target_bands, target = float_vocoder(original, teacher)
        bands, audio = float_vocoder(tuned, student)
        loss = 0.5 * (stft_distance(centre(audio, HOP), centre(target, HOP), FULL_BAND)
                      + stft_distance(centre(bands, SUB_HOP), centre(target_bands, SUB_HOP), SUB_BAND))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tuned.parameters(), 10.0)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        optimizer.step()
        step += 1
        if step % args.log_every == 0:
            print(f"step {step} loss {loss.item():.4f} {(time.time() - started) / args.log_every:.2f} s/step", flush=True)
            started = time.time()
        if step % args.ckpt_every == 0 or step == args.steps:
            tmp = CKPT.with_suffix(".tmp")
            torch.save({"model": tuned.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, tmp)
            tmp.replace(CKPT)
            if held:
                ours = heldout(tuned, held, targets)
                print(f"step {step} held-out STFT distance to the target: tuned {ours:.4f}, original {before:.4f}",
                      flush=True)


def export(args):
    """The bundled voice with the tuned vocoder (fp16, its provenance in the metadata) in args.export."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    state = torch.load(CKPT, weights_only=True)
    with safe_open(str(MBMELGAN), "pt") as f:
        metadata = dict(f.metadata())
    metadata["finetune"] = json.dumps({
        "what": "tools/voice/finetune_vocoder.py: the teacher's MB-MelGAN tuned to map the bundled student's "
                "mels to its own audio of the teacher's mels (multi-resolution STFT loss, no discriminator)",
        "steps": state["step"], "student": hashlib.sha256((BUNDLE / "acoustic.safetensors").read_bytes()).hexdigest()})
    out = Path(args.export)
    if out.resolve() != BUNDLE.resolve():
        shutil.copytree(BUNDLE, out, dirs_exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in state["model"].items()}, str(out / "vocoder.safetensors"), metadata)
    print(f"wrote {out / 'vocoder.safetensors'} (step {state['step']})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    # Adam's first steps move every weight by about lr whatever its gradient; at 5e-5 one step already made
    # the vocoder worse on other sentences than the whole fine-tune then won back, so: small and warmed up
    ap.add_argument("--lr", type=float, default=5e-6)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--frames", type=int, default=32, help="mel frames per training segment")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--heldout", type=int, default=32)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--cache-only", action="store_true", help="only cache the student's mels")
    ap.add_argument("--export", type=Path, help="write the bundle with the tuned vocoder here and stop")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.export:
        return export(args)
    cache_student_mels(sorted(FEATURES.glob("heldout_*.npz")) + sorted(FEATURES.glob("train_*.npz")))
    if not args.cache_only:
        train(args)


if __name__ == "__main__":
    main()
