"""Polyphone disambiguation: two character BiLSTMs, run batched in numpy.

- g2pM's (kakaobrain, Apache-2.0; weights ship in the PyPI wheel): a one-layer BiLSTM (64-d embeddings,
  32 units each way, two dense layers) trained on the CPP benchmark (Wikipedia). It reads every
  polyphonic character that no dictionary phrase covers (g2p.py).
- ours, `data/everyday_polyphones.safetensors` (written by tools/polyphone/train.py, which names its
  data, licence and command in the file's metadata): trained on g2pL's everyday web sentences for 114
  frequent polyphonic characters. Besides the sentence it is given the reading the rest of the frontend
  settled on (dictionary phrase, g2pM, context rules), so it learns where that reading goes wrong; it
  has the last word on its characters.

g2pM's package runs one sentence at a time in float64 with a Python loop per step; here every sentence
of a text runs at once in float32, with each input projection precomputed for the whole vocabulary, so
a model costs a few matrix products per step. Only the readings a character has are scored: an argmax
over all classes can name a syllable the character never has.
"""

import json
import pickle
import re
import threading
from collections import namedtuple
from pathlib import Path

import numpy as np

WEIGHTS = Path(__file__).parent / "data" / "everyday_polyphones.safetensors"

# what the models say about one character: g2pM's reading (None where it has no say), and ours as
# {the frontend's reading: (ours, its probability)}, the key None for a frontend reading it was not trained on
Reading = namedtuple("Reading", "g2pm everyday")


class BiLSTM:
    """A one-layer bidirectional LSTM with PyTorch's weight names and gate order, over rows of token ids."""

    def __init__(self, embedding, w, prefix="lstm."):
        def direction(suffix):
            get = lambda name: w[f"{prefix}{name}_l0{suffix}"]  # noqa: E731
            return embedding @ get("weight_ih").T + get("bias_ih") + get("bias_hh"), get("weight_hh").T.copy()

        (self.fw_in, self.fw_hh), (self.bw_in, self.bw_hh) = direction(""), direction("_reverse")

    def __call__(self, seqs):
        """[[token id]] -> outputs [row, time, 2 * units] (rows zero-padded past their length)."""
        lengths = np.array([len(s) for s in seqs])
        ids = np.zeros((len(seqs), lengths.max()), np.int64)
        for r, seq in enumerate(seqs):
            ids[r, :len(seq)] = seq
        batch, steps = ids.shape
        n = self.fw_hh.shape[0]
        out = np.zeros((batch, steps, 2 * n), np.float32)
        rows = np.arange(batch)
        for direction, table, w_hh in ((0, self.fw_in, self.fw_hh), (1, self.bw_in, self.bw_hh)):
            h = np.zeros((batch, n), np.float32)
            c = np.zeros((batch, n), np.float32)
            # the backward pass starts at each row's own last token, so padding never enters
            # a real token's state; rows are sorted by length, so padding is short
            pos = np.tile(np.arange(steps), (batch, 1)) if direction == 0 else lengths[:, None] - 1 - np.arange(steps)
            live = (pos >= 0) & (pos < lengths[:, None])
            x = table[ids[rows[:, None], np.maximum(pos, 0)]]  # [batch, time, 4n]: every input projection
            for t in range(steps):
                z = x[:, t] + _matmul(h, w_hh)
                gates = 1 / (1 + np.exp(-z))  # PyTorch's gate order: input, forget, cell, output
                c_new = gates[:, n:2 * n] * c + gates[:, :n] * np.tanh(z[:, 2 * n:3 * n])
                h_new = gates[:, 3 * n:] * np.tanh(c_new)
                alive = live[:, t]
                if alive.all():
                    h, c = h_new, c_new
                else:
                    h = np.where(alive[:, None], h_new, h)
                    c = np.where(alive[:, None], c_new, c)
                out[rows[alive], pos[alive, t], direction * n:(direction + 1) * n] = h[alive]
        return out


def _read_rows(text, wanted, run):
    """{char index: what `run` says} for the characters of `text` in `wanted`.

    The text is read in rows of one sentence each (a long one cut every 80 characters), sorted by length
    and run in batches, so a whole document costs one pass of short matrix products. `run([row])` ->
    [{index in row: value}] for one batch."""
    rows = [(m.start(), m.group()) for m in _ROWS.finditer(text) if any(ch in wanted for ch in m.group())]
    rows.sort(key=lambda row: len(row[1]))
    out = {}
    for k in range(0, len(rows), _BATCH):
        batch = rows[k:k + _BATCH]
        for (offset, _), values in zip(batch, run([row for _, row in batch])):
            out.update({offset + i: value for i, value in values.items()})
    return out


