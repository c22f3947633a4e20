"""Pinyin -> KAN-TTS phones and unit strings.

A syllable becomes an initial and a final, each with the `_c` suffix: zh_c ih_c for zhi, s_c ii_c
for si, xx_c for x, v for ü (ju -> j_c v_c), ui/un/iu spelled out as uei/uen/iou. y and w count as
initials (yan -> y_c an_c, wu -> w_c u_c); a syllable with no initial starts with the zero initial
ga / ge / go after its first vowel (an -> ga an_c, er -> ge er_c, ou -> go ou_c). Erhua adds r to the
final (huar -> h_c uar_c). This follows the KAN-TTS PinYin phone set; the table is derived here, not copied.

An English syllable (english.py: ARPAbet in capitals, "TH AA0 N") becomes its phones in lower case
without a suffix, with one tone for the syllable as KAN-TTS's training scripts write English: tone1
where the vowel has primary stress, tone0 otherwise (they fold secondary stress into 0).
"""

import functools

from .inventory import BREAKS, PHONES

_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x",
             "r", "z", "c", "s", "y", "w")
_ZERO_INITIAL = {"a": "ga", "e": "ge", "o": "go"}
# Syllabic nasals and interjections outside the regular table, read as their nearest syllable.
_SPECIAL = {"n": "en", "ng": "eng", "m": "en", "hm": "hen", "hng": "heng", "ê": "e"}
_PHONE_SET = set(PHONES)


class PinyinError(ValueError):
    """A syllable our phone table cannot express."""


def split_syllable(syllable):
    """'zhuang4' -> ('zh', 'uang', '4'), 'er2' -> ('', 'er', '2'), 'huar1' -> ('h', 'uar', '1')."""
    tone = syllable[-1] if syllable[-1].isdigit() else "5"
    base = syllable.rstrip("012345").replace("ü", "v")
    base = _SPECIAL.get(base, base)
    for initial in _INITIALS:
        if base.startswith(initial) and len(base) > len(initial):
            return initial, base[len(initial):], tone
    return "", base, tone


def _final(initial, final):
    erhua = final.endswith("r") and final != "er"
    if erhua:
        final = final[:-1]
    if initial in ("j", "q", "x", "y") and final.startswith("u"):
        final = "v" + final[1:]
    elif initial in ("zh", "ch", "sh", "r") and final == "i":
        final = "ih"
    elif initial in ("z", "c", "s") and final == "i":
        final = "ii"
    elif initial and initial not in ("y", "w"):
        final = {"ui": "uei", "un": "uen", "iu": "iou"}.get(final, final)
    if erhua and final + "r_c" in _PHONE_SET:  # finals without an erhua phone stay plain
        final += "r"
    return final


def syllable_phones(syllable):
    """'hao3' -> (['h_c', 'ao_c'], 'tone3'), 'TH AA0 N' -> (['th', 'aa', 'n'], 'tone0'); raises
    PinyinError for a syllable it cannot express."""
    phones, tone = _phones(syllable)
    return list(phones), tone


@functools.lru_cache(maxsize=4096)  # Mandarin has about 1,300 toned syllables (more with erhua)
def _phones(syllable):
    if syllable[:1].isupper():
        phones = tuple(p.rstrip("012").lower() for p in syllable.split())
        unknown = [p for p in phones if p not in _PHONE_SET]
        if unknown:
            raise PinyinError(f"English syllable {syllable!r} has {unknown[0]!r}, which is not a KAN-TTS phone")
        return phones, "tone1" if any(p.endswith("1") for p in syllable.split()) else "tone0"
    initial, final, tone = split_syllable(syllable)
    if not final:
        raise PinyinError(f"cannot read pinyin syllable {syllable!r}")
    if initial:
        phones = [("xx" if initial == "x" else initial) + "_c"]  # KAN-TTS names x "xx"
    else:
        phones = [_ZERO_INITIAL.get(final[0], "ge")]
    phones.append(_final(initial, final) + "_c")
    for phone in phones:
        if phone not in _PHONE_SET:
            raise PinyinError(f"pinyin syllable {syllable!r} maps to {phone!r}, which is not a KAN-TTS phone")
    return tuple(phones), "tone" + tone


def unit(phone, tone, syllable_flag, word_flag, emotion="emotion_neutral", speaker="F7"):
    return f"{{{phone}${tone}${syllable_flag}${word_flag}${emotion}${speaker}}}"


def break_unit(level):
    symbol = f"#{level}"
    assert symbol in BREAKS
    return unit(symbol, "tone_none", "s_none", "word_none")


def _position(i, n, single):
    if n == 1:
        return single
    return "begin" if i == 0 else "end" if i == n - 1 else "middle"


def word_units(syllables, chars):
    """Units of one word: [(unit, char index)] with syllable and word position flags."""
    phones = []
    for syllable, char in zip(syllables, chars):
        ph, tone = _phones(syllable)
        phones += [(p, tone, "s_" + _position(i, len(ph), "both"), char) for i, p in enumerate(ph)]
    return [
        (unit(p, tone, flag, "word_" + _position(i, len(phones), "both")), char)
        for i, (p, tone, flag, char) in enumerate(phones)
    ]
