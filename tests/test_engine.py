"""The streaming engine: exactness of streamed mel and chunked audio, profiles, limits, cancellation,
out-of-memory fallback. Runs on the CPU in seconds with the small KAN-TTS fixture voice."""

import gc
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import KANTTS_REFERENCE
from sambert import engine as sambert_engine
from sambert import profiles
from sambert.chunked_vocoder import ChunkedVocoder, context_of
from sambert.profiles import ProfileError
from sambert.timings import Span, to_srt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import whole_utterance  # noqa: E402  (the baseline benchmarks/fidelity.py measures against)

def snr_db(reference, test):
    reference, test = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    noise = np.sum((reference - test) ** 2)
    return float("inf") if noise == 0 else 10 * np.log10(np.sum(reference**2) / noise)


# ---- profiles ------------------------------------------------------------------------------------


def test_every_tier_is_shipped_and_valid():
    assert set(profiles.available()) == {"cpu", "gpu-lt8gb", "gpu-8gb", "gpu-12-16gb"}
    lt8 = profiles.load_profile("gpu-lt8gb")
    assert (lt8.acoustic_device, lt8.vocoder_device, lt8.dtype) == ("cuda", "cpu", "float16")
    assert profiles.load_profile("gpu-12-16gb").max_concurrent_requests == 2
    # every fallback chain ends on the cpu, each step asking less of CUDA memory than the one before
    for name in profiles.available():
        chain = [profiles.load_profile(name)]
        while chain[-1].fallback:
            assert chain[-1].fallback not in [p.name for p in chain], [p.name for p in chain]
            chain.append(profiles.load_profile(chain[-1].fallback))
        assert chain[-1].name == "cpu"
        for bigger, smaller in zip(chain, chain[1:]):
            load, less = cuda_load(bigger), cuda_load(smaller)
            assert less != load and all(a <= b for a, b in zip(less, load)), (bigger.name, load, smaller.name, less)


def cuda_load(profile):
    """What a profile asks of CUDA memory: models placed there, requests at once on them, and the
    decoder block and vocoder chunk of the models that are there (0 for a model on the cpu)."""
    acoustic, vocoder = (device.startswith("cuda") for device in (profile.acoustic_device, profile.vocoder_device))
    return (acoustic + vocoder, profile.max_concurrent_requests if acoustic or vocoder else 0,
            profile.mel_block_frames if acoustic else 0, profile.vocoder_chunk_frames if vocoder else 0)


def test_auto_choice_without_cuda_is_cpu_and_says_why(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    profile = profiles.choose_profile(environ={})
    assert profile.name == "cpu"
    assert "no CUDA" in profile.reason


def test_auto_choice_follows_free_cuda_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Test GPU")
    for free_gb, expected in ((23, "gpu-12-16gb"), (7.5, "gpu-8gb"), (3, "gpu-lt8gb"), (0.1, "cpu")):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a, f=free_gb: (int(f * 2**30), 24 * 2**30))
        profile = profiles.choose_profile(environ={})
        assert profile.name == expected, free_gb
        assert "Test GPU" in profile.reason


def test_profile_from_environment_with_key_overrides():
    env = {"SAMBERT_PROFILE": "gpu-8gb", "SAMBERT_MEL_BLOCK_FRAMES": "12", "SAMBERT_VOCODER_DEVICE": "cpu"}
    profile = profiles.choose_profile(environ=env)
    assert (profile.name, profile.mel_block_frames, profile.vocoder_device) == ("gpu-8gb", 12, "cpu")
    assert "SAMBERT_PROFILE" in profile.reason and "mel_block_frames=12" in profile.reason
    # an explicit argument wins over the environment
    assert profiles.choose_profile("cpu", {"max_text_length": 99}, environ=env).max_text_length == 99


def test_unknown_profile_or_key_lists_the_valid_ones():
    with pytest.raises(ProfileError, match="valid profiles: .*gpu-8gb"):
        profiles.choose_profile("gpu-4090", environ={})
    with pytest.raises(ProfileError, match="valid keys: .*mel_block_frames"):
        profiles.choose_profile("cpu", {"block": 3}, environ={})
    with pytest.raises(ProfileError, match="integer"):
        profiles.choose_profile("cpu", environ={"SAMBERT_MEL_BLOCK_FRAMES": "many"})
    with pytest.raises(ProfileError, match="dtype"):
        profiles.choose_profile("cpu", {"dtype": "int8"}, environ={})


