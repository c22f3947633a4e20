"""Our SAM-BERT and HiFi-GAN against reference tensors made with the original KAN-TTS classes
(../shared/fixtures, see its README), plus the streaming forms against the whole-sentence ones."""

import json
import sys
from pathlib import Path

import pytest
import torch

from conftest import FIXTURES
from sambert.models import KanttsHifiGan, SamBert

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import FULL_KANTTS_HIFIGAN_PARAMS, FULL_SAMBERT_PARAMS  # noqa: E402

# float32 rounding of sums taken in another order; the largest difference measured against the KAN-TTS
# reference tensors is 7.2e-7 (post-net mel, values up to 1.8), and 5.7e-7 on the waveform.
TOL = 2e-6

# The official 16 kHz configurations (kantts/configs/sambert_16k.yaml, hifigan_v1_16k.yaml), as the benchmarks'
# stand-in uses them; SAM-BERT with ModelScope's vocabulary sizes.
SAMBERT_16K = dict(FULL_SAMBERT_PARAMS, sy=146, tone=9, syllable_flag=7, word_segment=7, emotion=35, speaker=8)
HIFIGAN_16K = FULL_KANTTS_HIFIGAN_PARAMS


@pytest.fixture(scope="module")
def sambert(ref):
    model = SamBert(ref["sambert_params"]).eval()
    model.load_state_dict(ref["sambert_state_dict"], strict=True)
    return model


@pytest.fixture(scope="module")
def inputs(ref):
    i = ref["inputs"]
    return i["ling"], i["emotion"], i["speaker"]


def assert_close(ours, theirs, name):
    assert ours.shape == theirs.shape, f"{name}: shape {tuple(ours.shape)} != {tuple(theirs.shape)}"
    err = (ours.float() - theirs.float()).abs().max().item()
    assert err <= TOL, f"{name}: max abs error {err:.3g}"


def test_sambert_reproduces_kantts(ref, sambert, inputs):
    out, want = sambert.infer(*inputs), ref["outputs"]
    n = int(want["LR_length_rounded"])
    assert out["LR_length_rounded"] == n
    for key in ("log_duration_predictions", "pitch_predictions", "energy_predictions"):
        assert_close(out[key], want[key], key)
    assert_close(out["dec_outputs"], want["dec_outputs"][:, :n], "dec_outputs")
    assert_close(out["postnet_outputs"], want["postnet_outputs"][:, :n], "postnet_outputs")
    assert (out["x_band_width"], out["h_band_width"]) == (want["x_band_width"], want["h_band_width"])
    kantts_durations = (torch.expm1(want["log_duration_predictions"]) + 0.5).long()
    assert torch.equal(out["durations"], kantts_durations)


def test_hifigan_reproduces_kantts(ref):
    vocoder = KanttsHifiGan(ref["hifigan_params"]).eval()
    vocoder.load_state_dict(ref["hifigan_state_dict"], strict=True)
    with torch.no_grad():
        assert_close(vocoder(ref["hifigan_input_mel"]), ref["hifigan_output_wav"], "waveform")
        vocoder.remove_weight_norm()
        assert_close(vocoder(ref["hifigan_input_mel"]), ref["hifigan_output_wav"], "waveform, weight norm folded")
    assert vocoder.hop == 200 and vocoder.context_frames == (35, 0)


def test_full_16k_models_have_kantts_parameter_names_and_shapes(ref):
    want = json.loads((FIXTURES / "kantts_16k_full_param_shapes.json").read_text())
    ours = {f"sambert.{k}": list(v.shape) for k, v in SamBert(SAMBERT_16K).state_dict().items()}
    ours.update({f"hifigan.{k}": list(v.shape) for k, v in KanttsHifiGan(HIFIGAN_16K).state_dict().items()})
    assert sorted(set(want) - set(ours)) == [] and sorted(set(ours) - set(want)) == []
    assert {k: v for k, v in ours.items() if want[k] != v} == {}


def test_decode_step_by_step_reproduces_kantts_and_the_parallel_decoder(ref, sambert, inputs):
    plan = sambert.encode(*inputs)
    steps = list(sambert.decode(plan))
    assert all(s.shape == (1, 3, 80) for s in steps[:-1]) and len(steps) == plan.n_steps
    kantts = ref["outputs"]["dec_outputs"][:, : plan.n_frames]  # KAN-TTS's own autoregressive run
    assert_close(torch.cat(steps, dim=1), kantts, "streamed decoder")
    # Without the cache, every step at once from the reference's frames (teacher forcing) with band masks
    # gives the same frames.
    r = sambert.r
    memory = plan.memory
    previous = torch.nn.functional.pad(kantts.view(1, -1, r, 80)[:, :-1, -1], (0, 0, 1, 0))
    from sambert.models.sambert import band_masks

    band = torch.tensor([plan.x_band_width])
    masks = band_masks(plan.n_steps, band, band, torch.tensor([plan.n_steps]))
    with torch.no_grad():
        parallel = sambert.decoder(memory, previous, *masks).view(1, -1, 80)[:, : plan.n_frames]
    assert_close(parallel, kantts, "parallel decoder with band masks")


