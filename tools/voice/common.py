"""Paths and small helpers shared by the default-voice pipeline stages (tools/voice/*.py)."""

import json
import os
from pathlib import Path

DATA = Path(os.environ.get("SAMBERT_VOICE_DATA", "/work/data/voice"))
CORPUS = DATA / "corpus"  # train.txt, heldout.txt: one sentence a line
TEACHER = DATA / "teacher"  # one .npz per sentence, named by its corpus index
# one .npz per sentence: ling ids, durations, pitch, energy, the teacher's mel (the folder "features" of
# earlier runs held mels in the universal HiFi-GAN's space: a different name so the two never mix)
FEATURES = DATA / "features_teacher_mel"
MBMELGAN = DATA / "mbmelgan" / "vocoder.safetensors"  # tools/voice/convert_mbmelgan.py writes it
CKPT = DATA / "ckpt"
SAMPLES = DATA / "samples"
TEACHER_VENV = Path(os.environ.get("SAMBERT_TEACHER_VENV", "/work/data/teacher-venv"))


def read_lines(path):
    return [line.rstrip("\n") for line in open(path, encoding="utf-8") if line.strip()]


def sentence_id(split, index):
    """File stem of one corpus sentence: stable across runs, sorts in corpus order."""
    return f"{split}_{index:06d}"


def write_json(path, obj):
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(path)


def bundle_step(bundle):
    """The training step export.py recorded in a bundled voice's weights (None if it recorded none)."""
    from safetensors import safe_open

    with safe_open(str(Path(bundle) / "acoustic.safetensors"), "pt") as f:
        step = (f.metadata() or {}).get("step")
    return int(step) if step is not None else None
