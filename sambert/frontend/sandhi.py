"""Tone sandhi: lexical tones -> the tones a speaker actually says.

The units carry spoken tones: the KAN-TTS training scripts read DataBaker-style labels, which are
transcribed as spoken (你好 ni2 hao3, 一个 yi2 ge4), so the acoustic model learned spoken tones.
Three rules: 不 before a 4th tone -> bu2; 一 -> yi2 before a 4th tone and yi4 before others, except
where it is a number (第一, 十一, 一九九八, 一月); 3rd + 3rd -> 2nd + 3rd inside a prosodic word.
"""

DIGIT_CHARS = set("零〇一二三四五六七八九")
_BIG_UNITS = set("百千万亿")


def _tone(syllable):
    return syllable[-1]


def _yi_is_number(chars, k, next_level):
    """Is the 一 at flat position k read as the number (yi1, no sandhi)?"""
    prev = chars[k - 1] if k > 0 else ""
    nxt = chars[k + 1] if k + 1 < len(chars) and next_level < 3 else ""
    after = chars[k + 2] if k + 2 < len(chars) else ""
    if not nxt or prev == "第" or nxt in DIGIT_CHARS or nxt == "月":
        return True
    if nxt == "点" and after in DIGIT_CHARS:
        return True
    if (prev in DIGIT_CHARS or prev == "十") and nxt not in _BIG_UNITS:
        return True
    return nxt in "号日" and prev == "月"


def apply(words, levels):
    """Spoken syllables for each spoken word. `levels`: break level after each word."""
    spoken = [list(w.syllables) for w in words]
    flat = [(wi, si) for wi, w in enumerate(words) for si in range(len(w.syllables))]
    chars = [words[wi].text[si] if words[wi].kind == "han" else "" for wi, si in flat]
    # the break level between flat position k and k+1
    gap = [levels[wi] if si == len(words[wi].syllables) - 1 else 0 for wi, si in flat]

    for k, (wi, si) in enumerate(flat):
        syllable = spoken[wi][si]
        if k + 1 >= len(flat) or gap[k] >= 3:
            continue
        next_tone = _tone(words[flat[k + 1][0]].syllables[flat[k + 1][1]])
        if chars[k] == "不" and syllable == "bu4" and next_tone == "4":
            spoken[wi][si] = "bu2"
        elif chars[k] == "一" and syllable == "yi1":
            word = words[wi]
            word_final = si == len(word.syllables) - 1 and len(word.syllables) > 1
            if not word_final and not _yi_is_number(chars, k, gap[k]):
                spoken[wi][si] = "yi2" if next_tone in "45" else "yi4"

    # 3-3: inside each word, a run of 3rd tones keeps only its last; then across word edges inside a
    # prosodic word (no break between the words), right to left so 我很好 -> wo3 hen2 hao3
    for syllables in spoken:
        for i in range(len(syllables) - 1):
            if _tone(syllables[i]) == "3" and _tone(syllables[i + 1]) == "3":
                syllables[i] = syllables[i][:-1] + "2"
    for wi in range(len(words) - 2, -1, -1):
        if levels[wi] == 0 and spoken[wi] and spoken[wi + 1]:
            if _tone(spoken[wi][-1]) == "3" and _tone(spoken[wi + 1][0]) == "3":
                spoken[wi][-1] = spoken[wi][-1][:-1] + "2"
    return spoken
