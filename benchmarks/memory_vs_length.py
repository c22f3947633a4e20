"""Peak memory vs text length: whole-utterance synthesis (the usual deployment) vs our streaming engine.

Each (mode, length) runs in a fresh Python process, so one run's allocations cannot hide another's.
On the CPU the figure is the process's peak RSS (VmHWM: it sees every torch allocation); the engine
and voice are loaded and warmed up on a short sentence first, and the peak is reset before the
measured request, so "request" is what the text added on top of the loaded models. On CUDA it is
torch.cuda.max_memory_allocated.

    python benchmarks/memory_vs_length.py [--profile cpu] [--lengths 50 150 500 2000] [--modes whole stream]
    BENCH_THREADS=2 python benchmarks/memory_vs_length.py --modes stream --lengths 50 1000 3000   # issue 14

The voice is the bundled default voice (BENCH_VOICE=stand-in: the full-size stand-in); BENCH_THREADS sets
torch's intra-op threads (default 1).
"""

import argparse
import json
import os
import subprocess
import sys

from _common import make_engine, print_table, quiet_threads, text_of, whole_utterance

MiB = 2**20


def measure(mode, n_chars, profile):
    """One run in this process: returns {peak, before, audio_seconds, voice}."""
    import torch

    from sambert.stats import PeakMemory

    quiet_threads()
    engine, voice = make_engine(profile)
    # warm-up as the app does it at start: lazy initialisation is not the text's cost
    engine.synthesize("预热一下。")
    engine.warm_up_vocoder()
    memory = PeakMemory([engine.profile.acoustic_device, engine.profile.vocoder_device])
    if memory.cuda:
        torch.cuda.empty_cache()
    text = text_of(n_chars)
    memory.reset()
    before = memory.peak()
    if mode == "whole":
        samples = len(whole_utterance(engine, text))
    else:
        samples = sum(len(chunk) for chunk in engine.stream(text))  # chunks are dropped, as a player would
    return {"peak": memory.peak(), "before": before, "kind": memory.kind,
            "audio_seconds": samples / engine.sample_rate(), "voice": voice}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 150, 500, 2000])
    parser.add_argument("--modes", nargs="+", default=["whole", "stream"], choices=["whole", "stream"])
    parser.add_argument("--one", nargs=2, metavar=("MODE", "CHARS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.profile)))
        return

    results = {}
    for mode in args.modes:
        for n in args.lengths:
            out = subprocess.run([sys.executable, __file__, "--profile", args.profile, "--one", mode, str(n)],
                                 capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{mode} {n} chars failed:\n{out.stderr[-2000:]}")
            results[mode, n] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{mode:6} {n:5} chars: {results[mode, n]['peak'] / MiB:.0f} MiB", file=sys.stderr)

    first = next(iter(results.values()))
    threads = os.environ.get("BENCH_THREADS", "1")
    print(f"voice: {first['voice']}; profile {args.profile}; {threads} thread(s); memory: {first['kind']}")
    rows = []
    for n in args.lengths:
        row = [n, f"{results.get(('whole', n), results.get(('stream', n)))['audio_seconds']:.1f}"]
        for mode in args.modes:
            r = results[mode, n]
            row += [f"{r['peak'] / MiB:.0f}", f"{(r['peak'] - r['before']) / MiB:.0f}"]
        rows.append(row)
    headers = ["chars", "audio s"]
    for mode in args.modes:
        headers += [f"{mode} peak MiB", f"{mode} request MiB"]
    print_table(headers, rows)
    lo, hi = min(args.lengths), max(args.lengths)
    for mode in args.modes:
        print(f"{mode}: peak({hi})/peak({lo}) = {results[mode, hi]['peak'] / results[mode, lo]['peak']:.3f}")


if __name__ == "__main__":
    main()
