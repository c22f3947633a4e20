"""Prosody: sentence splitting and break levels between words.

Break levels follow the KAN-TTS / DataBaker convention: #1 after a prosodic word (a short group of
lexical words said in one breath, e.g. 我们的 or 在家), #2 after a prosodic phrase, #3 at a pause
(comma-like punctuation), #4 at the end of the sentence. Without a trained predictor we group
words with rules: particles lean on the word before, monosyllables join a neighbour, and a long
stretch without punctuation gets a #2 before a preposition or conjunction.
"""

import math
import re

MAX_SENTENCE_CHARS = 60
_TERMINAL = "。！？"
_PAUSES = "，、；：…"

PARTICLES = set("的地得了着过们吗呢吧啊呀嘛么啦哦哇儿")
_PHRASE_STARTERS = ("p", "c")  # prepositions and conjunctions open a new phrase
_PHRASE_MIN, _PHRASE_MAX = 7, 10  # syllables in a phrase before a #2 is allowed / forced
_GROUP_MAX = 4  # syllables in a prosodic word


def split_sentences(text, max_chars=MAX_SENTENCE_CHARS, segment=None):
    """Normalised text -> sentences of at most `max_chars` characters.

    Sentences end at 。！？; a longer one is cut at pauses (，；：…), and a clause that is still too
    long is cut at word boundaries (`segment(text) -> [Word]`), into pieces of similar length.
    """
    pieces = []
    for sentence in re.findall(f"[^{_TERMINAL}]+[{_TERMINAL}]*|[{_TERMINAL}]+", text):
        if len(sentence) <= max_chars:
            pieces.append(sentence)
            continue
        current = ""
        for clause in re.findall(f"[^{_PAUSES}]+[{_PAUSES}]*|[{_PAUSES}]+", sentence):
            if len(current) + len(clause) > max_chars and current:
                pieces.append(current)
                current = ""
            if len(clause) > max_chars:
                pieces += _split_at_words(clause, max_chars, segment)
            else:
                current += clause
        if current:
            pieces.append(current)
    return [p for p in pieces if p.strip(_TERMINAL + _PAUSES + " ")]


def _split_at_words(clause, max_chars, segment):
    n = math.ceil(len(clause) / max_chars)
    target = len(clause) / n
    cuts, next_cut = [], target
    for word in segment(clause)[1:]:
        if word.start >= next_cut or word.start + len(word.text) > next_cut + target * 0.3:
            if word.start - (cuts[-1] if cuts else 0) > 0:
                cuts.append(word.start)
            next_cut = word.start + target
    bounds = [0] + cuts + [len(clause)]
    out = []
    for a, b in zip(bounds, bounds[1:]):
        piece = clause[a:b]
        while len(piece) > max_chars:  # a single enormous "word" (a long letter run): hard cut
            out.append(piece[:max_chars])
            piece = piece[max_chars:]
        out.append(piece)
    return out


def _lean(word):
    """Which neighbour a one-syllable word leans on: particles, localisers and measure words lean
    left (我们的, 公园里, 三个); adverbs, prepositions, pronouns, conjunctions and numerals lean right
    (很温柔, 在家, 我想)."""
    if word.kind != "han" or len(word.syllables) != 1:
        return None
    if word.text in PARTICLES or word.pos.startswith(("u", "y", "f", "e", "q")):
        return "left"
    if word.pos.startswith(("d", "p", "r", "c", "m")):
        return "right"
    return None


def breaks(words):
    """[Word] (with punctuation words) -> break level after each word (0 none, 1..4).

    Punctuation words get 0; their level moves to the spoken word before them.
    The last spoken word always gets #4: each sentence is synthesised as one utterance.
    """
    levels = [0] * len(words)
    spoken = [i for i, w in enumerate(words) if w.kind != "punct"]
    if not spoken:
        return levels
    # pauses at punctuation
    for i, word in enumerate(words):
        if word.kind == "punct":
            before = [j for j in spoken if j < i]
            if before:
                level = 4 if word.text in _TERMINAL else 3
                levels[before[-1]] = max(levels[before[-1]], level)
    # prosodic words and phrases inside each stretch between pauses
    group_len, phrase_len = 0, 0
    for n, i in enumerate(spoken):
        word = words[i]
        prev = words[spoken[n - 1]] if n else None
        if prev is None or levels[spoken[n - 1]] >= 3:
            group_len = phrase_len = len(word.syllables)
            continue
        size = len(word.syllables)
        same_script = word.kind == prev.kind == "han"
        lean, prev_lean = _lean(word), _lean(prev)
        joins = same_script and (
            lean == "left"
            or (group_len + size <= _GROUP_MAX and lean != "right" and (
                prev_lean == "right"
                or (size == 1 and lean is None and group_len <= 2)
                or (group_len == 1 and prev_lean is None and size <= 2)
            ))
        )
        if joins:
            group_len += size
            phrase_len += size
            continue
        starts_phrase = phrase_len >= _PHRASE_MAX or (
            phrase_len >= _PHRASE_MIN and word.pos.startswith(_PHRASE_STARTERS)
        )
        levels[spoken[n - 1]] = 2 if starts_phrase else 1
        phrase_len = size if starts_phrase else phrase_len + size
        group_len = size
    levels[spoken[-1]] = 4
    return levels
