"""Train the everyday polyphone model (sambert/frontend/polyphone.py's `Everyday`) on g2pL's train split.

    python tools/polyphone/train.py [--data /work/data/g2pl] [--out sambert/frontend/data/everyday_polyphones.safetensors]

g2pL (github.com/whzikaros/g2pL, data/ at commit de74537, Apache-2.0; paper "g2pL: Lexicon enhanced
Chinese polyphone disambiguation with a new dataset") has 300 everyday web sentences for each of 114
frequent polyphonic characters, one character marked in each, with its pinyin: the CPP format
(sambert/frontend/cpp.py reads it). 30 sentences of each character are held out for early stopping;
the dev split is the reported evaluation (benchmarks/frontend_accuracy.py) and is never trained on,
nor are sentences that also appear in it or in CPP's dev split.

The model: a character BiLSTM whose output at the marked character, joined with an embedding of the
reading the rest of the frontend gives that character (dictionary phrase, g2pM, context rules: g2p.py
without this model), goes through two dense layers scored over the character's readings only. Without
that input the same network reads g2pL's held-out sentences worse than the frontend alone does (it has
300 sentences a character; the dictionary has seen far more); with it, it learns where the frontend's
reading goes wrong. A few minutes on one core; the weights are written in float16 with the data, licence,
command and date in the file's metadata.
"""

import argparse
import collections
import datetime
import json
import random
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sambert.frontend import cpp  # noqa: E402

SOURCE = "g2pL, github.com/whzikaros/g2pL data/{train,dev}.{sent,lb} at commit de74537bc1e49ea6e5a1f4a9a80bda51325ac8f2"
HELD_OUT = 30  # sentences of each character kept for early stopping
PAD, UNK, BOS, EOS = range(4)  # the token ids before the characters' (polyphone.Everyday reads them so)


class Model(nn.Module):
    def __init__(self, chars, classes, embedding=64, hidden=64, given=16, dense=128, dropout=0.3):
        super().__init__()
        self.embedding = nn.Embedding(chars, embedding, padding_idx=PAD)
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True, bidirectional=True)
        self.given = nn.Embedding(classes + 1, given)  # the frontend's reading; the last row: one not in `classes`
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear(2 * hidden + given, dense), nn.ReLU(), nn.Linear(dense, classes))

    def forward(self, ids, at, given):
        """ids [batch, time] of rows of one length; at [batch]: the marked character's position."""
        out, _ = self.lstm(self.dropout(self.embedding(ids)))
        picked = out[torch.arange(len(at)), at]
        return self.head(torch.cat([self.dropout(picked), self.given(given)], -1))


def batches(rows, size, shuffle=None):
    """Rows grouped by length, so a batch needs no padding (and the LSTM no packing: ~5x faster)."""
    groups = collections.defaultdict(list)
    for row in rows:
        groups[len(row[0])].append(row)
    out = [group[k:k + size] for group in groups.values() for k in range(0, len(group), size)]
    if shuffle:
        shuffle.shuffle(out)
    return out


def tensors(batch):
    ids, at, given, label, allowed = zip(*batch)
    return torch.tensor(ids), torch.tensor(at), torch.tensor(given), torch.tensor(label), torch.stack(allowed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/data/g2pl"), help="g2pL's train.sent/.lb and dev.sent")
    parser.add_argument("--cpp", type=Path, default=REPO.parent / "shared" / "eval" / "cpp", help="CPP's dev.sent (excluded)")
    parser.add_argument("--out", type=Path, default=REPO / "sambert" / "frontend" / "data" / "everyday_polyphones.safetensors")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=6, help="epochs without a better held-out score before stopping")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    excluded = {item.text for item in cpp.load(args.data, "dev") + cpp.load(args.cpp, "dev")}
    every = cpp.load(args.data, "train")
    items = [item for item in every if item.text not in excluded]
    t0 = time.perf_counter()
    given = cpp.ours(items, everyday_model=False)  # what the model is given
    print(f"{len(items)} sentences ({len(every) - len(items)} also in a dev split left out); frontend readings in "
          f"{time.perf_counter() - t0:.0f} s, {np.mean([g == i.label for i, g in zip(items, given)]):.2%} right", flush=True)

    readings = collections.defaultdict(set)
    for item in items:
        readings[item.text[item.index]].add(item.label)
    classes = sorted(set().union(*readings.values()))
    class_id = {p: k for k, p in enumerate(classes)}
    by_char = collections.defaultdict(list)
    for pair in zip(items, given):
        by_char[pair[0].text[pair[0].index]].append(pair)
    train, held = [], []
    for pairs in by_char.values():
        rng.shuffle(pairs)
        held += pairs[:HELD_OUT]
        train += pairs[HELD_OUT:]
    counts = collections.Counter(ch for item, _ in train for ch in item.text)
    chars = "".join(sorted(ch for ch, n in counts.items() if n >= 2))  # a character seen once teaches nothing
    char_id = {ch: k for k, ch in enumerate(chars, 4)}
    allowed = {ch: torch.tensor([p in prons for p in classes]) for ch, prons in readings.items()}

    def row(item, frontend, drop=0.0):
        # unknown-character dropout (not on the marked one) teaches the model to read past characters it never saw
        ids = [UNK if i != item.index and rng.random() < drop else char_id.get(ch, UNK) for i, ch in enumerate(item.text)]
        ch = item.text[item.index]
        g = class_id[frontend] if frontend in readings[ch] else len(classes)
        return [BOS] + ids + [EOS], item.index + 1, g, class_id[item.label], allowed[ch]

    model = Model(len(chars) + 4, len(classes))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)

    def accuracy(pairs):
        model.eval()
        right = 0
        with torch.no_grad():
            for batch in batches([row(*pair) for pair in pairs], 512):
                ids, at, g, label, mask = tensors(batch)
                right += (model(ids, at, g).masked_fill(~mask, -1e9).argmax(-1) == label).sum().item()
        return right / len(pairs)

    print(f"held out: {len(held)} sentences, the frontend alone {np.mean([g == i.label for i, g in held]):.2%}")
    best, best_state, since = 0.0, None, 0
    for epoch in range(args.epochs):
        model.train()
        for batch in batches([row(*pair, drop=0.05) for pair in train], 256, rng):
            ids, at, g, label, mask = tensors(batch)
            loss = nn.functional.cross_entropy(model(ids, at, g).masked_fill(~mask, -1e9), label)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        score = accuracy(held)
        print(f"epoch {epoch + 1}: held out {score:.2%} ({time.perf_counter() - t0:.0f} s)", flush=True)
        if score > best:
            best, best_state, since = score, {k: v.clone() for k, v in model.state_dict().items()}, 0
        else:
            since += 1
            if since == args.patience:
                break

    metadata = {
        "chars": chars,
        "classes": json.dumps(classes),
        "readings": json.dumps({ch: sorted(prons) for ch, prons in sorted(readings.items())}, ensure_ascii=False),
        "dataset": SOURCE,
        "licence": "Apache-2.0 (the g2pL repository's LICENSE); these weights are trained on its data",
        "command": "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0]).resolve().relative_to(REPO))] + sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "held_out_accuracy": f"{best:.4f}",
    }
    from safetensors.torch import save_file

    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in best_state.items()}, str(args.out), metadata)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): held out {best:.2%}")


if __name__ == "__main__":
    main()
