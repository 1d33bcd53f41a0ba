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
    blocks, j = [], 0
    for start in range(0, n_frames, period):
        block = []
        while j < len(events) and events[j][0] < start + period:
            block.append((events[j][0] - start, events[j][1]))
            j += 1
        blocks.append(block)
    return render_blocks(model, blocks, rate, period, ahead_ms)[:n_frames]


def render_blocks(model, blocks: list[list[tuple[int, bytes]]], rate: int, period: int,
                  ahead_ms: float | None) -> np.ndarray:
    """What the engine outputs, period after period, given each period's events (offset, bytes)."""
    synth = live.LiveSynth(model, OPTIONS, year=2011)
    ahead = playback.ahead_samples(synth, ahead_ms)
    if ahead is None:
        ahead = playback.default_ahead_samples(synth, rate, period)
    adapter = live.RateAdapter(synth, rate, ahead)
    return np.concatenate([adapter.process(block, period) for block in blocks] or [np.zeros(0, np.float32)])


class CallLog:
    """One client's process calls on the real clock, call after call: the graph's frame time each
    read (from the engine's first period), the MIDI events it passed (call, offset, bytes) and the
    audio it passed (`frames` per call). Preallocated; calls past `calls` are not kept (a callback
    must not raise)."""

    def __init__(self, calls: int, frames: int) -> None:
        self.frames = np.full(calls, -1, np.int64)
        self.times = np.zeros(calls)  # CLOCK_MONOTONIC seconds as each call logged (StallProbe's clock)
        self.audio = np.zeros(calls * frames, np.float32)
        self.midi: list[tuple[int, int, bytes]] = []
        self.period, self.n, self.dropped = frames, 0, 0

    def call(self, frame: int, frames: int, audio: np.ndarray | None = None,
             midi: list[tuple[int, bytes]] = ()) -> None:
        """Log a call that read `frame` and passed `audio` (`frames` samples) and `midi` ((offset,
        bytes)); counted last, so that a log read meanwhile holds whole calls only."""
        k = self.n
        if k >= len(self.frames) or frames != self.period:
            self.dropped += 1  # counted as a logging error (`GraphRun.log_errors`): the log no longer replays
            return
        self.frames[k] = frame
        self.times[k] = time.monotonic()
        if audio is not None:
            self.audio[k * frames:(k + 1) * frames] = audio
        self.midi.extend((k, offset, bytes(data)) for offset, data in midi)
        self.n = k + 1

    def fields(self, prefix: str, end: int) -> dict:
        """The log as GraphRun's fields `prefix`_frames, _times, _audio, _midi ((call, offset) rows)
        and _data (hex), of the calls before the first that read frame `end` or later (the clients
        may still be running: each log is cut at the same period)."""
        n = int(np.searchsorted(np.maximum.accumulate(self.frames[:self.n]), end)) if self.n else 0
        midi = [m for m in list(self.midi) if m[0] < n]
        return {f"{prefix}_frames": self.frames[:n].copy(), f"{prefix}_times": self.times[:n].copy(),
                f"{prefix}_audio": self.audio[:n * self.period].copy(),
                f"{prefix}_midi": np.array([(k, o) for k, o, _ in midi], np.int64).reshape(-1, 2),
                f"{prefix}_data": " ".join(d.hex() for _, _, d in midi)}


class _LoggedBackend(playback.JackBackend):
    """The engine with each process call logged (`CallLog`): the frame time it read first, then
    the MIDI it got and the audio it gave (the port buffers are still the call's own)."""

    log: CallLog | None = None
    log_errors = 0

    def __init__(self, *args, **kwargs) -> None:
        # when (CLOCK_MONOTONIC, seconds) the server reported an xrun, and a period came out late
        self.xrun_times = np.zeros(4096)
        self.late_times = np.zeros(4096)
        # when each period's callback began (CLOCK_MONOTONIC), by the meter's count: `durations`' periods
        self.period_starts = np.zeros(1 << 18)
        super().__init__(*args, **kwargs)

    @playback._uncancellable
    def _process(self, frames: int) -> None:
        read = self.client.last_frame_time
        late, period, began = self.proc.late, self.proc.meter.periods, time.monotonic()
        super()._process(frames)
        try:
            if self.proc.meter.periods > period and period < len(self.period_starts):
                self.period_starts[period] = began
            if self.proc.late != late and late < len(self.late_times):
                self.late_times[late] = time.monotonic()
            if self.log is not None:
                self.log.call(read - self.first_frame, frames, self.out.get_array(), self.midi_in.incoming_midi_events())
        except Exception:  # noqa: BLE001 - an exception would stop the client silently
            self.log_errors += 1

    @playback._uncancellable
    def _xrun(self, delay: float) -> None:
        n = self.proc.meter.xruns
        if n < len(self.xrun_times):
            self.xrun_times[n] = time.monotonic()
        super()._xrun(delay)


