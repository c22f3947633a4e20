"""Chinese text frontend: text -> KAN-TTS linguistic units (our replacement for ttsfrd).

    normalize(text)        numbers, symbols, dates... spelled out in Chinese characters
    g2p(text)              one lexical pinyin syllable per character (TONE3, neutral tone 5)
    Frontend().sentences(text, lexicon, normalization) -> [Sentence]: per sentence the unit strings a
                           SAM-BERT voice reads, the source character of every unit (for subtitles), the
                           spoken pinyin and per character its reading and where it came from.

The user fixes readings with inline pinyin (inline.py), SSML (ssml.py), lexicons (lexicon.py) and
reading modes (modes.py); see README "Fixing a pronunciation". English words are read with ARPAbet
phones for a voice that has them (english.py).
"""

from dataclasses import dataclass, field

from . import g2p as _g2p
from . import english, inline, modes, polyphone, prosody, sandhi, ssml
from .lexicon import HAN_WORD as HAN
from .lexicon import Lexicon, LexiconError, LexiconFile
from .normalize import normalize as _normalize
from .ssml import SsmlError
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
    # per read character: {"index", "char", "pinyin" (lexical), "spoken" ("" for an erhua 儿), "source"}
    readings: list = field(default_factory=list)


# where a reading comes from ("model", "lexicon", "inline", "ssml"; for Latin words "dictionary", English
# from the CMU dictionary, or "letters", spelled); these are said exactly as written (no sandhi)
EXACT_SOURCES = ("inline", "ssml")


