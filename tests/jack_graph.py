"""A live engine in a JACK graph, for the tests that run one (tests/test_live_jack.py against jackd,
tests/pipewire_graph.py under PipeWire's JACK): the piece's events at device frames, the engine's
render of them in periods, and a graph of a MIDI sender -> `JackBackend` -> a recorder.

The graph runs in a process of its own (`graph_process`, which runs this file), and that process
leaves without stopping its clients (`os._exit`). Deactivating a JACK client cancels its audio
thread (pthread_cancel, jackd's libjack as PipeWire's); with three clients in one process, the
audio thread of one can be waiting for the GIL just then, behind another's callback, and it dies
holding the GIL's mutex: the process hangs for ever (docs/live.md, "Stopping under PipeWire";
most likely what hung a CI run under jackd). A process that exits cancels nothing. The child also bounds its
own run: past its time it prints every thread's stack and exits."""

from __future__ import annotations

import faulthandler
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from midi2wave.render import live, playback
from helpers import LIVE_OPTIONS as OPTIONS

TESTS = Path(__file__).resolve().parent
# in freewheel mode, the most real-clock time before freewheeling begins (clients joining, connecting)
REAL_CLOCK_MARGIN_S = 10.0


def events_at(piece: str, rate: int) -> list[tuple[int, bytes]]:
    """The piece's events as (device frame, bytes), at frames the engine's clock hits exactly (at
    44.1 kHz every 441st frame: the events move to the 10-ms grid of 160 model samples)."""
    grid = 16000 // math.gcd(16000, rate)
    return [(event[0] // grid * grid * rate // 16000, live.event_bytes(event)) for event in live.file_events(piece, 16000)]


def reference(model, events: list[tuple[int, bytes]], rate: int, period: int, n_frames: int,
               ahead_ms: float | None) -> np.ndarray:
    """What the engine outputs for `events` (frames from its first period) in periods of `period`."""
    synth = live.LiveSynth(model, OPTIONS, year=2011)
    ahead = playback.ahead_samples(synth, ahead_ms)
    if ahead is None:
        ahead = playback.default_ahead_samples(synth, rate, period)
    adapter = live.RateAdapter(synth, rate, ahead)
    out, j = [], 0
    for start in range(0, n_frames, period):
        block = []
        while j < len(events) and events[j][0] < start + period:
            block.append((events[j][0] - start, events[j][1]))
            j += 1
        out.append(adapter.process(block, period))
    return np.concatenate(out)[:n_frames]


@dataclass
class GraphRun:
    """What a graph recorded, and what its engine counted.

    `recorded`: the engine's output from its first period (NaN where the recorder missed a period:
    it joins a period or two after the engine, and on the real clock a stall can cost it one).
    `offset`: the frame (from the engine's first period) that the events' frames count from.
    The server's `rate` and `period` (frames); the engine's `RateAdapter` (`latency_frames`, `up`, `down`, `prefill`); its callback's meter:
    `periods`, `durations` and `ends` (seconds, per period: `CallbackMeter`), `xruns` once the graph
    had settled; `late` blocks and `errors` (`_Processor`). `wall_s`: from the engine's start to the
    recorder's last period, on the machine's clock."""

    recorded: np.ndarray
    offset: int
    rate: int
    period: int
    latency_frames: int
    up: int
    down: int
    prefill: int
    periods: int
    durations: np.ndarray
    ends: np.ndarray
    xruns: int
    late: int
    errors: int
    wall_s: float


@dataclass
class Stall:
    """Make the engine's callback sleep `seconds` after its work in every `every`-th period (the
    `at`-th of each `every`): a callback past its period, on purpose."""

    every: int
    at: int
    seconds: float


def graph_process(server: str, events: list[tuple[int, bytes]], n_frames: int, freewheel: bool,
                  ahead_ms: float | None = None, stall: Stall | None = None, timeout_s: float = 150.0) -> GraphRun:
    """`run_graph` on the JACK server `server` in a child process (this file; the module's
    docstring says why), with the tests' live model; the child's output comes back in a .npz."""
    with tempfile.TemporaryDirectory() as folder:
        spec = {"events": [(int(f), data.hex()) for f, data in events], "n_frames": int(n_frames),
                "freewheel": bool(freewheel), "ahead_ms": ahead_ms, "timeout_s": timeout_s - 20,
                "stall": None if stall is None else [stall.every, stall.at, stall.seconds],
                "out": os.path.join(folder, "graph.npz")}
        with open(os.path.join(folder, "spec.json"), "w") as f:
            json.dump(spec, f)
        root = str(TESTS.parent)  # midi2wave from this checkout, as in the test process
        env = dict(os.environ, JACK_DEFAULT_SERVER=server,
                   PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        try:
            done = subprocess.run([sys.executable, str(TESTS / "jack_graph.py"), os.path.join(folder, "spec.json")],
                                  capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"the graph's process did not end in {timeout_s:g} s: {e.stderr!r}") from None
        assert done.returncode == 0 and os.path.exists(spec["out"]), \
            f"the graph's process failed ({done.returncode}): {done.stderr[-4000:]}"
        with np.load(spec["out"]) as z:
            values = {f.name: z[f.name] for f in fields(GraphRun)}
        return GraphRun(**{name: a if a.ndim else a.item() for name, a in values.items()})  # scalars saved 0-d


def run_graph(model, events, n_frames: int, freewheel: bool, ahead_ms: float | None = None) -> GraphRun:
    """The engine as a JACK client between a MIDI sender and a recorder, until `n_frames` past
    the events' frame 0, in this process, which must exit next without stopping the clients
    (`os._exit`: the module's docstring).

    On the real clock, the events' frames count from the engine's first period (shifted by a lead
    so that the sender sees them coming). In freewheel mode they count from the first frame, a
    multiple of the engine's clock step (`up`), of the first period after freewheeling began:
    every event then reaches the engine in freewheel, where its callback waits for the render
    thread as long as that takes, so the output is exactly its render whatever the machine's load
    (the real-clock periods before, while the clients join and connect, are silence, late or
    not)."""
    import jack

    synth = live.LiveSynth(model, OPTIONS, year=2011)
    backend = playback.JackBackend(synth, name="m2w", ahead_ms=ahead_ms)
    margin = int(REAL_CLOCK_MARGIN_S * backend.rate) if freewheel else 0
    recorded = np.full(margin + n_frames, np.nan, np.float32)
    up = backend.rate // math.gcd(16000, backend.rate)
    sender = jack.Client("m2w-sender", no_start_server=True)
    recorder = jack.Client("m2w-recorder", no_start_server=True)
    midi_out = sender.midi_outports.register("out")
    audio_in = recorder.inports.register("in")
    # offset: None until the events' frame 0 is known (at once on the real clock; in freewheel, by the
    # sender's first period once `freewheeling`); end: the last frame recorded, from the engine's first
    state: dict = {"sent": 0, "offset": None if freewheel else 0, "freewheeling": False, "end": len(recorded)}
    done = threading.Event()

    @sender.set_process_callback
    @playback._uncancellable  # as the engine's own (PipeWire's JACK cancels a client's thread)
    def send(frames):
        midi_out.clear_buffer()
        if backend.first_frame is None:
            return
        f0 = sender.last_frame_time - backend.first_frame
        if state["offset"] is None:
            if not state["freewheeling"]:
                return
            offset = -(-(f0 + frames) // up) * up  # from the next period on, on the engine's clock
            state["end"] = min(offset + n_frames, len(recorded))  # (past the margin: the check below fails)
            state["offset"] = offset
        offset = state["offset"]
        while state["sent"] < len(events) and offset + events[state["sent"]][0] < f0 + frames:
            at, data = events[state["sent"]]
            if offset + at >= f0:
                midi_out.write_midi_event(offset + at - f0, data)
            state["sent"] += 1

    @recorder.set_process_callback
    @playback._uncancellable
    def record(frames):
        if backend.first_frame is None:
            return
        f0 = recorder.last_frame_time - backend.first_frame
        end = state["end"]
        if 0 <= f0 < end:
            k = min(frames, end - f0)
            recorded[f0:f0 + k] = audio_in.get_array()[:k]
        if f0 + frames >= end and not done.is_set():
            state["done_at"] = time.monotonic()
            done.set()

    sender.activate()
    recorder.activate()
    started_at = time.monotonic()
    backend.start()
    sender.connect(midi_out, "m2w:midi_in")
    recorder.connect("m2w:out", audio_in)
    time.sleep(0.2)  # xruns while clients join and connect are not the engine's
    settled_xruns = backend.proc.meter.xruns
    if freewheel:
        # jackd switches to freewheeling (telling every client, the engine included) before it returns:
        # every period the sender begins after this is a freewheel one
        sender.set_freewheel(True)
        state["freewheeling"] = True
    try:
        assert done.wait(120), "the graph did not run"
    finally:
        if freewheel:
            sender.set_freewheel(False)
    offset = state["offset"]
    assert offset is not None and offset + n_frames <= len(recorded), \
        f"freewheeling began {REAL_CLOCK_MARGIN_S:g} s or more after the engine's first period"
    proc = backend.proc
    meter, adapter, n = proc.meter, proc.adapter, proc.meter.periods
    return GraphRun(recorded=recorded[:offset + n_frames], offset=offset, rate=backend.rate, period=backend.period,
                    latency_frames=adapter.latency_frames, up=adapter.up, down=adapter.down, prefill=adapter.prefill,
                    periods=n, durations=meter.durations[:n].copy(), ends=meter.ends[:n].copy(),
                    xruns=meter.xruns - settled_xruns, late=proc.late, errors=proc.errors,
                    wall_s=state["done_at"] - started_at)


def _stall(stall: Stall) -> None:
    original = playback._Processor.__call__

    def call(self, events, frames, out):
        original(self, events, frames, out)
        if self.meter.periods % stall.every == stall.at:
            time.sleep(stall.seconds)

    playback._Processor.__call__ = call


def main(spec_path: str) -> None:
    """The child of `graph_process`: run the graph, save what it recorded and counted, exit."""
    from helpers import live_model

    with open(spec_path) as f:
        spec = json.load(f)
    faulthandler.dump_traceback_later(spec["timeout_s"], exit=True)  # a hang: every thread's stack, and out
    if spec["stall"] is not None:
        _stall(Stall(*spec["stall"]))
    events = [(f, bytes.fromhex(data)) for f, data in spec["events"]]
    run = run_graph(live_model(), events, spec["n_frames"], spec["freewheel"], spec["ahead_ms"])
    tmp = spec["out"] + ".tmp.npz"
    np.savez(tmp, **asdict(run))
    os.replace(tmp, spec["out"])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the clients stay active: the process's end removes them (the module's docstring)


if __name__ == "__main__":  # (Python puts tests/ first on the path: helpers imports)
    main(sys.argv[1])
