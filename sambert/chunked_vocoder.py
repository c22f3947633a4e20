"""Vocode a mel stream in fixed-size chunks, with the context each chunk needs to match whole-utterance audio.

A vocoder's output sample depends on a bounded window of mel frames (its receptive field, the
`context_frames` each vocoder module computes). To emit the audio of frames [a, b) exactly we run the
generator on frames [a - left, b + right) and keep only the samples of [a, b): `left` frames of cached
history, `right` frames of lookahead (zero for the causal KAN-TTS generator). At the utterance edges
the generator pads exactly as it does on the whole mel, so chunks there are exact with whatever
context exists. Memory is bounded by chunk + context, not by the length of the utterance.

Every generator call has a length from a small fixed set: oneDNN compiles and caches convolution
kernels for each new input length (measured: about 5 MB per new length for a 22 kHz HiFi-GAN V1, kept
for the life of the process), and the last chunk of each utterance would otherwise have a new length
every time. The chunks themselves have fixed sizes; the last window is rounded up to a multiple of
`window_step` frames by reaching further back into the history, which is still exact. An utterance
shorter than that rounded window keeps its own length: padding it would change its edges (measured
with the default voice: 38-41 dB SNR against the whole call for 38- and 47-frame sentences).
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
    device, dtype and turn it needs); `context` is (left, right) in frames. With `first_chunk_frames`
    the chunks start that small and double up to `chunk_frames`: the first audio comes sooner, and
    each chunk takes about as long to compute as the audio before it lasts.
    """

    def __init__(self, run, hop, chunk_frames, context, first_chunk_frames=None, window_step=16):
        self.run = run
        self.hop = hop
        self.max_chunk_frames = chunk_frames
        self.first_chunk_frames = min(first_chunk_frames or chunk_frames, chunk_frames)
        self.chunk_frames = self.first_chunk_frames  # the next chunk's size: doubles up to max_chunk_frames
        self.left, self.right = context
        self.window_step = window_step
        # History held: the left context, and as far back as the rounded last window may reach.
        self.reserve = self.left + window_step - 1
        self.frames = None  # mel frames held: up to `self.reserve` of history, then the pending ones
        self.history = 0  # how many of the held frames are already vocoded

    def window_lengths(self):
        """Every generator input length this vocoder can use, but for an utterance shorter than its last
        rounded window (kept at its own length): the growing first chunks with the history before them,
        the full chunks, and every rounded last window. A server runs them once at start (oneDNN compiles
        a kernel per length) so that its memory does not grow while requests bring the lengths in."""
        lengths, done, n = set(), 0, self.first_chunk_frames
        while True:
            lengths.add(n + min(self.left, done) + self.right)
            if n == self.max_chunk_frames and done >= self.left:
                break
            done, n = done + n, min(2 * n, self.max_chunk_frames)
        # the last window: under a full chunk plus its lookahead pending, the left context, rounded up
        step = self.window_step
        longest_last = -(-(self.left + self.max_chunk_frames + self.right - 1) // step) * step
        lengths.update(range(step, longest_last + 1, step))
        return sorted(lengths)

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
        """Vocode the next n pending frames with up to `left` frames of history and `right` after them."""
        stop = self.history + n if final else self.history + n + self.right
        start = self.history - min(self.left, self.history)
        if final:  # the one window whose length varies: round it up (see the module's docstring)
            length = -(-(stop - start) // self.window_step) * self.window_step
            start = max(0, stop - length)
        window = self.frames[None, :, start:stop]
        wav = self.run(window)[0, 0]
        offset = self.history - start
        audio = wav[offset * self.hop : (offset + n) * self.hop]
        keep = min(self.reserve, self.history + n)  # frames of history later windows may need
        self.frames = self.frames[:, self.history + n - keep :]
        self.history = keep
        return audio


def _join(pieces, like):
    if not pieces:
        return torch.zeros(0, dtype=like.dtype, device=like.device)
    return torch.cat(pieces)