def _check(text):
    if not isinstance(text, str):
        raise FrontendError(f"text must be a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise FrontendError(f"text has {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    return text


def read_speech(text):
    """SSML (text starting with `<speak>`) -> (the plain text it reads, the controls its <prosody> sets:
    {"speed": factor, "pitch": shift, "volume": factor}; ssml.py); other text -> (text, {}). Raises
    SsmlError for SSML we cannot read."""
    return ssml.read(text) if ssml.is_ssml(text) else (text, {})


def read_markup(text):
    """The plain text that `text` (SSML or not) reads."""
    return read_speech(text)[0]


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
    """Text -> [Sentence]. Stateless apart from the lazily loaded segmenter and polyphone models and the
    server-wide `lexicon` (a Lexicon or a LexiconFile, or None); safe to share."""

    max_sentence_chars = prosody.MAX_SENTENCE_CHARS

    def __init__(self, lexicon=None):
        self.lexicon = lexicon

    def user_lexicon(self, lexicon=None):
        """The server-wide lexicon with a request's `lexicon` (a Lexicon or {word: pinyin}) on top."""
        server = self.lexicon.current() if isinstance(self.lexicon, LexiconFile) else self.lexicon or Lexicon()
        if lexicon is None:
            return server
        return server | (lexicon if isinstance(lexicon, Lexicon) else Lexicon.from_mapping(lexicon))

    def sentences(self, text, lexicon=None, normalization=None, english_phones=False):
        """`lexicon`: this request's words (a Lexicon or {word: pinyin}), over the server-wide ones.
        Inline pinyin (`长(zhang3)大`) and SSML (text starting with `<speak>`) win over both.
        `normalization`: reading modes, {"numbers": "auto|digits|cardinal", "english": "auto|words|letters"}
        (modes.py). `english_phones`: whether the voice read has English phones (its Inventory says)."""
        words = self.user_lexicon(lexicon)
        reading_modes = modes.check(normalization)
        as_words = modes.english_words(reading_modes, english_phones)
        stripped, marks = inline.extract(read_markup(_check(text)))

        def read(part):
            return normalize(modes.apply(part, reading_modes))

        normalised = read(stripped)
        # lexicon words are kept whole by the segmenter; inline pinyin changes readings only
        found = words.find(normalised)
        spans = [(at, at + len(word)) for at, word, _ in found]
        overrides = {at + i: (s, "lexicon") for at, _, syllables in found for i, s in enumerate(syllables)}
        for at, syllables, source in inline.locate(stripped, normalised, marks, read):
            overrides.update({at + i: (s, source) for i, s in enumerate(syllables)})
        pieces = prosody.split_sentences(normalised, self.max_sentence_chars, segment=_g2p.segment)
        # the polyphone models read the whole text in one batched pass; each sentence gets its share
        readings = polyphone.read(normalised)
        out, offset = [], 0
        for piece in pieces:
            offset = normalised.index(piece, offset)
            end = offset + len(piece)
            own = {k - offset: v for k in range(offset, end) if (v := readings.get(k))}
            fixed = {k - offset: v for k, v in overrides.items() if offset <= k < end}
            whole = [(a - offset, b - offset) for a, b in spans if offset <= a and b <= end]
            out.append(self._sentence(piece, own, fixed, whole, as_words))
            offset = end
        out = [s for s in out if s.units]
        if not out:
            raise FrontendError(f"nothing to read in the text (after normalisation: {normalised!r:.80})")
        return out

    def _sentence(self, text, readings, overrides=None, whole=(), english_words=False):
        words = _g2p.analyze(text, readings, overrides, whole)
        for word in words:
            if word.kind == "latin":
                (english.read_word if english_words else english.mark_letters)(word)
        levels = prosody.breaks(words)
        spoken_words = [(w, lv) for w, lv in zip(words, levels) if w.kind != "punct" and w.syllables]
        if not spoken_words:
            return Sentence(text)
        words = [w for w, _ in spoken_words]
        levels = [lv for _, lv in spoken_words]
        levels[-1] = 4
        spoken = sandhi.apply(words, levels)
        for word, said in zip(words, spoken):
            for i, source in enumerate(word.sources):
                if source in EXACT_SOURCES:
                    said[i] = word.syllables[i]
        sentence = Sentence(text)
        sentence.readings = _readings(text, words, spoken)
        for word, (syllables, chars), level in zip(words, _merge_erhua(words, spoken), levels):
            try:
                pairs = word_units(syllables, chars)  # empty for a 儿 folded into the word before
            except PinyinError as err:
                raise FrontendError(f"{err} (in sentence {text!r:.80})") from err
            if word.kind == "latin" and english_words:
                pairs = english.spread(word, pairs)
            sentence.units += [u for u, _ in pairs]
            sentence.unit_chars += [c for _, c in pairs]
            sentence.pinyin += syllables
            if level:
                sentence.units.append(break_unit(level))
                sentence.unit_chars.append(-1)
        return sentence


def annotated(sentence):
    """The sentence with each Chinese character followed by the syllable said, in the inline syntax
    (`他(ta1)长(chang2)大(da4)了(le5)。`): pasted back as text it is read the same way, and any syllable
    in it can be corrected there."""
    said = {r["index"]: r["spoken"] for r in sentence.readings if HAN.fullmatch(r["char"])}
    # an erhua 儿 has no syllable of its own (said with the one before); punctuation and letters none
    return "".join(f"{c}({said[i]})" if said.get(i) else c for i, c in enumerate(sentence.text))


def _readings(text, words, spoken):
    """Per character read: its lexical and spoken syllables and where the reading came from (a Latin
    letter spelled in several syllables gets them all, joined by spaces). An English word read from
    the dictionary is one entry: "char" is the whole word, "pinyin" its ARPAbet syllables."""
    out = {}
    for word, said in zip(words, spoken):
        for i, char in enumerate(word.chars):
            key = char
            if word.sources[i] == "dictionary":  # a syllable's char is the last letter it covers
                key = key_before if i and word.sources[i - 1] == "dictionary" else (
                    word.chars[i - 1] + 1 if i else word.start)
            entry = out.setdefault(key, {"index": key, "char": "", "pinyin": [], "spoken": [],
                                         "source": word.sources[i]})
            entry["char"] = text[key:char + 1]
            entry["pinyin"].append(word.syllables[i])
            if not word.erhua[i]:
                entry["spoken"].append(said[i])
            key_before = key
    for entry in out.values():
        entry["pinyin"], entry["spoken"] = " ".join(entry["pinyin"]), " ".join(entry["spoken"])
    return list(out.values())


__all__ = ["Frontend", "FrontendError", "Lexicon", "LexiconError", "LexiconFile", "Sentence", "SsmlError", "annotated", "g2p",
           "normalize", "read_markup", "read_speech"]
