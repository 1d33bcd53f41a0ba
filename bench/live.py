"""The live engine under a real JACK server on one core: callback time against the period, xruns,
CPU load and the highest polyphony held without an xrun (`midi2wave live --jack`'s work).

For each rate:period, a JACK server (jackd, dummy backend, realtime when allowed; tests/audio_servers.py)
runs with a MIDI sender (another process, as a keyboard and its driver would be) on `--server-core`
(default: a core other than the engine's; the engine's own puts all on one core); this process (the
engine's JACK client: its callback and render thread) is pinned to `--core`, and the sender plays
`--midi` (looped) to it for `--seconds`, `--rounds` times. Reported per configuration and round,
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

Each configuration runs once per `--ahead` value (default `default` and 0: `midi2wave live` without
`--ahead`, the render thread with 8 ms of latency at 16 kHz, and `--ahead 0`, the render in the
callback with 4 ms; a number is `--ahead MS`), the same
machine and minute for both. With the render thread, the render time is the thread's per period,
the callback only copies a block, and "late" counts the blocks it did not have in time (silence,
as audible as an xrun). "Latest end in cycle" is how far into the server's cycle the callback
ended: where it began (JACK's frames since the cycle's start: its wake-up and the GIL's wait
included) plus its time; "ends over" counts periods where that passed the period, the engine's own
part in the xruns (a callback woken only after the next cycle began still reads low: jackd reports
it as "Triggered", below).

Which client each xrun was: jackd's engine reports the client that had not finished its cycle
("client = m2w was not finished, state = Running": still in its callback; "Triggered": woken but
not yet running), read from its output with the time of each line, for the engine's window and
the null and busy clients' minutes (m2w the engine, m2w-sender the MIDI sender, m2w-null those
two; "no jackd log" when the log is missing or jackd dropped messages). `--stall-probe`:
meanwhile a process per core at SCHED_FIFO 90 (above every JACK thread) notes each wake-up more
than 1 ms late after a 2-ms sleep, when the core did not run even that thread (a stopped vCPU, or
the kernel's interrupt work); reported per core in the engine's window: those over 2 ms late (over
1 ms) / the worst, and how many of jackd's reports came within 50 ms of one over 1 ms.

`--server pipewire` (the bench run under `pw-jack`): a PipeWire daemon of the bench's own instead,
its dummy driver at the rate, every client asking for the period (PIPEWIRE_LATENCY; the caller's
PIPEWIRE_* and JACK_DEFAULT_SERVER are dropped, tests/audio_servers.py); no xrun
attribution (that reads jackd's output), no `--polyphony`.

    python bench/live.py [--midi FILE] [--seconds 60] [--configs 16000:64 16000:128 48000:96 48000:192]
                         [--ahead default 0] [--core 0] [--server-core N] [--rounds 1] [--no-null] [--polyphony] [--stall-probe]
    pw-jack python bench/live.py --server pipewire [...]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # audio_servers: the servers the tests start too

from audio_servers import ServerError, StallProbe, near_a_stall, start_jackd, start_pipewire  # noqa: E402


def server_cores(core: int, server_core: int | None = None) -> set[int]:
    """The core the server side runs on (jackd or PipeWire, jackd's output's stamper, the MIDI
    sender: what a keyboard and its driver would be): `server_core`, else the first core this
    process may run on other than the engine's `core` (call it before pinning this process)."""
    if server_core is not None:
        if server_core not in os.sched_getaffinity(0):
            raise SystemExit(f"bench/live.py: --server-core {server_core}: this process may run on cores "
                             f"{sorted(os.sched_getaffinity(0))} only")
        return {server_core}
    return {next((c for c in sorted(os.sched_getaffinity(0)) if c != core), core)}


_XRUN = re.compile(r"^(\d+\.\d+) JackEngine::XRun: client (?:= )?(\S+) (was not finished, state = (\w+)|finished after)")


def jackd_xruns(log: Path) -> list[tuple[float, str, str]] | None:
    """(monotonic time, client, state) of each xrun jackd reported (its engine
    names the client that had not finished the cycle: "Triggered", woken but not yet running;
    "Running", still in its process callback; "late", finished after the next cycle began); None
    without a log, or when jackd dropped messages (its message buffer overran)."""
    if not log.exists():
        return None
    text = log.read_text(errors="replace")
    if "message buffer overrun" in text:
        return None
    found = []
    for line in text.splitlines():
        m = _XRUN.match(line)
        if m:
            found.append((float(m.group(1)), m.group(2), m.group(4) or "late"))
    return found


