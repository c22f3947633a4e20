"""The CPP polyphone benchmark (g2pM's dataset): reading a split and scoring a G2P on it.

A split is `<name>.sent` (one sentence a line, the annotated character wrapped in U+2581) and
`<name>.lb` (its pinyin, TONE3 with 5 for the neutral tone, `u:` for ü). The score is the share of
sentences whose marked character is read as labelled. Used by benchmarks/frontend_accuracy.py and
tests/test_frontend.py.
"""

import bisect
import re
from dataclasses import dataclass
from pathlib import Path

from .g2p import analyze
from . import polyphone

MARK = "\u2581"
_NOT_CHINESE = re.compile(r"[0-9A-Za-z]")


@dataclass
class Item:
    text: str  # the sentence without the marks
    index: int  # offset of the annotated character
    label: str  # its pinyin, v for ü

    @property
    def all_chinese(self):
        """No digits or Latin letters: the subset the project's test-split figures are taken on."""
        return not _NOT_CHINESE.search(self.text)


def load(folder, split="dev"):
    """[Item] of one split; a missing or malformed file is an error, not an empty benchmark."""
    folder = Path(folder)
    sentences = (folder / f"{split}.sent").read_text(encoding="utf-8").splitlines()
    labels = (folder / f"{split}.lb").read_text(encoding="utf-8").splitlines()
    if len(sentences) != len(labels) or not sentences:
        raise ValueError(f"{folder}/{split}: {len(sentences)} sentences but {len(labels)} labels")
    items = []
    for sentence, label in zip(sentences, labels):
        if sentence.count(MARK) != 2:
            raise ValueError(f"{folder}/{split}: no marked character in {sentence!r:.60}")
        items.append(Item(sentence.replace(MARK, ""), sentence.index(MARK), label.strip().replace("u:", "v")))
    return items


def ours(items, everyday_model=True):
    """Our reading of each item's marked character (the polyphone models read all sentences in one pass);
    `everyday_model=False`: the frontend without our everyday polyphone model."""
    texts = [item.text for item in items]
    starts = [0]
    for text in texts[:-1]:
        starts.append(starts[-1] + len(text) + 1)
    per_sentence = [{} for _ in texts]
    for offset, reading in polyphone.read("\n".join(texts), everyday_model).items():
        k = bisect.bisect_right(starts, offset) - 1
        per_sentence[k][offset - starts[k]] = reading
    out = []
    for item, readings in zip(items, per_sentence):
        word = next(w for w in analyze(item.text, readings) if item.index in w.chars)
        out.append(word.syllables[word.chars.index(item.index)])
    return out


def accuracy(items, predictions, all_chinese=False):
    pairs = [(item, p) for item, p in zip(items, predictions) if item.all_chinese or not all_chinese]
    return sum(p == item.label for item, p in pairs) / len(pairs)
