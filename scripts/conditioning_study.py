#!/usr/bin/env python3
"""The conditioning study of issue 5: train each config in configs/study/ with the same budget,
evaluate each on held-out demo pieces, and print one markdown table.

    python scripts/conditioning_study.py --data STORE --runs RUNS [--parallel 2] [--variants a-paper c-excitation]

Resumable: a variant whose run folder holds a finished checkpoint is not trained again (an
unfinished one resumes), and one with an eval.json is not evaluated again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "configs" / "study"


def run(cmd: list[str], log: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with open(log, "a") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, env=env)


def variant(name: str, data: Path, runs: Path, excerpts: int, seconds: float, steps: int | None) -> dict:
    config = STUDY / f"{name}.json"
    out = runs / name
    max_steps = steps or json.loads(config.read_text())["train"]["max_steps"]
    last = out / "checkpoints" / "last.pt"
    train = [sys.executable, "-m", "midi2wave.cli", "train", "-c", str(config), "--data", str(data),
             "--out", str(out), "--max-steps", str(max_steps), "-q"]
    if last.exists():
        train.append("--resume")
    run(train, runs / f"{name}.log")
    result = out / "eval.json"
    if not result.exists():
        run([sys.executable, "-m", "midi2wave.cli", "evaluate", "--checkpoint", str(last), "--data", str(data),
             "--split", "test", "--excerpts", str(excerpts), "--excerpt-seconds", str(seconds),
             "--json", str(result), "--plots", str(out / "plots"), "-q"], runs / f"{name}.log")
    return json.loads(result.read_text())


def _get(d: dict, *keys: str, default=float("nan")):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def table(results: dict[str, dict]) -> str:
    lines = ["| variant | NLL bits/sample | gain (other MIDI) | gain (zeroed) | F1 generated | F1 ceiling | F1 floor |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        gain = r.get("conditioning_gain", {})
        f1 = r.get("transcription", {})
        lines.append(
            f"| {name} | {_get(gain, 'nll_true'):.3f} | {_get(gain, 'gain_swapped'):+.3f} | "
            f"{_get(gain, 'gain_zeroed'):+.3f} | {_get(f1, 'generated', 'f1'):.3f} | "
            f"{_get(f1, 'ground_truth', 'f1'):.3f} | {_get(f1, 'generated_other_midi', 'f1'):.3f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="store made by `midi2wave prepare` from demo data")
    parser.add_argument("--runs", type=Path, required=True, help="folder for the runs")
    parser.add_argument("--variants", nargs="*", default=None, help="config names in configs/study (default: all)")
    parser.add_argument("--parallel", type=int, default=1, help="variants trained at once (one thread each)")
    parser.add_argument("--max-steps", type=int, default=None, help="override every variant's budget")
    parser.add_argument("--excerpts", type=int, default=8)
    parser.add_argument("--excerpt-seconds", type=float, default=4.0)
    args = parser.parse_args()
    names = args.variants or sorted(p.stem for p in STUDY.glob("*.json"))
    args.runs.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.parallel) as pool:
        futures = {n: pool.submit(variant, n, args.data, args.runs, args.excerpts, args.excerpt_seconds,
                                  args.max_steps) for n in names}
        results = {n: f.result() for n, f in futures.items()}
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