def attribute(xruns: list[tuple[float, str, str]] | None,
              stalls: dict[int, tuple[bool, list[tuple[float, float]]]] | None, near_s: float = 0.05) -> str:
    """jackd's xruns by client and state, and how many came within `near_s` of a wake-up of the
    probe more than 1 ms late on any core (when it ran)."""
    if xruns is None:
        return "no jackd log"
    if not xruns:
        return "-"
    counts = Counter(f"{c}:{s}" for _, c, s in xruns)
    text = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    if stalls is not None:
        text += f" [{sum(near_a_stall([t for t, *_ in xruns], stalls, near_s))} near a stall]"
    return text


def stall_summary(stalls: dict[int, tuple[bool, list[tuple[float, float]]]] | None, t0: float, t1: float) -> str:
    """Per core, in [t0, t1]: the probe's wake-ups more than 2 ms late (more than 1 ms late) and
    the worst (ms)."""
    if stalls is None:
        return "-"
    parts = []
    for core, (fifo, found) in sorted(stalls.items()):
        late = [d for t, d in found if t0 <= t <= t1]
        parts.append(f"c{core} {sum(d > 2e-3 for d in late)}({len(late)})/{1e3 * max(late, default=0.0):.1f}"
                     + ("" if fifo else " NOT SCHED_FIFO"))
    return " ".join(parts)


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
if "PipeWire" in jack.version_string():  # its JACK cancels the client's thread in deactivate: leave without
    import os
    os._exit(0)
