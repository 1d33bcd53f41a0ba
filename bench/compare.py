"""Run one benchmark script in a baseline commit and in this tree, in one run, and compare.

    python bench/compare.py --baseline-ref HEAD~1 [--rounds 2] --metric "samples/s (all streams)" \
        --key-columns 4 -- generate.py --quick --skip-compile --presets demo

The baseline is `git archive REF` unpacked into a temporary folder; each round runs the script
(that tree's own copy, or this tree's with `--same-script`) there and here (alternating which goes first, so a busy spell of the shared machine does not fall
on one side only), each tree importing its own `midi2wave`. The last markdown table a run prints
is parsed; rows are matched on their first `--key-columns` cells, and for `--metric` the best
value over the rounds (highest, or lowest with `--lower-is-better`) of each side is printed with
the ratio this tree / baseline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def last_table(text: str) -> tuple[list[str], list[list[str]]]:
    blocks, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    if not blocks:
        raise SystemExit("no markdown table in the output:\n" + text[-2000:])
    table = blocks[-1]
    return table[0], [r for r in table[2:]]


def number(cell: str) -> float:
    return float(cell.rstrip("x").replace(",", ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--metric", required=True, help="column header of the compared number")
    parser.add_argument("--key-columns", type=int, default=1)
    parser.add_argument("--lower-is-better", action="store_true")
    parser.add_argument("--same-script", action="store_true",
                        help="run this tree's copy of the script in both trees (it must only use API both have)")
    parser.add_argument("script", help="a script in bench/, e.g. generate.py")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    script_args = [a for a in args.args if a != "--"]

    with tempfile.TemporaryDirectory(prefix="midi2wave-baseline-") as tmp:
        archive = Path(tmp) / "base.tar"
        with archive.open("wb") as f:
            subprocess.run(["git", "archive", args.baseline_ref], cwd=ROOT, stdout=f, check=True)
        base = Path(tmp) / "tree"
        with tarfile.open(archive) as tar:
            tar.extractall(base)
        if args.same_script:  # the script finds its tree from its own path: put this tree's copy there
            shutil.copy(ROOT / "bench" / args.script, base / "bench" / args.script)
        trees = {"baseline": base, "this tree": ROOT}
        best: dict[str, dict[tuple, float]] = {name: {} for name in trees}
        header = None
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(reversed(trees))
            for name in order:
                tree = trees[name]
                env = {**os.environ, "PYTHONPATH": str(tree)}
                out = subprocess.run([sys.executable, str(tree / "bench" / args.script), *script_args], cwd=tree,
                                     env=env, capture_output=True, text=True)
                if out.returncode:
                    raise SystemExit(f"{name}: {args.script} failed:\n{out.stderr[-3000:]}")
                header, rows = last_table(out.stdout)
                col = header.index(args.metric)
                for row in rows:
                    key = tuple(row[:args.key_columns])
                    if not row[col].strip():  # a row without this measure (a floor's first sound)
                        continue
                    value = number(row[col])
                    old = best[name].get(key)
                    better = old is None or (value < old if args.lower_is_better else value > old)
                    best[name][key] = value if better else old
                print(f"# round {r + 1}/{args.rounds}: {name} done (load {os.getloadavg()[0]:.1f})", flush=True)
    keys = [k for k in best["this tree"] if k in best["baseline"]]
    print(f"\n{args.script} {' '.join(script_args)}; best of {args.rounds} per side; baseline {args.baseline_ref}\n")
    print("| " + " | ".join(header[:args.key_columns]) + f" | {args.metric}, baseline | this tree | this / baseline |")
    print("|" + "---|" * args.key_columns + "---:|---:|---:|")
    for k in keys:
        b, t = best["baseline"][k], best["this tree"][k]
        print("| " + " | ".join(k) + f" | {b:g} | {t:g} | {t / b:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