@dataclass
class GraphRun:
    """What a graph recorded, and what its engine counted.

    `recorded`: the engine's output from its first period (NaN where the recorder missed a period:
    it joins a period or two after the engine, and on the real clock a stall can cost it one).
    `offset`: the frame (from the engine's first period) that the events' frames count from.
    The server's `rate` and `period` (frames); the engine's `RateAdapter` (`latency_frames`, `up`, `down`, `prefill`); its callback's meter:
    `periods`, `durations` and `ends` (seconds, per period: `CallbackMeter`) and `period_starts`
    (CLOCK_MONOTONIC seconds as each period's callback began), `xruns` once the graph
    had settled; `late` blocks and `errors` (`_Processor`). `wall_s`: from the engine's start to the
    recorder's last period, on the machine's clock. `xrun_times` and `late_times`: when
    (CLOCK_MONOTONIC seconds, as `audio_servers.StallProbe` notes stalls) each of those xruns and
    late blocks came. The clients' process calls, call after call (`CallLog.fields`): the engine's
    (`engine_`: the MIDI it got, the audio it gave), the sender's (`sender_`: the MIDI it wrote) and
    the recorder's (`recorder_`: the audio it got), each call's CLOCK_MONOTONIC time in `_times`;
    `log_errors`: calls whose logging failed."""

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
    period_starts: np.ndarray
    xruns: int
    late: int
    errors: int
    wall_s: float
    xrun_times: np.ndarray
    late_times: np.ndarray
    engine_frames: np.ndarray
    engine_times: np.ndarray
    engine_audio: np.ndarray
    engine_midi: np.ndarray
    engine_data: str
    sender_frames: np.ndarray
    sender_times: np.ndarray
    sender_audio: np.ndarray
    sender_midi: np.ndarray
    sender_data: str
    recorder_frames: np.ndarray
    recorder_times: np.ndarray
    recorder_audio: np.ndarray
    recorder_midi: np.ndarray
    recorder_data: str
    log_errors: int


def in_step(frames: np.ndarray, period: int) -> np.ndarray:
    """Which of a client's calls to match by the graph's frame time they read: those one period
    after the call before and one period before the call after. On a loaded machine a client's
    call can start after the graph's next cycle began, and PipeWire's JACK then hands it that
    cycle's frame time (one period early: the next call reads the same again); a client can also
    miss a cycle (two periods between reads). Either way the calls around it are out of step.
    Inside a run of such late calls, each one period early, the calls look in step: matched there
    they fail the check, and the test runs again."""
    ok = np.zeros(len(frames), bool)
    steps = np.diff(frames)
    ok[1:-1] = (steps[:-1] == period) & (steps[1:] == period)
    return ok


