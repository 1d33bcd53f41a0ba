"""A/B of `scripts/fit_partials.py`'s level fit (`fit_levels`) against an earlier commit's, in one
process, on synthetic observations the size of a real fit (default: 40,000 partial levels of 48
partials, a grid every 3 semitones, the bundled model's settings): the time of each, its ratio, and
whether the two fits agree (the largest difference of the rounded tables and slopes).

    python bench/fit_levels.py --base 162c30f [--rows 40000] [--partials 48] [--rounds 1]

The rounds alternate base and tree, so a busy spell of the shared machine falls on both.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def load_base(commit: str, into: Path):
    """`scripts/fit_partials.py` as it was at `commit`, imported as `fit_partials_base`."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:scripts/fit_partials.py"], check=True,
                            capture_output=True, text=True).stdout
    path = into / "fit_partials_base.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("fit_partials_base", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def observations(rows: int, partials: int, seed: int = 0) -> np.ndarray:
    """float64 [rows, 4] (pitch, velocity, k, amplitude), as `measure_levels` gives them: levels
    falling with the partial and the pitch, brighter when louder, 1 dB of scatter and 5 % outliers."""
    rng = np.random.default_rng(seed)
    pitch = rng.integers(21, 109, rows).astype(np.float64)
    velocity = rng.integers(5, 127, rows).astype(np.float64)
    k = rng.integers(1, partials + 1, rows).astype(np.float64)
    db = (-20 - 1.5 * (k - 1) - 0.1 * (pitch - 60) + (1 + 0.02 * k) * 20 * np.log10(velocity / 64)
          + rng.normal(0, 1, rows))
    outlier = rng.random(rows) < 0.05  # a partial caught on another note's
    db[outlier] += rng.uniform(10.0, 25.0, int(outlier.sum()))
    return np.stack([pitch, velocity, k, 10 ** (db / 20)], axis=1)


def largest_difference(a, b) -> float:
    """The largest |difference| between two fits' tables and slopes (rounded, as fit_levels returns them)."""
    return max(float(np.abs(np.asarray(a[i]) - np.asarray(b[i])).max()) for i in (1, 2))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the commit to compare with (e.g. 162c30f)")
    ap.add_argument("--rows", type=int, default=40000)
    ap.add_argument("--partials", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args(argv)
    import fit_partials

    obs = observations(args.rows, args.partials)
    with tempfile.TemporaryDirectory() as folder:
        base = load_base(args.base, Path(folder))
        times: dict[str, list[float]] = {"base": [], "tree": []}
        fits = {}
        for _ in range(args.rounds):
            for name, module in (("base", base), ("tree", fit_partials)):
                start = time.perf_counter()
                fits[name] = module.fit_levels(obs, partials=args.partials)
                times[name].append(time.perf_counter() - start)
    best = {name: min(t) for name, t in times.items()}
    print(f"{args.rows} rows, {args.partials} partials, grid {len(fits['tree'][0])} pitches, best of {args.rounds}")
    print(f"base {args.base}: {best['base']:.2f} s   tree: {best['tree']:.3f} s   "
          f"tree/base {best['tree'] / best['base']:.4f}")
    print(f"median |residual|: base {fits['base'][3]:.4f} dB, tree {fits['tree'][3]:.4f} dB; "
          f"largest difference of the rounded tables and slopes: {largest_difference(fits['base'], fits['tree']):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
