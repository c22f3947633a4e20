"""Stage 4: train the student SAM-BERT on the teacher's examples (teacher forcing), resumably.

Loss (as KAN-TTS trains SAM-BERT): L1 on the decoder and post-net mels, MSE on log(d + 1) durations,
MSE on the per-unit pitch and energy. Adam with a linear warm-up and inverse-square-root decay.
With --self-feed the decoder reads its own earlier frames instead of the teacher's (self_fed_frames).
Batches are length-bucketed (similar mel lengths, a frame budget per batch). New examples written
by features.py while training runs are picked up at every pass over the data.

Every --ckpt-every steps: checkpoint (model, optimiser, step) to /work/data/voice/ckpt/last.pt, and
held-out mel L1 (post-net, teacher durations). Every --sample-every steps: one held-out sentence
synthesised free-running (infer + the teacher's MB-MelGAN) to /work/data/voice/samples/step_N.wav.

    nohup python tools/voice/train.py > /work/data/voice/train.log 2>&1 &     (resumes by itself)
    python tools/voice/train.py --anneal-from 14000 --steps 17000                 (cool down to the end)
    python tools/voice/train.py --init-from assets/voices/default_female
        (no checkpoint left: continue from the bundled voice's weights and step with a fresh optimiser)
    python tools/voice/train.py --init-from assets/voices/default_female --restart-schedule --lr 5e-4
        (the same weights toward new targets, e.g. another mel space: warm up again, count steps from 0)
    python tools/voice/train.py --init-from assets/voices/default_female --grow decoder_num_layers=6
        (a larger student that starts as the bundled one; its checkpoints record the new architecture)
    python tools/voice/train.py --init-from assets/voices/default_female --self-feed 1 --self-feed-passes 2
        (teach the bundled student to go on from its own frames, as it does when it synthesises)
"""

import argparse
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import CKPT, FEATURES, MBMELGAN, SAMPLES, bundle_step  # noqa: E402
from grow import grown_state, parse_growth  # noqa: E402
from student import student_params  # noqa: E402

from sambert.models import SamBert  # noqa: E402
from sambert.models.mbmelgan import load_mbmelgan  # noqa: E402
from sambert.voices import FIXED_TABLES, load_strict  # noqa: E402


def load_example(path):
    z = np.load(path)
    return {
        "id": path.stem,
        "ling": torch.from_numpy(z["ling"]),
        "emotion": torch.from_numpy(z["emotion"]),
        "speaker": torch.from_numpy(z["speaker"]),
        "durations": torch.from_numpy(z["durations"]),
        "pitch": torch.from_numpy(z["pitch"]),
        "energy": torch.from_numpy(z["energy"]),
        "mel": torch.from_numpy(z["mel"].astype(np.float32)),
    }


class Examples:
    """Feature files in memory, re-scanned for new ones on demand."""

    def __init__(self, prefix):
        self.prefix, self.items = prefix, {}

    def refresh(self):
        for path in sorted(FEATURES.glob(f"{self.prefix}_*.npz")):
            if path.stem not in self.items and not path.name.endswith(".tmp.npz"):
                self.items[path.stem] = load_example(path)
        return list(self.items.values())


def collate(examples):
    n = max(len(e["ling"]) for e in examples)
    t = max(len(e["mel"]) for e in examples)

    def stack(key, length, value=0):
        return torch.stack([F.pad(e[key], [0, 0] * (e[key].dim() - 1) + [0, length - len(e[key])], value=value)
                            for e in examples])

    return {
        "ling": stack("ling", n), "emotion": stack("emotion", n), "speaker": stack("speaker", n),
        "lengths": torch.tensor([len(e["ling"]) for e in examples]),
        "durations": stack("durations", n), "pitch": stack("pitch", n), "energy": stack("energy", n),
        "mel": stack("mel", t),
    }


