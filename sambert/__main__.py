"""Command line: `python -m sambert <command> ...`.

Each command is a thin wrapper over one public function of the package, so what the CLI does is
what the library does.
"""

import argparse
import sys


def _read_text(text):
    # "-" or no argument reads stdin, so long texts can be piped in.
    if text in (None, "-"):
        return sys.stdin.read()
    return text


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

    args = parser.parse_args(argv)

    if args.command in ("normalize", "g2p", "units"):
        from sambert import frontend

        text = _read_text(args.text)
        try:
            if args.command == "normalize":
                print(frontend.normalize(text))
            elif args.command == "g2p":
                print(" ".join(frontend.g2p(text)))
            else:
                for sentence in frontend.Frontend().sentences(text):
                    print(" ".join(sentence.units))
        except frontend.FrontendError as err:
            parser.exit(2, f"error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
