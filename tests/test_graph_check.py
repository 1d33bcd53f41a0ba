"""The real-clock graph check (tests/jack_graph.py, used by tests/test_live_pipewire.py) on call
logs made here, with the stalls a loaded machine gives under PipeWire's JACK: a call that reads
the next cycle's frame time (and the next call the same again), and a cycle a client missed.
Those calls are left out; every call in step is matched by frame, and a wrong match is seen."""

from __future__ import annotations

import numpy as np

import jack_graph
from helpers import live_model
from jack_graph import GraphRun, in_step, real_clock_check, render_blocks

RATE, PERIOD = 48000, 128
EVENTS = [(5 * PERIOD + 40, bytes([0x90, 60, 100])), (30 * PERIOD, bytes([0x80, 60, 0]))]  # the piece (`_run`)


def test_in_step_leaves_out_the_calls_around_an_early_read_and_a_missed_cycle():
    p = PERIOD
    early = np.array([0, p, 2 * p, 4 * p, 4 * p, 5 * p, 6 * p, 7 * p])  # the 4th call read the 5th's frame
    assert in_step(early, p).tolist() == [False, True, False, False, False, True, True, False]
    missed = np.array([0, p, 2 * p, 4 * p, 5 * p, 6 * p])  # the cycle at 3p never came to this client
    assert in_step(missed, p).tolist() == [False, True, False, False, True, False]
    assert in_step(np.arange(6) * p, p).tolist() == [False, True, True, True, True, False]


def _run(calls: int = 60) -> tuple[GraphRun, object]:
    """A clean run: the engine's calls, every cycle in step, a note at call 5, offset 40, sent then
    and there, and the recorder hearing every period."""
    model = live_model()
    blocks = [[] for _ in range(calls)]
    blocks[5] = [(40, bytes([0x90, 60, 100]))]
    blocks[30] = [(0, bytes([0x80, 60, 0]))]
    audio = render_blocks(model, blocks, RATE, PERIOD, None)
    frames = np.arange(calls, dtype=np.int64) * PERIOD
    midi = np.array([(5, 40), (30, 0)], np.int64)
    data = "903c64 803c00"
    empty = np.zeros(0, np.float32)
    run = GraphRun(recorded=empty, offset=0, rate=RATE, period=PERIOD, latency_frames=410, up=3, down=1, prefill=0,
                   periods=calls, durations=empty, ends=empty, period_starts=empty, xruns=0, late=0, errors=0,
                   wall_s=1.0, xrun_times=np.zeros(0), late_times=np.zeros(0),
                   engine_frames=frames, engine_times=100.0 + np.arange(calls) * PERIOD / RATE, engine_audio=audio,
                   engine_midi=midi, engine_data=data,
                   sender_frames=frames.copy(), sender_times=100.0 + np.arange(calls) * PERIOD / RATE,
                   sender_audio=empty, sender_midi=midi.copy(), sender_data=data,
                   recorder_frames=frames.copy(), recorder_times=100.0 + np.arange(calls) * PERIOD / RATE,
                   recorder_audio=audio.copy(), recorder_midi=np.zeros((0, 2), np.int64),
                   recorder_data="", log_errors=0)
    return run, model


