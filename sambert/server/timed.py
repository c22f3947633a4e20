"""Word and character timings as events, sent beside the audio of the streaming APIs (SSE, WebSocket).

The acoustic model fixes every unit's duration before that sentence's audio exists, and the engine
records a sentence's word timings before it yields the sentence's first chunk (sambert/engine.py), so
`Timed`, iterated in place of a Job, has each sentence's timings ready before that sentence's audio.
"""

from collections import deque

import numpy as np

from sambert.timings import Span

EVENT = "speech.timestamps"
GRANULARITIES = ("word", "char")


def check_granularities(names):
    """The requested timestamp granularities as a tuple, or ValueError naming the valid ones."""
    names = tuple(names)
    unknown = [n for n in names if n not in GRANULARITIES]
    if unknown:
        raise ValueError(f"unknown timestamp granularity {unknown[0]!r}; valid: {', '.join(GRANULARITIES)}")
    return names


class Timed:
    """Iterates a Job's float32 chunks (after `lead_in` seconds of silence) and queues one event per
    sentence in `events` (thread-safe: an encoder thread may iterate while another thread takes them).
    Times are seconds from the start of this output plus `offset`; sentences are numbered from `first`."""

    def __init__(self, job, granularities=("word",), offset=0.0, first=0, lead_in=0.0):
        self.job = job
        self.sample_rate = job.sample_rate
        self.events = deque()
        self._granularities = check_granularities(granularities)
        self._offset = offset + lead_in
        self._lead_in = np.zeros(int(round(lead_in * self.sample_rate)), np.float32)
        self._first = first
        self._taken_sentences = 0
        self._taken_units = 0
        self.samples = 0  # produced so far, lead-in included

    def __iter__(self):
        return self

    def __next__(self):
        if len(self._lead_in):
            chunk, self._lead_in = self._lead_in, self._lead_in[:0]
        else:
            chunk = next(self.job)
            self._collect()
        self.samples += len(chunk)
        return chunk

    @property
    def seconds(self):
        return self.samples / self.sample_rate

    def take(self):
        """The events queued so far, oldest first (each is taken once)."""
        taken = []
        while self.events:
            taken.append(self.events.popleft())
        return taken

    def close(self):
        self.job.close()

    def _collect(self):
        synthesis = self.job.synthesis
        while self._taken_sentences < len(synthesis.words_by_sentence):
            words = synthesis.words_by_sentence[self._taken_sentences]
            units = _sentence_units(synthesis.units, self._taken_units)
            self._taken_units += len(units)
            event = {"type": EVENT, "sentence": self._first + self._taken_sentences}
            if "word" in self._granularities:
                event["words"] = [self._span(w) for w in words]
            if "char" in self._granularities:
                event["chars"] = [self._span(c) for c in char_spans(words, units)]
            self.events.append(event)
            self._taken_sentences += 1

    def _span(self, span):
        return {"text": span.text, "start": round(self._offset + span.start, 4),
                "end": round(self._offset + span.end, 4)}


def _sentence_units(units, start):
    """The units of the sentence beginning at `start`: up to and including its closing #4 break
    (the frontend ends every sentence with one)."""
    end = start
    while end < len(units) and units[end].text != "#4":
        end += 1
    return units[start : end + 1]


def char_spans(words, units):
    """Per character of each word, the span of its syllable. A Chinese syllable is two units (initial or
    zero initial, then final: sambert/frontend/units.py), so a word whose characters are one syllable
    each (every Chinese character but a folded erhua 儿) is timed exactly; in any other word (erhua, a
    Latin letter spelled in several syllables, an English word) the characters share its time evenly."""
    phones = [u for u in units if not u.text.startswith("#")]
    spans, next_phone = [], 0
    for word in words:
        own = []  # the word's phones: an English word's count need not be even
        while next_phone < len(phones) and phones[next_phone].end <= word.end:
            own.append(phones[next_phone])
            next_phone += 1
        if len(own) == 2 * len(word.text):
            spans += [Span(char, own[2 * i].start, own[2 * i + 1].end) for i, char in enumerate(word.text)]
        else:
            step = (word.end - word.start) / len(word.text)
            spans += [Span(char, word.start + i * step, word.start + (i + 1) * step)
                      for i, char in enumerate(word.text)]
    return spans
