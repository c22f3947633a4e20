"""Reading modes a request chooses (the API's `normalization` field, the CLI's --numbers, --english).

    numbers: "auto"     as the normalisation rules read them in context (default): years and phone
                        numbers digit by digit, amounts as numbers, times, dates, scores ...
             "digits"   every number digit by digit: 2024 -> 二零二四, 3.5 -> 三点五
             "cardinal" every number as an amount: 2024 -> 二千零二十四, 3.5 -> 三点五

    english: "auto"     Latin words as English words on a voice with English phones (the official
                        ModelScope zh-cn voices), else spelled with Chinese letter names (default)
             "words"    as English words (english.py: the CMU dictionary; capitals and words it
                        lacks are spelled with English letter names); refused on a voice without
             "letters"  every Latin word spelled, letter by letter, with the Chinese letter names

The numbers mode rewrites the numbers before the normalisation rules see the text (and after inline pinyin is
taken out, so the tone digits of `长(zhang3)` are never read).
"""

import re

from .normalize import read_digits, read_number

CHOICES = {"numbers": ("auto", "digits", "cardinal"), "english": ("auto", "words", "letters")}
DEFAULTS = {name: values[0] for name, values in CHOICES.items()}
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


class ModeError(ValueError):
    """An unknown mode or value."""


def check(modes):
    """{"numbers": "digits"} -> every mode with its value (defaults for the rest); ModeError if unknown."""
    if modes is None:
        return dict(DEFAULTS)
    if not isinstance(modes, dict):
        raise ModeError(f"normalization must be an object such as {{\"numbers\": \"digits\"}}, got {modes!r}")
    for name, value in modes.items():
        if name not in CHOICES:
            raise ModeError(f"unknown normalization mode {name!r}; valid: {', '.join(CHOICES)}")
        if value not in CHOICES[name]:
            raise ModeError(f"normalization {name} must be one of {', '.join(CHOICES[name])}, got {value!r}")
    return {**DEFAULTS, **modes}


def apply(text, modes):
    """The text with its numbers written out as `modes` say ("auto": unchanged)."""
    numbers = check(modes)["numbers"]
    if numbers == "digits":
        return _NUMBER.sub(lambda m: "点".join(read_digits(part) for part in m.group().split(".")), text)
    if numbers == "cardinal":
        return _NUMBER.sub(lambda m: read_number(m.group(), m.string[m.end():m.end() + 4]), text)
    return text


def english_words(modes, english_phones):
    """Are Latin words read as English words, for a voice with (or without) English phones?"""
    english = check(modes)["english"]
    if english == "words" and not english_phones:
        raise ModeError("normalization english 'words' needs a voice with English phones (the official "
                        "ModelScope zh-cn voices); this voice has none: use auto or letters")
    return english == "words" or (english == "auto" and english_phones)
