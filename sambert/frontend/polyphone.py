"""Polyphone disambiguation with g2pM's BiLSTM (kakaobrain, Apache-2.0; weights ship in the PyPI wheel).

g2pM is a one-layer character BiLSTM (64-d embeddings, 32 units each way, two dense layers) trained on
the CPP benchmark. The package runs it one sentence at a time in float64 with a Python loop per step;
here the same weights run batched over every sentence of a text at once in float32, with each input
projection precomputed for the whole vocabulary, so the model costs a few matrix products per step.
Only the readings the character has are scored: g2pM's argmax over all 876 classes can name a
syllable the character never has.
"""

import pickle
import re
import threading
from pathlib import Path

import numpy as np

_BOS, _EOS, _UNK = "시", "끝", "<UNK>"  # g2pM's sentence markers and unknown token (its vocabulary's names)


class PolyphoneModel:
    """g2pM's weights, loaded once; `read(text)` -> {char index: pinyin} for its polyphonic characters."""

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
        emb = w["embedding.weight"]
        self.fw_in = emb @ w["lstm.weight_ih_l0"].T + w["lstm.bias_ih_l0"] + w["lstm.bias_hh_l0"]
        self.bw_in = emb @ w["lstm.weight_ih_l0_reverse"].T + w["lstm.bias_ih_l0_reverse"] + w["lstm.bias_hh_l0_reverse"]
        self.fw_hh = w["lstm.weight_hh_l0"].T.copy()
        self.bw_hh = w["lstm.weight_hh_l0_reverse"].T.copy()
        self.dense = (w["logit_layer.0.weight"].T, w["logit_layer.0.bias"], w["logit_layer.2.weight"].T, w["logit_layer.2.bias"])

    def _ids(self, sentence):
        unk = self.char2idx[_UNK]
        return [self.char2idx[_BOS]] + [self.char2idx.get(ch, unk) for ch in sentence] + [self.char2idx[_EOS]]

    def _hidden(self, ids, lengths):
        """ids [batch, time] (padded with 0) -> BiLSTM outputs [batch, time, 64]."""
        batch, steps = ids.shape
        n = self.fw_hh.shape[0]
        out = np.zeros((batch, steps, 2 * n), np.float32)
        rows = np.arange(batch)
        for direction, table, w_hh in ((0, self.fw_in, self.fw_hh), (1, self.bw_in, self.bw_hh)):
            h = np.zeros((batch, n), np.float32)
            c = np.zeros((batch, n), np.float32)
            # the backward pass starts at each row's own last character, so padding never enters
            # a real character's state; rows are sorted by length, so padding is short
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

    def read(self, text):
        """Text -> {char index: pinyin} for its polyphonic characters.

        The text is read in rows of one sentence each (a long one cut every 80 characters), sorted by length
        and run in batches, so a whole document costs one pass of short matrix products."""
        rows = [(m.start(), m.group()) for m in _ROWS.finditer(text) if any(ch in self.candidates for ch in m.group())]
        rows.sort(key=lambda row: len(row[1]))
        out = {}
        for k in range(0, len(rows), _BATCH):
            batch = rows[k:k + _BATCH]
            for (offset, _), readings in zip(batch, self._readings([row for _, row in batch])):
                out.update({offset + i: pinyin for i, pinyin in readings.items()})
        return out

    def _readings(self, sentences):
        """[str] -> [{char index: pinyin}], one batch."""
        seqs = [self._ids(s) for s in sentences]
        lengths = np.array([len(s) for s in seqs])
        ids = np.zeros((len(seqs), lengths.max()), np.int64)
        for r, seq in enumerate(seqs):
            ids[r, :len(seq)] = seq
        hidden = self._hidden(ids, lengths)
        where = [(r, i) for r, s in enumerate(sentences) for i, ch in enumerate(s) if ch in self.candidates]
        picked = hidden[[r for r, _ in where], [i + 1 for _, i in where]]  # +1: the BOS marker
        w0, b0, w1, b1 = self.dense
        logits = _matmul(np.maximum(_matmul(picked, w0) + b0, 0), w1) + b1
        result = [{} for _ in sentences]
        for (r, i), scores in zip(where, logits):
            allowed = self.candidates[sentences[r][i]]
            result[r][i] = self.classes[allowed[np.argmax(scores[allowed])]]
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
_model = None


def model():
    """The shared model, loaded on first use (about 0.1 s)."""
    global _model
    with _lock:
        if _model is None:
            _model = PolyphoneModel()
    return _model
