"""The KAN-TTS linguistic-unit inventories and their id encoding.

A SAM-BERT voice reads one token per unit, `{sy$tone$syllable_flag$word_segment$emotion$speaker}`, and
looks each field up in a fixed symbol list: ids are list positions. The lists below are KAN-TTS's
PinYin defaults (phone set in file order, then the prosodic breaks); each is followed by the specials
pad `_`, end `~` and `@[MASK]`. ModelScope builds its models without the mask row (one row fewer per
embedding); ids are the same either way because the mask is last.
"""

from dataclasses import dataclass

import numpy as np

SPECIALS = ("_", "~", "@[MASK]")

_MANDARIN = (
    "a ai an ang ao b c ch d e ei en eng er f g h i ia ian iang iao ie ih ii in ing io iong iou j k l m n "
    "o ong ou p q r s sh t u ua uai uan uang uei uen ueng uo v van ve vn xx z zh w y"
).split()
_ZERO_INITIALS = ("ga", "ge", "go")
_ENGLISH = (
    "aa ae ah ao aw ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th uh uw v w y z zh"
).split()
_ERHUA = (
    "air angr anr aor ar eir engr enr iangr ianr iaor iar ier ihr iir ingr inr iongr iour ir ongr or our "
    "uair uangr uanr uar ueir uenr uor ur vanr ver vnr vr"
).split()
BREAKS = ("#1", "#2", "#3", "#4")

PHONES = tuple(
    [p + "_c" for p in _MANDARIN] + list(_ZERO_INITIALS) + _ENGLISH + [p + "_c" for p in _ERHUA] + ["pau"]
)

SY = tuple("@" + p for p in PHONES + BREAKS) + SPECIALS
TONE = ("tone1", "tone_none", "tone4", "tone2", "tone3", "tone5", "tone0") + SPECIALS
SYLLABLE_FLAG = ("s_begin", "s_end", "s_none", "s_both", "s_middle") + SPECIALS
WORD_SEGMENT = ("word_begin", "word_end", "word_middle", "word_both", "word_none") + SPECIALS
EMOTION = (
    tuple(
        "emotion_" + e
        for e in (
            "none neutral angry disgust fear happy sad surprise calm gentle relax lyrical serious "
            "disgruntled satisfied disappointed excited anxiety jealousy hate pity pleasure arousal dominance"
        ).split()
    )
    + tuple(f"emotion_placeholder{i}" for i in range(1, 10))
    + SPECIALS
)
# ttsfrd always writes this speaker; a voice substitutes its own.
DEFAULT_SPEAKER = "F7"


class UnitError(ValueError):
    """A unit sequence that a voice cannot read (unknown symbol, wrong field count)."""


@dataclass(frozen=True)
class Inventory:
    """The symbol lists of one voice. Only the speaker list differs between voices.

    `english_phones`: whether the voice learned the English (ARPAbet) rows of the list. ModelScope's
    zh-cn voices did (ttsfrd reads English words with them); a voice trained on our frontend's output
    before it read English words (the bundled default voice) has them untrained, and the frontend
    spells Latin words with Chinese letter names for it (frontend/english.py, modes.py)."""

    speakers: tuple = (DEFAULT_SPEAKER,)
    english_phones: bool = True

    @property
    def streams(self):
        return {
            "sy": SY,
            "tone": TONE,
            "syllable_flag": SYLLABLE_FLAG,
            "word_segment": WORD_SEGMENT,
            "emotion": EMOTION,
            "speaker": tuple(self.speakers) + SPECIALS,
        }

    def sizes(self, with_mask=False):
        """Embedding rows per stream: ModelScope checkpoints have no mask row (`with_mask=False`)."""
        drop = 0 if with_mask else 1
        return {name: len(symbols) - drop for name, symbols in self.streams.items()}

    def encode(self, units, emotion=None, speaker=None):
        """Unit strings -> (ling [N, 4], emotion [N], speaker [N]) int64 arrays, without the end id.

        `emotion` / `speaker` override the token's fields (e.g. 'happy' or 'emotion_happy', a speaker name).
        """
        streams = self.streams
        lookup = {name: {s: i for i, s in enumerate(symbols)} for name, symbols in streams.items()}
        if emotion is not None and not emotion.startswith("emotion_"):
            emotion = "emotion_" + emotion
        rows = []
        for unit in units:
            fields = unit.strip("{}").split("$")
            if len(fields) != 6:
                raise UnitError(f"unit {unit!r} has {len(fields)} fields, expected 6")
            fields[0] = "@" + fields[0]
            if emotion is not None:
                fields[4] = emotion
            if speaker is not None:
                fields[5] = speaker
            row = []
            for name, field in zip(streams, fields):
                if field not in lookup[name]:
                    raise UnitError(f"unknown {name} symbol {field!r} in unit {unit!r}")
                row.append(lookup[name][field])
            rows.append(row)
        ids = np.asarray(rows, dtype=np.int64).reshape(-1, 6)
        return ids[:, :4], ids[:, 4], ids[:, 5]