def buckets(examples, frame_budget, max_batch, rng):
    """Batches of similar length: sort by mel length (with a little noise so batches change each pass),
    cut where the padded frames would exceed the budget, shuffle the batches."""
    order = sorted(examples, key=lambda e: len(e["mel"]) * rng.uniform(0.9, 1.1))
    batches, current = [], []
    for e in order:
        if current and (len(current) + 1) * max(len(e["mel"]), len(current[-1]["mel"])) > frame_budget \
                or len(current) == max_batch:
            batches.append(current)
            current = []
        current.append(e)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def self_fed_frames(model, batch, probability, passes=1):
    """The frames the decoder reads as each step's previous one: with `probability` per frame the model's
    own decoder output, else the teacher's. Synthesis reads its own frames, and a student trained only on
    the teacher's drifts: held-out mel L1 0.16 teacher-forced, 0.25 free-running with the same durations.
    Its own frames come from `passes` parallel passes (eval mode, as it synthesises; no gradient), each
    reading the previous pass's output, the first the teacher's: on the bundled student, 1, 2 and 3 passes
    put the output at L1 0.21, 0.24 and 0.24 from the teacher against 0.25 free-running. This is parallel
    scheduled sampling (Duckworth et al., 2019)."""
    model.eval()
    own = None
    with torch.no_grad():
        for _ in range(passes):
            own = model(batch["ling"], batch["emotion"], batch["speaker"], batch["lengths"], batch["mel"],
                        batch["durations"], batch["pitch"], batch["energy"], own)["dec_outputs"]
    model.train()
    pick = torch.rand(own.shape[:2] + (1,)) < probability
    return torch.where(pick, own, batch["mel"])


def losses(model, batch, self_feed=0.0, passes=1):
    previous = self_fed_frames(model, batch, self_feed, passes) if self_feed > 0 else None
    out = model(batch["ling"], batch["emotion"], batch["speaker"], batch["lengths"], batch["mel"],
                batch["durations"], batch["pitch"], batch["energy"], previous)
    frames = ~out["mel_masks"][..., None]
    units = ~out["input_masks"]
    n_mel = frames.sum() * batch["mel"].shape[-1]

    def mel_l1(pred):
        return ((pred - batch["mel"]).abs() * frames).sum() / n_mel

    def unit_mse(pred, target):
        return (((pred - target) ** 2) * units).sum() / units.sum()

    return {
        "dec": mel_l1(out["dec_outputs"]),
        "post": mel_l1(out["postnet_outputs"]),
        "dur": unit_mse(out["log_duration_predictions"], torch.log1p(batch["durations"].float())),
        "pitch": unit_mse(out["pitch_predictions"], batch["pitch"]),
        "energy": unit_mse(out["energy_predictions"], batch["energy"]),
    }


def learning_rate(step, peak, warmup, anneal_from=None, last_step=None):
    """Linear warm-up, inverse-square-root decay; from `anneal_from` on, a linear fall to zero at
    `last_step` (a short cool-down at the end of a run settles the weights a noisy CPU batch keeps moving)."""
    step = max(step, 1)
    if anneal_from is not None and step > anneal_from:
        fraction_left = max(last_step - step, 0) / max(last_step - anneal_from, 1)
        return learning_rate(anneal_from, peak, warmup) * fraction_left
    return peak * min(step / warmup, math.sqrt(warmup / step))


@torch.no_grad()
def heldout_l1(model, examples, batch_size=8):
    """Post-net mel L1 against the teacher's mel, teacher durations and no dropout."""
    model.eval()
    total = count = 0.0
    for i in range(0, len(examples), batch_size):
        batch = collate(examples[i:i + batch_size])
        out = model(batch["ling"], batch["emotion"], batch["speaker"], batch["lengths"], batch["mel"],
                    batch["durations"])
        frames = ~out["mel_masks"][..., None]
        total += float(((out["postnet_outputs"] - batch["mel"]).abs() * frames).sum())
        count += float(frames.sum()) * batch["mel"].shape[-1]
    model.train()
    return total / count


@torch.no_grad()
def render_sample(model, example, vocoder, path):
    import soundfile as sf

    model.eval()
    out = model.infer(example["ling"][None], example["emotion"][None], example["speaker"][None])
    wav = vocoder(out["postnet_outputs"].transpose(1, 2))[0, 0].numpy()
    model.train()
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav, vocoder.sample_rate)
    return int(out["durations"].sum()), int(example["durations"].sum())


