"""Vocode a mel stream in fixed-size chunks, with the context each chunk needs to match whole-utterance audio.

A HiFi-GAN output sample depends on a bounded window of mel frames (its receptive field). To emit the
audio of frames [a, b) exactly we run the generator on frames [a - left, b + right) and keep only the
samples of [a, b): `left` frames of cached history, `right` frames of lookahead (zero for the causal
KAN-TTS generator). At the utterance edges the generator pads exactly as it does on the whole mel, so
chunks there are exact with whatever context exists. Memory is bounded by chunk + context, not by the
length of the utterance.
"""

import torch


def context_of(vocoder):
    """(left, right) mel frames the vocoder needs around a chunk for exact output."""
    context = vocoder.context_frames
    if isinstance(context, int):
        return context, context
    left, right = context
    return int(left), int(right)


class ChunkedVocoder:
    """push(mel [n_mels, T]) -> audio for the frames that are final; finish() -> the rest.

    `run(mel [1, n_mels, T]) -> wav [1, 1, T * hop]` calls the generator (the engine wraps it with the
    device, dtype and lock it needs); `context` is (left, right) in frames. With `first_chunk_frames`
    the chunks start that small and double up to `chunk_frames`: the first audio comes sooner, and
    each chunk takes about as long to compute as the audio before it lasts.
    """

    def __init__(self, run, hop, chunk_frames, context, first_chunk_frames=None):
        self.run = run
        self.hop = hop
        self.max_chunk_frames = chunk_frames
        self.chunk_frames = min(first_chunk_frames or chunk_frames, chunk_frames)
        self.left, self.right = context
        self.frames = None  # mel frames held: `self.left` of history (at most), then the pending ones
        self.history = 0  # how many of the held frames are already vocoded (left context only)

    def push(self, mel):
        """Add frames; return the audio (1-D float tensor) of every full chunk that has its lookahead."""
        self.frames = mel if self.frames is None else torch.cat([self.frames, mel], dim=1)
        out = []
        while self.frames.shape[1] - self.history >= self.chunk_frames + self.right:
            out.append(self._emit(self.chunk_frames, final=False))
            self.chunk_frames = min(2 * self.chunk_frames, self.max_chunk_frames)
        return _join(out, mel)

    def finish(self):
        """The audio of every frame not emitted yet (the end of the utterance is the lookahead)."""
        if self.frames is None or self.frames.shape[1] == self.history:
            return torch.zeros(0)
        return self._emit(self.frames.shape[1] - self.history, final=True)

    def _emit(self, n, final):
        """Vocode the next n pending frames with the held history and up to `right` frames after them."""
        stop = self.history + n if final else self.history + n + self.right
        wav = self.run(self.frames[None, :, :stop])[0, 0]
        audio = wav[self.history * self.hop : (self.history + n) * self.hop]
        keep = min(self.left, self.history + n)  # frames of history the next chunk needs
        self.frames = self.frames[:, self.history + n - keep :]
        self.history = keep
        return audio


def _join(pieces, like):
    if not pieces:
        return torch.zeros(0, dtype=like.dtype, device=like.device)
    return torch.cat(pieces)
