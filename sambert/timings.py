"""When each unit, character, word and sentence is spoken, from the acoustic model's durations.

The acoustic model gives every linguistic unit a whole number of mel frames; a frame lasts
hop / sample_rate seconds, so the timings are exact positions in the synthesized audio. Subtitles
(SRT) are built from the word timings, one cue per sentence or per `max_chars` characters.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    text: str  # the unit symbol (units) or the source characters (chars, words, sentences)
    start: float  # seconds from the start of the audio
    end: float


def unit_spans(units, durations, offset, frame_seconds):
    """Per unit: Span(symbol, start, end); breaks (#1..#4) have spans too, often 0 frames long."""
    spans, t = [], offset
    for unit, frames in zip(units, durations):
        end = t + int(frames) * frame_seconds
        spans.append(Span(unit.strip("{}").split("$")[0], t, end))
        t = end
    return spans


def word_spans(units, unit_chars, unit_timings, text):
    """Units grouped into the words of `text` (KAN-TTS word_segment flags say where words begin)."""
    words = []
    last_char = None
    for unit, char, span in zip(units, unit_chars, unit_timings):
        if char < 0:
            last_char = None
            continue
        flag = unit.strip("{}").split("$")[3]
        new_char = char != last_char
        if new_char and (not words or flag in ("word_begin", "word_both") or last_char is None):
            words.append([char, char, span.start, span.end])
        else:
            word = words[-1]
            word[1], word[3] = max(word[1], char), span.end
        last_char = char
    return [Span(text[first : last + 1], start, end) for first, last, start, end in words]


def to_srt(sentences, words_by_sentence, max_chars=20):
    """SRT text: one cue per sentence, split at word boundaries into cues of at most `max_chars`."""
    cues = []
    for sentence, words in zip(sentences, words_by_sentence):
        if not words:
            continue
        group = []
        for word in words:
            if group and sum(len(w.text) for w in group) + len(word.text) > max_chars:
                cues.append(group)
                group = []
            group.append(word)
        cues.append(group)
    lines = []
    for i, group in enumerate(cues, 1):
        text = "".join(w.text for w in group)
        lines += [str(i), f"{_srt_time(group[0].start)} --> {_srt_time(group[-1].end)}", text, ""]
    return "\n".join(lines)


def _srt_time(seconds):
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"
