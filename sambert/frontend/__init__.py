"""Chinese text frontend: text -> KAN-TTS linguistic units (our replacement for ttsfrd).

    normalize(text)        numbers, symbols, dates... spelled out in Chinese characters
    g2p(text)              one lexical pinyin syllable per character (TONE3, neutral tone 5)
    Frontend().sentences(text) -> [Sentence]: per sentence the unit strings a SAM-BERT voice reads,
                           the source character of every unit (for subtitles) and the spoken pinyin.
"""

from dataclasses import dataclass, field

from . import g2p as _g2p
from . import polyphone, prosody, sandhi
from .normalize import normalize as _normalize
from .units import PinyinError, break_unit, word_units

MAX_TEXT_CHARS = 1_000_000


class FrontendError(ValueError):
    """Text the frontend refuses: not a string, nothing readable in it, or far too long."""


@dataclass
class Sentence:
    text: str  # the normalised sentence
    units: list = field(default_factory=list)  # "{sy$tone$syllable_flag$word_segment$emotion$speaker}"
    unit_chars: list = field(default_factory=list)  # per unit: index into `text`, -1 for breaks
    pinyin: list = field(default_factory=list)  # syllables as spoken (sandhi, erhua merged)


def _check(text):
    if not isinstance(text, str):
        raise FrontendError(f"text must be a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise FrontendError(f"text has {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    return text


def normalize(text):
    """Text -> normalised text (Chinese characters, Latin letters, Chinese punctuation)."""
    return _normalize(_check(text))


def g2p(text):
    """Text -> lexical pinyin, one syllable per Chinese character; letters spelled as they are read."""
    return _g2p.g2p(normalize(text))


def _merge_erhua(words, spoken):
    """Fold each erhua 儿 into the syllable before it: hua1 + er5 -> huar1 (one syllable, one char)."""
    merged = []
    last = None  # (word index, syllable index) of the last syllable kept
    for wi, word in enumerate(words):
        syllables, chars = [], []
        for si, syllable in enumerate(spoken[wi]):
            if word.erhua[si] and last is not None:
                lw, ls = last
                target = merged[lw][0] if lw != wi else syllables
                target[ls] = target[ls][:-1].rstrip("r") + "r" + target[ls][-1]
                continue
            syllables.append(syllable)
            chars.append(word.chars[si])
            last = (wi, len(syllables) - 1)
        merged.append((syllables, chars))
    return merged


class Frontend:
    """Text -> [Sentence]. Stateless apart from the lazily loaded segmenter and polyphone model; safe to share."""

    max_sentence_chars = prosody.MAX_SENTENCE_CHARS

    def sentences(self, text):
        normalised = normalize(text)
        pieces = prosody.split_sentences(normalised, self.max_sentence_chars, segment=_g2p.segment)
        # the polyphone model reads the whole text in one batched pass; each sentence gets its share
        readings = polyphone.model().read(normalised)
        out, offset = [], 0
        for piece in pieces:
            offset = normalised.index(piece, offset)
            own = {k - offset: v for k in range(offset, offset + len(piece)) if (v := readings.get(k))}
            out.append(self._sentence(piece, own))
            offset += len(piece)
        out = [s for s in out if s.units]
        if not out:
            raise FrontendError(f"nothing to read in the text (after normalisation: {normalised!r:.80})")
        return out

    def _sentence(self, text, readings):
        words = _g2p.analyze(text, readings)
        levels = prosody.breaks(words)
        spoken_words = [(w, lv) for w, lv in zip(words, levels) if w.kind != "punct" and w.syllables]
        if not spoken_words:
            return Sentence(text)
        words = [w for w, _ in spoken_words]
        levels = [lv for _, lv in spoken_words]
        levels[-1] = 4
        spoken = sandhi.apply(words, levels)
        sentence = Sentence(text)
        for (syllables, chars), level in zip(_merge_erhua(words, spoken), levels):
            try:
                pairs = word_units(syllables, chars)  # empty for a 儿 folded into the word before
            except PinyinError as err:
                raise FrontendError(f"{err} (in sentence {text!r:.80})") from err
            sentence.units += [u for u, _ in pairs]
            sentence.unit_chars += [c for _, c in pairs]
            sentence.pinyin += syllables
            if level:
                sentence.units.append(break_unit(level))
                sentence.unit_chars.append(-1)
        return sentence


__all__ = ["Frontend", "FrontendError", "Sentence", "g2p", "normalize"]
