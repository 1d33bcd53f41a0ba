"""The live engine (render/live.py) without a server: a block-wise render equals the offline render
through the engine bit for bit, events land at their sample offsets, the pedals hold notes, bad
messages are counted and ignored, the context steps as the model's convolution, and the output
reaches other rates with a fixed latency. With a JACK server: tests/test_live_jack.py."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest
import torch

from midi2wave.conditioning import resonators as rs
from midi2wave.errors import InputError
from midi2wave.midi import Notes, PedalEvents, write_midi
from midi2wave.model.stepping import ContextStepper, context_weights
from midi2wave.render import live, playback
from helpers import LIVE_BANK, LIVE_OPTIONS, live_model, live_piece

SR = 16000
BANK = LIVE_BANK
OPTIONS = LIVE_OPTIONS


@pytest.fixture(scope="module")
def piece(tmp_path_factory) -> str:
    return live_piece(tmp_path_factory.mktemp("live"))


def _render(model, piece, blocks, **kw):
    return live.render_file_live(model, piece, OPTIONS, year=2011, end_s=3.4, block_samples=blocks, **kw)


def test_a_block_wise_render_equals_the_offline_render_bit_for_bit(piece):
    model = live_model()
    whole = _render(model, piece, 16000)
    assert np.abs(whole).max() > 0.01 and np.isfinite(whole).all()
    for blocks in (64, 128, [37, 128, 5, 300, 64]):
        got = _render(model, piece, blocks)
        assert np.array_equal(got, whole), (blocks, np.flatnonzero(got != whole)[:5])


def test_min_p_reaches_the_live_engine_in_any_blocks(piece):
    """The tail cut (`SamplingOptions.min_p`) changes the live render, and the render is still the
    same in any blocks (broken once: the engine not passing it on, the two renders equal)."""
    import dataclasses

    model = live_model()
    cut = dataclasses.replace(OPTIONS, min_p=0.2)
    whole = live.render_file_live(model, piece, cut, year=2011, end_s=3.4, block_samples=16000)
    assert not np.array_equal(whole, _render(model, piece, 16000))
    assert np.array_equal(live.render_file_live(model, piece, cut, year=2011, end_s=3.4, block_samples=64), whole)


def test_between_events_the_engine_keeps_its_tables_and_they_are_what_it_would_compute():
    """The notes' table (`_piece`, which the roll and excitation builders cache on) is rebuilt only
    when an event is applied or a prune drops something, also with more pedal changes in the
    prune's horizon than it compacts (64), and equals a table built afresh at every block; the next
    silence it keeps (`_silence_after`, used across blocks, prunes, a rest and a wake) equals the
    one computed afresh."""
    synth = live.LiveSynth(live_model(), OPTIONS, year=2011)
    for i in range(100):  # a pedal change every 20 ms for 2 s
        synth.control_change(64, 127 if i % 2 == 0 else 0, i * 320)
    for i in range(20):  # a note every 0.1 s, 0.3 s long
        synth.note_on(48 + i, 70, i * 1600 + 7)
        synth.note_off(48 + i, i * 1600 + 4807)
    synth.note_on(60, 90, 7 * SR + 100)  # after the rest: the engine wakes
    synth.note_off(60, 7 * SR + 3000)
    due = sorted(e[0] for e in synth.events)

    def fresh_silence(t):
        kept = synth._silence_cache
        synth._silence_cache = None
        point = synth._silence_after(t)
        synth._silence_cache = kept
        return point

    prune, drops = synth._prune, [0]

    def counted_prune(t):  # prunes that dropped a note or a pedal event (each rebuilds the table)
        before = len(synth.notes), len(synth.pedal_events)
        prune(t)
        drops[0] += (len(synth.notes), len(synth.pedal_events)) != before

    synth._prune = counted_prune
    rebuilt = blocks_with_events = kept_used = idle_blocks = 0
    table = None
    for b in range(8 * SR // 64):
        blocks_with_events += any(b * 64 <= t < (b + 1) * 64 for t in due)
        synth.render(64)
        idle_blocks += synth.idle_from is not None
        table_now = synth._notes_cache  # None after a prune that dropped something: rebuilt in the next block
        if table_now is not None:
            if table_now is not table:
                rebuilt += 1
                table = table_now
            synth._notes_cache = None
            again = synth._piece()
            synth._notes_cache = table_now
            for got, want in zip(table_now, again):
                assert got == want, b  # Notes / PedalEvents compare their arrays
        t = synth.generated
        cached = synth._silence_cache
        kept_used += cached is not None and cached[0] == synth.wake_onset and t <= cached[1]
        assert synth._silence_after(t) == fresh_silence(t), b
    assert blocks_with_events > 100 and 0 < drops[0] < 80 and rebuilt <= blocks_with_events + drops[0] + 1  # + the first
    assert kept_used > 1000 and idle_blocks > 100  # the kept silence was used; the engine fell silent and woke


def test_silence_costs_nothing_and_the_next_note_starts_at_its_frame(piece):
    """The rest (0.6 s + tail .. 2.6 s) is exact zeros; sound resumes at the next onset's frame."""
    model = live_model()
    audio = _render(model, piece, 128)
    tail = live.LiveSynth(model, OPTIONS).tail
    quiet = slice(int(0.6 * SR) + tail + 64, int(2.6 * SR) // 64 * 64)
    assert not audio[quiet].any()
    assert audio[int(2.6 * SR) // 64 * 64: int(2.6 * SR) + 256].any()


def test_an_event_sounds_exactly_the_latency_after_it_at_any_offset():
    """One note into silence at sample T, at several places in a frame: its attack starts at T + L,
    not at its frame's start + L (before T + L only the roll's murmur, 40 dB under the attack);
    moving the note by whole frames moves the output by as many samples, bit for bit."""
    model = live_model()
    outs = {}
    for T in (1000, 1013, 1024, 1063, 1000 + 64 * 5):
        synth = live.LiveSynth(model, OPTIONS)
        out = []
        for b in range(0, 4096, 64):
            if b <= T < b + 64:
                synth.note_on(60, 100, T - b)
            out.append(synth.render(64))
        out = np.concatenate(out)
        L = synth.latency_samples
        assert L == 64
        assert not out[:T // 64 * 64 + L].any()
        peak = np.abs(out[T + L:T + L + 256]).max()
        assert np.abs(out[:T + L]).max() < 0.003 * peak, T  # a note snapped to its frame would start up to 63 early
        assert np.abs(out[T + L:T + L + 32]).max() > 0.02 * peak > 0, T
        outs[T] = out
    shift = 64 * 5
    assert np.array_equal(outs[1000][:-shift], outs[1000 + shift][shift:])


def test_the_sustain_pedal_holds_released_keys_until_it_lifts():
    model = live_model()
    synth = live.LiveSynth(model, OPTIONS)
    synth.control_change(64, 127)
    synth.note_on(60, 100)
    synth.render(640)
    synth.note_off(60)
    synth.render(64 * 40)
    assert [n.offset for n in synth.notes] == [None]  # released, still sounding
    synth.control_change(64, 0, offset=10)
    synth.render(64)
    assert synth.notes[0].offset == 640 + 64 * 40 + 10


def test_the_sostenuto_pedal_holds_only_the_keys_down_when_it_went_down():
    synth = live.LiveSynth(live_model(), OPTIONS)
    synth.control_change(64, 127)  # 67: released while the sustain pedal holds it: not a key down
    synth.note_on(67, 100)
    synth.note_on(60, 100, 1)
    synth.note_off(67, 2)
    synth.render(64)
    synth.control_change(66, 127)
    synth.control_change(64, 0, 1)  # the sustain pedal lifts after the sostenuto went down: 67 ends
    synth.note_on(64, 100)
    synth.render(64)
    synth.note_off(60)
    synth.note_off(64)
    synth.render(64)
    assert {n.pitch: n.offset for n in synth.notes} == {67: 65, 60: None, 64: 128}
    synth.control_change(66, 0)
    synth.render(64)
    assert {n.pitch: n.offset for n in synth.notes} == {67: 65, 60: 192, 64: 128}


def test_bad_messages_are_counted_and_ignored(piece):
    """Sysex, pressure, bend, program changes, keys outside the piano, stray data bytes and empty or
    short messages change nothing in the audio; each is counted."""
    model = live_model()
    clean = live.LiveSynth(model, OPTIONS)
    noisy = live.LiveSynth(model, OPTIONS)
    bad = [b"\xf0\x7e\x7f\x09\x01\xf7", b"\xd0\x40", b"\xe0\x00\x40", b"\xc0\x05", b"\xa0\x3c\x20",
           b"\x90\x0a\x40", b"\x90\x78\x40", b"\x80\x6d\x00", b"\x40\x40", b"", b"\x90\x3c", b"\x90\x3c\xff",
           b"\xb0\x07\x64", b"\xf2\x00\x10", [300, 1, 2], None]
    a, b = [], []
    for k in range(40):
        for s in (clean, noisy):
            if k == 2:
                s.midi_message(b"\x90\x3c\x64", 5)
            if k == 20:
                s.midi_message(b"\x80\x3c\x00", 7)
        for m in bad:
            assert noisy.midi_message(m, 3) is False
        a.append(clean.render(64))
        b.append(noisy.render(64))
    assert np.array_equal(np.concatenate(a), np.concatenate(b))
    assert np.abs(np.concatenate(a)).max() > 0
    assert noisy.stats.ignored_total == 40 * len(bad) and clean.stats.ignored_total == 0
    assert noisy.stats.ignored["key outside the piano"] == 40 * 3


def test_a_model_that_looks_ahead_is_refused_in_one_line():
    with pytest.raises(live.LiveError, match="looks ahead"):
        live.LiveSynth(live_model(causal=False))


def test_the_context_stepper_equals_the_models_convolution():
    model = live_model()
    g = torch.Generator().manual_seed(1)
    rolls = (torch.rand(1, model.data_config.conditioning_channels, 80, generator=g) > 0.9).float()
    with torch.no_grad():
        cond, _ = model.layer_conditioning(None, torch.tensor([4]), model.context(rolls))
    stepper = ContextStepper(context_weights(model), 4)
    got = np.stack([stepper.step(rolls[0, :, f].numpy()) for f in range(80)], -1)
    assert np.abs(got - cond[0].numpy()).max() < 1e-5 * max(1.0, float(cond.abs().max()))
    assert np.abs(got).max() > 0.1


def test_the_live_bank_makes_the_schedules_oscillators():
    """Notes added as they begin and released later give `schedule`'s oscillators, field by field."""
    notes = Notes(np.array([0.0, 0.01, 0.03]), np.array([0.05, 0.02, 0.09]), np.array([60, 67, 30], np.int16),
                  np.array([100, 50, 127], np.int16))
    sched = rs.schedule(notes, 0, 4000, SR, BANK)
    bank = rs.LiveBank(BANK, SR)
    rows = [bank.add_note(int(p), int(v), int(np.ceil(o * SR))) for o, p, v in zip(notes.onset_s, notes.pitch,
                                                                                     notes.velocity)]
    for r, off in zip(rows, notes.offset_s):
        bank.release_note(r, int(np.ceil(off * SR)))
    for name in rs.Schedule.FIELDS:
        assert np.array_equal(getattr(bank, name)[:bank.size], getattr(sched, name)), name


def test_the_live_bank_copies_notes_from_tables_built_before_the_audio_runs():
    """`add_note` copies a note's oscillators from its pitch's table (one `oscillators` call for
    every velocity): the rows equal a single note's `oscillators` at any velocity; a velocity
    outside 1..127 is refused; the audio callback's processor builds every key's table first."""
    bank = rs.LiveBank(BANK, SR, year=2011)
    for pitch in (21, 60, 108):
        for velocity in range(1, 128):
            bank.reset()
            bank.add_note(pitch, velocity, 1234)
            rows = rs.oscillators(np.array([pitch]), np.array([velocity]), np.array([1234]),
                                  np.array([rs.NOT_RELEASED]), SR, BANK)
            rows.r_release[:] = bank.release_pole  # the room's (`release_pole_for`), set by the bank
            rows.level *= rs.room_level_gain(BANK, 2011, rows.omega, SR)  # and its tone
            for name in rs.Schedule.FIELDS:
                assert np.array_equal(getattr(bank, name)[:bank.size], getattr(rows, name)), (pitch, velocity, name)
            cos, sin = np.zeros(len(rows)), np.zeros(len(rows))
            rs.unit_phasors(rows.omega, cos, sin)
            assert np.array_equal(bank.cos_omega[:bank.size], cos) and np.array_equal(bank.sin_omega[:bank.size], sin)
    assert bank.release_pole != rs.oscillators(np.array([60]), np.array([64]), np.array([0]),
                                               np.array([rs.NOT_RELEASED]), SR, BANK).r_release[0]
    for velocity in (0, 128):
        with pytest.raises(ValueError, match="velocity"):
            bank.add_note(60, velocity, 0)
    synth = live.LiveSynth(live_model(), OPTIONS, year=2011)
    playback._Processor(synth, SR, 64)
    assert sorted(synth.bank._note_tables) == list(range(21, 109))
    synth.note_on(60, 0.5)  # a velocity under 1 is a note-off, not a note the bank refuses mid-stream
    synth.note_on(62, 300.0)  # above 127: 127
    assert np.isfinite(synth.render(256)).all() and synth.stats.notes == 1 and synth.notes[-1].velocity == 127


@pytest.mark.parametrize("rate, period", [(48000, 96), (44100, 128), (22050, 100)])
def test_device_rate_output_is_the_resampled_render_with_a_fixed_latency(piece, rate, period):
    """Through the RateAdapter (events at frames the engine's clock hits), blocks at the device's
    rate equal the 16 kHz render through the same resampler, delayed by the ring's start: an event
    sounds `latency_frames` after it (the engine's L, the resampler's delay, the ring's start)."""
    model = live_model()
    synth = live.LiveSynth(model, OPTIONS, year=2011)
    adapter = live.RateAdapter(synth, rate)
    grid = SR // np.gcd(SR, rate)  # model samples between the frames the engine's clock hits
    events = [(e[0] // grid * grid, *e[1:]) for e in live.file_events(piece, SR)]
    n_out = int(1.0 * rate)
    out = np.concatenate([adapter.process(block, period) for block in _periods(events, rate, period, n_out)])[:n_out]
    ref16 = np.concatenate(list(live.render_events(live.LiveSynth(model, OPTIONS, year=2011), events, SR, 16000)))
    ref = live.StreamResampler(SR, rate)(ref16)  # delayed by L (in ref16) and the resampler's delay
    shift = adapter.prefill  # and the ring's start
    assert shift == -(-rate // SR) - 1  # the fewest frames that keep the ring from running dry
    assert np.array_equal(out[shift:], ref[:n_out - shift])
    assert not out[:shift].any() and np.abs(out).max() > 0.01
    # L = 64 samples (192, 176.4, 88.2 frames), the resampler's delay (24, 23, 12), the ring's start
    assert adapter.latency_frames == {48000: 192 + 24 + 2, 44100: 176 + 23 + 2, 22050: 88 + 12 + 1}[rate]


@pytest.mark.parametrize("rate", [48000, 44100, 88200, 22050, 11025, 8000])
def test_the_resampler_is_a_delayed_band_limited_copy_in_any_blocks(rate):
    """`StreamResampler`: cut into any blocks (empty ones too) it gives the same frames bit for bit,
    ceil(n x up / down) of them after n inputs; a tone below the lower rate's Nyquist frequency
    comes out as the same tone `delay_frames` late; above it (downsampling) it is removed, and
    (upsampling) its images above the input's Nyquist frequency are far down."""
    r = live.StreamResampler(SR, rate)
    x = np.random.default_rng(rate).standard_normal(5000) * 0.1
    whole = r(x)
    assert len(whole) == r.frames_after(len(x)) == -(-len(x) * rate // SR) and np.abs(whole).max() > 0.01
    r.reset()
    parts, i, sizes = [], 0, [0, 1, 37, 64, 5, 300, 0, 2]
    while i < len(x):
        n = sizes[len(parts) % len(sizes)]
        parts.append(r(x[i:i + n]))
        i += n
    assert np.array_equal(np.concatenate(parts), whole)
    nyquist = min(SR, rate) / 2
    for f in (1000.0, 0.6 * nyquist):
        r.reset()
        y = r(np.sin(2 * np.pi * f * np.arange(SR) / SR)).astype(np.float64)
        j = np.arange(len(y))
        core = slice(2 * r.delay_frames + 100, len(y) - 100)  # past the start, before the end's taps
        assert np.abs(y - np.sin(2 * np.pi * f * (j - r.delay_frames) / rate))[core].max() < 2e-3, f
    if rate < SR:
        r.reset()
        y = r(np.sin(2 * np.pi * 7000.0 * np.arange(SR) / SR))[core]
        assert np.sqrt(2 * np.mean(y.astype(np.float64) ** 2)) < 1e-3  # -60 dB: not aliased into the band
    else:
        r.reset()
        y = r(np.sin(2 * np.pi * 6000.0 * np.arange(SR) / SR))[core][:rate // 2].astype(np.float64)
        spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
        freqs = np.fft.rfftfreq(len(y), 1 / rate)
        assert spectrum[freqs > SR / 2].max() < 1e-3 * spectrum.max()  # images 60 dB down


def test_the_resampler_refuses_a_ratio_too_fine_in_one_line():
    with pytest.raises(live.LiveError, match="44101 Hz is 44101/16000 of 16000 Hz: a ratio this fine"):
        live.StreamResampler(SR, 44101)
    with pytest.raises(InputError, match="^audio device: 44101 Hz is"):
        playback._Processor(live.LiveSynth(live_model(), OPTIONS), 44101, 128, 64)


def _stream_ahead(synth, events, n_samples, blocks):
    """`render_events`, but each block is taken in with `advance` and everything it decides is
    generated (`render_ready`); also checks after each block that it is exactly up to the last
    complete frame. Returns the output stream (from piece sample -L)."""
    synth.reset()
    out, done, j, k = [], 0, 0, 0
    while done < n_samples:
        n = blocks[k % len(blocks)]
        k += 1
        while j < len(events) and events[j][0] < done + n:
            live._send(synth, events[j], events[j][0] - done)
            j += 1
        synth.advance(n)
        out.append(synth.render_ready())
        done += n
        assert synth.ready_samples == 0 and synth.generated == (done // 64) * 64
    return np.concatenate(out)


def test_rendering_ahead_gives_the_same_stream_up_to_a_frame_sooner(piece):
    """A piece sample depends only on the events before its frame's end: generating every sample
    the events so far decide (`render_ready`, up to 64 samples sooner than `render`) gives the same
    stream bit for bit, in any block size."""
    model = live_model()
    events = live.file_events(piece, SR)
    n = int(3.4 * SR)
    ref = np.concatenate(list(live.render_events(live.LiveSynth(model, OPTIONS, year=2011), events, n, 64)))
    synth = live.LiveSynth(model, OPTIONS, year=2011)
    for blocks in ([64], [37, 128, 5, 300, 64]):
        got = _stream_ahead(synth, events, n, blocks)
        assert len(got) >= len(ref) and np.abs(ref).max() > 0.01
        assert np.array_equal(got[:len(ref)], ref), (blocks, np.flatnonzero(got[:len(ref)] != ref)[:5])


def _periods(events, rate, period, n_frames):
    """The piece's events (`file_events`, at 16 kHz) as each device period's (offset, bytes), at
    device frames the engine's clock hits (integer ratios: exactly)."""
    out, j = [], 0
    frames = [e[0] * rate // SR for e in events]
    for start in range(0, n_frames, period):
        block = []
        while j < len(events) and frames[j] < start + period:
            block.append((frames[j] - start, live.event_bytes(events[j])))
            j += 1
        out.append(block)
    return out


@pytest.mark.parametrize("rate, period", [(16000, 64), (16000, 37), (48000, 96), (44100, 128)])
def test_rendering_ahead_delays_the_output_by_exactly_the_extra_buffering(piece, rate, period):
    """`RateAdapter(ahead_samples=D)` outputs what it does without, D model samples later (D x
    ratio frames, rounded to the nearest: 176 and 276 at 44.1 kHz), and declares that much more
    latency."""
    model = live_model()
    n_frames = 3 * rate
    periods = _periods(live.file_events(piece, SR), rate, period, n_frames)
    outs = {}
    for ahead in (0, 64, 100):
        adapter = live.RateAdapter(live.LiveSynth(model, OPTIONS, year=2011), rate, ahead)
        outs[ahead] = (np.concatenate([adapter.process(b, period) for b in periods]), adapter.latency_frames)
    base, latency = outs[0]
    assert np.abs(base).max() > 0.01
    for ahead in (64, 100):
        got, got_latency = outs[ahead]
        shift = (ahead * rate + SR // 2) // SR
        assert got_latency == latency + shift and (rate != 44100 or shift == {64: 176, 100: 276}[ahead])
        assert not got[:shift].any() and np.array_equal(got[shift:], base[:len(base) - shift]), ahead


def _threaded(synth, rate, period, ahead, periods, freewheel, stall=None):
    """Blocks from a `_Processor` rendering `ahead` samples ahead on its thread, and for each block
    whether it came late. In freewheel the callbacks come back to back; otherwise once a period on
    the clock, as a server's would. `stall`: (period, seconds) the render thread stops for."""
    proc = playback._Processor(synth, rate, period, ahead)
    assert proc.render_thread
    proc.freewheel = freewheel
    if stall is not None:
        produce, calls = proc.adapter.produce, [0]

        def stalled(*args, **kw):
            calls[0] += 1
            if calls[0] == stall[0]:
                time.sleep(stall[1])
            return produce(*args, **kw)

        proc.adapter.produce = stalled
    proc.start()
    outs, late = [], []
    t0 = time.perf_counter()
    try:
        for k, block in enumerate(periods):
            if not freewheel:
                time.sleep(max(0.0, t0 + k * period / rate - time.perf_counter()))
            out = np.full(period, np.nan, np.float32)
            before = proc.late
            proc(block, period, out)
            outs.append(out)
            late.append(proc.late > before)
    finally:
        proc.stop()
    assert proc.thread is None and proc.errors == 0  # the callback's and the render thread's
    return outs, np.array(late), proc


def test_the_render_thread_gives_the_same_blocks_and_after_a_long_stall_catches_up(piece):
    """With the render thread the callback's blocks are the in-callback render's, D samples later
    (in freewheel mode the callback waits for them, even for a stalled thread). On the clock, a
    stall longer than the buffering makes blocks late: their missing part is silence (never
    left unwritten), the stream keeps time, and the thread drops what it is too far behind on
    instead of playing it late, so the blocks come in time again within `max_backlog` periods
    of the stall's end."""
    model = live_model()
    period, ahead = 64, 64
    periods = _periods(live.file_events(piece, SR), SR, period, 2 * SR)
    adapter = live.RateAdapter(live.LiveSynth(model, OPTIONS, year=2011), SR, ahead)
    ref = [adapter.process(b, period) for b in periods]
    synth = live.LiveSynth(model, OPTIONS, year=2011)
    outs, late, proc = _threaded(synth, SR, period, ahead, periods, freewheel=True, stall=(40, 0.05))
    assert not late.any() and all(np.array_equal(o, r) for o, r in zip(outs, ref))
    assert proc.meter.periods == len(periods) and len(periods) - 2 <= proc.work.periods <= len(periods)
    stall_s = 0.2
    synth = live.LiveSynth(model, OPTIONS, year=2011)
    outs, late, proc = _threaded(synth, SR, period, ahead, periods, freewheel=False, stall=(40, stall_s))
    first, last = int(np.flatnonzero(late)[0]), int(np.flatnonzero(late)[-1])
    assert all(np.array_equal(o, r) for o, r in zip(outs[:first], ref[:first])) and first >= 40
    assert all(np.isfinite(o).all() for o in outs) and proc.late == late.sum() and proc.skipped > 0
    stalled = int(stall_s * SR / period)
    assert last - first <= stalled + proc.max_backlog + 6, (first, last, stalled, proc.max_backlog)
    assert not late[last + 1:].any() and last < len(periods) - 100


@pytest.mark.parametrize("rate, period, spare", [(16000, 64, 2), (16000, 128, 1), (16000, 256, 0),
                                                 (48000, 96, 3), (48000, 128, 2), (48000, 1024, 0),
                                                 (44100, 128, 1)])
def test_each_block_is_rendered_the_periods_to_spare_before_it_is_heard(piece, rate, period, spare):
    """The render of block j (its events in) puts in the ring every frame up to block j + spare's
    end: the thread has `spare` periods for it. With none to spare, the processor renders in the
    callback (without the extra latency)."""
    model = live_model()
    synth = live.LiveSynth(model, OPTIONS, year=2011)
    adapter = live.RateAdapter(synth, rate, 64)
    assert adapter.periods_to_spare(period) == spare
    events = live.file_events(piece, SR)
    for j, block in enumerate(_periods(events, rate, period, rate // 2)):
        adapter.ring.write(adapter.produce(block, period))
        if j:  # the first block's own render is its silence (nothing sounds before the latency)
            assert adapter.ring.written >= (j + 1 + spare) * period, (j, adapter.ring.written)
    proc = playback._Processor(live.LiveSynth(model, OPTIONS), rate, period, 64)
    assert proc.render_thread == (spare > 0)
    assert proc.adapter.latency_frames == live.RateAdapter(synth, rate, 64 if spare else 0).latency_frames


@pytest.mark.parametrize("rate, period, ahead, latency, kept", [
    (16000, 64, 64, 128, 128), (48000, 128, 64, 410, 410), (44100, 128, 92, 455, 377), (44100, 96, 104, 488, 377),
    (48000, 160, 96, 506, 410), (16000, 192, 64, 64, 64), (44100, 256, 92, 455, 201), (44100, 192, 64, 201, 201)])
def test_the_default_buffering_gives_the_render_thread_its_least_time(rate, period, ahead, latency, kept):
    """`--ahead` left out: 4 ms (the issue's settings keep 8 and 8.5 ms), raised in quarters of a
    millisecond where 4 ms leaves the thread less than `MIN_SLACK_MS` per block (44.1 kHz: the
    least buffering that reaches it, also where 4 ms gives it no period: 44.1 kHz / 256); not where
    the callback renders with a period of `CALLBACK_MIN_PERIOD_MS` or more (16 kHz / 192), nor where
    no buffering up to the cap gives the thread 5 ms (44.1 kHz / 192); a given `--ahead` (4 ms:
    `kept`, the latency in frames) is kept."""
    synth = live.LiveSynth(live_model(), OPTIONS)
    assert playback.default_ahead_samples(synth, rate, period) == ahead

    def slack_ms(n):
        return 1000 * live.RateAdapter(synth, rate, n).periods_to_spare(period) * period / rate

    proc = playback._Processor(synth, rate, period, None)
    assert proc.adapter.latency_frames == latency
    if proc.render_thread:
        assert slack_ms(ahead) >= playback.MIN_SLACK_MS
        if ahead > 64:
            assert slack_ms(64) < playback.MIN_SLACK_MS and slack_ms(ahead - 4) < playback.MIN_SLACK_MS
        if ahead > 64 and slack_ms(64) == 0:  # a thread instead of the callback
            assert 1000 * period / rate < playback.CALLBACK_MIN_PERIOD_MS
    else:
        assert slack_ms(64) == 0
        assert 1000 * period / rate >= playback.CALLBACK_MIN_PERIOD_MS or slack_ms(128) < playback.MIN_SLACK_MS
    assert playback._Processor(synth, rate, period, 64).adapter.latency_frames == kept


def test_the_engine_refuses_to_take_in_more_than_it_can_hold_ungenerated():
    """`advance` without generating fills the conditioning frames' ring: past it, a clear error."""
    synth = live.LiveSynth(live_model(), OPTIONS)
    with pytest.raises(ValueError, match="ahead of the output"):
        for _ in range(10):
            synth.advance(SR)
    synth.reset()
    adapter = live.RateAdapter(synth, 48000)
    assert len(adapter.process([], 70000)) == 70000  # a block longer than the ring: in parts


def test_the_periods_after_the_render_thread_stops_are_not_counted_late():
    """A backend stops its render thread before its stream (PipeWire's JACK: `JackBackend.stop`):
    the periods the stream still plays meanwhile output what the ring holds and silence, without
    waiting, and are not counted late (the status line's last count is the stream's own)."""
    synth = live.LiveSynth(live_model(), OPTIONS)
    proc = playback._Processor(synth, SR, 64, 64)
    proc.start()
    for _ in range(8):  # past the latency: a block missing now would be late
        proc([], 64, np.empty(64, np.float32))
    late = proc.late
    proc.stop()
    t0 = time.perf_counter()
    outs = [np.ones(64, np.float32) for _ in range(40)]  # more than the ring holds
    for out in outs:
        proc([], 64, out)
    assert proc.late == late and np.isfinite(np.concatenate(outs)).all()
    assert not outs[-1].any() and time.perf_counter() - t0 < 0.5  # silence, not waited for


def test_an_error_on_the_render_thread_gives_silence_and_is_counted():
    synth = live.LiveSynth(live_model(), OPTIONS)
    proc = playback._Processor(synth, SR, 64, 64)
    proc.freewheel = True
    synth.advance = None  # the engine breaks
    proc.start()
    outs = [np.ones(64, np.float32) for _ in range(4)]
    t0 = time.perf_counter()
    try:
        for out in outs:
            proc([], 64, out)
    finally:
        proc.stop()
    # the first two blocks lie within the latency (nothing can sound there yet: not late); the
    # others are late, and not waited for (freewheel)
    assert not np.concatenate(outs).any() and proc.late == 2
    # counted on the thread's meter (one writer per counter), and in the total the status line shows
    assert proc.work.errors >= 3 and proc.meter.errors == 0 and proc.errors == proc.work.errors
    assert f"errors {proc.errors}" in playback.status_line(proc)
    assert time.perf_counter() - t0 < 1.0


def test_an_error_in_the_audio_callback_gives_silence_and_is_counted():
    synth = live.LiveSynth(live_model(), OPTIONS)
    proc = playback._Processor(synth, SR, 64)
    out = np.ones(64, np.float32)
    synth.render = None  # the engine breaks
    proc([], 64, out)
    assert not out.any() and proc.errors == proc.meter.errors == 1 and proc.meter.periods == 1


def test_under_overload_new_notes_end_the_oldest_held_ones():
    synth = live.LiveSynth(live_model(), OPTIONS)
    synth.voice_limit = 3
    for k, pitch in enumerate((60, 62, 64, 65, 67)):
        synth.note_on(pitch, 90, k)
    synth.render(64)
    held = [n.pitch for n in synth.notes if n.offset is None]
    assert held == [64, 65, 67] and synth.stats.stolen == 2


@pytest.mark.parametrize("argv, message", [
    (["live", "--jack"], "JACK: no server to connect to"),
    (["live", "--midi-in", "no-such-port", "--device", "no-such-device"], "MIDI input 'no-such-port' not found"),
    (["live", "--device", "no-such-device"], "give --midi-in PORT too"),
    (["live"], "choose --jack, or --midi-in PORT"),
    (["live", "--jack", "--ahead", "-1"], "--ahead -1 ms: give 0"),
    (["live", "--jack", "--ahead", "nan"], "--ahead nan ms: give 0"),
    (["play", "{piece}", "--audio-device", "no-such-device"], "audio device 'no-such-device'"),
    (["play", "{piece}", "--no-audio"], "give --out FILE.wav"),
    (["play", "no-such.mid", "--no-audio", "-o", "x.wav"], "no-such.mid: file not found"),
    (["play", "{corrupt}", "--no-audio", "-o", "{tmp}/x.wav"], "corrupt.mid: not a MIDI file"),
    (["play", "{piece}", "--no-audio", "-o", "{tmp}/x.wav", "--end", "0"], "play --end 0: give a time"),
])
def test_a_missing_server_port_or_device_is_one_line(argv, message, piece, monkeypatch, capfd, tmp_path):
    """capfd: what C libraries (libjack, ALSA, PortAudio) print on the process's stderr counts too."""
    from midi2wave import cli

    monkeypatch.setenv("JACK_DEFAULT_SERVER", "m2w-no-such-server")
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x10\x00\x00\x90")
    status = cli.main([a.replace("{piece}", piece).replace("{corrupt}", str(corrupt)).replace("{tmp}", str(tmp_path))
                       for a in argv])
    err = capfd.readouterr().err
    assert status == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], err


class _FakeRtMidi:
    """rtmidi as the backends see it: two APIs, the first without its system part (no ALSA sequencer)."""

    ALSA, JACK = 1, 2

    def __init__(self, broken_port: str | None = None):
        self.opened: list[tuple[int, int]] = []
        self.broken_port = broken_port
        self.closed = 0
        self.callback = None

    def get_compiled_api(self):
        return [self.ALSA, self.JACK]

    def get_api_display_name(self, api):
        return {self.ALSA: "ALSA", self.JACK: "JACK"}[api]

    def MidiIn(self, api):  # noqa: N802 - rtmidi's name
        if api == self.ALSA:
            raise SystemError("MidiInAlsa::initialize: error creating ALSA sequencer client object.")
        fake = self

        class Port:
            def get_ports(self):
                return ["a2j:Keystation 49 [20] (capture): Keystation", "m2w-sender:out"]

            def open_port(self, number):
                if fake.broken_port == self.get_ports()[number]:
                    raise RuntimeError("gone")
                fake.opened.append((api, number))

            def ignore_types(self, **kw):
                pass

            def set_callback(self, callback):
                fake.callback = callback

            def close_port(self):
                fake.closed += 1

        return Port()


@pytest.mark.parametrize("wanted, port", [("1", 1), ("m2w-sender:out", 1), ("keystation", 0),
                                          ("m2w-sender:out [JACK]", 1)])
def test_a_midi_input_is_found_by_its_list_number_name_or_part_across_apis(wanted, port):
    fake = _FakeRtMidi()
    assert [name for _, _, name in playback._midi_inputs(fake)] == [
        "a2j:Keystation 49 [20] (capture): Keystation [JACK]", "m2w-sender:out [JACK]"]
    playback._open_midi_input(fake, wanted)
    assert fake.opened == [(fake.JACK, port)]


def test_the_list_numbers_midi_inputs_as_midi_in_takes_them(monkeypatch):
    import sys

    fake = _FakeRtMidi()
    monkeypatch.setitem(sys.modules, "rtmidi", fake)
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "m2w-no-such-server")
    lines = playback.list_ports().splitlines()
    assert "MIDI input 1: m2w-sender:out [JACK]" in lines and "JACK: no server running" in lines
    playback._open_midi_input(fake, "1")
    assert fake.opened == [(fake.JACK, 1)]


def test_a_midi_input_not_found_or_not_opened_is_one_line():
    with pytest.raises(playback.InputError, match=r"MIDI input 'piano' not found \(inputs: a2j:Key.*m2w-sender"):
        playback._open_midi_input(_FakeRtMidi(), "piano")
    with pytest.raises(playback.InputError, match=r"MIDI input 2: no input has that number \(inputs: 0: a2j"):
        playback._open_midi_input(_FakeRtMidi(), "2")  # "2" is also part of "[20]": still a number
    with pytest.raises(playback.InputError, match="MIDI input 'm2w-sender:out \\[JACK\\]': cannot open it"):
        playback._open_midi_input(_FakeRtMidi(broken_port="m2w-sender:out"), "sender")


class _FakeSoundDevice:
    """sounddevice as the backends see it: devices 3 ("USB Audio") and 0 (a microphone), streams
    whose callback the test calls itself (`pull`), their stop and close noted in `events`."""

    PortAudioError = RuntimeError

    def __init__(self, start_fails: bool = False):
        self.asked: list = []  # the devices queried
        self.events: list[str] = []
        fake = self

        class OutputStream:
            def __init__(self, callback, device=None, **kw):
                self.callback, self.device, self.active, self.latency = callback, device, False, 0.010

            def start(self):
                if start_fails:
                    raise RuntimeError("Device unavailable")
                self.active = True

            def stop(self):
                self.active = False
                fake.events.append("stop")

            def close(self):
                fake.events.append("close")

        self.OutputStream = OutputStream

    def query_devices(self, device, kind):
        self.asked.append(device)
        if device in (3, None):
            return {"name": "USB Audio", "max_output_channels": 2, "default_samplerate": 16000.0}
        if device == 0:
            return {"name": "mic", "max_output_channels": 0, "default_samplerate": 48000.0}
        raise ValueError(f"No output device matching {device!r}")

    @staticmethod
    def pull(feed, frames):
        out = np.full((frames, 1), np.nan, np.float32)
        feed.stream.callback(out, frames, None, None)
        return out[:, 0]


def _fake_device_backend(monkeypatch, device="3", start_fails: bool = False):
    """A DeviceBackend over a fake sounddevice (a stream that the test stops) and a fake RtMidi."""
    sd, midi = _FakeSoundDevice(start_fails), _FakeRtMidi()
    monkeypatch.setattr(playback, "_import", lambda name, package: {"sounddevice": sd, "rtmidi": midi}[name])
    backend = playback.DeviceBackend(live.LiveSynth(live_model(), OPTIONS), "sender", device, period=64, ahead_ms=0)
    return backend, midi, sd


def test_an_audio_device_given_by_number_is_that_number(monkeypatch):
    backend, _, sd = _fake_device_backend(monkeypatch, device="3")
    assert sd.asked == [3] and backend.stream.device == 3  # not "3": part of a name
    assert playback._device("USB Audio") == "USB Audio" and playback._device(None) is None
    with pytest.raises(playback.InputError, match="audio device 0: 'mic' has no output channels"):
        _fake_device_backend(monkeypatch, device="0")


def test_play_feeds_the_device_every_sample_in_order_with_gaps_where_the_render_was_late():
    feed = playback._Feed(_FakeSoundDevice(), SR, None)
    a, b = np.arange(1, 101, dtype=np.float32), np.arange(101, 201, dtype=np.float32)
    feed.write(a)
    assert feed.stream.active  # started once the first block is in
    heard = [_FakeSoundDevice.pull(feed, 64), _FakeSoundDevice.pull(feed, 64)]  # the second one is late
    feed.write(b)
    heard += [_FakeSoundDevice.pull(feed, 64), _FakeSoundDevice.pull(feed, 64)]
    heard = np.concatenate(heard)
    assert np.array_equal(heard[:100], a) and not heard[100:128].any()  # a gap, not a loss:
    assert np.array_equal(heard[128:228], b) and not heard[228:].any() and feed.gaps == 2  # and at its end
    feed.finishing = True
    feed.finish()
    assert not feed.stream.active


def test_play_waits_for_room_and_says_so_in_one_line_when_the_device_stops_or_hangs():
    import threading

    feed = playback._Feed(_FakeSoundDevice(), SR, None, stall_s=0.3)
    room = len(feed.ring.buffer)
    feed.write(np.ones(room, np.float32))  # full
    puller = threading.Timer(0.1, lambda: _FakeSoundDevice.pull(feed, 256))
    puller.start()
    feed.write(np.ones(256, np.float32))  # waits for the device to take 256
    puller.join()
    assert feed.ring.available == room
    with pytest.raises(playback.InputError, match="took no sample for 0.3 s"):
        feed.write(np.ones(10, np.float32))  # the device takes nothing
    feed.stream.active = False
    with pytest.raises(playback.InputError, match="the stream stopped"):
        feed.write(np.ones(10, np.float32))
    never = playback._Feed(_FakeSoundDevice(), SR, None)
    never.finish()  # nothing written: nothing to wait for
    assert not never.started


def test_a_device_that_goes_away_ends_live_in_one_line_and_everything_is_closed(monkeypatch):
    import threading

    backend, midi, sd = _fake_device_backend(monkeypatch)
    assert midi.opened == [(midi.JACK, 1)] and midi.callback is not None
    midi.callback(([0x90, 60, 100], 0.0), None)  # a note arrives: queued for the next period
    assert list(backend.queue) == [b"\x90\x3c\x64"]
    started = backend.stream.start

    def start():  # the device goes away 0.7 s after the stream started (a timer begun before it raced a slow start)
        started()
        threading.Timer(0.7, lambda: setattr(backend.stream, "active", False)).start()

    backend.stream.start = start
    t0 = time.monotonic()
    with pytest.raises(playback.InputError, match="the stream stopped"):
        playback.run_live(backend, quiet=True, seconds=10)
    assert time.monotonic() - t0 < 3.0
    assert sd.events == ["stop", "close"] and midi.closed == 1
    assert backend.latency_ms == 14.0 and "latency 14.0 ms" in playback.status_line(backend.proc)  # 4 ms of the engine + 10 of the device


def test_a_device_stream_that_does_not_start_is_one_line_and_closes_everything(monkeypatch):
    backend, midi, sd = _fake_device_backend(monkeypatch, start_fails=True)
    with pytest.raises(playback.InputError, match="cannot start the stream \\(Device unavailable\\)"):
        backend.start()
    assert sd.events == ["stop", "close"] and midi.closed == 1 and backend.proc.thread is None


def test_system_real_time_messages_are_not_errors_and_a_reset_ends_every_note():
    synth = live.LiveSynth(live_model(), OPTIONS)
    synth.control_change(64, 127)
    synth.note_on(60, 100)
    synth.note_on(64, 100)
    synth.render(64)
    for m in (b"\xf8", b"\xfe", b"\xfa", b"\xfc"):  # clock, active sensing, start, stop
        assert synth.midi_message(m) is True
    synth.render(64)
    assert synth.stats.ignored_total == 0 and synth.stats.realtime == 4
    assert [n.offset for n in synth.notes] == [None, None]
    assert synth.midi_message(b"\xff", 5) is True  # system reset: every note off, the pedal too
    synth.render(64)
    assert [n.offset for n in synth.notes] == [128 + 5, 128 + 5]
    assert synth.midi_message(b"\xf8\x00") is False and synth.stats.ignored_total == 1  # not one byte: malformed


def test_a_call_that_hangs_is_given_up_and_a_backend_that_fails_ends_live_in_one_line(caplog):
    import threading

    release = threading.Event()
    t0 = time.monotonic()
    assert playback._bounded(release.wait, "JACK: deactivating the client", seconds=0.2) is False
    assert time.monotonic() - t0 < 2.0 and "deactivating the client: gave up after 0.2 s" in caplog.text
    release.set()
    assert playback._bounded(lambda: None, "x") is True

    class Failing:  # a server that shuts the client down after a second
        def __init__(self):
            self.proc = playback._Processor(live.LiveSynth(live_model(), OPTIONS), SR, 64)
            self.stopped, self.t0 = False, None

        def start(self):
            self.t0 = time.monotonic()

        def stop(self):
            self.stopped = True

        @property
        def failure(self):
            if self.t0 is not None and time.monotonic() - self.t0 > 1.0:
                return "JACK: the server shut the client down (jackd quit)"
            return None

    backend = Failing()
    with pytest.raises(playback.InputError, match="the server shut the client down"):
        playback.run_live(backend, quiet=True, seconds=30)
    assert backend.stopped and time.monotonic() - backend.t0 < 5.0


def test_play_out_to_a_folder_writes_the_input_name_in_it(piece, tmp_path, monkeypatch):
    from pathlib import Path

    from midi2wave import checkpoint, cli
    from midi2wave.render import livemodel

    model = live_model()
    monkeypatch.setattr(livemodel, "load_live_model", lambda path: None)
    monkeypatch.setattr(checkpoint, "load_model", lambda path, *a, **k: (model, None))
    folder = tmp_path / "renders"
    folder.mkdir()
    assert cli.main(["play", piece, "--no-audio", "-o", str(folder), "--end", "0.5", "-q"]) == 0
    assert [p.name for p in folder.iterdir()] == [Path(piece).stem + ".wav"]


def test_a_held_note_does_not_fill_the_bank_and_refusals_do_not_depend_on_the_blocks():
    """One key held throughout while 300 short notes come and go: the stopped oscillators behind the
    held note are compacted away, so none is refused (a bank of 256 rows: 32 notes of 4 partials);
    and a bank too small for the chord refuses the same notes in any block size."""
    model = live_model()
    synth = live.LiveSynth(model, OPTIONS, bank_capacity=256)
    synth.note_on(40, 80)
    for k in range(300):
        synth.note_on(60 + k % 12, 90)
        synth.render(64 * 20)
        synth.note_off(60 + k % 12)
        synth.render(64 * 20)
    assert synth.stats.dropped == 0 and synth.stats.notes == 301
    assert synth.bank.size <= 256

    def render(blocks):
        small = live.LiveSynth(model, OPTIONS, bank_capacity=64)  # 32 rows alive: 8 notes of 4 partials
        events = [(i * 200, "on", 50 + i, 100) for i in range(12)] + [(3000, "off", 50, 0), (9000, "on", 80, 90)]
        events.sort()
        out = np.concatenate(list(live.render_events(small, events, 12000, blocks)))
        return out, small.stats.dropped

    a, dropped_a = render(16000)
    b, dropped_b = render(64)
    assert dropped_a == dropped_b >= 4 and np.array_equal(a, b)


def test_a_key_released_and_struck_at_one_sample_plays_two_whole_notes(tmp_path):
    path = tmp_path / "restrike.mid"
    write_midi(Notes(np.array([0.0, 0.5]), np.array([0.5, 1.0]), np.array([60, 60], np.int16),
                     np.array([90, 90], np.int16)), PedalEvents.empty(), path)
    synth = live.LiveSynth(live_model(), OPTIONS)
    list(live.render_events(synth, live.file_events(path, SR), SR + 64, 64))
    assert [(n.onset, n.offset) for n in synth.notes] == [(0, 8000), (8000, 16000)]


def test_play_writes_the_engines_offline_render_and_overwrites_only_with_force(piece, tmp_path, monkeypatch):
    import soundfile

    from midi2wave import checkpoint, cli
    from midi2wave.render import livemodel

    model = live_model()
    monkeypatch.setattr(livemodel, "load_live_model", lambda path: None)  # no snapshot: the model is loaded
    monkeypatch.setattr(checkpoint, "load_model", lambda path, *a, **k: (model, None))
    out = tmp_path / "p.wav"
    argv = ["play", piece, "--no-audio", "-o", str(out), "--end", "3.4", "--year", "2011", "--seed", "3",
            "--sustain-temperature", "0.5", "--sustain-innovation", "0.7", "--release-innovation", "0.2",
            "--partial-levels", "1", "--attack-lowpass-hz", "900", "--attack-lowpass-key-tracking", "0.6", "--sustain-limit", "4",
            "--attack-lowpass-velocity-tracking", "1.75", "--sustain-noise-decay-db-per-s", "15", "-q"]
    assert cli.main(argv) == 0
    got, sr = soundfile.read(out, dtype="int16")
    want = _render(model, piece, 16000)
    assert sr == SR and len(got) == len(want)
    assert np.array_equal(got, np.clip(np.round(want * 32768), -32768, 32767).astype(np.int16))
    assert cli.main(argv) == 2  # exists
    assert cli.main(argv + ["--force"]) == 0


def test_the_live_bank_gets_every_synthesis_setting_the_offline_rows_get():
    """Each of the bank's synthesis settings (`resonators.SYNTHESIS_SETTINGS`) reaches the live engine's
    bank as `sampled_schedules` gives it to an offline render of the same options (broken once:
    the velocity tracking not passed to `LiveBank`)."""
    from midi2wave.render.rows import sampled_schedules

    synth = live.LiveSynth(live_model(), OPTIONS, year=2011)
    offline = sampled_schedules([rs.Schedule.empty()], OPTIONS.resolve())[0]
    for name in rs.SYNTHESIS_SETTINGS:
        assert getattr(synth.bank.arrays, name) == getattr(offline, name), name
    assert synth.bank.arrays.attack_velocity_tracking == 1.75 and synth.bank.arrays.sustain_limit == 4.0
    assert synth.bank.arrays.sustain_noise_decay == rs.noise_decay_rate(15.0, SR) > 0


def test_the_attacks_low_pass_follows_the_newest_key_whatever_the_bank_compacts():
    """The key the attacks' low-pass follows (`BankState.attack_key`) is the newest note's, the
    highest of notes starting together in whatever order they came, and stays so when the live
    bank compacts its rows: looked up by row, a stopped newest note's rows compacted away left the
    held bass note's key in its place (broken once: the key not kept reads 60, the default). The
    same for its velocity (`BankState.attack_velocity`, the loudest of notes starting together)."""
    assert OPTIONS.attack_lowpass_key_tracking  # the live tests render with it
    assert OPTIONS.attack_lowpass_velocity_tracking
    bank = rs.LiveBank(BANK, SR, capacity=64)

    def run(t0: int, t1: int) -> None:
        for t in range(t0, t1):
            rs.batch_predict(t, 0, 1, bank.arrays, bank.streams)

    bank.add_note(30, 90, 0)  # held throughout
    treble = bank.add_note(96, 80, 100)
    bank.release_note(treble, 200)
    rows = bank.ranges[treble]
    stopped = int(bank.stop[rows[0]:rows[1]].max()) + 10  # the treble note's rows stopped
    run(0, stopped)
    assert (bank.state.attack_key[0], bank.state.attack_velocity[0]) == (96.0, 80.0)
    assert bank.compact() > 0
    assert bank.pitch[int(bank.state.next[0]) - 1] == 30.0  # the row behind the position is the held note's
    assert (bank.state.attack_key[0], bank.state.attack_velocity[0]) == (96.0, 80.0)
    for first, second in ((50, 70), (70, 50)):  # a chord: its highest key and loudest velocity, in either order
        start = stopped
        bank.add_note(first, 40 if first == 50 else 100, start)
        bank.add_note(second, 40 if second == 50 else 100, start)
        run(start, start + 1)
        assert bank.state.attack_key[0] == 70.0, (first, second)
        assert bank.state.attack_velocity[0] == 100.0, (first, second)
        stopped += 10


def test_a_bank_compacted_to_no_rows_keeps_the_attacks_tracked_pole():
    """The attacks' low-pass follows the newest notes' key and velocity whether or not the live
    bank has compacted their rows away: its states after a compaction to no rows equal those of the
    same bank left alone, as an offline render (which never compacts) has them (broken once: gated
    on admitted rows, the compacted bank's low-pass ran at middle C's pole and its states drifted
    apart)."""
    def run(compact: bool) -> np.ndarray:
        bank = rs.LiveBank(BANK, SR, capacity=64, attack_pole=rs.attack_lowpass_pole(900.0, SR),
                           attack_key_tracking=0.6, attack_velocity_tracking=1.75,
                           sustain_highpass=rs.highpass_rate(450.0, SR),
                           direct_dc_rate=rs.highpass_rate(rs.DIRECT_DC_HZ, SR))
        bank.release_note(bank.add_note(96, 120, 0), 100)
        stopped = int(bank.stop[:bank.size].max()) + 10
        values = np.random.default_rng(0).normal(0.0, 0.1, stopped + 400).clip(-1.0, 0.99).astype(np.float32)

        def step(t: int) -> None:
            sample = rs.BankSample(values[t:t + 1].copy(), np.zeros(1, np.int64), np.zeros(1, np.float32),
                                   np.zeros(1, np.int64))
            rs.bank_step(t, 0, 1, False, True, bank.arrays, bank.streams, sample)

        for t in range(stopped):
            step(t)
        if compact:
            assert bank.compact() > 0 and bank.state.next[0] == 0
        for t in range(stopped, stopped + 400):
            step(t)
        s = bank.state
        return np.r_[s.lp1, s.lp2, s.attack_key, s.attack_velocity]

    kept, compacted = run(False), run(True)
    assert kept[2:].tolist() == [96.0, 120.0] and np.abs(kept[:2]).max() > 0
    assert np.array_equal(compacted, kept), (compacted, kept)


class _FakeJack:
    """JACK-Client over a fake library: jackd's (version "1.9.21") or PipeWire's; each client
    records the PipeWire variables it opened with."""

    class JackError(Exception):
        pass

    class JackOpenError(JackError):
        pass

    def __init__(self, version: str, rate: int = 44100, blocksize: int = 1024) -> None:
        self.version, self.rate, self.blocksize, self.opened = version, rate, blocksize, []
        self.calls: list[str] = []  # activate, deactivate, close, and what a test adds
        self.activate_fails = False

    def version_string(self) -> str:
        return self.version

    def Client(self, name, **_options):  # noqa: N802 - JACK-Client's name
        fake = self
        env = {key: os.environ.get(key) for key in ("PIPEWIRE_LATENCY", "PIPEWIRE_PROPS")}
        fake.opened.append(env)

        class Ports:
            def register(self, port):
                return port

        class Client:
            samplerate, blocksize = fake.rate, fake.blocksize
            midi_inports = outports = Ports()

            def activate(self):
                fake.calls.append("activate")
                if fake.activate_fails:
                    raise fake.JackError("activate")

            def deactivate(self):
                fake.calls.append("deactivate")
                blocks = getattr(fake, "deactivate_blocks", None)
                if blocks is not None:  # a server that leaves deactivate waiting
                    blocks.wait(10)

            def close(self):
                fake.calls.append("close")

            def __getattr__(self, attr):  # set_*_callback
                return lambda *args: None

        return Client()


@pytest.mark.parametrize("user", [{}, {"PIPEWIRE_LATENCY": "512/48000", "PIPEWIRE_PROPS": "{ node.name = mine }"},
                                  {"PIPEWIRE_LATENCY": "512/48000"}], ids=["unset", "user-set", "latency-set"])
@pytest.mark.parametrize("period", [None, 256])
def test_under_pipewire_live_asks_for_its_period_at_the_graphs_rate_and_restores_the_environment(
        monkeypatch, user, period):
    """PipeWire's JACK takes the node's latency from PIPEWIRE_LATENCY as a client opens: `live`
    asks for `period` (default 128) at the graph's rate (a probe client reads it), and lets the
    graph come down to it (node.lock-quantum false); a PIPEWIRE_LATENCY the user set stands unless
    --period is given, and a PIPEWIRE_PROPS of the user's is kept. The environment is as before
    afterwards. jackd's library gets nothing of it."""
    for key in ("PIPEWIRE_LATENCY", "PIPEWIRE_PROPS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in user.items():
        monkeypatch.setenv(key, value)
    before = dict(os.environ)
    pipewire = _FakeJack("3.0.0.0 (using PipeWire 0.3.65)", rate=44100)
    monkeypatch.setattr(playback, "_import", lambda name, package: pipewire)
    backend = playback.JackBackend(live.LiveSynth(live_model(), LIVE_OPTIONS), period_frames=period)
    assert dict(os.environ) == before
    asked = period or (None if user else playback.DEFAULT_PERIOD_FRAMES)
    assert backend.pipewire and backend.period_frames_asked == asked and backend.period == 1024  # as opened
    opened = pipewire.opened[-1]  # the client that plays
    assert opened["PIPEWIRE_PROPS"] == user.get("PIPEWIRE_PROPS", "{ node.lock-quantum = false }")
    if asked is None:
        assert len(pipewire.opened) == 1 and opened["PIPEWIRE_LATENCY"] == "512/48000"
    else:
        assert len(pipewire.opened) == 2 and pipewire.opened[0] == {k: user.get(k) for k in opened}  # the probe
        assert opened["PIPEWIRE_LATENCY"] == f"{asked}/44100"
    with pytest.raises(playback.InputError, match="--period 0: give a number of frames above 0"):
        playback.JackBackend(live.LiveSynth(live_model(), LIVE_OPTIONS), period_frames=0)

    jackd = _FakeJack("1.9.21", rate=48000, blocksize=128)
    monkeypatch.setattr(playback, "_import", lambda name, package: jackd)
    backend = playback.JackBackend(live.LiveSynth(live_model(), LIVE_OPTIONS), period_frames=period)
    assert not backend.pipewire and backend.period_frames_asked is None and backend.period == 128
    assert jackd.opened == [{k: user.get(k) for k in ("PIPEWIRE_LATENCY", "PIPEWIRE_PROPS")}]


def test_audio_callbacks_run_with_thread_cancellation_disabled():
    """PipeWire's JACK stops a client's audio thread with pthread_cancel: the callbacks of every
    backend run with cancellation disabled (a cancel then waits until the thread is back in the
    library), and the thread's own state is back after them, also when they raise."""
    import ctypes
    import threading

    if playback._SET_CANCEL_STATE is None:
        pytest.skip("no pthread_setcancelstate here (Linux only)")
    state = ctypes.c_int()

    def current() -> int:  # setting a state reads the old one: set it back as it was
        playback._SET_CANCEL_STATE(playback._CANCEL_ENABLE, ctypes.byref(state))
        playback._SET_CANCEL_STATE(state.value, None)
        return state.value

    seen = []

    @playback._uncancellable
    def callback(fail: bool):
        seen.append(current())
        if fail:
            raise RuntimeError("in the callback")

    def run():
        callback(False)
        with pytest.raises(RuntimeError):
            callback(True)
        seen.append(current())
        playback._SET_CANCEL_STATE(playback._CANCEL_DISABLE, None)  # a library's thread that disables it itself
        callback(False)
        seen.append(current())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [playback._CANCEL_DISABLE, playback._CANCEL_DISABLE, playback._CANCEL_ENABLE,
                    playback._CANCEL_DISABLE, playback._CANCEL_DISABLE]
    guarded = playback._uncancellable(lambda: 0).__code__
    for method in (playback.JackBackend._process, playback.DeviceBackend._callback, playback._Feed._callback,
                   playback.JackBackend._xrun, playback.JackBackend._freewheel, playback.JackBackend._blocksize,
                   playback.JackBackend._shutdown):  # the audio threads' callbacks, and the notification thread's
        assert method.__code__ is guarded  # each goes through _uncancellable


@pytest.mark.parametrize("start_fails", [False, True], ids=["stop", "failed-start"])
def test_a_jack_client_is_stopped_after_its_render_thread_and_a_pause_without_the_gil(monkeypatch, start_fails):
    """JACK cancels the client's audio thread in deactivate and its notification thread in close:
    the render thread (which takes the GIL) stops first, the client is deactivated after three
    periods' sleep (the GIL free for a callback that waits for it), and closed after a pause for a
    notification callback already on its way (`close_jack_client`); also when the client does not
    start. A client that its server shut down is closed (after the pause: its shutdown callback may
    be on its way), not deactivated. One whose deactivate hangs is not closed under it."""
    fake = _FakeJack("3.0.0.0 (using PipeWire 0.3.65)", rate=48000, blocksize=128)
    fake.activate_fails = start_fails
    monkeypatch.setattr(playback, "_import", lambda name, package: fake)
    backend = playback.JackBackend(live.LiveSynth(live_model(), LIVE_OPTIONS))
    assert backend.proc.render_thread and fake.calls == ["close"]  # the probe that read the rate
    fake.calls.clear()
    stop = backend.proc.stop
    monkeypatch.setattr(backend.proc, "stop", lambda: (fake.calls.append("render thread stops"), stop()))
    sleep = time.sleep
    monkeypatch.setattr(playback.time, "sleep", lambda s: (fake.calls.append(f"sleep {s:.5f}"), sleep(s)))
    if start_fails:
        with pytest.raises(playback.InputError, match="JACK: cannot start the client"):
            backend.start()
    else:
        backend.start()
        backend.stop()
    pause = f"sleep {max(0.02, 4 * sys.getswitchinterval()):.5f}"
    assert fake.calls == ["activate", "render thread stops", f"sleep {3 * 128 / 48000:.5f}", "deactivate", pause,
                          "close"]
    assert backend.proc.thread is None
    if not start_fails:
        fake.calls.clear()
        backend.failure = "JACK: the server shut the client down (test)"
        backend.stop()
        assert fake.calls == ["render thread stops", pause, "close"]

        fake.calls.clear()
        backend.failure = None
        stuck = threading.Event()
        monkeypatch.setattr(fake, "deactivate_blocks", stuck, raising=False)
        bounded = playback._bounded
        monkeypatch.setattr(playback, "_bounded", lambda call, what, seconds=5.0, log=True: bounded(call, what, 0.3, log))
        backend.stop()
        stuck.set()
        assert "deactivate" in fake.calls and "close" not in fake.calls, fake.calls


def test_the_start_line_says_whose_jack_period_it_is_and_what_period_did():
    from types import SimpleNamespace

    from midi2wave.cli import _jack_period_note

    def backend(asked, pipewire, period=128):
        return SimpleNamespace(period_frames_asked=asked, pipewire=pipewire, period=period)

    assert _jack_period_note(backend(256, True), 256) == " (PipeWire's, asked for 256)"
    assert _jack_period_note(backend(None, True), None) == " (PipeWire's, as PIPEWIRE_LATENCY asks)"
    assert _jack_period_note(backend(None, False), 64) == " (the server's: `jack_bufsize` changes it, not --period)"
    assert _jack_period_note(backend(None, False), 128) == ""  # jackd's period, as asked
    assert _jack_period_note(backend(None, False), None) == ""
