"""The live engine's 64-sample blocks without JACK, this tree against an earlier commit, on one
core: what the audio callback's own work costs, per block (mean, 99th and 99.9th percentile,
worst), on `examples/example.mid` looped (or `--midi`: `examples/dense.mid` is denser), with the
garbage collector frozen as `midi2wave live` runs. The commit's package is extracted as `midi2wave_base` (bench/kernel_ab.py);
the two render in turn, round by round, each round in a fresh process (two packages' engines in one
process do not run at the speed of either alone), so that a busy spell of the shared machine falls
on both. Also says whether they render bit-identical audio (the piece, year 2011).

    python bench/live_blocks.py --base a030932~1 [--midi examples/dense.mid] [--seconds 30] [--rounds 3]
        [--block 64] [--core 0]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
EXAMPLE = str(ROOT / "examples" / "example.mid")


def engine(package: str):
    """(LiveSynth of the bundled live model, year 2011, prepared as `live` prepares it; the
    package's render.live module; the model)."""
    live = importlib.import_module(f"{package}.render.live")
    checkpoint = importlib.import_module(f"{package}.checkpoint")
    files = importlib.import_module(f"{package}.files")
    model, _ = checkpoint.load_model(files.LIVE_ASSETS_DIR)
    synth = live.LiveSynth(model, year=2011)
    if hasattr(synth, "prepare"):  # what `live` does before its callback runs (absent in older trees)
        synth.prepare()
    return synth, live, model


def block_times(synth, live, events, n_samples: int, block: int) -> np.ndarray:
    """Seconds per block of a fresh stream fed `events`."""
    times = []
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        blocks = live.render_events(synth, events, n_samples, block)
        while True:
            t = time.perf_counter()
            try:
                next(blocks)
            except StopIteration:
                break
            times.append(time.perf_counter() - t)
    finally:
        gc.enable()
        gc.unfreeze()
    return np.array(times)


def worker(package: str, path: str, midi: str, seconds: float, block: int, out: str) -> None:
    """One round of one tree: its block times (ms) and its render of the piece, saved to `out`."""
    from live import looped_events  # bench/live.py

    sys.path.insert(0, path)
    synth, live, model = engine(package)
    events = looped_events(live, midi, synth.sr, seconds)
    times = block_times(synth, live, events, int(seconds * synth.sr), block)
    audio = live.render_file_live(model, midi, year=2011, block_samples=block)
    np.savez(out, times_ms=1e3 * times, audio=audio, sr=synth.sr)


def main() -> int:
    import subprocess

    from kernel_ab import extract_base

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the commit to compare with")
    ap.add_argument("--midi", default=EXAMPLE, help="the piece, looped (default: examples/example.mid)")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--worker", nargs=3, metavar=("PACKAGE", "PATH", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.sched_setaffinity(0, {args.core})
    if args.worker:
        worker(args.worker[0], args.worker[1], args.midi, args.seconds, args.block, args.worker[2])
        return 0
    tmp = tempfile.mkdtemp()
    extract_base(args.base, Path(tmp))
    trees = {"midi2wave_base": tmp, "midi2wave": str(ROOT)}
    times: dict[str, list[np.ndarray]] = {name: [] for name in trees}
    audio: dict[str, np.ndarray] = {}
    sr = 16000
    for r in range(args.rounds):
        for name, path in trees.items():
            out = os.path.join(tmp, f"{name}-{r}.npz")
            subprocess.run([sys.executable, __file__, "--base", args.base, "--midi", args.midi,
                            "--seconds", str(args.seconds),
                            "--block", str(args.block), "--core", str(args.core), "--worker", name, path, out],
                           check=True)
            with np.load(out) as f:
                times[name].append(f["times_ms"])
                audio[name] = f["audio"]
                sr = int(f["sr"])
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    period_ms = 1e3 * args.block / sr
    piece = Path(args.midi).name
    print(f"live engine, {args.block}-sample blocks ({period_ms:g} ms), {piece} looped to {args.seconds:g} s, "
          f"{args.rounds} rounds, core {args.core} (load average {os.getloadavg()[0]:.2f})")
    print(f"{'tree':>16}  {'mean ms':>7}  {'p99 ms':>6}  {'p99.9 ms':>8}  {'worst ms':>8}  {'blocks over the period':>22}")
    stats = {}
    for name, runs in times.items():
        d = np.concatenate(runs)
        stats[name] = (d.mean(), np.percentile(d, 99), np.percentile(d, 99.9), d.max())
        label = args.base if name == "midi2wave_base" else "this tree"
        print(f"{label:>16}  {stats[name][0]:7.3f}  {stats[name][1]:6.3f}  {stats[name][2]:8.3f}  {stats[name][3]:8.3f}"
              f"  {int((d > period_ms).sum()):22d}")
    ratio = [a / b for a, b in zip(stats["midi2wave"], stats["midi2wave_base"])]
    print(f"{'this / base':>16}  {ratio[0]:7.2f}  {ratio[1]:6.2f}  {ratio[2]:8.2f}  {ratio[3]:8.2f}")
    same = np.array_equal(audio["midi2wave"], audio["midi2wave_base"])
    print(f"same audio ({piece}, 2011, {args.block}-sample blocks): {'yes' if same else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
