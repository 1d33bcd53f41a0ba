"""A live engine in a JACK graph, for the tests that run one (tests/test_live_jack.py against jackd,
tests/pipewire_graph.py under PipeWire's JACK): the piece's events at device frames, the engine's
render of them in periods, and a graph of a MIDI sender -> `JackBackend` -> a recorder."""

from __future__ import annotations

import math
import threading
import time

import jack
import numpy as np

from midi2wave.render import live, playback
from helpers import LIVE_OPTIONS as OPTIONS


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


def run_graph(model, events, n_frames: int, freewheel: bool, ahead_ms: float | None = None,
              teardown: bool = True):
    """The engine as a JACK client between a MIDI sender and a recorder; events at frames counted
    from the engine's first period (shifted by a lead so that the sender sees them coming).
    Returns (recording from the engine's first period, backend). `teardown` False leaves the three
    clients running (for a process that exits next: tests/pipewire_graph.py)."""
    synth = live.LiveSynth(model, OPTIONS, year=2011)
    backend = playback.JackBackend(synth, name="m2w", ahead_ms=ahead_ms)
    recorded = np.full(n_frames, np.nan, np.float32)
    sender = jack.Client("m2w-sender", no_start_server=True)
    recorder = jack.Client("m2w-recorder", no_start_server=True)
    midi_out = sender.midi_outports.register("out")
    audio_in = recorder.inports.register("in")
    state = {"sent": 0}
    done = threading.Event()

    @sender.set_process_callback
    @playback._uncancellable  # as the engine's own: PipeWire's JACK cancels a client's thread
    def send(frames):
        midi_out.clear_buffer()
        if backend.first_frame is None:
            return
        f0 = sender.last_frame_time - backend.first_frame
        while state["sent"] < len(events) and events[state["sent"]][0] < f0 + frames:
            at, data = events[state["sent"]]
            if at >= f0:
                midi_out.write_midi_event(at - f0, data)
            state["sent"] += 1

    @recorder.set_process_callback
    @playback._uncancellable
    def record(frames):
        if backend.first_frame is None:
            return
        f0 = recorder.last_frame_time - backend.first_frame
        if 0 <= f0 < n_frames:
            k = min(frames, n_frames - f0)
            recorded[f0:f0 + k] = audio_in.get_array()[:k]
        if f0 + frames >= n_frames:
            done.set()

    sender.activate()
    recorder.activate()
    backend.start()
    sender.connect(midi_out, "m2w:midi_in")
    recorder.connect("m2w:out", audio_in)
    time.sleep(0.2)  # xruns while clients join and connect are not the engine's
    backend.settled_xruns = backend.proc.meter.xruns
    if freewheel:
        sender.set_freewheel(True)
    try:
        assert done.wait(120), "the graph did not run"
    finally:
        if freewheel:
            sender.set_freewheel(False)
        if teardown:
            backend.proc.stop()  # no render thread holds the GIL while the clients are deactivated
            for c in (sender, recorder):
                playback.deactivate_jack_client(c)  # (PipeWire's JACK cancels a client's audio thread)
                c.close()
            backend.stop()
    return recorded, backend
