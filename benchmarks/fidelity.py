"""Streamed vs whole: is the streaming engine's output the same as whole-utterance synthesis?

1. Per sentence, the streamed post-net mel (decoder blocks of the profile's size) against the
   whole-sentence `infer()` mel: max abs difference (target <= 1e-4 on CPU fp32).
2. The chunked vocoder against one whole-mel vocoder call, for the causal KAN-TTS generator (fixture
   weights, when ../shared is there) and the benchmarked voice's own vocoder (the default voice's
   non-causal MB-MelGAN, real weights): SNR (target >= 60 dB), for several chunk sizes.
3. The engine's whole streamed request against the whole-utterance baseline: SNR.

    python benchmarks/fidelity.py [--profile cpu] [--chars 150]
"""

import argparse

import torch

from _common import ROOT, make_engine, print_table, quiet_threads, snr_db, text_of, whole_utterance
from sambert.chunked_vocoder import ChunkedVocoder, context_of
from sambert.engine import mel_blocks

FIXTURE = ROOT.parent / "shared" / "fixtures" / "kantts_16k_small.pt"


def chunked(vocoder, mel, chunk_frames, push_frames=7):
    """Vocode mel [n_mels, T] through the chunked vocoder, fed `push_frames` at a time."""
    cv = ChunkedVocoder(vocoder, vocoder.hop, chunk_frames, context_of(vocoder))
    pieces = [cv.push(mel[:, i : i + push_frames]) for i in range(0, mel.shape[1], push_frames)]
    return torch.cat(pieces + [cv.finish()])


def vocoders(voice):
    from sambert.models import KanttsHifiGan

    kind = "causal" if context_of(voice.vocoder)[1] == 0 else "non-causal"
    out = [(f"{type(voice.vocoder).__name__} of {voice.name} ({kind}, {voice.sample_rate} Hz)", voice.vocoder)]
    if FIXTURE.is_file():
        fixture = torch.load(FIXTURE, weights_only=False)
        causal = KanttsHifiGan(fixture["hifigan_params"])
        causal.load_state_dict(fixture["hifigan_state_dict"])
        causal.remove_weight_norm()
        out.append(("KAN-TTS HiFi-GAN small (causal, 16 kHz, fixture)", causal.eval()))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--chars", type=int, default=150)
    args = parser.parse_args()
    quiet_threads()
    engine, voice_description = make_engine(args.profile)
    voice = engine.voice()
    text = text_of(args.chars)
    print(f"voice: {voice_description}; {engine.describe()}; text: {args.chars} chars")

    rows = []
    mels = []
    with torch.no_grad():
        for sentence in engine.frontend.sentences(text):
            ling, emotion, speaker = (torch.from_numpy(a)[None] for a in voice.inventory.encode(sentence.units))
            whole = voice.acoustic.infer(ling, emotion, speaker)
            reference = whole["postnet_outputs"][0, : int(whole["LR_length_rounded"])]
            plan = voice.acoustic.encode(ling, emotion, speaker)
            for block in (3, engine.profile.mel_block_frames, 100):
                streamed = torch.cat(list(mel_blocks(voice.acoustic, plan, block)))
                rows.append([sentence.text[:12], reference.shape[0], block,
                             f"{(streamed - reference).abs().max().item():.2e}"])
            mels.append(reference)
    print("\n1. streamed post-net mel vs whole-sentence mel (max abs diff)")
    print_table(["sentence", "frames", "block frames", "max abs diff"], rows)

    print("\n2. chunked vocoder vs whole-mel vocoder")
    mel = torch.cat(mels)[:400].T  # [80, T]: a few sentences' real decoder output
    rows = []
    with torch.no_grad():
        for name, vocoder in vocoders(voice):
            whole = vocoder(mel[None])[0, 0]
            for chunk in (8, 32, 64, 128):
                rows.append([name, str(context_of(vocoder)), chunk, f"{snr_db(whole, chunked(vocoder, mel, chunk)):.1f}"])
    print_table(["vocoder", "context (left, right)", "chunk frames", "SNR dB"], rows)

    print("\n3. engine stream vs whole-sentence synthesis (infer + one vocoder call per sentence)")
    streamed = engine.synthesize(text).audio
    baseline = whole_utterance(engine, text, one_vocoder_call=False)
    print_table(["samples streamed", "samples whole", "SNR dB"],
                [[len(streamed), len(baseline), f"{snr_db(baseline, streamed):.1f}"]])


if __name__ == "__main__":
    main()