def save_checkpoint(model, optimizer, step, path):
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "params": model.params}, tmp)
    tmp.replace(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--frame-budget", type=int, default=2400, help="padded mel frames per batch")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--anneal-from", type=int, help="from this step, the learning rate falls linearly to 0 at --steps")
    ap.add_argument("--init-from", type=Path, help="a bundled voice to start from when there is no checkpoint "
                    "(at the step export.py recorded, so the learning-rate schedule goes on from there)")
    ap.add_argument("--restart-schedule", action="store_true", help="with --init-from: start the step count and "
                    "the learning-rate schedule at 0 (warm-up again), for a run toward new targets")
    ap.add_argument("--grow", nargs="+", default=[], metavar="KEY=N", help="with --init-from: a larger student "
                    "that starts as the same function (tools/voice/grow.py), e.g. decoder_num_layers=6")
    ap.add_argument("--self-feed", type=float, default=0.0, metavar="P", help="probability that a decoder step "
                    "reads the model's own previous frame instead of the teacher's (see self_fed_frames)")
    ap.add_argument("--self-feed-passes", type=int, default=1, metavar="K", help="parallel passes that make "
                    "the frames --self-feed reads (more: closer to what synthesis reads, slower)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--ckpt-every", type=int, default=200)
    ap.add_argument("--sample-every", type=int, default=1000)
    ap.add_argument("--heldout", type=int, default=32, help="held-out sentences scored at each checkpoint")
    args = ap.parse_args()
    if args.grow and not args.init_from:
        ap.error("--grow grows the --init-from voice")
    if not 0 <= args.self_feed <= 1 or args.self_feed_passes < 1:
        ap.error("--self-feed is a probability (0-1) and --self-feed-passes at least 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    CKPT.mkdir(parents=True, exist_ok=True)

    last = CKPT / "last.pt"
    state = torch.load(last, map_location="cpu") if last.exists() else None
    # a checkpoint records the architecture it was trained with (it may have been grown)
    model = SamBert(state["params"] if state else student_params())
    with torch.no_grad():
        # The duration head ends in a ReLU: start it at a typical log(frames + 1) (~8 frames) so it
        # cannot begin dead (all outputs 0, no gradient), which happened with the default init.
        model.variance_adaptor.duration_predictor.fc.bias.fill_(math.log(9.0))
    step = 0
    if state:
        model.load_state_dict(state["model"])
        step = state["step"]
        print(f"resumed from {last} at step {step}", flush=True)
    elif args.init_from:
        from safetensors.torch import load_file

        weights = args.init_from / "acoustic.safetensors"
        load_strict(model, load_file(weights), weights, optional=FIXED_TABLES)  # fp16 -> fp32 on copy
        step = 0 if args.restart_schedule else bundle_step(args.init_from) or 0
        print(f"initialised from {weights} at step {step}", flush=True)
        if args.grow:
            grown = SamBert(dict(model.params, **parse_growth(args.grow)))
            grown.load_state_dict(grown_state(model.state_dict(), grown.state_dict(),
                                              model.params["decoder_num_layers"]))
            model = grown
            print(f"grown: {' '.join(args.grow)}", flush=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-9)
    if state:
        optimizer.load_state_dict(state["optimizer"])
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"student: {n_params / 1e6:.2f}M parameters", flush=True)

    train, heldout = Examples("train"), Examples("heldout")
    held = heldout.refresh()[: args.heldout]
    vocoder = None
    rng = random.Random(step)
    sums, n_sums, started = {}, 0, time.time()
    while step < args.steps:
        examples = train.refresh()
        if len(examples) < 64:
            print(f"waiting for examples ({len(examples)} so far)", flush=True)
            time.sleep(60)
            continue
        for batch_examples in buckets(examples, args.frame_budget, args.max_batch, rng):
            if step >= args.steps:
                break
            batch = collate(batch_examples)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step + 1, args.lr, args.warmup, args.anneal_from, args.steps)
            parts = losses(model, batch, args.self_feed, args.self_feed_passes)
            loss = sum(parts.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            n_sums += 1
            if step % args.log_every == 0:
                means = " ".join(f"{k} {v / n_sums:.4f}" for k, v in sums.items())
                print(f"step {step} {means} | grad {float(grad_norm):.2f} lr {optimizer.param_groups[0]['lr']:.2e} "
                      f"{(time.time() - started) / n_sums:.2f} s/step, {len(examples)} examples", flush=True)
                sums, n_sums, started = {}, 0, time.time()
            if step % args.ckpt_every == 0:
                save_checkpoint(model, optimizer, step, last)
                if step % args.sample_every == 0:
                    save_checkpoint(model, optimizer, step, CKPT / f"step_{step:06d}.pt")
                print(f"checkpoint step {step}: held-out mel L1 {heldout_l1(model, held):.4f}", flush=True)
            if step % args.sample_every == 0 and held:
                vocoder = vocoder or load_mbmelgan(MBMELGAN)
                ours, theirs = render_sample(model, held[0], vocoder, SAMPLES / f"step_{step:06d}.wav")
                print(f"sample step {step}: {ours} frames free-running vs teacher {theirs}", flush=True)


if __name__ == "__main__":
    main()
