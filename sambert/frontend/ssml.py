"""An SSML subset: input that starts with `<speak>` is compiled to plain text the frontend reads.

    <phoneme alphabet="pinyin" ph="zhang3">长</phoneme>   the characters' syllables, exactly (as 长(zhang3))
    <say-as interpret-as="digits|cardinal|telephone|date|characters">2024</say-as>
    <sub alias="世界卫生组织">WHO</sub>                   the alias is read instead
    <break time="300ms"/>, <break strength="weak|medium|strong|..."/>

A break becomes the pause our prosody has for it: a comma pause (#3) up to 500 ms or strength
weak/medium, a sentence end (#4 and the pause between sentences) above, nothing for 0 ms, none or x-weak.
Anything else (an unknown tag or attribute value, malformed XML) raises SsmlError naming the line,
column and tag, before anything is synthesised.
"""

import re
from xml.parsers import expat

from .lexicon import syllables_of
from .normalize import normalize, read_digits, read_integer, read_number


class SsmlError(ValueError):
    """SSML we cannot read; the message says where (line, column) and which tag."""


SAY_AS = ("digits", "cardinal", "telephone", "date", "characters")
_STRENGTHS = {"none": "", "x-weak": "", "weak": "，", "medium": "，", "strong": "。", "x-strong": "。"}
_LONG_PAUSE_MS = 500


def is_ssml(text):
    return isinstance(text, str) and text.lstrip().startswith("<speak")


def _say_as(kind, text):
    """The content of <say-as> read out in Chinese characters."""
    content = text.strip()
    if kind == "characters":
        return "".join(read_digits(c) if c.isdigit() else c for c in content)
    if kind in ("digits", "telephone"):
        if not re.fullmatch(r"[\d\s-]+", content):
            raise ValueError(f"<say-as interpret-as=\"{kind}\"> holds digits only, got {content!r}")
        return read_digits(re.sub(r"\D", "", content), yao=kind == "telephone")
    if kind == "cardinal":
        if not re.fullmatch(r"[-−]?\d[\d,]*(\.\d+)?", content):
            raise ValueError(f"<say-as interpret-as=\"cardinal\"> holds a number, got {content!r}")
        return read_number(content) if "." in content or content[0] in "-−" else read_integer(content.replace(",", ""))
    return normalize(content)  # date: our date rules (2024-03-15, 2024年3月15日 ...)


def _break(attrs):
    if "time" in attrs:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*", attrs["time"])
        if not match:
            raise ValueError(f"<break time={attrs['time']!r}>: expected e.g. 300ms or 1.5s")
        ms = float(match.group(1)) * (1000 if match.group(2) == "s" else 1)
        return "" if ms == 0 else "，" if ms <= _LONG_PAUSE_MS else "。"
    strength = attrs.get("strength", "medium")
    if strength not in _STRENGTHS:
        raise ValueError(f"<break strength={strength!r}>: valid: {', '.join(_STRENGTHS)}")
    return _STRENGTHS[strength]


def to_text(document):
    """SSML -> the text it reads, with <phoneme> as `chars(ssml:pin1 yin1)`; raises SsmlError."""
    parser = expat.ParserCreate()
    out = []  # text pieces of the document
    stack = []  # open elements: (tag, attrs, index in `out` where their content starts)

    def where(tag):
        return f"SSML error at line {parser.CurrentLineNumber}, column {parser.CurrentColumnNumber + 1} (<{tag}>)"

    def start(tag, attrs):
        if not stack and tag != "speak":
            raise SsmlError(f"{where(tag)}: the document must be one <speak> element")
        if tag == "speak" and stack:
            raise SsmlError(f"{where(tag)}: <speak> inside <speak>")
        if tag not in ("speak", "phoneme", "say-as", "sub", "break"):
            raise SsmlError(f"{where(tag)}: unknown or unsupported tag; supported: speak, phoneme, say-as, sub, break")
        if any(t in ("phoneme", "say-as", "sub") for t, *_ in stack) and tag != "break":
            raise SsmlError(f"{where(tag)}: <{tag}> inside <{stack[-1][0]}>")
        try:
            if tag == "phoneme" and attrs.get("alphabet", "pinyin") != "pinyin":
                raise ValueError(f"alphabet {attrs['alphabet']!r}: only pinyin is supported")
            if tag == "phoneme" and "ph" not in attrs:
                raise ValueError("needs ph=\"...\" (toned pinyin, one syllable per character)")
            if tag == "say-as" and attrs.get("interpret-as") not in SAY_AS:
                raise ValueError(f"interpret-as={attrs.get('interpret-as')!r}; valid: {', '.join(SAY_AS)}")
            if tag == "sub" and "alias" not in attrs:
                raise ValueError("needs alias=\"...\"")
            if tag == "break":
                out.append(_break(attrs))
        except ValueError as err:
            raise SsmlError(f"{where(tag)}: {err}") from None
        stack.append((tag, attrs, len(out), where(tag)))

    def end(tag):
        _, attrs, first, opened = stack.pop()
        content = "".join(out[first:])
        del out[first:]
        try:
            if tag == "phoneme":
                word = content.strip()
                if syllables_of(word, attrs["ph"]) is None:
                    raise ValueError(f"ph={attrs['ph']!r} must be {len(word)} toned pinyin syllable(s) for "
                                     f"{word!r} (Chinese characters, one syllable each)")
                out.append(f"{word}(ssml:{attrs['ph']})")
            elif tag == "say-as":
                out.append(_say_as(attrs["interpret-as"], content))
            elif tag == "sub":
                out.append(attrs["alias"])
            else:
                out.append(content)
        except ValueError as err:
            raise SsmlError(f"{opened}: {err}") from None

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = out.append
    try:
        parser.Parse(document.strip(), True)
    except expat.ExpatError as err:
        raise SsmlError(f"SSML error at line {err.lineno}, column {err.offset + 1}: "
                        f"{expat.ErrorString(err.code)}") from None
    return "".join(out)