def test_the_check_matches_calls_in_step_and_sees_a_wrong_period(monkeypatch):
    run, model = _run()
    result = real_clock_check(run, model, EVENTS)
    assert result["engine_equal"] and result["midi_in_order"] and result["midi_timed"] == result["midi_on_time"] == 2
    assert result["midi_as_planned"]
    assert result["blocks_compared"] == result["blocks_equal"] == 58 and result["peak_at_onset"] > 0

    # the recorder's call for the cycle at 20 periods came late and read 21's frame time; the next
    # call read 21's again (its own); the cycle at 40 it missed: those calls and their neighbours are
    # left out, every other one matches
    audio = run.engine_audio.reshape(-1, PERIOD)
    frames = list(range(60))
    frames[20] = 21
    keep = [k for k in range(60) if k != 40]
    run.recorder_frames = np.array([frames[k] for k in keep], np.int64) * PERIOD
    run.recorder_audio = np.concatenate([audio[k] for k in keep])
    run.recorder_times = np.array([run.recorder_times[k] for k in keep])
    result = real_clock_check(run, model, EVENTS)
    assert result["blocks"] == 59 and result["blocks_compared"] == result["blocks_equal"] == 52, result
    assert result["unequal_times"] == result["unequal_kinds"] == []

    # the same logs with every read believed: the period of the cycle at 20 is taken for 21's and
    # differs (the note sounds then); in_step is what keeps it out
    monkeypatch.setattr(jack_graph, "in_step", lambda frames, period: np.ones(len(frames), bool))
    result = real_clock_check(run, model, EVENTS)
    assert result["blocks_compared"] == 59 and result["blocks_equal"] == 58, result
    # which one, when it was logged, and what it holds: the engine's period before
    assert result["unequal_kinds"] == ["previous"] and result["unequal_times"] == [run.recorder_times[20]], result
    monkeypatch.undo()

    # periods the recorder heard as silence, or as something else, each said when
    run, model = _run()
    run.recorder_audio[12 * PERIOD:13 * PERIOD] = 0.0
    run.recorder_audio[40 * PERIOD + 7] += 0.25
    result = real_clock_check(run, model, EVENTS)
    assert result["blocks_compared"] - result["blocks_equal"] == 2, result
    assert result["unequal_kinds"] == ["silence", "other"], result
    assert result["unequal_times"] == [run.recorder_times[12], run.recorder_times[40]], result

    # a period of the engine's own that is not its render of what it got
    run, model = _run()
    run.engine_audio[10 * PERIOD + 3] += 0.5
    assert not real_clock_check(run, model, EVENTS)["engine_equal"]
    # an event the engine got one frame late, and one the sender's log does not hold
    run, model = _run()
    run.engine_midi[0, 1] += 1
    result = real_clock_check(run, model, EVENTS)
    assert result["midi_on_time"] == result["midi_timed"] - 1, result
    run, model = _run()
    run.sender_data = "903c64"
    run.sender_midi = run.sender_midi[:1]
    result = real_clock_check(run, model, EVENTS)
    assert not result["midi_in_order"] and not result["midi_as_planned"]  # the release, due at 30 periods, unsent
    # the sender's own slips: an event written a frame early, or sent late mid-period
    for offset in (39, 41):
        run, model = _run()
        run.sender_midi[0, 1] = offset
        assert real_clock_check(run, model, EVENTS)["midi_as_planned"] is False
    run, model = _run()  # a late call that sends what it missed at its start: as planned
    run.sender_midi[0] = (6, 0)
    assert real_clock_check(run, model, EVENTS)["midi_as_planned"]


def test_an_xrun_is_the_machines_only_near_a_stall_a_realtime_probe_saw():
    """`audio_servers.near_a_stall`, which excuses an xrun or late block in the real-clock tests:
    within 50 ms of a late wake-up of a probe, and, with `fifo_only`, of one that ran at SCHED_FIFO
    (at normal priority any busy thread, the engine's included, makes it late)."""
    from audio_servers import near_a_stall

    stalls = {0: (True, [(10.0, 0.004)]), 1: (False, [(20.0, 0.004)])}
    times = [9.96, 10.04, 10.06, 20.0, 30.0]
    assert near_a_stall(times, stalls, near_s=0.05) == [True, True, False, True, False]
    assert near_a_stall(times, stalls, near_s=0.05, fifo_only=True) == [True, True, False, False, False]
    assert near_a_stall(times, {}, near_s=0.05) == [False] * 5


def test_a_span_is_stalled_only_where_a_probes_missed_time_can_fall_in_it():
    """`audio_servers.stalled_during`, which leaves the periods a stall lengthened out of the
    real-clock test's p99: a probe late by d at u missed d seconds in [u - d - sleep, u]; a span
    overlapping that (1 ms either side) is stalled, one clear of it is not; only FIFO probes count."""
    from audio_servers import stalled_during

    stalls = {0: (True, [(10.0, 0.004)]), 1: (False, [(20.0, 0.004)])}  # FIFO: missed time in [9.994, 10.0]
    starts = [9.990, 9.9925, 10.0005, 10.0015, 20.0]
    durations = [0.001, 0.001, 0.001, 0.001, 0.001]
    assert stalled_during(starts, durations, stalls).tolist() == [False, True, True, False, False]
    assert stalled_during(starts, durations, stalls, fifo_only=False).tolist() == [False, True, True, False, True]
    assert stalled_during(starts, durations, {}).tolist() == [False] * 5
    assert stalled_during([9.990], [0.0035], stalls).tolist() == [True]  # a long span reaching into it