# ---- timings -------------------------------------------------------------------------------------


def test_srt_cues_split_at_words():
    words = [Span("今天", 0.0, 0.5), Span("天气", 0.5, 1.0), Span("很好", 1.0, 1.6)]
    srt = to_srt([Span("今天天气很好。", 0, 1.6)], [words], max_chars=4)
    assert srt.splitlines()[:6] == ["1", "00:00:00,000 --> 00:00:01,000", "今天天气", "", "2",
                                    "00:00:01,000 --> 00:00:01,600"]


# ---- the fixture voice: the small KAN-TTS SAM-BERT + causal HiFi-GAN (reference weights) -----------

SPEAKERS = ["F7", "F74", "FBYN", "FRXL", "M7", "xiaoyu"]
TEXT = "今天天气很好。我们去公园散步吧！一共三点五公里。"


def fixture_voice(ref):
    from sambert.frontend.inventory import Inventory
    from sambert.models import KanttsHifiGan, SamBert
    from sambert.voices import Voice

    acoustic = SamBert(ref["sambert_params"])
    acoustic.load_state_dict(ref["sambert_state_dict"])
    vocoder = KanttsHifiGan(ref["hifigan_params"])
    vocoder.load_state_dict(ref["hifigan_state_dict"])
    vocoder.remove_weight_norm()
    return Voice(name="fixture", display_name="测试", sample_rate=16000, hop=200, speakers=SPEAKERS,
                 emotions=["neutral", "happy"], inventory=Inventory(tuple(SPEAKERS)), acoustic=acoustic.eval(),
                 vocoder=vocoder.eval(), source=KANTTS_REFERENCE)


@pytest.fixture
def engine(ref):
    from sambert.engine import Engine

    # float32 whatever the CPU: `auto` picks bf16 on CPUs with native bf16, and the exactness these tests
    # check (streamed == whole up to float32 rounding) is a float32 property; bf16 has its own test below
    return Engine(profile="cpu", voices=[fixture_voice(ref)], overrides={"cpu_vocoder_dtype": "float32"})


def test_streamed_mel_equals_whole_sentence_mel(engine):
    from sambert.engine import mel_blocks

    voice = engine.voice()
    for sentence in engine.frontend.sentences(TEXT):
        ids = [torch.from_numpy(a)[None] for a in voice.inventory.encode(sentence.units, emotion="happy")]
        whole = voice.acoustic.infer(*ids)["postnet_outputs"][0]
        for block in (1, 4, 24, 1000):
            streamed = list(mel_blocks(voice.acoustic, voice.acoustic.encode(*ids), block))
            assert len(streamed) > 1 or block == 1000
            assert (torch.cat(streamed) - whole).abs().max() <= 1e-4, block


def chunked(vocoder, mel, chunk_frames, push_frames, first_chunk_frames=None):
    cv = ChunkedVocoder(vocoder, vocoder.hop, chunk_frames, context_of(vocoder), first_chunk_frames)
    pieces = [cv.push(mel[:, i : i + push_frames]) for i in range(0, mel.shape[1], push_frames)]
    return torch.cat(pieces + [cv.finish()])


