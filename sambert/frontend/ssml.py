"""An SSML subset: input that starts with `<speak>` is compiled to plain text the frontend reads.

    <phoneme alphabet="pinyin" ph="zhang3">长</phoneme>   the characters' syllables, exactly (as 长(zhang3))
    <say-as interpret-as="digits|cardinal|telephone|date|characters">2024</say-as>
    <sub alias="世界卫生组织">WHO</sub>                   the alias is read instead
    <break time="300ms"/>, <break strength="weak|medium|strong|..."/>
    <prosody rate="fast" pitch="high" volume="+6dB">...</prosody>   around the whole text only

A break becomes the pause our prosody has for it: a comma pause (#3) up to 500 ms or strength
weak/medium, a sentence end (#4 and the pause between sentences) above, nothing for 0 ms, none or x-weak.
<prosody> becomes the request's controls (speed, pitch, volume; engine.py), which hold for a whole
request, so it must hold all of the document's text (nested ones combine):
    rate    x-slow 0.5, slow 0.75, medium 1, fast 1.5, x-fast 2 times the speed, or a percentage
            ("150%", "+50%", "-25%")
    pitch   x-low -2, low -1, medium 0, high +1, x-high +2 added to the request's pitch (its units: the
            voice's normalised pitch); Hz, semitones and percentages are refused, because a voice ships
            without the f0 statistics that would turn them into those units
    volume  silent 0, x-soft 0.25, soft 0.5, medium 1, loud 1.5, x-loud 2 times the gain, or decibels
            ("+6dB", "-3dB")
Anything else (an unknown tag or attribute value, a <prosody> around part of the text, malformed XML)
raises SsmlError naming the line, column and tag, before anything is synthesised.
"""

import re
from xml.parsers import expat

from .lexicon import syllables_of
from .normalize import normalize, read_digits, read_integer, read_number


class SsmlError(ValueError):
    """SSML we cannot read; the message says where (line, column) and which tag."""


_WHOLE = ("<prosody> must hold all of the text: its speed, pitch and volume are the request's controls, "
          "which hold for the whole request")


SAY_AS = ("digits", "cardinal", "telephone", "date", "characters")
_STRENGTHS = {"none": "", "x-weak": "", "weak": "，", "medium": "，", "strong": "。", "x-strong": "。"}
_LONG_PAUSE_MS = 500
_RATES = {"x-slow": 0.5, "slow": 0.75, "medium": 1.0, "default": 1.0, "fast": 1.5, "x-fast": 2.0}
_PITCHES = {"x-low": -2.0, "low": -1.0, "medium": 0.0, "default": 0.0, "high": 1.0, "x-high": 2.0}
_VOLUMES = {"silent": 0.0, "x-soft": 0.25, "soft": 0.5, "medium": 1.0, "default": 1.0, "loud": 1.5, "x-loud": 2.0}


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


def _prosody(attrs, controls):
    """`controls` ({"speed", "pitch", "volume"}) changed as a <prosody>'s attributes say."""
    unknown = sorted(set(attrs) - {"rate", "pitch", "volume"})
    if unknown:
        raise ValueError(f"attribute {unknown[0]!r}; supported: rate, pitch, volume")
    rate, pitch, volume = (attrs.get(name, "medium").strip() for name in ("rate", "pitch", "volume"))
    percent = re.fullmatch(r"([+-]?)(\d+(?:\.\d+)?)%", rate)
    if rate not in _RATES and not percent:
        raise ValueError(f"rate={rate!r}; valid: {', '.join(_RATES)} or a percentage such as 150% or +20%")
    if percent:
        sign, value = percent.group(1), float(percent.group(2)) / 100
        factor = 1 + value if sign == "+" else 1 - value if sign == "-" else value
    else:
        factor = _RATES[rate]
    if pitch not in _PITCHES:
        raise ValueError(f"pitch={pitch!r}; valid: {', '.join(_PITCHES)} (Hz, semitones and percentages "
                         "cannot be mapped: the voice's pitch is in normalised units)")
    decibels = re.fullmatch(r"([+-]?\d+(?:\.\d+)?)dB", volume)
    if volume not in _VOLUMES and not decibels:
        raise ValueError(f"volume={volume!r}; valid: {', '.join(_VOLUMES)} or decibels such as +6dB")
    gain = 10 ** (float(decibels.group(1)) / 20) if decibels else _VOLUMES[volume]
    return {"speed": controls["speed"] * factor, "pitch": controls["pitch"] + _PITCHES[pitch],
            "volume": controls["volume"] * gain}


def to_text(document):
    """SSML -> the text it reads, with <phoneme> as `chars(ssml:pin1 yin1)`; raises SsmlError."""
    return read(document)[0]


def read(document):
    """SSML -> (the text it reads, the controls its <prosody> sets: {"speed": factor, "pitch": shift,
    "volume": factor}); raises SsmlError."""
    parser = expat.ParserCreate()
    out = []  # text pieces of the document
    stack = []  # open elements: (tag, attrs, index in `out` where their content starts)
    controls = {"speed": 1.0, "pitch": 0.0, "volume": 1.0}
    after_prosody = []  # where the outermost <prosody> closed: no text may follow

    def text(data):
        if after_prosody and data.strip():
            raise SsmlError(f"{after_prosody[0]}: {_WHOLE}")
        out.append(data)

    def where(tag):
        return f"SSML error at line {parser.CurrentLineNumber}, column {parser.CurrentColumnNumber + 1} (<{tag}>)"

    def start(tag, attrs):
        if not stack and tag != "speak":
            raise SsmlError(f"{where(tag)}: the document must be one <speak> element")
        if tag == "speak" and stack:
            raise SsmlError(f"{where(tag)}: <speak> inside <speak>")
        if tag not in ("speak", "phoneme", "say-as", "sub", "break", "prosody"):
            raise SsmlError(f"{where(tag)}: unknown or unsupported tag; supported: speak, phoneme, say-as, sub, "
                            "break, prosody")
        if after_prosody or (tag == "prosody" and "".join(out).strip()):
            raise SsmlError(f"{(after_prosody or [where(tag)])[0]}: {_WHOLE}")
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
            if tag == "prosody":
                controls.update(_prosody(attrs, controls))
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
            if tag == "prosody" and not any(t == "prosody" for t, *_ in stack):
                after_prosody.append(opened)
        except ValueError as err:
            raise SsmlError(f"{opened}: {err}") from None

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(document.strip(), True)
    except expat.ExpatError as err:
        raise SsmlError(f"SSML error at line {err.lineno}, column {err.offset + 1}: "
                        f"{expat.ErrorString(err.code)}") from None
    return "".join(out), controls
