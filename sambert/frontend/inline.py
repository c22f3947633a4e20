"""Inline pinyin: `长(zhang3)大`, `银行(yin2 hang2)`.

Toned syllables in ASCII parentheses right after the Chinese characters they belong to, one per
character: the last N characters before the parenthesis take its N syllables, exactly as written (no
tone sandhi). A parenthesis whose content is not toned pinyin of the right count stays text.
SSML's <phoneme> is compiled to this form with the prefix `ssml:` (`长(ssml:zhang3)`), which marks
where the reading came from.
"""

import re

from .lexicon import syllables_of

_ANNOTATED = re.compile(
    r"([\u3400-\u4dbf\u4e00-\u9fff\u3007]+)\((ssml:)?\s*([a-zA-Zü]+[1-5](?:\s+[a-zA-Zü]+[1-5])*)\s*\)")


def extract(text):
    """Text -> (the text without the annotations, [(offset in that text, word, syllables, source)] in
    order; source "inline" or "ssml")."""
    marks, out, last = [], [], 0
    for match in _ANNOTATED.finditer(text):
        run, ssml, pinyin = match.groups()
        count = len(pinyin.split())
        word = run[-count:]
        syllables = syllables_of(word, pinyin) if count <= len(run) else None
        if syllables is None:
            continue  # stays text
        out.append(text[last:match.start()] + run)
        last = match.end()
        marks.append((sum(map(len, out)) - len(word), word, syllables, "ssml" if ssml else "inline"))
    out.append(text[last:])
    return "".join(out), marks


def locate(stripped, normalised, marks, normalize):
    """[(offset in `normalised`, syllables, source)] for each mark of `stripped` (the text `normalised` came from).

    Normalisation keeps Chinese characters (a traditional one becomes simplified), so a word that is the
    n-th of its kind in `stripped` is the n-th in `normalised`, counted in the normalised text before it
    (numbers read out add characters). The text between marks is normalised once each, so this costs
    one more normalisation of the text. A word not found again (a rule rewrote it) is dropped."""
    found, before, last = [], [], 0
    for offset, word, syllables, source in marks:
        before.append(normalize(stripped[last:offset]))  # the normalised text from the last mark to this one
        last = offset
        target = normalize(word)
        if len(target) != len(word):
            continue
        seen = sum(piece.count(target) for piece in before)
        places = [m.start() for m in re.finditer(re.escape(target), normalised)]
        if seen < len(places):
            found.append((places[seen], syllables, source))
    return found
