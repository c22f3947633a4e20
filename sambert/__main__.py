"""Command line: `python -m sambert <command> ...`.

Each command is a thin wrapper over one public function of the package, so what the CLI does is
what the library does.
"""

import argparse
import os
import sys

LEXICON_ENV = "SAMBERT_LEXICON"  # as sambert.frontend.lexicon.ENV, without importing the frontend for --help


def _read_text(text):
    # "-" or no argument reads stdin, so long texts can be piped in.
    if text in (None, "-"):
        return sys.stdin.read()
    return text


def _reading_options(cmd):
    cmd.add_argument("--lexicon", default=os.environ.get(LEXICON_ENV),
                     help="user lexicon, word<TAB>pinyin lines (default: $SAMBERT_LEXICON)")
    cmd.add_argument("--numbers", choices=("auto", "digits", "cardinal"), default="auto",
                     help="read every number digit by digit or as an amount (default auto: as the context says)")
    cmd.add_argument("--english", choices=("auto", "words", "letters"), default="auto",
                     help="Latin words as English words (a voice with English phones) or spelled with Chinese "
                     "letter names (default auto: words where the voice has English phones; g2p and units "
                     "serve no voice: auto spells, words shows what a voice with English phones reads)")


def _modes(args):
    return {"numbers": args.numbers, "english": args.english}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sambert", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    for name, help_ in (
        ("normalize", "print the normalised text (numbers, symbols... read out in Chinese characters)"),
        ("g2p", "print one pinyin syllable per character (TONE3, lexical tones, neutral tone 5)"),
        ("units", "print the KAN-TTS linguistic unit sequence, one sentence per line"),
    ):
        cmd = commands.add_parser(name, help=help_)
        cmd.add_argument("text", nargs="?", help="text; '-' or nothing reads stdin")
        if name != "normalize":
            _reading_options(cmd)
    commands.choices["g2p"].add_argument("--sources", action="store_true",
                                         help="per sentence: the normalised text, then per character its "
                                         "pinyin, spoken syllable and source (model, lexicon, inline, ssml, "
                                         "dictionary, letters)")

    voices_cmd = commands.add_parser("voices", help="list the installed voices (name, sample rate, speakers, emotions)")
    voices_cmd.add_argument("--model-dir", help="a ModelScope Sambert-HiFiGAN model directory "
                            "(default: $SAMBERT_MODEL_DIR, else the bundled voices)")

    synth = commands.add_parser("synth", help="synthesize text to a WAV file and print the request's stats")
    synth.add_argument("text", nargs="?", help="text; '-' or nothing reads stdin (or use -f)")
    synth.add_argument("-f", "--file", help="read the text from this UTF-8 file")
    synth.add_argument("-o", "--output", required=True, help="WAV file to write")
    synth.add_argument("--voice", help="voice name (default: the first installed voice)")
    synth.add_argument("--emotion", help="emotion of the voice (default: neutral)")
    synth.add_argument("--profile", help="hardware profile (default: chosen for this machine)")
    synth.add_argument("--model-dir", help="a ModelScope Sambert-HiFiGAN model directory")
    synth.add_argument("--device", help="run every model on this device (cpu, cuda)")
    synth.add_argument("--speed", type=float, default=1.0)
    synth.add_argument("--pitch", type=float, default=0.0)
    synth.add_argument("--energy", type=float, default=1.0)
    synth.add_argument("--srt", help="also write subtitles (SRT) to this file")
    _reading_options(synth)

    speak_cmd = commands.add_parser("speak", help="stream text to a running app's WebSocket API and write the "
                                    "audio as it comes (stdin is sent as it arrives)")
    speak_cmd.add_argument("text", nargs="?", help="text; '-' or nothing reads stdin")
    speak_cmd.add_argument("--server", required=True, help="the app's address, e.g. http://127.0.0.1:7860")
    speak_cmd.add_argument("-o", "--output", required=True, help="WAV file to write, or '-' for raw 16-bit pcm "
                           "on stdout (for a player: aplay -f S16_LE -c 1 -r RATE)")
    speak_cmd.add_argument("--voice")
    speak_cmd.add_argument("--emotion")
    speak_cmd.add_argument("--speed", type=float)
    speak_cmd.add_argument("--timestamps", action="store_true", help="print each word's start and end to stderr")
    speak_cmd.add_argument("--auth", help="user:password (default: $SAMBERT_AUTH, when set)")
    speak_cmd.add_argument("--cacert", help="CA certificate to trust for https (e.g. Caddy's local root.crt)")

    share_cmd = commands.add_parser("share", help="a temporary public HTTPS link to the running app (localtunnel); "
                                    "needs SAMBERT_AUTH=user:password, set for the app too")
    share_cmd.add_argument("--port", type=int, help="the app's port (default: $GRADIO_SERVER_PORT or 7860)")
    share_cmd.add_argument("--subdomain", help="ask localtunnel for this subdomain")
    share_cmd.add_argument("--tunnel-host", help="localtunnel server (default: https://localtunnel.me)")

    args = parser.parse_args(argv)

    if args.command in ("normalize", "g2p", "units"):
        from sambert import frontend

        text = _read_text(args.text)
        try:
            if args.command == "normalize":
                print(frontend.normalize(text))
                return 0
            words = frontend.Lexicon.from_file(args.lexicon) if args.lexicon else None
            sentences = frontend.Frontend().sentences(text, words, _modes(args), english_phones=args.english == "words")
            if args.command == "units":
                for sentence in sentences:
                    print(" ".join(sentence.units))
            elif args.sources:
                for sentence in sentences:
                    print(sentence.text)
                    for r in sentence.readings:
                        print(f"{r['char']}\t{r['pinyin']}\t{r['spoken'] or '-'}\t{r['source']}")
            else:
                print(" ".join(r["pinyin"] for sentence in sentences for r in sentence.readings))
        except ValueError as err:  # FrontendError, LexiconError, SsmlError
            parser.exit(2, f"error: {err}\n")
    if args.command == "voices":
        from sambert.voices import VoiceError, find_voices

        try:
            found = find_voices(args.model_dir)
        except VoiceError as err:
            parser.exit(2, f"error: {err}\n")
        if not found:
            parser.exit(1, "no voices installed: pass --model-dir DIR (a ModelScope Sambert-HiFiGAN model) "
                           "or set SAMBERT_MODEL_DIR\n")
        for v in found:
            print(f"{v.name}\t{v.display_name}\t{v.sample_rate} Hz\tspeakers: {', '.join(v.speakers)}"
                  f"\temotions: {', '.join(v.emotions)}")
    if args.command == "synth":
        import logging

        from sambert.engine import synth_to_file
        from sambert.voices import VoiceError

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        from sambert.frontend import Lexicon

        try:
            text = open(args.file, encoding="utf-8").read() if args.file else _read_text(args.text)
            words = Lexicon.from_file(args.lexicon) if args.lexicon else None
            result = synth_to_file(text, args.output, voice=args.voice, emotion=args.emotion,
                                   profile=args.profile, model_dir=args.model_dir, device=args.device,
                                   srt=args.srt, speed=args.speed, pitch=args.pitch, energy=args.energy,
                                   lexicon=words, normalization=_modes(args))
        except (ValueError, OSError, VoiceError) as err:
            parser.exit(2, f"error: {err}\n")
        print(f"wrote {args.output}: {result.stats.summary()}")
    if args.command == "speak":
        from sambert.client import SpeakError, pieces_of, speak_to_file

        pieces = pieces_of(sys.stdin.buffer) if args.text in (None, "-") else [args.text]
        try:
            speak_to_file(args.server, pieces, args.output, timestamps=sys.stderr if args.timestamps else None,
                          auth=args.auth or os.environ.get("SAMBERT_AUTH"), cafile=args.cacert, voice=args.voice,
                          emotion=args.emotion, speed=args.speed)
        except (SpeakError, OSError, ValueError) as err:
            parser.exit(2, f"error: {err}\n")
    if args.command == "share":
        from sambert.server.share import ShareError, share

        try:
            return share(args.port, args.subdomain, args.tunnel_host)
        except ShareError as err:
            parser.exit(2, f"error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