class G2pM:
    """g2pM's weights, loaded once; `read(text)` -> {char index: pinyin} for its polyphonic characters."""

    _BOS, _EOS, _UNK = "시", "끝", "<UNK>"  # its sentence markers and unknown token (its vocabulary's names)

    def __init__(self):
        import g2pM

        folder = Path(g2pM.__file__).parent
        load = lambda name: pickle.loads((folder / name).read_bytes())  # noqa: E731
        self.char2idx = load("char2idx.pkl")
        classes = load("class2idx.pkl")
        self.classes = [None] * len(classes)
        for pron, idx in classes.items():
            self.classes[idx] = pron.replace("u:", "v")  # TONE3 with v for ü, as pypinyin writes it
        cedict = load("digest_cedict.pkl")
        # the characters it was trained to decide, each with the class ids of its readings
        self.candidates = {
            ch: np.array(sorted({classes[p] for p in prons if p in classes and p != "r5"}))
            for ch, prons in cedict.items() if len(prons) > 1
        }  # r5 is erhua, which g2p marks from the word the 儿 ends
        w = {k: v.astype(np.float32) for k, v in load("np_ckpt.pkl").items()}
        self.lstm = BiLSTM(w["embedding.weight"], w)
        self.dense = (w["logit_layer.0.weight"].T, w["logit_layer.0.bias"], w["logit_layer.2.weight"].T, w["logit_layer.2.bias"])

    def read(self, text):
        return _read_rows(text, self.candidates, self._readings)

    def _readings(self, sentences):
        unk = self.char2idx[self._UNK]
        hidden = self.lstm([[self.char2idx[self._BOS]] + [self.char2idx.get(ch, unk) for ch in s] + [self.char2idx[self._EOS]]
                            for s in sentences])
        where = [(r, i) for r, s in enumerate(sentences) for i, ch in enumerate(s) if ch in self.candidates]
        picked = hidden[[r for r, _ in where], [i + 1 for _, i in where]]  # +1: the BOS marker
        w0, b0, w1, b1 = self.dense
        logits = _matmul(np.maximum(_matmul(picked, w0) + b0, 0), w1) + b1
        result = [{} for _ in sentences]
        for (r, i), scores in zip(where, logits):
            allowed = self.candidates[sentences[r][i]]
            result[r][i] = self.classes[allowed[np.argmax(scores[allowed])]]
        return result


class Everyday:
    """Our model (see the module's doc); `read(text)` -> {char index: {the frontend's reading: (ours, probability)}}."""

    def __init__(self, path=WEIGHTS):
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata()
            w = {k: f.get_tensor(k).astype(np.float32) for k in f.keys()}
        # token ids: 0 padding, 1 unknown, 2 and 3 the sentence's start and end, then the characters
        self.ids = {ch: k for k, ch in enumerate(meta["chars"], 4)}
        self.classes = json.loads(meta["classes"])
        cid = {p: k for k, p in enumerate(self.classes)}
        self.candidates = {ch: np.array([cid[p] for p in prons]) for ch, prons in json.loads(meta["readings"]).items()}
        self.lstm = BiLSTM(w["embedding.weight"], w)
        # the first dense layer reads [BiLSTM output, embedding of the frontend's reading]; the second
        # half's product is the same for every sentence, so it is computed once per reading (the
        # last row: a reading the model was not trained on)
        w0, n = w["head.0.weight"], 2 * self.lstm.fw_hh.shape[0]
        self.w0, self.given = w0[:, :n].T.copy(), w["given.weight"] @ w0[:, n:].T + w["head.0.bias"]
        self.w1, self.b1 = w["head.2.weight"].T.copy(), w["head.2.bias"]

    def read(self, text):
        return _read_rows(text, self.candidates, self._choices)

    def _choices(self, sentences):
        hidden = self.lstm([[2] + [self.ids.get(ch, 1) for ch in s] + [3] for s in sentences])
        where = [(r, i) for r, s in enumerate(sentences) for i, ch in enumerate(s) if ch in self.candidates]
        base = _matmul(hidden[[r for r, _ in where], [i + 1 for _, i in where]], self.w0)
        # every reading the frontend may have given each character (its candidates, then "other"), all at once
        options = [np.append(self.candidates[sentences[r][i]], len(self.classes)) for r, i in where]
        which = np.repeat(np.arange(len(where)), [len(o) for o in options])
        logits = _matmul(np.maximum(base[which] + self.given[np.concatenate(options)], 0), self.w1) + self.b1
        result, row = [{} for _ in sentences], 0
        for (r, i), given in zip(where, options):
            allowed = given[:-1]
            choice = {}
            for k, g in enumerate(given):
                scores = logits[row + k, allowed]
                p = np.exp(scores - scores.max())
                best = np.argmax(p)
                choice[self.classes[g] if k < len(allowed) else None] = (self.classes[allowed[best]], p[best] / p.sum())
            result[r][i] = choice
            row += len(given)
        return result


# a row is a sentence, or up to 80 characters of one; CPP's sentences (what g2pM learned from) rarely exceed that
_ROWS = re.compile(r"[^。！？!?\n]{1,80}[。！？!?]*")
_BATCH = 128


# OpenBLAS runs a product of more than 4 * 65536 multiply-adds (m * n * k) on all its threads; for
# products this small, on cores busy with synthesis or training, waking and waiting for those threads
# cost 100 times the arithmetic (measured: 14 ms instead of 50 us for a 128-row step)
_ONE_THREAD_MACS = 4 * 65536


def _matmul(a, b):
    """a @ b in blocks of rows small enough that OpenBLAS computes each on the calling thread."""
    rows = max(1, _ONE_THREAD_MACS // (a.shape[1] * b.shape[1]))
    if len(a) <= rows:
        return a @ b
    return np.concatenate([a[k:k + rows] @ b for k in range(0, len(a), rows)])


_lock = threading.Lock()
_models = {}


def _shared(kind):
    with _lock:
        if kind not in _models:
            _models[kind] = kind()
    return _models[kind]


def g2pm():
    """g2pM's model, loaded on first use (about 0.1 s)."""
    return _shared(G2pM)


def everyday():
    """Our model, loaded on first use."""
    return _shared(Everyday)


def read(text, everyday_model=True):
    """{char index: Reading} for every character of `text` that either model reads; without our model
    when `everyday_model` is false (what tools/polyphone/train.py gives it to learn from)."""
    ours, theirs = everyday().read(text) if everyday_model else {}, g2pm().read(text)
    return {k: Reading(theirs.get(k), ours.get(k)) for k in ours.keys() | theirs.keys()}
