"""Frontend speed: start-up (first call loads jieba's dictionary and the polyphone model) and characters per second after warm-up.

    python benchmarks/frontend_speed.py [--repeat N]

Runs the start-up measurement in a fresh interpreter so nothing is cached in this one.
"""

import argparse
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
t0 = time.perf_counter()
from sambert.frontend import Frontend
t1 = time.perf_counter()
Frontend().sentences("你好，世界。")
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="copies of the sample text per timed call")
    args = parser.parse_args()

    out = subprocess.run([sys.executable, "-c", STARTUP], cwd=REPO, capture_output=True, text=True, check=True)
    import_s, first_call_s = map(float, out.stdout.split())

    from sambert.frontend import Frontend, g2p, normalize, polyphone

    frontend = Frontend()
    frontend.sentences(SAMPLE)  # warm-up
    text = SAMPLE * args.repeat
    rows = []
    stages = (("normalize", normalize), ("polyphone model", polyphone.model().read), ("g2p", g2p),
              ("sentences (units)", frontend.sentences))
    for name, fn in stages:
        t0 = time.perf_counter()
        fn(text)
        dt = time.perf_counter() - t0
        rows.append((name, len(text), dt, len(text) / dt))

    print(f"import sambert.frontend        {import_s * 1000:8.0f} ms")
    print(f"first sentences() (jieba, model) {first_call_s * 1000:6.0f} ms")
    print()
    print(f"{'stage':<20}{'chars':>8}{'seconds':>10}{'chars/s':>10}")
    for name, n, dt, rate in rows:
        print(f"{name:<20}{n:>8}{dt:>10.3f}{rate:>10.0f}")


if __name__ == "__main__":
    main()
