"""Time to first audio (TTFA) vs text length, and real-time factor (RTF), of the streaming engine.

TTFA is the engine's work from the request to its first audio chunk (frontend of the first sentence,
phone-level stage, the first decoder block, post-net, one vocoder chunk); the stream is then closed,
which also shows that a long request stops at once. RTF is work time / audio time over a whole request.

    python benchmarks/latency.py [--profile cpu] [--repeat 3]
"""

import argparse
import statistics
import time

from _common import make_engine, print_table, quiet_threads, text_of


def first_audio(engine, text):
    request = engine.stream(text)
    next(request)
    request.close()
    return request.stats.time_to_first_audio


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--lengths", type=int, nargs="+", default=[20, 2000])
    parser.add_argument("--rtf-chars", type=int, default=150)
    args = parser.parse_args()
    quiet_threads()
    engine, voice = make_engine(args.profile)
    engine.synthesize("预热一下。")
    print(f"voice: {voice}; {engine.describe()}")

    rows, ttfa = [], {}
    for n in args.lengths:
        times = [first_audio(engine, text_of(n)) for _ in range(args.repeat)]
        ttfa[n] = statistics.median(times)
        rows.append([n, f"{ttfa[n] * 1000:.0f}", f"{min(times) * 1000:.0f}", f"{max(times) * 1000:.0f}"])
    print_table(["chars", "TTFA median ms", "min ms", "max ms"], rows)
    lo, hi = min(args.lengths), max(args.lengths)
    print(f"TTFA({hi})/TTFA({lo}) = {ttfa[hi] / ttfa[lo]:.3f}")

    start = time.perf_counter()
    result = engine.synthesize(text_of(args.rtf_chars))
    wall = time.perf_counter() - start
    s = result.stats
    print_table(["chars", "audio s", "work s", "RTF", "wall s"],
                [[args.rtf_chars, f"{s.audio_seconds:.2f}", f"{s.compute_seconds:.2f}",
                  f"{s.real_time_factor:.3f}", f"{wall:.2f}"]])


if __name__ == "__main__":
    main()
