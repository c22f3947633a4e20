"""Frontend accuracy against the field: CPP and g2pL polyphones and WeTextProcessing's normalisation cases.

    python benchmarks/frontend_accuracy.py [--cpp ../shared/eval/cpp] [--g2pl tests/data]

Polyphones: the marked character's pinyin, for ours (with and without our everyday polyphone model),
plain pypinyin and the g2pM package, each where installed; all sentences and the all-Chinese ones (no
digits or Latin letters), which is how the project's CPP test-split figures are taken. Two splits:
CPP's dev split (g2pM's dataset, Wikipedia, 623 characters) and g2pL's (everyday web text, 114
frequent characters; the copy in tests/data, see its README), on which our everyday model is trained
(its train split, never this one).
Normalisation: tests/data/frontend_wetext_cases.tsv (WeTextProcessing's own Chinese TN cases), by
category, for ours and for `wetext` (WeTextProcessing's prebuilt FSTs) where installed.
"""

import argparse
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sambert.frontend import cpp, normalize  # noqa: E402

HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")


def pypinyin_readings(items):
    from pypinyin import Style, lazy_pinyin

    out = []
    for item in items:
        run = next(m for m in HAN_RUN.finditer(item.text) if m.start() <= item.index < m.end())
        out.append(lazy_pinyin(run.group(), style=Style.TONE3, neutral_tone_with_five=True)[item.index - run.start()])
    return out


def g2pm_readings(items):
    from g2pM import G2pM

    model = G2pM()
    return [model(item.text, tone=True, char_split=True)[item.index].replace("u:", "v") for item in items]


def without_everyday_model(items):
    return cpp.ours(items, everyday_model=False)


def polyphones(title, items):
    print(f"{title}: {len(items)} sentences, {sum(i.all_chinese for i in items)} all-Chinese")
    print(f"{'system':<26}{'all':>8}{'all-Chinese':>13}{'seconds':>9}")
    for name, read in (("sambert", cpp.ours), ("sambert, no everyday model", without_everyday_model),
                       ("pypinyin", pypinyin_readings), ("g2pM", g2pm_readings)):
        t0 = time.perf_counter()
        try:
            predictions = read(items)
        except ImportError as err:
            print(f"{name:<26}  not installed ({err})")
            continue
        seconds = time.perf_counter() - t0
        print(f"{name:<26}{cpp.accuracy(items, predictions):>8.2%}"
              f"{cpp.accuracy(items, predictions, all_chinese=True):>13.2%}{seconds:>9.1f}")


def load_cases(path):
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            category, written, spoken = line.split("\t")
            cases.append((category, written, spoken.split("|")))
    return cases


def normalisation(path):
    cases = load_cases(path)
    systems = {"sambert": normalize}
    try:
        from wetext import Normalizer

        systems["wetext"] = Normalizer(lang="zh", operator="tn").normalize
    except ImportError:
        print("wetext not installed: ours only")
    passed = {name: defaultdict(int) for name in systems}
    totals = defaultdict(int)
    misses = defaultdict(list)
    for category, written, spoken in cases:
        totals[category] += 1
        for name, run in systems.items():
            out = run(written)
            if out in spoken:
                passed[name][category] += 1
            else:
                misses[name].append(f"{written} -> {out}")
    print(f"\nWeTextProcessing's Chinese TN cases ({len(cases)}): cases passed")
    print(f"{'category':<12}{'cases':>6}" + "".join(f"{name:>10}" for name in systems))
    for category in totals:
        print(f"{category:<12}{totals[category]:>6}" + "".join(f"{passed[n][category]:>10}" for n in systems))
    print(f"{'total':<12}{len(cases):>6}" + "".join(f"{sum(passed[n].values()):>10}" for n in systems))
    for name in systems:
        print(f"\n{name} misses: " + ("; ".join(misses[name]) or "none"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpp", type=Path, default=REPO.parent / "shared" / "eval" / "cpp", help="folder with dev.sent, dev.lb")
    parser.add_argument("--g2pl", type=Path, default=REPO / "tests" / "data", help="folder with g2pl_dev.sent, g2pl_dev.lb")
    parser.add_argument("--cases", type=Path, default=REPO / "tests" / "data" / "frontend_wetext_cases.tsv")
    args = parser.parse_args()
    polyphones("CPP dev split", cpp.load(args.cpp))
    print()
    polyphones("g2pL dev split", cpp.load(args.g2pl, "g2pl_dev"))
    normalisation(args.cases)


if __name__ == "__main__":
    main()