"""


def run_graph(synth, events, rate: int, seconds: float, ahead_ms: float | None, sender_cores: set[int] | None = None):
    """The engine as a JACK client (this process) fed `events` by a MIDI sender in another process
    (as a keyboard or sequencer would be; on `sender_cores`, default this process's) for `seconds`
    of real time."""
    import json

    from midi2wave.render.playback import JackBackend

    backend = JackBackend(synth, name="m2w", ahead_ms=ahead_ms)
    backend.start()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([(t, list(d)) for t, d in events], f)
    sender = subprocess.Popen([sys.executable, "-c", SENDER, f.name], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)  # no preexec_fn: that would fork the engine's process while it plays
    if sender_cores is not None:
        os.sched_setaffinity(sender.pid, sender_cores)  # before it opens its client
    m, proc = backend.proc.meter, backend.proc

    def counters():  # xruns, callbacks over the period, periods, late blocks, render thread's periods
        return m.xruns, m.overloads, m.periods, proc.late, proc.work.periods

    try:
        assert sender.stdout.readline().strip() == "ready"
        time.sleep(0.1)  # the connection's graph change (and an xrun it causes) is over
        before = counters()
        sender.stdin.write("go\n")  # the sender's clock starts now: the piece plays inside the window
        sender.stdin.flush()
        t0, m0 = time.perf_counter(), time.monotonic()
        time.sleep(seconds)
        wall, m1 = time.perf_counter() - t0, time.monotonic()
        after = counters()  # before the sender's leaving changes the graph again
    finally:
        try:
            sender.communicate("", timeout=30)
        except subprocess.TimeoutExpired:
            sender.kill()
        os.unlink(f.name)
        backend.stop()
    window = Window(after[0] - before[0], after[1] - before[1], m.xruns - (after[0] - before[0]), before[2], after[2],
                    after[3] - before[3], before[4], after[4], m0, m1)
    return backend, wall, window


@dataclass
class Window:
    """The `seconds` while the MIDI played (from 0.1 s after the sender's connection): its xruns, the
    engine's callbacks longer than the period in it (its own work, or a stall of the machine inside
    the callback), the xruns outside it (the engine's activation, the sender joining and leaving),
    its periods [first_period, end_period), the blocks that came late (the render thread missed
    them: silence, as audible as an xrun), the render thread's periods in it, and its start and
    end in `time.monotonic()`."""

    xruns: int
    overloads: int
    outside_xruns: int
    first_period: int
    end_period: int
    late: int = 0
    first_render: int = 0
    end_render: int = 0
    t0: float = 0.0
    t1: float = 0.0


def null_xruns(rate: int, seconds: float, spin_s: float = 0.0) -> tuple[int, float, float, float]:
    """(xruns, worst period in seconds, start, end in `time.monotonic()`) of a client that only writes silence (after spinning for
    `spin_s` per period: a busy client as long as the engine, without its work), same server and
    core, same duration: what the machine itself costs (a shared VM stalls now and then)."""
    import jack

    from midi2wave.render.playback import _uncancellable, close_jack_client, deactivate_jack_client

    client = jack.Client("m2w-null", no_start_server=True)
    out = client.outports.register("out")
    count = [0]
    worst = [0.0]

    @client.set_process_callback
    @_uncancellable  # PipeWire's JACK cancels the client's thread as it stops it (as `live`'s)
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
    t0 = time.monotonic()
    time.sleep(seconds)
    t1 = time.monotonic()
    deactivate_jack_client(client)
    close_jack_client(client)
    return count[0], worst[0], t0, t1


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


def polyphony(model, server: set[int], ahead_ms: float | None) -> list[tuple[int, int, float]]:
    """(N keys, xruns + late blocks, worst render / period, notes played) for chords of N held keys,
    3 s each, 16 kHz, period 64 (the window's)."""
    from midi2wave.render.live import LiveSynth

    rows = []
    for n in (8, 16, 24, 32, 48, 64, 88):
        with start_jackd(16000, 64, cores=server) as jackd, jackd.as_default():
            keys = np.linspace(21, 108, n).round().astype(int)
            events = [(0, bytes([0xB0, 64, 127]))] + [(64 * i, bytes([0x90, int(k), 90])) for i, k in enumerate(keys)]
            synth = LiveSynth(model)
            backend, _, window = run_graph(synth, events, 16000, 3.0, ahead_ms, server)
            d = render_times(backend, window)
            rows.append((n, window.xruns + window.late, d.max() / (64 / 16000), synth.stats.notes))
        print(f"  polyphony {n:3d} ({rows[-1][3]} notes played): xruns + late blocks {rows[-1][1]}, worst render "
              f"{rows[-1][2]:.2f} x the period", flush=True)
        if rows[-1][1]:
            break
    return rows


def _ahead(text: str) -> float | None:
    return None if text == "default" else float(text)


def _shown(ahead: float | None) -> str:
    return "def" if ahead is None else f"{ahead:g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midi", default=str(ROOT / "examples" / "example.mid"))
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--configs", nargs="+", default=["16000:64", "16000:128", "48000:96", "48000:192"])
    ap.add_argument("--ahead", nargs="+", type=_ahead, default=[None, 0.0], metavar="MS",
                    help="`midi2wave live --ahead` values, each run in every round; `default`: left out "
                         "(4 ms, more where that leaves the render thread under 5 ms per block); default: default and 0")
    ap.add_argument("--core", type=int, default=0, help="the engine's core (this process: the callback, the render thread)")
    ap.add_argument("--server-core", type=int, default=None,
                    help="the server's and the MIDI sender's core (default: another than --core; --core's "
                         "own puts all on one core)")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each configuration (the machine's stalls vary)")
    ap.add_argument("--no-null", action="store_true", help="skip the null and busy clients (the machine's own xruns)")
    ap.add_argument("--polyphony", action="store_true")
    ap.add_argument("--server", choices=["jackd", "pipewire"], default="jackd",
                    help="pipewire: a PipeWire daemon of the bench's own (run the bench under pw-jack)")
    ap.add_argument("--stall-probe", action="store_true",
                    help="note the cores' stalls meanwhile (StallProbe) and which xruns came near one")
    args = ap.parse_args()
    if args.server == "jackd" and shutil.which("jackd") is None:
        raise SystemExit("jackd not installed (Debian: jackd2)")
    if args.server == "pipewire":
        import jack

        if "PipeWire" not in jack.version_string():
            raise SystemExit("--server pipewire: run the bench under PipeWire's JACK (pw-jack python bench/live.py ...)")
        if args.polyphony:
            raise SystemExit("--polyphony runs on jackd")
    cores = sorted(os.sched_getaffinity(0))  # the probe's, one per core
    server = server_cores(args.core, args.server_core)  # before this process is pinned
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
    print(f"live engine on core {args.core}, the server and the MIDI sender on core {min(server)}, {Path(args.midi).name} looped to {args.seconds:g} s "
          f"(load average {os.getloadavg()[0]:.2f})")
    print("rate:period  server  ahead  latency ms  callback mean/p99/worst ms  render mean/p99/worst ms  "
          "render p99/period  xruns (callbacks over the period)  late  load  render p99 vs baseline  polyphony max"
          "  null-client xruns  busy-client xruns (worst ms)  xruns outside  latest end in cycle ms  ends over"
          "  | jackd's xruns by client:state (engine / null / busy)  stalls > 2 ms per core / worst ms (engine)")
    for spec in [c for c in args.configs for _ in range(args.rounds)]:
        rate, period = (int(x) for x in spec.split(":"))
        events = piece_events(args.midi, rate, args.seconds)
        base = baseline(model, events, rate, period, min(args.seconds, 10.0))
        for ahead in args.ahead:
            log = Path(tempfile.mkdtemp(prefix="m2w-bench-")) / "jackd.log"
            null = busy = -1
            busy_worst = float("nan")
            spans = {}  # the null and busy clients' minutes
            stalls = None
            try:
                if args.server == "pipewire":
                    running = start_pipewire(rate, cores=server)
                    running.environ["PIPEWIRE_LATENCY"] = f"{period}/{rate}"  # every client asks for the period
                else:
                    running = start_jackd(rate, period, cores=server, log=log)
                realtime = running.realtime
                with running, running.as_default():  # stopped by its PID, and the stamper: its log is whole
                    probe = StallProbe(cores) if args.stall_probe else None
                    try:
                        if not args.no_null:
                            null, _, *spans["null"] = null_xruns(rate, args.seconds)
                        synth = LiveSynth(model)
                        backend, wall, window = run_graph(synth, events, rate, args.seconds, ahead, server)
                        d = render_times(backend, window)
                        if not args.no_null:
                            busy, busy_worst, *spans["busy"] = null_xruns(rate, args.seconds, float(d.mean()))
                    finally:
                        if probe is not None:
                            stalls = probe.stop()
                reports = jackd_xruns(log)  # read once, counted per minute
                who = [attribute(None if reports is None else [r for r in reports if t0 <= r[0] <= t1], stalls)
                       for t0, t1 in [(window.t0, window.t1)] + [spans[k] for k in ("null", "busy") if k in spans]]
            finally:
                shutil.rmtree(log.parent, ignore_errors=True)
            c = backend.proc.meter.durations[window.first_period:window.end_period]
            ends = backend.proc.meter.ends[window.first_period:window.end_period]
            p = period / rate
            print(f"{spec:>11}  {'pw' if realtime is None else 'rt' if realtime else 'no-rt':>6}  {_shown(ahead):>5}  {backend.latency_ms:10.1f}"
                  f"  {1e3 * c.mean():8.3f} {1e3 * np.percentile(c, 99):6.3f} {1e3 * c.max():7.3f}"
                  f"  {1e3 * d.mean():7.3f} {1e3 * np.percentile(d, 99):6.3f} {1e3 * d.max():7.3f}"
                  f"  {np.percentile(d, 99) / p:17.2f}  {window.xruns:5d} ({window.overloads})  {window.late:4d}"
                  f"  {d.sum() / wall:4.0%}  {np.percentile(d, 99) / np.percentile(base, 99):22.2f}"
                  f"  {synth.stats.max_polyphony:13d}  {null:17d}  {busy:17d} ({1e3 * busy_worst:.1f})"
                  f"  {window.outside_xruns:14d}  {1e3 * ends.max():17.3f} {int((ends > p).sum()):5d}"
                  f"  | {' / '.join(who)}  {stall_summary(stalls, window.t0, window.t1)}", flush=True)
    if args.polyphony:
        for ahead in args.ahead:
            print(f"polyphony at 16000:64, --ahead {_shown(ahead)} (chords held with the sustain pedal, 3 s each):")
            polyphony(model, server, ahead)


if __name__ == "__main__":
    try:
        main()
    except ServerError as e:
        raise SystemExit(f"bench/live.py: {e}")
