"""Frontend speed: the first call in a fresh process (jieba's dictionary and the polyphone models load
then) and characters per second after warm-up.

    python benchmarks/frontend_speed.py [--cpp ../shared/eval/cpp] [--sentences 2000] [--starts 3]

Throughput is measured on varied text, the first `--sentences` sentences of CPP's dev split
(Wikipedia, none repeated), read as one text after a warm-up on the next `--sentences` (other
sentences of the same kind: what a running server has seen); and on the mixed sample below (numbers,
money, times) repeated 20 times, which flatters anything cached per word. Characters per second are
given per wall-clock second and per CPU second of this process (the second is steadier on a machine
shared with other work). Each first-call measurement runs in a new interpreter, so nothing is loaded
or cached beforehand.
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SAMPLE = (
    "2023年10月1日，小明花了¥128.50买了3本书，比上个月多了15%。"
    "下午3:45他给13812345678打电话，说气温降到了-5℃，路上要小心。"
    "人工智能正在改变我们的生活方式，GDP增长了6.5%，5G网络覆盖了95%的城市。"
    "他跑得很快，可是还得再练一练；银行行长说这件事得重新调查一下。"
)

STARTUP = """
import time
t0, c0 = time.perf_counter(), time.process_time()
from sambert.frontend import Frontend
t1, c1 = time.perf_counter(), time.process_time()
Frontend().sentences("你好，世界。")
t2, c2 = time.perf_counter(), time.process_time()
print(t1 - t0, t2 - t1, c2 - c0)
"""


def first_calls(n):
    """[(import s, first sentences() s, CPU s of both)] from `n` fresh interpreters."""
    runs = []
    for _ in range(n):
        out = subprocess.run([sys.executable, "-c", STARTUP], cwd=REPO, capture_output=True, text=True, check=True)
        runs.append(tuple(map(float, out.stdout.split())))
    return runs


def throughput(text):
    """[(stage, wall s, CPU s)] for one pass over `text`: the whole frontend first, while the text is
    new to it; then its stages, which find the text's words already read."""
    from sambert.frontend import Frontend, g2p, normalize, polyphone

    frontend = Frontend()
    rows = []
    for name, fn in (("sentences (units)", frontend.sentences), ("normalize", normalize),
                     ("polyphone models", polyphone.read), ("g2p", g2p)):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(text)
        rows.append((name, time.perf_counter() - t0, time.process_time() - c0))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpp", type=Path, default=REPO.parent / "shared" / "eval" / "cpp", help="folder with dev.sent")
    parser.add_argument("--sentences", type=int, default=2000, help="CPP dev sentences in the varied text")
    parser.add_argument("--starts", type=int, default=3, help="fresh interpreters for the first-call time")
    args = parser.parse_args()

    from sambert.frontend import Frontend, cpp

    runs = first_calls(args.starts)
    dev = [item.text for item in cpp.load(args.cpp)]
    varied, other = "\n".join(dev[:args.sentences]), "\n".join(dev[args.sentences:2 * args.sentences])
    Frontend().sentences(other + SAMPLE)  # warm-up: loads jieba and the model, on other text
    texts = (("varied (CPP dev)", varied), ("sample x20", SAMPLE * 20))
    results = [(label, len(text), throughput(text)) for label, text in texts]

    print(f"first call, {len(runs)} fresh interpreters (median; all):")
    for k, name in enumerate(("import sambert.frontend", "first sentences()", "both, CPU")):
        values = [run[k] for run in runs]
        print(f"  {name:<24}{statistics.median(values):7.2f} s   " + " ".join(f"{v:.2f}" for v in values))
    print(f"  {'import + first call':<24}{statistics.median(a + b for a, b, _ in runs):7.2f} s")
    print()
    print(f"{'chars/s (wall, CPU)':<20}" + "".join(f"{label:>28}" for label, _, _ in results))
    for k, (name, _, _) in enumerate(results[0][2]):
        print(f"{name:<20}" + "".join(f"{f'{n / rows[k][1]:,.0f}  {n / rows[k][2]:,.0f}':>28}" for _, n, rows in results))
    print("(" + ", ".join(f"{label}: {n:,} characters" for label, n, _ in results) + ")")


if __name__ == "__main__":
    main()
