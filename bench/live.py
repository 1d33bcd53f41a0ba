"""The live engine under a real JACK server on one core: callback time against the period, xruns,
CPU load and the highest polyphony held without an xrun (`midi2wave live --jack`'s work).

For each rate:period, a JACK server (jackd, dummy backend, realtime when allowed) runs on another
core; this process (the engine's JACK client) is pinned to one core, and a MIDI sender (another process)
plays `--midi` (looped) to it for `--seconds`, `--rounds` times. Reported per configuration and round,
over the `--seconds` the MIDI plays (from 0.1 s after the sender's connection): callback time per
period (mean, 99th percentile, worst) and as a share of the period, xruns and the engine's callbacks
longer than the period (its own work, or a stall of the machine inside the callback), the engine's
CPU load (callback
time / wall time), and the same blocks rendered without JACK in this run (the baseline: the
engine's own time; callback / baseline shows what JACK adds), and the xruns of a client that only
writes silence on the same server for as long, and of one that first spins for the engine's mean
render time (the machine's own stalls, at the engine's load; these two count from their activation),
and apart the engine's xruns outside the window (its activation, the sender joining and leaving: a
keyboard is connected once). `--polyphony`: then
chords of N held keys (sustain pedal down) for 3 s each at 16 kHz, period 64, N rising until an
xrun.

Each configuration runs once per `--ahead` value (default 4 and 0: `midi2wave live --ahead`, the
render thread with 8 ms of latency at 16 kHz, and the render in the callback with 4 ms), the same
machine and minute for both. With the render thread, the render time is the thread's per period,
the callback only copies a block, and "late" counts the blocks it did not have in time (silence,
as audible as an xrun). "Latest end in cycle" is how far into the server's cycle the callback
ended (JACK's frames since the cycle's start: its wake-up and the GIL's wait included); "ends
over" counts periods where that passed the period, the engine's own part in the xruns.

    python bench/live.py [--midi FILE] [--seconds 60] [--configs 16000:64 16000:128 48000:96 48000:192]
                         [--ahead 4 0] [--core 0] [--rounds 1] [--no-null] [--polyphony]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def start_jackd(rate: int, period: int, core: int) -> tuple[str, subprocess.Popen, bool]:
    name = f"m2w-bench-{uuid.uuid4().hex[:6]}"
    other = [c for c in sorted(os.sched_getaffinity(0)) if c != core] or [core]
    for realtime in (True, False):
        cmd = ["taskset", "-c", str(other[0]), "jackd", "-n", name, "-R" if realtime else "--no-realtime",
               "-d", "dummy", "-r", str(rate), "-p", str(period)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if subprocess.run(["jack_wait", "-s", name, "-w", "-t", "10"], capture_output=True).returncode == 0:
            return name, proc, realtime
        proc.kill()
        proc.wait()
    raise SystemExit(f"jackd did not start at {rate} Hz")


def stop_jackd(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def looped_events(live: Any, path: str, rate: int, seconds: float) -> list[tuple[int, str, int, int]]:
    """The MIDI file's events (`live.file_events`, `live` a package's render.live module) repeated
    with half a second between repeats, up to `seconds`."""
    base = live.file_events(path, rate)
    length = max(e[0] for e in base) + rate // 2
    looped = [(e[0] + k * length, *e[1:]) for k in range(int(seconds * rate // length) + 1) for e in base]
    return [e for e in looped if e[0] < seconds * rate]


def piece_events(path: str, rate: int, seconds: float) -> list[tuple[int, bytes]]:
    """The MIDI file's events looped to `seconds`, as (device frame, bytes)."""
    from midi2wave.render import live

    return [(e[0], live.event_bytes(e)) for e in looped_events(live, path, rate, seconds)]


SENDER = r"""
import json, sys, time, jack
events = [(int(f), bytes(d)) for f, d in json.load(open(sys.argv[1]))]
client = jack.Client("m2w-sender", no_start_server=True)
out = client.midi_outports.register("out")
state = {"next": 0, "t0": None, "go": False}

@client.set_process_callback
def send(frames):
    out.clear_buffer()
    if not state["go"]:  # connected, waiting for the parent's "go": no event is lost before the window
        return
    now = client.last_frame_time
    if state["t0"] is None:
        state["t0"] = now
    f0 = now - state["t0"]
    while state["next"] < len(events) and events[state["next"]][0] < f0 + frames:
        at, data = events[state["next"]]
        out.write_midi_event(max(0, at - f0), data)
        state["next"] += 1

client.activate()
client.connect(out, "m2w:midi_in")
print("ready", flush=True)
sys.stdin.readline()
state["go"] = True
sys.stdin.read()
"""


