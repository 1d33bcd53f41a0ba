"""`midi2wave live --jack` when the server's period changes mid-stream (PipeWire changes its quantum as
other programs come and go; `jack_bufsize` does it on jackd).

Each run starts a jackd (dummy backend, realtime when allowed) at `--config` on the other core,
runs the engine (default buffering) on `--midi` from a MIDI sender for `--seconds`, and from the
engine's first period changes the period with `jack_bufsize` to each of `--sizes` at equal
intervals (each change's return code and the period the backend then has are printed). Each round runs
twice, alternating which goes first: as the package is (`_Processor.resize`: the callback waits up
to 0.8 of a period for a block the thread could not render a period ahead) and with the wait held
at half a period whatever the period (before). Printed per run: where it renders, xruns and late
blocks since the engine's activation (late: in all, and so far at each change), errors and notes
played.

    python bench/live_resize.py [--config 48000:128] [--sizes 1024 128] [--seconds 12] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import live as bench_live  # noqa: E402  (bench/live.py: jackd, the MIDI sender, the window)

ROOT = Path(__file__).resolve().parents[1]


def run(model, events, rate: int, period: int, sizes: list[int], seconds: float, server: set[int], half: bool) -> str:
    from midi2wave.render import playback
    from midi2wave.render.live import LiveSynth

    resize = playback._Processor.resize
    init = playback.JackBackend.__init__
    lates: list[int] = []
    changed: list[str] = []
    backends: list = []

    def keep(self, *a, **k):
        init(self, *a, **k)
        backends.append(self)

    def change():
        while not backends or backends[0].proc.meter.periods == 0:  # from the engine's first period
            time.sleep(0.01)
        for n in sizes:
            time.sleep(seconds / (len(sizes) + 1))
            lates.append(backends[0].proc.late)
            done = subprocess.run(["jack_bufsize", str(n)], capture_output=True, env=dict(os.environ), check=False)
            time.sleep(0.1)
            changed.append(f"{n}: rc {done.returncode}, period {backends[0].period}")

    jackd = None
    try:
        if half:  # before: the callback waits half a period, whatever the period
            playback._Processor.resize = lambda self, frames: None
        playback.JackBackend.__init__ = keep
        jackd = bench_live.start_jackd(rate, period, cores=server)
        os.environ["JACK_DEFAULT_SERVER"] = jackd.name
        threading.Thread(target=change, daemon=True).start()
        synth = LiveSynth(model)
        backend, _, window = bench_live.run_graph(synth, events, rate, seconds, None, server)
        p = backend.proc
        return (f"{'half' if half else 'resize':>6}  {'rt' if jackd.realtime else 'no-rt':>5}  "
                f"{'thread' if p.render_thread else 'callback':>8}  xruns {p.meter.xruns:3d}  late {p.late:4d} "
                f"(so far at each change: {', '.join(map(str, lates))})  errors {p.errors}  notes {synth.stats.notes}"
                f"  [{'; '.join(changed)}]")
    finally:
        playback.JackBackend.__init__ = init
        playback._Processor.resize = resize
        if jackd is not None:
            jackd.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midi", default=str(ROOT / "examples" / "example.mid"))
    ap.add_argument("--config", default="48000:128")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 128])
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--core", type=int, default=0)
    args = ap.parse_args()
    from midi2wave.files import LIVE_ASSETS_DIR, find_checkpoint
    from midi2wave.render.livemodel import load_live_model

    rate, period = (int(x) for x in args.config.split(":"))
    server = bench_live.server_cores(args.core)  # the server's and the sender's: before this process is pinned
    os.sched_setaffinity(0, {args.core})
    model = load_live_model(find_checkpoint(LIVE_ASSETS_DIR))
    events = bench_live.piece_events(args.midi, rate, args.seconds)
    print(f"{args.config}, periods {' -> '.join(map(str, [period, *args.sizes]))} every "
          f"{args.seconds / (len(args.sizes) + 1):.1f} s, {Path(args.midi).name}, load average {os.getloadavg()[0]:.2f}")
    for r in range(args.rounds):
        for half in ((False, True) if r % 2 == 0 else (True, False)):
            print(f"round {r + 1}  " + run(model, events, rate, period, args.sizes, args.seconds, server, half),
                  flush=True)


if __name__ == "__main__":
    try:
        main()
    except bench_live.ServerError as e:
        raise SystemExit(f"bench/live_resize.py: {e}")
