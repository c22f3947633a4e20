"""Shared pieces of the benchmarks: the voice they run, texts of a given length, the whole-utterance
baseline (what the usual deployment does) and small table printing."""

import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sambert.engine import Engine  # noqa: E402

# Our own text (written for these benchmarks), repeated and cut to the length asked for.
PARAGRAPH = (
    "清晨的小城还没有完全醒来，街角的早点铺已经冒出了热气。"
    "老板一边揉着面团，一边和路过的邻居打招呼，问他们今天想吃点什么。"
    "公交车慢慢驶过湿漉漉的石板路，车窗上映着远处的山和刚刚升起的太阳。"
    "学生们背着书包三三两两地走向学校，有人在背诵课文，有人在讨论昨天的比赛。"
    "河边的老人打着太极拳，动作缓慢而舒展，好像时间在这里也走得慢了一些。"
    "到了中午，市场里人声鼎沸，卖菜的阿姨把最新鲜的青菜摆在最显眼的地方。"
    "下午下了一场小雨，空气里弥漫着泥土和花草的味道，孩子们在屋檐下看着雨滴落进水洼。"
    "傍晚时分，家家户户亮起了灯，厨房里传来炒菜的声音，一天的忙碌终于告一段落。"
)


def text_of(n_chars):
    """Exactly n_chars characters of running text (ending at a sentence end when possible)."""
    text = PARAGRAPH * (n_chars // len(PARAGRAPH) + 1)
    return text[: n_chars - 1] + "。"


# The 16 kHz KAN-TTS SAM-BERT configuration (kantts/configs/sambert_16k.yaml), the size of the official voices.
FULL_SAMBERT_PARAMS = dict(
    max_len=800, embedding_dim=512, encoder_num_layers=8, encoder_num_heads=8, encoder_num_units=128,
    encoder_ffn_inner_dim=1024, encoder_dropout=0.1, encoder_attention_dropout=0.1, encoder_relu_dropout=0.1,
    encoder_projection_units=32, speaker_units=32, emotion_units=32, predictor_filter_size=41,
    predictor_fsmn_num_layers=3, predictor_num_memory_units=128, predictor_ffn_inner_dim=256,
    predictor_dropout=0.1, predictor_shift=0, predictor_lstm_units=128, dur_pred_prenet_units=[128, 128],
    dur_pred_lstm_units=128, decoder_prenet_units=[256, 256], decoder_num_layers=12, decoder_num_heads=8,
    decoder_num_units=128, decoder_ffn_inner_dim=1024, decoder_dropout=0.1, decoder_attention_dropout=0.1,
    decoder_relu_dropout=0.1, outputs_per_step=3, num_mels=80, postnet_filter_size=41, postnet_fsmn_num_layers=4,
    postnet_num_memory_units=256, postnet_ffn_inner_dim=512, postnet_dropout=0.1, postnet_shift=17,
    postnet_lstm_units=128, MAS=False,
)

# kantts/configs/hifigan_v1_16k.yaml Model.Generator.params (the official 16 kHz voices' vocoder)
FULL_KANTTS_HIFIGAN_PARAMS = {
    "in_channels": 80, "out_channels": 1, "channels": 256, "kernel_size": 7,
    "upsample_scales": [10, 5, 2, 2], "upsample_kernal_sizes": [20, 10, 4, 4],
    "resblock_kernel_sizes": [3, 7, 11], "resblock_dilations": [[1, 3, 5, 7]] * 3, "bias": True,
    "causal": True, "nonlinear_activation": "LeakyReLU", "nonlinear_activation_params": {"negative_slope": 0.1},
    "use_weight_norm": True,
}


def stand_in_voice():
    """The official voices' size with random weights: full-size SAM-BERT (seeded; the duration predictor
    biased to ~6 frames a unit, about a real voice's speaking rate) + full-size 16 kHz KAN-TTS HiFi-GAN."""
    from sambert.frontend.inventory import Inventory
    from sambert.models import KanttsHifiGan, SamBert
    from sambert.voices import Voice

    torch.manual_seed(0)
    inventory = Inventory(("F7",))
    acoustic = SamBert(dict(FULL_SAMBERT_PARAMS, **inventory.sizes())).eval()
    with torch.no_grad():
        fc = acoustic.variance_adaptor.duration_predictor.fc
        fc.weight.mul_(0.1)
        fc.bias.fill_(np.log(7.0))
    vocoder = KanttsHifiGan(FULL_KANTTS_HIFIGAN_PARAMS).eval()
    vocoder.remove_weight_norm()
    return Voice(name="stand_in", display_name="stand-in", sample_rate=16000, hop=vocoder.hop,
                 speakers=["F7"], emotions=["neutral"], inventory=inventory, acoustic=acoustic, vocoder=vocoder,
                 source=Path("(random weights)"))


def benchmark_voices():
    """(voices, description): the bundled default voice if installed, else `stand_in_voice()`, so the
    memory and speed figures are those of networks of the real size. BENCH_VOICE=stand-in picks the
    stand-in anyway: it is the size of the official voices, which the small default voice is not;
    BENCH_VOICE=<bundle folder> measures that bundle (e.g. a training export not yet in assets/voices/)."""
    from sambert.engine import _load_voices
    from sambert.voices import load_bundled

    chosen = os.environ.get("BENCH_VOICE")
    if chosen and chosen != "stand-in":
        return [load_bundled(chosen)], f"bundle {chosen}"
    installed = [] if os.environ.get("BENCH_VOICE") == "stand-in" else _load_voices(None)
    if installed:
        return installed[:1], f"bundled voice {installed[0].name!r} ({installed[0].source})"
    return [stand_in_voice()], "stand-in: full-size SAM-BERT + full-size KAN-TTS HiFi-GAN (random weights), 16 kHz"


def make_engine(profile="cpu", **overrides):
    voices, description = benchmark_voices()
    return Engine(profile=profile, voices=voices, overrides=overrides or None), description


def whole_utterance(engine, text, voice=None, one_vocoder_call=True):
    """Whole-utterance synthesis without streaming: every sentence's whole mel (`infer`), then
    - one_vocoder_call=True: all sentences' mels joined (pauses as frames of the mel's minimum, i.e.
      silence) and vocoded in one call, the usual deployment whose memory grows with the text;
    - one_vocoder_call=False: each sentence's mel vocoded whole, the audio joined with 0.28 s of
      zeros, which is what the streaming engine must reproduce sample for sample.
    Returns float32 audio (numpy)."""
    v = engine.voice(voice)
    ac_device = torch.device(engine.profile.acoustic_device)
    voc_device = torch.device(engine.profile.vocoder_device)
    pause_samples = int(0.28 * v.sample_rate)
    mels = []
    with torch.no_grad():
        for sentence in engine.frontend.sentences(text):
            ids = (torch.from_numpy(a)[None].to(ac_device) for a in v.inventory.encode(sentence.units))
            out = v.acoustic.infer(*ids)
            mels.append(out["postnet_outputs"][0, : int(out["LR_length_rounded"])].to(voc_device))
        if one_vocoder_call:
            pause = torch.full((pause_samples // v.hop, mels[0].shape[1]), float(mels[0].min()), device=voc_device)
            joined = [m for mel in mels for m in (pause, mel)][1:]
            return v.vocoder(torch.cat(joined).T[None])[0, 0].float().cpu().numpy()
        pieces = []
        for mel in mels:
            pieces += [torch.zeros(pause_samples, device=voc_device)] if pieces else []
            pieces.append(v.vocoder(mel.T[None])[0, 0].float())
        return torch.cat(pieces).cpu().numpy()


def snr_db(reference, test):
    reference, test = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    noise = np.sum((reference - test) ** 2)
    return float("inf") if noise == 0 else 10 * np.log10(np.sum(reference**2) / noise)


def print_table(headers, rows):
    widths = [max(len(str(x)) for x in [h] + [r[i] for r in rows]) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))


def quiet_threads():
    """Benchmarks share the machine: one intra-op thread unless BENCH_THREADS says otherwise."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
