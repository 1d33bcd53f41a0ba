"""Default `midi2wave synthesize` against one stream on a long dense piece: the whole command
(imports, model load, numba cache load, MIDI, generation, WAV written), alternating the two, each
round preceded by a wait for a quiet machine (1-min load average below --quiet-load, up to
--max-wait seconds; the load measured is printed). Ratio = default wall / one-stream wall of the
same round.

    python bench/long_render.py PIECE.mid [--rounds 2] [--quiet-load 0.7] [--max-wait 600]

The baseline command is `... synthesize PIECE -o OUT --force -q --threads 1 --chunk-seconds 0`,
the measured one the same without the two flags. PIECE in BENCHMARKS.md: the dense 2-minute excerpt
made with bench/pieces.py.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wait_quiet(limit: float, max_wait: float) -> float:
    t0 = time.time()
    while os.getloadavg()[0] >= limit and time.time() - t0 < max_wait:
        time.sleep(10)
    return os.getloadavg()[0]


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall s, user + system CPU s) of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(argv, check=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT)))
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("piece", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quiet-load", type=float, default=0.7)
    parser.add_argument("--max-wait", type=float, default=600.0)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp()) / "out.wav"
    base = [sys.executable, "-m", "midi2wave.cli", "synthesize", str(args.piece.resolve()), "-o", str(out), "--force", "-q"]
    runs = {"one stream (--threads 1 --chunk-seconds 0)": base + ["--threads", "1", "--chunk-seconds", "0"],
            "default": base}
    print("| round | run | load avg before | wall s | CPU s | default / one stream (wall) |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in range(1, args.rounds + 1):
        walls = {}
        for name, argv in runs.items():
            load = wait_quiet(args.quiet_load, args.max_wait)
            wall, cpu = timed(argv)
            walls[name] = wall
            ratio = f"{wall / walls[next(iter(runs))]:.2f}" if name == "default" else ""
            print(f"| {r} | {name} | {load:.2f} | {wall:.1f} | {cpu:.1f} | {ratio} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
