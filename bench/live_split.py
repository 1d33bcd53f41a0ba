"""Where the live engine's period goes: its numba kernel call against everything around it (the
context step, the roll and excitation builders, the events, the bookkeeping), split by how many
events the period had, and the kernel's cost per oscillator alive (a least-squares fit). One core,
the bundled live model, the render thread's loop (`RateAdapter.produce`, one period ahead) without
JACK, the garbage collector frozen as `midi2wave live` runs. Prints a table; ratios against a
baseline are bench/live_blocks.py's job (this is where to look before changing the engine).

    python bench/live_split.py [--midi examples/dense.mid] [--seconds 40] [--rate 16000] [--period 64] [--core 0]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midi", default=str(ROOT / "examples" / "dense.mid"))
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--rate", type=int, default=16000)
    ap.add_argument("--period", type=int, default=64)
    ap.add_argument("--core", type=int, default=0)
    args = ap.parse_args()
    os.sched_setaffinity(0, {args.core})

    from live import piece_events  # bench/live.py
    from midi2wave.files import LIVE_ASSETS_DIR
    from midi2wave.render import kernel
    from midi2wave.render.live import LiveSynth, RateAdapter
    from midi2wave.render.livemodel import load_live_model

    synth = LiveSynth(load_live_model(LIVE_ASSETS_DIR)).prepare()
    calls: list[tuple[int, float]] = []  # (oscillators alive before the call, seconds) per kernel call
    run = kernel.NumbaState.run

    def timed_run(self, *a, **kw):
        bank = kw.get("bank", a[16] if len(a) > 16 else None)
        alive = int(bank.state.n_active[0]) if bank is not None else 0
        t = time.perf_counter()
        run(self, *a, **kw)
        calls.append((alive, time.perf_counter() - t))

    kernel.NumbaState.run = timed_run
    adapter = RateAdapter(synth, args.rate, ahead_samples=args.period)
    events = piece_events(args.midi, args.rate, args.seconds)
    out = np.empty(args.period, np.float32)
    total, in_kernel, n_events, alive = [], [], [], []
    j = 0
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        for start in range(0, int(args.seconds * args.rate), args.period):
            block = []
            while j < len(events) and events[j][0] < start + args.period:
                block.append((events[j][0] - start, events[j][1]))
                j += 1
            calls.clear()
            t = time.perf_counter()
            adapter.ring.write(adapter.produce(block, args.period))
            total.append(time.perf_counter() - t)
            in_kernel.append(sum(c[1] for c in calls))
            alive.append(calls[0][0] if calls else -1)
            n_events.append(len(block))
            adapter.ring.read_into(out)
    finally:
        gc.enable()
        gc.unfreeze()
        kernel.NumbaState.run = run
    tot, ker, ev, osc = 1e3 * np.array(total), 1e3 * np.array(in_kernel), np.array(n_events), np.array(alive)
    rest = tot - ker
    import midi2wave

    print(f"{Path(args.midi).name}, {args.seconds:g} s, {args.rate}:{args.period}, core {args.core} "
          f"(load average {os.getloadavg()[0]:.2f}; {Path(midi2wave.__file__).parent}); ms per period")
    print(f"{'periods':>22}  {'count':>6}  {'total mean':>10}  {'p99':>6}  {'kernel':>6}  {'rest':>6}  {'rest p99':>8}")
    groups = [("all", ev >= 0), ("without an event", ev == 0), ("with 1 event", ev == 1),
              ("with 2 or more", ev >= 2)]
    for name, m in groups:
        if m.any():
            print(f"{name:>22}  {int(m.sum()):6d}  {tot[m].mean():10.3f}  {np.percentile(tot[m], 99):6.3f}  "
                  f"{ker[m].mean():6.3f}  {rest[m].mean():6.3f}  {np.percentile(rest[m], 99):8.3f}")
    ran = osc >= 0
    if ran.sum() > 10:
        fit = np.linalg.lstsq(np.c_[np.ones(int(ran.sum())), osc[ran]], ker[ran], rcond=None)[0]
        print(f"kernel ms = {fit[0]:.3f} + {1e3 * fit[1]:.3f} us x oscillators alive "
              f"(mean {osc[ran].mean():.0f}, most {osc[ran].max()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