def run_graph(synth, events, rate: int, seconds: float, ahead_ms: float):
    """The engine as a JACK client (this process) fed `events` by a MIDI sender in another process
    (as a keyboard or sequencer would be) for `seconds` of real time."""
    import json
    import tempfile

    from midi2wave.render.playback import JackBackend

    backend = JackBackend(synth, name="m2w", ahead_ms=ahead_ms)
    backend.start()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([(t, list(d)) for t, d in events], f)
    sender = subprocess.Popen([sys.executable, "-c", SENDER, f.name], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    m, proc = backend.proc.meter, backend.proc

    def counters():  # xruns, callbacks over the period, periods, late blocks, render thread's periods
        return m.xruns, m.overloads, m.periods, proc.late, proc.work.periods

    try:
        assert sender.stdout.readline().strip() == "ready"
        time.sleep(0.1)  # the connection's graph change (and an xrun it causes) is over
        before = counters()
        sender.stdin.write("go\n")  # the sender's clock starts now: the piece plays inside the window
        sender.stdin.flush()
        t0 = time.perf_counter()
        time.sleep(seconds)
        wall = time.perf_counter() - t0
        after = counters()  # before the sender's leaving changes the graph again
    finally:
        try:
            sender.communicate("", timeout=30)
        except subprocess.TimeoutExpired:
            sender.kill()
        os.unlink(f.name)
        backend.stop()
    window = Window(after[0] - before[0], after[1] - before[1], m.xruns - (after[0] - before[0]), before[2], after[2],
                    after[3] - before[3], before[4], after[4])
    return backend, wall, window


@dataclass
class Window:
    """The `seconds` while the MIDI played (from 0.1 s after the sender's connection): its xruns, the
    engine's callbacks longer than the period in it (its own work, or a stall of the machine inside
    the callback), the xruns outside it (the engine's activation, the sender joining and leaving),
    its periods [first_period, end_period), the blocks that came late (the render thread missed
    them: silence, as audible as an xrun) and the render thread's periods in it."""

    xruns: int
    overloads: int
    outside_xruns: int
    first_period: int
    end_period: int
    late: int = 0
    first_render: int = 0
    end_render: int = 0


def null_xruns(rate: int, seconds: float, spin_s: float = 0.0) -> tuple[int, float]:
    """(xruns, worst period in seconds) of a client that only writes silence (after spinning for
    `spin_s` per period: a busy client as long as the engine, without its work), same server and
    core, same duration: what the machine itself costs (a shared VM stalls now and then)."""
    import jack

    client = jack.Client("m2w-null", no_start_server=True)
    out = client.outports.register("out")
    count = [0]
    worst = [0.0]

    @client.set_process_callback
    def process(frames):
        t = time.perf_counter()
        while time.perf_counter() - t < spin_s:
            pass
        out.get_array()[:] = 0.0
        worst[0] = max(worst[0], time.perf_counter() - t)

    @client.set_xrun_callback
    def xrun(delay):
        count[0] += 1

    client.activate()
    time.sleep(seconds)
    client.deactivate()
    client.close()
    return count[0], worst[0]


def baseline(model, events, rate: int, period: int, seconds: float) -> np.ndarray:
    """The same periods rendered without JACK (RateAdapter.process per period): seconds per period."""
    from midi2wave.render.live import LiveSynth, RateAdapter

    adapter = RateAdapter(LiveSynth(model), rate)
    times, j = [], 0
    for start in range(0, int(seconds * rate), period):
        block = []
        while j < len(events) and events[j][0] < start + period:
            block.append((events[j][0] - start, events[j][1]))
            j += 1
        t = time.perf_counter()
        adapter.process(block, period)
        times.append(time.perf_counter() - t)
    return np.array(times)


def render_times(backend, window: "Window") -> np.ndarray:
    """Seconds the window's periods took to render: the callback's (rendering in the callback) or
    the render thread's."""
    proc = backend.proc
    if proc.render_thread:
        return proc.work.durations[window.first_render:window.end_render]
    return proc.meter.durations[window.first_period:window.end_period]


def polyphony(model, core: int, ahead_ms: float) -> list[tuple[int, int, float]]:
    """(N keys, xruns + late blocks, worst render / period, notes played) for chords of N held keys,
    3 s each, 16 kHz, period 64 (the window's)."""
    from midi2wave.render.live import LiveSynth

    rows = []
    for n in (8, 16, 24, 32, 48, 64, 88):
        name, proc, _ = start_jackd(16000, 64, core)
        os.environ["JACK_DEFAULT_SERVER"] = name
        try:
            keys = np.linspace(21, 108, n).round().astype(int)
            events = [(0, bytes([0xB0, 64, 127]))] + [(64 * i, bytes([0x90, int(k), 90])) for i, k in enumerate(keys)]
            synth = LiveSynth(model)
            backend, _, window = run_graph(synth, events, 16000, 3.0, ahead_ms)
            d = render_times(backend, window)
            rows.append((n, window.xruns + window.late, d.max() / (64 / 16000), synth.stats.notes))
        finally:
            stop_jackd(proc)
        print(f"  polyphony {n:3d} ({rows[-1][3]} notes played): xruns + late blocks {rows[-1][1]}, worst render "
              f"{rows[-1][2]:.2f} x the period", flush=True)
        if rows[-1][1]:
            break
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midi", default=str(ROOT / "examples" / "example.mid"))
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--configs", nargs="+", default=["16000:64", "16000:128", "48000:96", "48000:192"])
    ap.add_argument("--ahead", nargs="+", type=float, default=[4.0, 0.0], metavar="MS",
                    help="`midi2wave live --ahead` values, each run in every round (default: 4 and 0)")
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=1, help="runs of each configuration (the machine's stalls vary)")
    ap.add_argument("--no-null", action="store_true", help="skip the null and busy clients (the machine's own xruns)")
    ap.add_argument("--polyphony", action="store_true")
    args = ap.parse_args()
    if shutil.which("jackd") is None:
        raise SystemExit("jackd not installed (Debian: jackd2)")
    os.sched_setaffinity(0, {args.core})
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    from midi2wave.files import LIVE_ASSETS_DIR
    from midi2wave.render.live import LiveSynth
    from midi2wave.render.livemodel import load_live_model

    model = load_live_model(LIVE_ASSETS_DIR)  # as `midi2wave live` loads it: the snapshot, without torch
    if model is None:
        from midi2wave.checkpoint import load_model

        model, _ = load_model(LIVE_ASSETS_DIR)
    LiveSynth(model).render(16000)  # kernel loaded before any timing
    print(f"live engine on core {args.core}, {Path(args.midi).name} looped to {args.seconds:g} s "
          f"(load average {os.getloadavg()[0]:.2f})")
    print("rate:period  server  ahead  latency ms  callback mean/p99/worst ms  render mean/p99/worst ms  "
          "render p99/period  xruns (callbacks over the period)  late  load  render p99 vs baseline  polyphony max"
          "  null-client xruns  busy-client xruns (worst ms)  xruns outside  latest end in cycle ms  ends over")
    for spec in [c for c in args.configs for _ in range(args.rounds)]:
        rate, period = (int(x) for x in spec.split(":"))
        events = piece_events(args.midi, rate, args.seconds)
        base = baseline(model, events, rate, period, min(args.seconds, 10.0))
        for ahead in args.ahead:
            name, proc, realtime = start_jackd(rate, period, args.core)
            os.environ["JACK_DEFAULT_SERVER"] = name
            null = busy = -1
            busy_worst = float("nan")
            try:
                if not args.no_null:
                    null, _ = null_xruns(rate, args.seconds)
                synth = LiveSynth(model)
                backend, wall, window = run_graph(synth, events, rate, args.seconds, ahead)
                d = render_times(backend, window)
                if not args.no_null:
                    busy, busy_worst = null_xruns(rate, args.seconds, float(d.mean()))
            finally:
                stop_jackd(proc)
            c = backend.proc.meter.durations[window.first_period:window.end_period]
            ends = backend.proc.meter.ends[window.first_period:window.end_period]
            p = period / rate
            print(f"{spec:>11}  {'rt' if realtime else 'no-rt':>6}  {ahead:5g}  {backend.latency_ms:10.1f}"
                  f"  {1e3 * c.mean():8.3f} {1e3 * np.percentile(c, 99):6.3f} {1e3 * c.max():7.3f}"
                  f"  {1e3 * d.mean():7.3f} {1e3 * np.percentile(d, 99):6.3f} {1e3 * d.max():7.3f}"
                  f"  {np.percentile(d, 99) / p:17.2f}  {window.xruns:5d} ({window.overloads})  {window.late:4d}"
                  f"  {d.sum() / wall:4.0%}  {np.percentile(d, 99) / np.percentile(base, 99):22.2f}"
                  f"  {synth.stats.max_polyphony:13d}  {null:17d}  {busy:17d} ({1e3 * busy_worst:.1f})"
                  f"  {window.outside_xruns:14d}  {1e3 * ends.max():17.3f} {int((ends > p).sum()):5d}", flush=True)
    if args.polyphony:
        for ahead in args.ahead:
            print(f"polyphony at 16000:64, --ahead {ahead:g} (chords held with the sustain pedal, 3 s each):")
            polyphony(model, args.core, ahead)


if __name__ == "__main__":
    main()