def test_chunked_causal_kantts_vocoder_matches_whole(engine):
    vocoder = engine.voice().vocoder
    assert context_of(vocoder)[1] == 0  # causal: no lookahead
    mel = torch.randn(80, 130, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = vocoder(mel[None])[0, 0]
        for chunk, push, first in ((4, 7, None), (16, 1, None), (50, 33, None), (64, 5, 2)):
            audio = chunked(vocoder, mel, chunk, push, first)
            assert audio.shape == whole.shape
            assert snr_db(whole, audio) >= 60, (chunk, push)
        # too little context is audibly wrong: the test can fail
        short = ChunkedVocoder(vocoder, vocoder.hop, 8, (2, 0))
        audio = torch.cat([short.push(mel), short.finish()])
        assert snr_db(whole, audio) < 60


def test_chunked_non_causal_vocoder_matches_whole():
    from sambert.models import KanttsHifiGan

    torch.manual_seed(0)
    # KAN-TTS HiFi-GAN, non-causal, random weights, narrow so it runs in a blink; the official hop of 200
    vocoder = KanttsHifiGan({"in_channels": 80, "channels": 32, "kernel_size": 7, "upsample_scales": [10, 5, 2, 2],
                             "upsample_kernal_sizes": [20, 11, 4, 4], "resblock_kernel_sizes": [3, 7, 11],
                             "resblock_dilations": [[1, 3, 5, 7]] * 3, "causal": False}).eval()
    vocoder.remove_weight_norm()
    left, right = context_of(vocoder)
    assert left > 0 and right > 0
    mel = torch.randn(80, 90, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole = vocoder(mel[None])[0, 0]
        for chunk, push, first in ((4, 9, None), (24, 5, None), (64, 90, None), (64, 3, 4)):
            assert snr_db(whole, chunked(vocoder, mel, chunk, push, first)) >= 60, (chunk, push)


def test_streamed_request_is_whole_sentence_synthesis_with_timings(engine):
    chunks = list(engine.stream(TEXT))
    assert len(chunks) > 3 and all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    first = engine.profile.vocoder_first_chunk_frames
    assert [len(c) for c in chunks[:2]] == [first * 200, 2 * first * 200]  # small first chunks, doubling
    # Against no streaming at all: per sentence the whole mel (infer) in one vocoder call, 0.28 s pauses.
    whole = whole_utterance(engine, TEXT, one_vocoder_call=False)
    streamed = np.concatenate(chunks)
    assert len(streamed) == len(whole) and snr_db(whole, streamed) >= 60
    result = engine.synthesize(TEXT)
    assert len(result.audio) == len(whole) and snr_db(whole, result.audio) >= 60
    assert result.sample_rate == 16000
    # timings: three sentences, in order, ending where the audio ends; 0.28 s pauses between
    duration = len(result.audio) / 16000
    assert [s.text for s in result.sentences] == ["今天天气很好。", "我们去公园散步吧！", "一共三点五公里。"]
    assert result.sentences[-1].end == pytest.approx(duration, abs=1e-6)
    assert result.sentences[1].start - result.sentences[0].end == pytest.approx(0.28, abs=1e-3)
    starts = [u.start for u in result.units]
    assert starts == sorted(starts) and "".join(w.text for w in result.words) == "今天天气很好我们去公园散步吧一共三点五公里"
    assert "00:00:00,000 -->" in result.srt()
    stats = result.stats
    assert stats.completed and stats.sentences == 3 and stats.audio_seconds == pytest.approx(duration)
    assert 0 < stats.time_to_first_audio < stats.compute_seconds and stats.real_time_factor > 0
    assert stats.peak_memory_bytes > 0


def test_cpu_vocoder_bf16_is_chosen_where_native_and_runs_the_vocoder_in_bf16(ref, monkeypatch):
    from sambert.engine import Engine

    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(profiles, "cpu_has_native_bf16", lambda: native)  # the CPU flag, not the code path
        assert profiles.cpu_vocoder_dtype(profiles.load_profile("cpu")) == expected
    monkeypatch.setattr(profiles, "cpu_has_native_bf16", lambda: True)
    assert profiles.cpu_vocoder_dtype(profiles.load_profile("cpu", {"cpu_vocoder_dtype": "float32"})) == "float32"
    # auto: the HiFi-GANs gain from bf16, the small MB-MelGAN loses (slower, and its spectrum moves)
    from sambert.models import KanttsHifiGan
    from sambert.models.mbmelgan import MbMelGan

    assert profiles.cpu_vocoder_dtype(profiles.load_profile("cpu"), KanttsHifiGan) == "bfloat16"
    assert profiles.cpu_vocoder_dtype(profiles.load_profile("cpu"), MbMelGan) == "float32"
    assert profiles.cpu_vocoder_dtype(profiles.load_profile("cpu", {"cpu_vocoder_dtype": "bfloat16"}), MbMelGan) == "bfloat16"
    with pytest.raises(ProfileError, match="cpu_vocoder_dtype"):
        profiles.load_profile("cpu", {"cpu_vocoder_dtype": "int8"})
    fp32 = Engine(profile="cpu", voices=[fixture_voice(ref)], overrides={"cpu_vocoder_dtype": "float32"})
    bf16 = Engine(profile="cpu", voices=[fixture_voice(ref)], overrides={"cpu_vocoder_dtype": "bfloat16"})
    a, b = fp32.synthesize("你好。"), bf16.synthesize("你好。")
    assert b.stats.device == "acoustic cpu float32, vocoder cpu bfloat16"
    assert a.stats.device == "acoustic cpu float32, vocoder cpu float32"
    # bf16 keeps 8 mantissa bits: the audio moves (it really ran in bf16) but stays the same speech
    assert len(a.audio) == len(b.audio) and 15 <= snr_db(a.audio, b.audio) < 60


def test_controls_change_the_audio(engine):
    base = engine.synthesize("你好。")
    slow = engine.synthesize("你好。", speed=0.5)
    assert len(slow.audio) > 1.5 * len(base.audio)
    louder = engine.synthesize("你好。", volume=2.0)
    assert np.abs(louder.audio).max() > np.abs(base.audio).max()
    happy = engine.synthesize("你好。", emotion="happy")
    assert len(happy.audio) != len(base.audio) or snr_db(base.audio, happy.audio) < 20


def test_bad_requests_fail_before_any_audio(engine):
    from sambert.engine import EngineError, TextTooLong
    from sambert.frontend import FrontendError

    limited = type(engine)(profile="cpu", voices=engine.voices, overrides={"max_text_length": 10})
    with pytest.raises(TextTooLong, match="limit .* is 10"):
        limited.stream("很" * 11)
    with pytest.raises(EngineError, match="unknown voice 'nobody'; installed voices: fixture"):
        engine.stream("你好", voice="nobody")
    with pytest.raises(EngineError, match="no emotion 'sad'; its emotions: neutral, happy"):
        engine.stream("你好", emotion="sad")
    for bad in (0, -1, 1e9, float("nan")):
        with pytest.raises(EngineError, match="speed"):
            engine.stream("你好", speed=bad)
    with pytest.raises(FrontendError):
        engine.stream("。。！？")


def test_gpu_profile_without_cuda_is_a_clear_error(ref, monkeypatch):
    from sambert.engine import Engine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ProfileError, match="CUDA is not available"):
        Engine(profile="gpu-8gb", voices=[fixture_voice(ref)])


def test_closing_the_stream_stops_the_work(engine):
    calls = []
    hook = engine.voice().vocoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        request = engine.stream("今天天气很好。" * 20)
        next(request)
        done = len(calls)
        request.close()
        gc.collect()
        assert request._chunks.gi_frame is None  # the generator's locals (plan, caches) are gone
        with pytest.raises(StopIteration):
            next(request)
        assert len(calls) == done
        assert not request.stats.completed
    finally:
        hook.remove()


def test_injected_cuda_oom_falls_back_to_the_smaller_profile(ref, caplog):
    from sambert.engine import Engine

    voice = fixture_voice(ref)
    expected = Engine(profile="cpu", voices=[voice]).synthesize(TEXT).audio
    engine = Engine(profile="gpu-8gb", device="cpu", voices=[voice])
    engine.inject_oom = 3  # the third vocoder call, after audio of the first sentence went out
    with caplog.at_level("WARNING"):
        result = engine.synthesize(TEXT)
    assert engine.profile.name == "gpu-lt8gb" and "out of memory" in engine.profile.reason
    assert result.stats.fallbacks and "gpu-8gb" in result.stats.fallbacks[0]
    assert "CUDA out of memory under gpu-8gb" in caplog.text
    assert len(result.audio) == len(expected) and snr_db(expected, result.audio) >= 60
    assert len(result.sentences) == 3 and len(result.words_by_sentence) == 3  # timings not doubled


def test_cli_synth_writes_wav_srt_and_prints_stats(ref, tmp_path, capsys, monkeypatch):
    import soundfile

    from sambert.__main__ import main
    from test_voices import write_voice  # the ModelScope-layout directory built from the fixture weights

    root = tmp_path / "model"
    write_voice(root, "zhitian_emo", ref)
    (root / "voices" / "voices.json").write_text('{"voices": ["zhitian_emo"]}')
    text_file = tmp_path / "in.txt"
    text_file.write_text("你好，世界。再见！", encoding="utf-8")
    out, srt = tmp_path / "out.wav", tmp_path / "out.srt"
    monkeypatch.delenv("SAMBERT_PROFILE", raising=False)
    assert main(["synth", "-f", str(text_file), "-o", str(out), "--model-dir", str(root), "--srt", str(srt),
                 "--emotion", "happy", "--speed", "1.2"]) == 0
    audio, rate = soundfile.read(out)
    assert rate == 16000 and len(audio) > 16000 * 0.5 and np.abs(audio).max() > 0
    assert "time to first audio" in capsys.readouterr().out
    assert "你好" in srt.read_text(encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        main(["synth", "你好", "-o", str(out), "--model-dir", str(root), "--profile", "tiny"])
    assert exit_.value.code == 2 and "valid profiles" in capsys.readouterr().err


def test_concurrent_requests_give_the_same_audio(engine):
    import threading

    texts = ["今天天气很好。", "我们去公园散步吧！"]
    expected = [engine.synthesize(t).audio for t in texts]
    got = [None, None]

    def run(i):
        got[i] = np.concatenate(list(engine.stream(texts[i])))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e, g in zip(expected, got):
        assert np.array_equal(e, g)


def test_cpu_calls_of_many_lengths_run_without_onednn_and_the_others_with_it(engine):
    """oneDNN keeps compiled kernels for every input length it sees: the acoustic model (a length per
    sentence) and a short sentence vocoded whole at its own length run without it; the vocoder's calls
    at the fixed window lengths (those the warm-up runs) keep its faster kernels. Restored after each call."""
    voice = engine.voice()
    acoustic, vocoder = set(), []
    hooks = [voice.acoustic.text_encoder.register_forward_pre_hook(
                 lambda *_: acoustic.add(torch._C._get_mkldnn_enabled())),
             voice.acoustic.mel_postnet.register_forward_pre_hook(
                 lambda *_: acoustic.add(torch._C._get_mkldnn_enabled())),
             voice.vocoder.register_forward_pre_hook(
                 lambda module, args: vocoder.append((args[0].shape[-1], torch._C._get_mkldnn_enabled())))]
    try:
        engine.warm_up_vocoder()
        warmed = {n for n, _ in vocoder}
        vocoder.clear()
        engine.synthesize(TEXT + "好的。")  # the short last sentence is vocoded whole
    finally:
        for hook in hooks:
            hook.remove()
    assert acoustic == {False}
    assert {onednn for _, onednn in vocoder} == {True, False}, vocoder  # both kinds of call happened
    assert all(onednn == (n in warmed) for n, onednn in vocoder), vocoder
    assert torch._C._get_mkldnn_enabled()


def test_model_calls_take_turns_the_most_urgent_first():
    """Calls waiting for their turn go by deadline, not by arrival; one call at a time."""
    import threading
    import time

    turns, order, inside = sambert_engine._Turns(), [], []

    def call(deadline):
        with turns.take(deadline):
            inside.append(deadline)
            assert len(inside) == 1, inside
            order.append(deadline)
            time.sleep(0.01)
            inside.remove(deadline)

    with turns.take(0.0):  # busy while the others arrive, in the order 3, 1, 2
        waiters = []
        for deadline in (3.0, 1.0, 2.0):
            waiters.append(threading.Thread(target=call, args=(deadline,)))
            waiters[-1].start()
            time.sleep(0.1)
    for t in waiters:
        t.join(5)
    assert order == [1.0, 2.0, 3.0]


def test_a_stream_ahead_of_its_listener_yields_to_a_new_request(engine):
    """A request's deadline is when its listener runs out of audio: one that has delivered seconds of
    audio in a moment can wait; a new request (deadline: its start) is served before it."""
    ahead = engine.stream(TEXT)
    audio = sum(len(chunk) for chunk in ahead) / ahead.sample_rate
    new = engine.stream("你好。")
    assert audio > 2.0
    assert new.deadline() < ahead.deadline()
    assert ahead.deadline() - time.perf_counter() > audio - 2.0  # its audio has not run out yet


def test_vocoder_warm_up_covers_every_length_requests_use(engine):
    """After warm_up_vocoder, requests bring no new vocoder input length (each new one costs oneDNN kernels
    that stay in memory), except a sentence shorter than a rounded last window, vocoded at its own length."""
    voice = engine.voice()
    lengths = []
    hook = voice.vocoder.register_forward_pre_hook(lambda module, args: lengths.append(args[0].shape[-1]))
    try:
        engine.warm_up_vocoder()
        warmed = set(lengths)
        lengths.clear()
        engine.synthesize(TEXT + "这是一个稍微长一点的句子，用来让声码器走到它最大的分块。" * 3)
    finally:
        hook.remove()
    assert len(lengths) > 10
    assert set(lengths) <= warmed, sorted(set(lengths) - warmed)
