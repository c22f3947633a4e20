"""jieba's segmenter and part-of-speech tagger, loaded and run faster with the same results.

Loading: jieba reads its prefix-dictionary cache with `marshal.load(file)`, which CPython serves
a few bytes at a time (1.5 s for the 9 MB file on a busy core); `marshal.loads` of the file's bytes
builds the same dict in a fifth of that. `load()` gives jieba a marshal that does so.

Tagging: jieba.posseg tags a run of characters its dictionary does not know with an HMM over 256 states
((B|M|E|S, tag) pairs), decoded by a Viterbi search written as Python generator expressions; it
was most of the frontend's time. `viterbi` here takes the same tables and returns the same
(probability, route): the scores are the same float64 sums in the same order
(previous + transition + emission), and ties go to the greatest previous state, as jieba's
`max` over (score, state) tuples does.
"""

import logging
import marshal
import threading

import numpy as np

_MIN_FLOAT = -3.14e100  # jieba's score for an emission its table lacks


class _Tables:
    """jieba's dict tables as dense arrays over the states in sorted order."""

    def __init__(self, char_states, start_p, trans_p, emit_p):
        self.states = sorted(trans_p)
        index = {s: i for i, s in enumerate(self.states)}
        n = len(self.states)
        self.trans = np.full((n, n), -np.inf)
        self.follows = np.zeros((n, n), bool)  # the transitions jieba's table has
        for a, row in trans_p.items():
            for b, p in row.items():
                self.trans[index[a], index[b]] = p
                self.follows[index[a], index[b]] = True
        self.leaves = self.follows.any(axis=1)  # states with a transition out
        self.start = np.array([start_p[s] for s in self.states])
        self.index, self.char_states, self.emit_p = index, char_states, emit_p
        self._emits = {}  # character -> (state indices, scores) of the emissions it has
        for s, row in emit_p.items():
            for ch, p in row.items():
                self._emits.setdefault(ch, ([], []))
                self._emits[ch][0].append(index[s])
                self._emits[ch][1].append(p)
        self._chars = {}
        self._lock = threading.Lock()

    def char(self, ch):
        """(states the character may take as a mask, emission score of every state) for `ch`."""
        found = self._chars.get(ch)
        if found is None:
            allowed = self.char_states.get(ch)
            if allowed is None:
                mask = np.ones(len(self.states), bool)
            else:
                mask = np.zeros(len(self.states), bool)
                mask[[self.index[s] for s in allowed]] = True
            emit = np.full(len(self.states), _MIN_FLOAT)
            states, scores = self._emits.get(ch, ((), ()))
            emit[list(states)] = scores
            found = (mask, emit)
            with self._lock:
                self._chars[ch] = found
        return found


_tables = None


def viterbi(obs, states, start_p, trans_p, emit_p):
    """jieba.posseg.viterbi's signature and result: (log probability, [state per character])."""
    global _tables
    if _tables is None or _tables.emit_p is not emit_p:
        _tables = _Tables(states, start_p, trans_p, emit_p)
    tables = _tables
    n = len(tables.states)
    mask, emit = tables.char(obs[0])
    live = np.flatnonzero(mask)
    score = np.full(n, -np.inf)
    score[live] = tables.start[live] + emit[live]
    back = []
    for ch in obs[1:]:
        # previous states that lead anywhere, greatest first: argmax then picks the greatest of a tie
        prev = live[tables.leaves[live]][::-1]
        expected = tables.follows[prev].any(axis=0)
        mask, emit = tables.char(ch)
        now = mask & expected
        if not now.any():
            now = expected if expected.any() else np.ones(n, bool)
        now = np.flatnonzero(now)
        totals = score[prev][:, None] + tables.trans[prev[:, None], now] + emit[now]
        best = totals.argmax(axis=0)
        score = np.full(n, -np.inf)
        score[now] = totals[best, np.arange(len(now))]
        came = np.zeros(n, np.int64)
        came[now] = prev[best]
        back.append(came)
        live = now
    last = live[::-1][score[live[::-1]].argmax()]
    route = [last]
    for came in reversed(back):
        route.append(came[route[-1]])
    route.reverse()
    return float(score[last]), [tables.states[i] for i in route]


class _WholeFileMarshal:
    """The marshal module as jieba uses it (load, dump), reading a file in one piece."""

    dump = staticmethod(marshal.dump)

    @staticmethod
    def load(file):
        return marshal.loads(file.read())


def load():
    """jieba.posseg with jieba's dictionary loaded, decoding with `viterbi`. jieba looks both `marshal`
    and `viterbi` up in its modules at call time, so replacing the names there is enough."""
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    jieba.marshal = _WholeFileMarshal
    jieba.initialize()
    jieba.posseg.viterbi = viterbi
    return jieba.posseg