@pytest.mark.parametrize("blocks", [[1, 2, 3, 5, 8, 13, 28], [60], [7] * 9, [2, 0, 4, 54]])
def test_postnet_stream_equals_whole_postnet(sambert, inputs, blocks):
    out = sambert.infer(*inputs)
    dec, whole = out["dec_outputs"], out["postnet_outputs"]
    stream = sambert.postnet_stream(out["plan"])
    pieces, start = [], 0
    for n in blocks:
        pieces.append(stream.push(dec[:, start : start + n]))
        start += n
    pieces.append(stream.finish())
    assert_close(torch.cat(pieces, dim=1), whole, f"streamed post-net, blocks {blocks}")


def test_postnet_stream_holds_back_only_its_lookahead():
    torch.manual_seed(0)
    model = SamBert(dict(SAMBERT_16K, decoder_num_layers=1, encoder_num_layers=1)).eval()
    dec = torch.randn(1, 50, 80)
    with torch.no_grad():
        whole = model.mel_postnet(dec)
    stream = model.postnet_stream(type("Plan", (), {"n_frames": 50})())
    assert stream.lookahead == 12  # 4 FSMN layers x 3 frames of look-ahead
    first = stream.push(dec[:, :20])
    assert first.shape[1] == 20 - 12
    rest = torch.cat([stream.push(dec[:, 20:]), stream.finish()], dim=1)
    assert_close(torch.cat([first, rest], dim=1), whole, "full-size streamed post-net")


def test_controls_change_the_plan(sambert, inputs):
    base = sambert.encode(*inputs)
    slow = sambert.encode(*inputs, speed=0.5)
    assert slow.n_frames > 1.8 * base.n_frames
    shifted = sambert.encode(*inputs, pitch_shift=1.0, pitch_scale=2.0)
    assert_close(shifted.pitch, base.pitch * 2.0 + 1.0, "pitch control")
    assert_close(sambert.encode(*inputs, energy_scale=0.0).energy, torch.zeros_like(base.energy), "energy control")


def test_all_zero_durations_still_give_a_frame(ref, inputs):
    params = ref["sambert_params"]
    state = dict(ref["sambert_state_dict"])
    state["variance_adaptor.duration_predictor.fc.bias"] = torch.full((1,), -20.0)  # predicts 0 frames
    model = SamBert(params).eval()
    model.load_state_dict(state)
    out = model.infer(*inputs)
    assert out["LR_length_rounded"] == 1 and out["postnet_outputs"].shape == (1, 1, 80)


def test_training_forward_pads_batches_and_matches_per_sentence(sambert, inputs):
    ling, emotion, speaker = inputs
    torch.manual_seed(1)
    n = ling.shape[1]
    durations = torch.randint(1, 6, (2, n))
    durations[1, 7:] = 0
    lengths = torch.tensor([n, 7])
    frames = int(durations[0].sum())
    mel = torch.randn(2, frames, 80)
    mel[1, int(durations[1].sum()):] = 0
    batch = [t.expand(2, *t.shape[1:]).clone() for t in (ling, emotion, speaker)]
    with torch.no_grad():
        both = sambert(*batch, lengths, mel_targets=mel, durations=durations)
        second = sambert(ling[:, :7], emotion[:, :7], speaker[:, :7], lengths[1:],
                         mel_targets=mel[1:, : int(durations[1].sum())], durations=durations[1:, :7])
    m = int(durations[1].sum())
    for key in ("dec_outputs", "postnet_outputs"):
        assert both[key].shape == (2, frames, 80)
        assert_close(both[key][1:, :m], second[key], key)
        assert both[key][1, m:].abs().max() == 0
    for key in ("log_duration_predictions", "pitch_predictions", "energy_predictions"):
        assert_close(both[key][1:, :7], second[key], key)
    # Gradients reach every learned parameter.
    sambert.train()
    try:
        out = sambert(*batch, lengths, mel_targets=mel, durations=durations)
        loss = sum(out[k].abs().mean() for k in ("dec_outputs", "postnet_outputs", "log_duration_predictions",
                                                  "pitch_predictions", "energy_predictions"))
        loss.backward()
        dead = [k for k, p in sambert.named_parameters() if p.requires_grad and p.grad is None]
        assert dead == []
    finally:
        sambert.zero_grad(set_to_none=True)
        sambert.eval()


@pytest.mark.parametrize("causal", [True, False])
def test_kantts_hifigan_chunks_with_context_are_exact(causal):
    torch.manual_seed(0)
    params = dict(HIFIGAN_16K, channels=32, causal=causal,
                  upsample_kernal_sizes=[20, 10, 4, 4] if causal else [20, 11, 4, 4])
    vocoder = KanttsHifiGan(params).eval()
    assert_chunks_exact(vocoder)


def assert_chunks_exact(vocoder):
    """Vocode frames [a, b) from mel[a - left, b + right) and compare with the whole utterance."""
    left, right = vocoder.context_frames
    mel = torch.randn(1, 80, 90)
    hop = vocoder.hop
    with torch.no_grad():
        whole = vocoder(mel)
        assert whole.shape == (1, 1, 90 * hop)
        a, b = 40, 50
        lo, hi = a - left, b + right
        chunk = vocoder(mel[:, :, lo:hi])[..., (a - lo) * hop : (b - lo) * hop]
    assert_close(chunk, whole[..., a * hop : b * hop], "chunk with context")
    if left > 0:  # one frame less of history is no longer exact: the context is tight enough to matter
        with torch.no_grad():
            short = vocoder(mel[:, :, lo + 1 : hi])[..., (a - lo - 1) * hop : (b - lo - 1) * hop]
        assert (short - whole[..., a * hop : b * hop]).abs().max() > 0