def real_clock_check(run: GraphRun, model, events: list[tuple[int, bytes]], ahead_ms: float | None = None) -> dict:
    """What a graph run on the real clock shows, from its clients' call logs, whatever calls a
    stall of the machine spoiled:

    `engine_equal`: the engine's output, call after call, is its offline render of the MIDI it got
    in those calls (`render_blocks`); `midi_in_order`: it got every event the sender wrote, in
    order; `midi_as_planned`: what the sender wrote is `events` (frames from the engine's first
    period), in order, those up to the run's end, each at its frame where the sender's call was in
    step, or later at the start of a call (a late call sends what it missed at once); `midi_on_time`
    of `midi_timed`: events the engine got at the frame the sender wrote them at, counted where
    both calls were in step (`in_step`); `blocks_equal` of `blocks_compared` (of the
    recorder's `blocks`): the recorder's periods that are the engine's output of the same
    period, where both were in step; `unequal_times` and `unequal_kinds`: for each of the others,
    when the recorder logged it (CLOCK_MONOTONIC) and what it heard instead (the engine's
    "previous" or "next" period, "silence" or "other"); `peak_at_onset`: the engine's output in the 4 ms from
    `latency_frames` after the first event it got."""
    period = run.period
    got = [bytes.fromhex(h) for h in run.engine_data.split()]
    sent = [bytes.fromhex(h) for h in run.sender_data.split()]
    blocks: list[list[tuple[int, bytes]]] = [[] for _ in run.engine_frames]
    for (k, offset), data in zip(run.engine_midi.tolist(), got):
        blocks[k].append((offset, data))
    ref = render_blocks(model, blocks, run.rate, period, ahead_ms)
    engine_ok, sender_ok = in_step(run.engine_frames, period), in_step(run.sender_frames, period)
    engine_at = {int(f): k for k, f in enumerate(run.engine_frames) if engine_ok[k]}
    got_at = [int(run.engine_frames[k]) + o for k, o in run.engine_midi.tolist()]
    sent_at = [int(run.sender_frames[k]) + o for k, o in run.sender_midi.tolist()]
    timed = [(a, b) for a, b, (k, _), (j, _) in zip(got_at, sent_at, run.engine_midi.tolist(), run.sender_midi.tolist())
             if engine_ok[k] and sender_ok[j]]
    planned = [f for f, _ in events[:len(sent)]]
    as_planned = (sent == [data for _, data in events[:len(sent)]]
                  and sum(f < int(run.sender_frames[-1]) for f, _ in events) <= len(sent)
                  and all(b == f if sender_ok[j] and o > 0 else b >= f
                          for b, f, (j, o) in zip(sent_at, planned, run.sender_midi.tolist()))) if len(sent) else False
    recorder_ok = in_step(run.recorder_frames, period)
    engine_block = {int(f): run.engine_audio[k * period:(k + 1) * period] for k, f in enumerate(run.engine_frames)}
    compared = equal = 0
    unequal_times, unequal_kinds = [], []
    for i, f in enumerate(run.recorder_frames.tolist()):
        k = engine_at.get(f)
        if recorder_ok[i] and k is not None:
            compared += 1
            heard = run.recorder_audio[i * period:(i + 1) * period]
            if np.array_equal(heard, engine_block[f]):
                equal += 1
                continue
            unequal_times.append(float(run.recorder_times[i]))
            unequal_kinds.append(next((name for name, g in (("previous", f - period), ("next", f + period))
                                       if g in engine_block and np.array_equal(heard, engine_block[g])),
                                      "silence" if not heard.any() else "other"))
    onset = None
    if len(run.engine_midi):
        k, offset = run.engine_midi[0]
        onset = int(k) * period + int(offset) + run.latency_frames
    return {"rate": run.rate, "period": period, "latency_frames": run.latency_frames, "late": run.late,
            "xruns": run.xruns, "errors": run.errors + run.log_errors, "calls": len(run.engine_frames),
            "engine_equal": bool(np.array_equal(run.engine_audio, ref)),
            "midi_sent": len(sent), "midi_in_order": got == sent and len(sent) > 0, "midi_as_planned": as_planned,
            "midi_timed": len(timed), "midi_on_time": sum(a == b for a, b in timed),
            "blocks": len(run.recorder_frames), "blocks_compared": compared, "blocks_equal": equal,
            "unequal_times": unequal_times, "unequal_kinds": unequal_kinds,
            "peak_at_onset": 0.0 if onset is None else float(np.abs(run.engine_audio[onset:onset + run.rate // 250]).max())}


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
    backend = _LoggedBackend(synth, name="m2w", ahead_ms=ahead_ms)
    margin = int(REAL_CLOCK_MARGIN_S * backend.rate) if freewheel else 0
    recorded = np.full(margin + n_frames, np.nan, np.float32)
    up = backend.rate // math.gcd(16000, backend.rate)
    # every client's calls are logged (room for twice the periods the run takes; in freewheel also
    # for the real-clock periods before it)
    calls = 2 * (len(recorded) // backend.period) + 4000
    logs = {name: CallLog(calls, backend.period) for name in ("engine", "sender", "recorder")}
    backend.log = logs["engine"]
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
        written = []
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
                written.append((offset + at - f0, data))
            elif not freewheel:  # on the real clock, a call that came late (or a missed one) sends it at once
                written.append((0, data))
            state["sent"] += 1
        for at, data in written:
            midi_out.write_midi_event(at, data)
        logs["sender"].call(f0, frames, midi=written)

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
            logs["recorder"].call(f0, frames, audio_in.get_array())
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
                    period_starts=backend.period_starts[:n].copy(),
                    xruns=meter.xruns - settled_xruns, late=proc.late, errors=proc.errors,
                    wall_s=state["done_at"] - started_at,
                    xrun_times=backend.xrun_times[settled_xruns:min(meter.xruns, len(backend.xrun_times))].copy(),
                    late_times=backend.late_times[:min(proc.late, len(backend.late_times))].copy(),
                    log_errors=backend.log_errors + sum(log.dropped for log in logs.values()),
                    **{k: v for name, log in logs.items() for k, v in log.fields(name, state["end"]).items()})


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
