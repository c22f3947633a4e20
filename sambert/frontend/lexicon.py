"""User lexicons: words the user wants read a certain way, `word<TAB>pin1 yin1` (or a space for the tab: a
word is Chinese characters only, so its first whitespace ends it; the page's lexicon box, where Tab moves
the focus, needs that) with one toned syllable per character, TONE3 digits, 5 for the neutral tone.

A lexicon word is kept whole by the segmenter and its reading wins over the dictionary, the polyphone
model and our rules; its syllables are lexical, so tone sandhi still applies (一 yi1 in a word is said
as the sentence requires). A server-wide lexicon file (`LexiconFile`) is read again when it changes.
"""

import logging
import os
import re
import threading

from .units import PinyinError, syllable_phones

log = logging.getLogger(__name__)

HAN_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\u3007]+")
# one toned ASCII syllable: letters (v or ü for ü) and a tone digit 1-5
SYLLABLE = re.compile(r"[a-zü]+[1-5]")
ENV = "SAMBERT_LEXICON"


class LexiconError(ValueError):
    """A lexicon entry that cannot be used: not Chinese characters, or pinyin of the wrong count or form."""


def syllables_of(word, pinyin):
    """'银行', 'yin2 hang2' -> ['yin2', 'hang2'], or None when the pinyin is not toned pinyin, one
    syllable per character, that our phone table can express."""
    syllables = pinyin.lower().split()
    if len(syllables) != len(word) or not all(SYLLABLE.fullmatch(s) for s in syllables):
        return None
    try:
        for syllable in syllables:
            syllable_phones(syllable)
    except PinyinError:
        return None
    return syllables


def check_entry(word, pinyin):
    """One entry -> its syllables; LexiconError saying what is wrong with it."""
    if not isinstance(word, str) or not HAN_WORD.fullmatch(word):
        raise LexiconError(f"lexicon word {word!r} must be Chinese characters only")
    if not isinstance(pinyin, str):
        raise LexiconError(f"lexicon reading of {word!r} must be a string of pinyin, got {type(pinyin).__name__}")
    syllables = syllables_of(word, pinyin)
    if syllables is None:
        raise LexiconError(f"lexicon reading {pinyin!r} of {word!r} must be {len(word)} toned pinyin "
                           f"syllable(s) such as 'yin2 hang2' (tone digits 1-5)")
    return syllables


class Lexicon:
    """{word: [syllables]}; `find(text)` gives the longest matches, left to right."""

    def __init__(self, entries=None):
        self.entries = dict(entries or {})
        self.longest = max(map(len, self.entries), default=0)

    @classmethod
    def from_mapping(cls, mapping):
        """{"word": "pin1 yin1"} (an API request's `lexicon` field)."""
        if not isinstance(mapping, dict):
            raise LexiconError(f"lexicon must be an object of word: pinyin, got {type(mapping).__name__}")
        return cls({word: check_entry(word, pinyin) for word, pinyin in mapping.items()})

    @classmethod
    def from_text(cls, text, name="lexicon"):
        """`word<TAB>pinyin` (or `word pinyin`) lines; blank lines and lines starting with # are skipped.
        Every bad line is reported, with its line number, in one LexiconError."""
        entries, problems = {}, []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            word, *pinyin = line.strip().split(None, 1)
            try:
                if not pinyin:
                    raise LexiconError("expected word<TAB>pinyin (a space for the tab works too)")
                entries[word] = check_entry(word, pinyin[0])
            except LexiconError as err:
                problems.append(f"{name}:{number}: {err}")
        if problems:
            raise LexiconError("; ".join(problems))
        return cls(entries)

    @classmethod
    def from_file(cls, path):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as err:
            raise LexiconError(f"cannot read lexicon {path}: {err}") from None
        return cls.from_text(text, str(path))

    def __bool__(self):
        return bool(self.entries)

    def __or__(self, other):
        """Both lexicons; `other`'s entries win."""
        return Lexicon({**self.entries, **other.entries})

    def find(self, text):
        """[(offset, word, syllables)]: the longest lexicon word at each place, left to right, not overlapping."""
        found, i = [], 0
        while self.longest and i < len(text):
            for size in range(min(self.longest, len(text) - i), 0, -1):
                word = text[i:i + size]
                if word in self.entries:
                    found.append((i, word, self.entries[word]))
                    i += size
                    break
            else:
                i += 1
        return found


class LexiconFile:
    """A lexicon file read again when its modification time or size changes (checked at each use).
    A bad edit is logged and the last good version stays in use; a bad file at start-up raises."""

    def __init__(self, path):
        self.path = str(path)
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._lexicon = Lexicon.from_file(self.path)

    def _stat(self):
        try:
            st = os.stat(self.path)
        except OSError as err:
            raise LexiconError(f"cannot read lexicon {self.path}: {err}") from None
        return st.st_mtime_ns, st.st_size

    def current(self):
        with self._lock:
            try:
                stamp = self._stat()
                if stamp != self._stamp:
                    self._stamp = stamp
                    self._lexicon = Lexicon.from_file(self.path)
                    log.info("lexicon %s reloaded: %d words", self.path, len(self._lexicon.entries))
            except LexiconError as err:
                log.error("lexicon %s not reloaded, the last good version stays in use: %s", self.path, err)
            return self._lexicon


def server_lexicon(path=None):
    """The server-wide lexicon: `path`, else $SAMBERT_LEXICON, else None."""
    path = path or os.environ.get(ENV)
    return LexiconFile(path) if path else None
