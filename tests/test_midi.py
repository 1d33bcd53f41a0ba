"""Tests of midi2wave.midi: reading, the sustain rule, frame rolls and the excitation signal."""

from __future__ import annotations

import warnings
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest

from midi2wave.config import FRAME_CHANNELS
from midi2wave.errors import InputError, MidiError
from midi2wave.midi import (
    Notes,
    PedalEvents,
    apply_sustain,
    excitation_signal,
    frame_rolls,
    notes_from_arrays,
    notes_to_arrays,
    piece_frames,
    pitch_to_hz,
    read_midi,
)

ALL_CHANNELS = ("onset_velocity", "frame", "onset", "offset", "pedals")


def make_notes(*rows: tuple[float, float, int, int]) -> Notes:
    """Notes from (onset_s, offset_s, pitch, velocity) rows."""
    if not rows:
        return Notes.empty()
    on, off, pitch, vel = zip(*rows)
    return Notes(np.array(on), np.array(off), np.array(pitch), np.array(vel))


def make_pedals(*rows: tuple[float, int, int]) -> PedalEvents:
    """Pedal events from (time_s, controller, value) rows."""
    if not rows:
        return PedalEvents.empty()
    t, cc, v = zip(*rows)
    return PedalEvents(np.array(t), np.array(cc), np.array(v))


def as_rows(notes: Notes) -> list[tuple[float, float, int, int]]:
    return [(round(float(a), 9), round(float(b), 9), int(p), int(v))
            for a, b, p, v in zip(notes.onset_s, notes.offset_s, notes.pitch, notes.velocity)]


def random_notes(rng: np.random.Generator, n: int, seconds: float) -> tuple[Notes, PedalEvents]:
    on = rng.uniform(0, seconds, n)
    notes = Notes(on, on + rng.exponential(0.4, n) + 1e-3, rng.integers(21, 109, n), rng.integers(1, 128, n))
    m = max(1, n // 4)
    pedals = PedalEvents(rng.uniform(0, seconds, m), rng.choice([64, 66, 67], m), rng.integers(0, 128, m))
    return apply_sustain(notes, pedals), pedals


# ------------------------------------------------------------------------------------ containers


def test_notes_sorted_readonly_and_roundtrip_arrays():
    notes = make_notes((1.0, 2.0, 60, 10), (0.5, 0.7, 62, 20), (0.5, 0.6, 61, 30))
    assert as_rows(notes) == [(0.5, 0.6, 61, 30), (0.5, 0.7, 62, 20), (1.0, 2.0, 60, 10)]
    assert notes.pitch.dtype == np.int16 and notes.onset_s.dtype == np.float64 and len(notes) == 3
    with pytest.raises(ValueError):
        notes.onset_s[0] = 3.0
    with pytest.raises(ValueError):
        Notes(np.zeros(2), np.ones(3), np.zeros(2), np.zeros(2))
    pedals = make_pedals((2.0, 64, 1), (1.0, 67, 2))
    assert pedals.time_s.tolist() == [1.0, 2.0] and pedals.controller.tolist() == [67, 64]
    back_notes, back_pedals = notes_from_arrays(notes_to_arrays(notes, pedals))
    assert back_notes == notes and back_pedals == pedals
    assert as_rows(notes.window(0.65, 0.9)) == [(0.5, 0.7, 62, 20)]


# --------------------------------------------------------------------------------------- sustain


def test_sustain_extends_until_pedal_lifts():
    notes = make_notes((0.0, 1.0, 60, 80))
    pedals = make_pedals((0.5, 64, 127), (2.0, 64, 0))
    assert as_rows(apply_sustain(notes, pedals)) == [(0.0, 2.0, 60, 80)]


def test_sustain_pedal_down_before_note_and_continuous_values():
    notes = make_notes((0.2, 0.4, 60, 80), (0.3, 0.5, 64, 70))
    # down at 0 (value 100), still down at 1.0 (70 >= 64), up at 1.5 (30).
    pedals = make_pedals((0.0, 64, 100), (1.0, 64, 70), (1.5, 64, 30), (3.0, 64, 0))
    assert as_rows(apply_sustain(notes, pedals)) == [(0.2, 1.5, 60, 80), (0.3, 1.5, 64, 70)]


def test_sustain_cut_at_restrike():
    notes = make_notes((0.0, 1.0, 60, 80), (1.5, 1.7, 60, 90), (0.0, 0.2, 62, 50), (0.1, 0.7, 63, 40))
    pedals = make_pedals((0.5, 64, 127), (3.0, 64, 0))
    assert as_rows(apply_sustain(notes, pedals)) == [
        (0.0, 1.5, 60, 80), (0.0, 0.2, 62, 50), (0.1, 3.0, 63, 40), (1.5, 3.0, 60, 90)]


def test_sustain_restrike_of_held_note_and_duplicate_onset():
    # Pedal down, key 60 still held when struck again: the earlier note ends at the re-strike.
    notes = make_notes((0.0, 2.0, 60, 80), (1.0, 1.2, 60, 90))
    pedals = make_pedals((0.0, 64, 127), (2.5, 64, 0))
    assert as_rows(apply_sustain(notes, pedals)) == [(0.0, 1.0, 60, 80), (1.0, 2.5, 60, 90)]
    # Two notes of one pitch at the same onset under the pedal: only one survives (no zero-length note).
    twins = make_notes((0.5, 0.6, 60, 80), (0.5, 0.7, 60, 90))
    out = apply_sustain(twins, pedals)
    assert len(out) == 1 and out.offset_s[0] == 2.5


def test_sustain_without_pedal_and_other_pedals_leave_notes_alone():
    notes = make_notes((0.0, 1.0, 60, 80), (0.5, 0.75, 61, 80))
    assert apply_sustain(notes, PedalEvents.empty()) == notes
    assert apply_sustain(notes, make_pedals((0.0, 66, 127), (0.0, 67, 127), (5.0, 66, 0))) == notes
    # Pedal pressed and lifted while the notes are still held: no change either.
    assert apply_sustain(notes, make_pedals((0.1, 64, 127), (0.3, 64, 0))) == notes


def test_sustain_threshold_boundary():
    notes = make_notes((0.0, 1.0, 60, 80))
    lift = (2.0, 64, 0)
    assert as_rows(apply_sustain(notes, make_pedals((0.5, 64, 63), lift))) == [(0.0, 1.0, 60, 80)]
    assert as_rows(apply_sustain(notes, make_pedals((0.5, 64, 64), lift))) == [(0.0, 2.0, 60, 80)]
    assert as_rows(apply_sustain(notes, make_pedals((0.5, 64, 80), lift), threshold=81)) == [(0.0, 1.0, 60, 80)]
    assert as_rows(apply_sustain(notes, make_pedals((0.5, 64, 81), lift), threshold=81)) == [(0.0, 2.0, 60, 80)]


def test_sustain_held_to_the_end_and_same_time_ordering():
    # Pedal never lifted: the note lasts to the last event (the other note's offset).
    notes = make_notes((0.0, 1.0, 60, 80), (0.5, 3.0, 62, 80))
    assert as_rows(apply_sustain(notes, make_pedals((0.2, 64, 127)))) == [(0.0, 3.0, 60, 80), (0.5, 3.0, 62, 80)]
    # Pedal lifted exactly at the release: the note ends there. Pressed exactly at the release: extended.
    one = make_notes((0.0, 1.0, 60, 80))
    assert as_rows(apply_sustain(one, make_pedals((0.2, 64, 127), (1.0, 64, 0)))) == [(0.0, 1.0, 60, 80)]
    assert as_rows(apply_sustain(one, make_pedals((1.0, 64, 127), (1.5, 64, 0)))) == [(0.0, 1.5, 60, 80)]


# --------------------------------------------------------------------------------------- reading


def write_midi(path: Path, tracks: list[list[mido.Message | mido.MetaMessage]], ticks_per_beat: int = 480) -> Path:
    """Write a type-1 MIDI file; messages carry delta times in ticks."""
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    for messages in tracks:
        track = mido.MidiTrack()
        track.extend(messages)
        midi.tracks.append(track)
    midi.save(path)
    return path


def on(note, vel, dt=0, ch=0):
    return mido.Message("note_on", note=note, velocity=vel, time=dt, channel=ch)


def off(note, dt=0, ch=0, zero_velocity_on=False):
    if zero_velocity_on:
        return mido.Message("note_on", note=note, velocity=0, time=dt, channel=ch)
    return mido.Message("note_off", note=note, velocity=64, time=dt, channel=ch)


def cc(control, value, dt=0, ch=0):
    return mido.Message("control_change", control=control, value=value, time=dt, channel=ch)


# At the default tempo (500000 us per beat) and 480 ticks per beat, 480 ticks = 0.5 s.


def test_read_midi_velocity_zero_offs_and_two_tracks(tmp_path):
    path = write_midi(tmp_path / "a.mid", [
        [mido.MetaMessage("set_tempo", tempo=500_000, time=0)],
        [on(60, 100), off(60, 480, zero_velocity_on=True), on(64, 50, 480), off(64, 480)],
        [on(67, 70, 240), off(67, 240, zero_velocity_on=True)],
    ])
    notes, pedals = read_midi(path)
    assert as_rows(notes) == [(0.0, 0.5, 60, 100), (0.25, 0.5, 67, 70), (1.0, 1.5, 64, 50)]
    assert len(pedals) == 0


def test_read_midi_restrike_out_of_range_and_drums(tmp_path):
    path = write_midi(tmp_path / "b.mid", [[
        # key 60 struck at 0, struck again at 0.25 s before any release; offs at 0.5 s and 0.75 s
        on(60, 90), on(60, 80, 240), off(60, 240), off(60, 240),
        on(20, 90), on(109, 90), on(21, 10), on(108, 20), off(20, 480), off(109), off(21), off(108),
        on(62, 100, 0, ch=9), off(62, 240, ch=9),  # drum channel: ignored
        # key 70: the re-strike's note-on is written before the earlier note's note-off at the same tick
        on(70, 50), on(70, 60, 480), off(70), off(70, 240),
    ]])
    notes, _ = read_midi(path)
    assert as_rows(notes) == [(0.0, 0.25, 60, 90), (0.25, 0.5, 60, 80), (0.75, 1.25, 21, 10), (0.75, 1.25, 108, 20),
                              (1.5, 2.0, 70, 50), (2.0, 2.25, 70, 60)]


def test_read_midi_keeps_pedal_values_and_tempo(tmp_path):
    path = write_midi(tmp_path / "c.mid", [
        [mido.MetaMessage("set_tempo", tempo=500_000, time=0),
         mido.MetaMessage("set_tempo", tempo=1_000_000, time=480)],  # from 0.5 s a beat lasts 1 s
        [cc(64, 127), cc(7, 100), on(60, 90, 0), cc(64, 40, 480), cc(66, 90, 240), cc(67, 1, 240), off(60, 0),
         cc(64, 0, 0, ch=9)],  # drum-channel pedal: ignored
        [cc(64, 99, 960)],  # pedal on a track without notes is kept
    ])
    notes, pedals = read_midi(path)
    assert as_rows(notes) == [(0.0, 1.5, 60, 90)]
    # Same-time events keep (track, file) order.
    assert pedals.time_s.tolist() == pytest.approx([0.0, 0.5, 1.0, 1.5, 1.5])
    assert pedals.controller.tolist() == [64, 64, 66, 67, 64]
    assert pedals.value.tolist() == [127, 40, 90, 1, 99]


def test_read_midi_matches_pretty_midi(tmp_path):
    rng = np.random.default_rng(1)
    pm = pretty_midi.PrettyMIDI(initial_tempo=97.0)
    piano = pretty_midi.Instrument(program=0)
    t = 0.0
    for _ in range(200):
        t += float(rng.uniform(0.0, 0.2))
        piano.notes.append(pretty_midi.Note(int(rng.integers(1, 128)), int(rng.integers(21, 109)), t,
                                            t + float(rng.uniform(0.05, 0.3))))
    for k in range(30):
        piano.control_changes.append(pretty_midi.ControlChange(64, int(rng.integers(0, 128)), k * 0.5))
    pm.instruments.append(piano)
    pm.write(str(tmp_path / "p.mid"))
    ref = pretty_midi.PrettyMIDI(str(tmp_path / "p.mid"))
    notes, pedals = read_midi(tmp_path / "p.mid")
    ref_notes = sorted(ref.instruments[0].notes, key=lambda n: (n.start, n.pitch))
    # pretty_midi keeps same-pitch overlaps; read_midi ends the earlier note at the re-strike.
    ref_rows = []
    for i, n in enumerate(ref_notes):
        end = min([n.end] + [m.start for m in ref_notes if m.pitch == n.pitch and m.start > n.start])
        ref_rows.append((n.start, end, n.pitch, n.velocity))
    assert len(notes) == len(ref_rows)
    np.testing.assert_allclose(notes.onset_s, [r[0] for r in ref_rows], atol=1e-9)
    np.testing.assert_allclose(notes.offset_s, [r[1] for r in ref_rows], atol=1e-9)
    assert notes.pitch.tolist() == [r[2] for r in ref_rows]
    assert notes.velocity.tolist() == [r[3] for r in ref_rows]
    cc_ref = ref.instruments[0].control_changes
    np.testing.assert_allclose(pedals.time_s, [c.time for c in cc_ref], atol=1e-9)
    assert pedals.value.tolist() == [c.value for c in cc_ref]


def test_read_midi_long_file_beyond_pretty_midi_max_tick(tmp_path):
    # A note more than 1e7 ticks in (pretty_midi's MAX_TICK) still loads.
    path = write_midi(tmp_path / "long.mid", [[on(60, 90, 10_000_000), off(60, 480)]], ticks_per_beat=960)
    notes, _ = read_midi(path)
    assert as_rows(notes) == [(round(10_000_000 / 1920, 9), round(10_000_480 / 1920, 9), 60, 90)]


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "garbage", "truncated", "no_notes",
                                  "only_out_of_range"])
def test_read_midi_errors_name_the_path(tmp_path, kind):
    path = tmp_path / f"{kind}.mid"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"this is not a MIDI file at all" * 10)
    elif kind == "truncated":
        write_midi(path, [[on(60, 90), off(60, 480), on(61, 90), off(61, 480)]])
        path.write_bytes(path.read_bytes()[:-9])
    elif kind == "no_notes":
        write_midi(path, [[cc(64, 127), cc(64, 0, 480)]])
    elif kind == "only_out_of_range":
        write_midi(path, [[on(10, 90), off(10, 480), on(60, 90, 0, ch=9), off(60, 480, ch=9)]])
    with pytest.raises(MidiError) as info:
        read_midi(path)
    assert isinstance(info.value, InputError)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value) and not str(info.value).endswith(": )")  # mido's EOFError is empty


# ----------------------------------------------------------------------------------------- rolls


def rows_of(roll: np.ndarray, channels: tuple[str, ...]) -> dict[str, np.ndarray]:
    out, r = {}, 0
    for name in channels:
        out[name] = roll[r:r + FRAME_CHANNELS[name]]
        r += FRAME_CHANNELS[name]
    return out


def test_frame_rolls_hand_computed_every_channel():
    fr = 100  # 10 ms frames
    notes = make_notes(
        (0.013, 0.051, 60, 127),  # frames 1..5, offset frame 5
        (0.020, 0.040, 62, 254 // 2),  # exactly on boundaries: frames 2..3, offset marker in frame 4
        (0.071, 0.072, 64, 64),  # shorter than a frame: frame 7 only, offset 7
        (0.068, 0.080, 21, 1),  # lowest key: row 0
    )
    pedals = make_pedals((0.025, 64, 127), (0.03, 66, 64), (0.0, 67, 50), (0.061, 64, 0))
    roll = frame_rolls(notes, pedals, ALL_CHANNELS, 0, 12, fr)
    assert roll.dtype == np.float32 and roll.shape == (4 * 88 + 3, 12)
    ch = rows_of(roll, ALL_CHANNELS)
    k60, k62, k64, k21 = 60 - 21, 62 - 21, 64 - 21, 0

    expect = np.zeros((88, 12), np.float32)
    expect[k60, 1] = 1.0
    expect[k62, 2] = 127 / 127
    expect[k64, 7] = 64 / 127
    expect[k21, 6] = 1 / 127
    np.testing.assert_array_equal(ch["onset_velocity"], expect)
    np.testing.assert_array_equal(ch["onset"], (expect > 0).astype(np.float32))

    expect_frame = np.zeros((88, 12), np.float32)
    expect_frame[k60, 1:6] = 1.0
    expect_frame[k62, 2:4] = 1.0
    expect_frame[k64, 7] = 64 / 127
    expect_frame[k21, 6:8] = 1 / 127
    np.testing.assert_array_equal(ch["frame"], expect_frame)

    expect_off = np.zeros((88, 12), np.float32)
    expect_off[k60, 5] = expect_off[k62, 4] = expect_off[k64, 7] = expect_off[k21, 8] = 1.0
    np.testing.assert_array_equal(ch["offset"], expect_off)

    # Pedal value in force at each frame start; the piece ends after frame 8 (last offset marker).
    np.testing.assert_array_equal(ch["pedals"][0], np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0], np.float32))
    np.testing.assert_array_equal(ch["pedals"][1], np.array([0, 0, 0] + [64 / 127] * 6 + [0] * 3, np.float32))
    np.testing.assert_array_equal(ch["pedals"][2], np.array([50 / 127] * 9 + [0] * 3, np.float32))
    assert piece_frames(notes, pedals, fr) == 9

    # Channel order follows the request.
    swapped = frame_rolls(notes, pedals, ("pedals", "onset"), 0, 12, fr)
    np.testing.assert_array_equal(swapped[:3], ch["pedals"])
    np.testing.assert_array_equal(swapped[3:], ch["onset"])


def test_frame_rolls_boundary_time_lands_in_its_frame():
    # 1001 / 250 s is 4.004 s, but 4.004 * 250 = 1000.9999999999999 in floating point.
    assert 4.004 * 250 < 1001
    notes = make_notes((4.004, 4.02, 60, 100))  # 4.02 * 250 = 1004.9999999999999 as well
    pedals = make_pedals((4.004, 64, 127))
    roll = frame_rolls(notes, pedals, ("onset", "frame", "offset", "pedals"), 995, 15, 250)
    assert np.flatnonzero(roll[60 - 21]).tolist() == [1001 - 995]
    assert np.flatnonzero(roll[88 + 60 - 21]).tolist() == [f - 995 for f in range(1001, 1005)]
    assert np.flatnonzero(roll[2 * 88 + 60 - 21]).tolist() == [1005 - 995]
    assert np.flatnonzero(roll[3 * 88]).tolist() == [f - 995 for f in range(1001, 1006)]
    # 8.028 * 250 = 2007.0000000000002: a note ending at 2007 / 250 s does not sound in frame 2007.
    late = frame_rolls(make_notes((8.0, 8.028, 60, 100)), PedalEvents.empty(), ("frame",), 1995, 20, 250)
    assert np.flatnonzero(late[60 - 21]).tolist() == [f - 1995 for f in range(2000, 2007)]


def test_frame_rolls_windows_outside_the_piece():
    notes = make_notes((0.0, 0.05, 60, 100), (0.02, 0.2, 70, 30))
    pedals = make_pedals((0.0, 64, 127), (0.01, 67, 90))
    whole = frame_rolls(notes, pedals, ALL_CHANNELS, 0, 50, 250)
    end = piece_frames(notes, pedals, 250)
    assert end == 51 and whole[:, :end].any(axis=1).sum() > 0
    before = frame_rolls(notes, pedals, ALL_CHANNELS, -10, 15, 250)
    assert not before[:, :10].any()
    np.testing.assert_array_equal(before[:, 10:], whole[:, :5])
    after = frame_rolls(notes, pedals, ALL_CHANNELS, 45, 20, 250)
    np.testing.assert_array_equal(after[:, :5], whole[:, 45:50])
    assert after[:, 5].any()  # frame 50 holds the offset marker of the second note
    assert not after[:, 6:].any()  # past the end, the pedal held down reads 0 too
    assert not frame_rolls(notes, pedals, ALL_CHANNELS, 1000, 10, 250).any()
    assert not frame_rolls(notes, pedals, ALL_CHANNELS, -100, 10, 250).any()
    assert frame_rolls(Notes.empty(), PedalEvents.empty(), ALL_CHANNELS, 0, 4, 250).shape == (355, 4)
    with pytest.raises(ValueError):
        frame_rolls(notes, pedals, ("velocity",), 0, 4, 250)
    for pitch in (20, 109):  # the rows' loop writes unchecked: a key off the piano is refused, not written elsewhere
        with pytest.raises(ValueError, match=f"keys 21..108: \\[{pitch}\\]"):
            frame_rolls(make_notes((0.0, 0.05, pitch, 100)), pedals, ("onset", "pedals"), 0, 4, 250)


def test_frame_rolls_window_equals_slice_of_whole_piece():
    rng = np.random.default_rng(0)
    notes, pedals = random_notes(rng, 400, 30.0)
    n = piece_frames(notes, pedals, 250) + 20
    whole = frame_rolls(notes, pedals, ALL_CHANNELS, -20, n + 20, 250)
    assert whole[:88].sum() > 0 and whole[-3:].sum() > 0
    for start in [-20, -7, 0, 1, 999, 3333, n - 60, n - 3]:
        for length in [1, 125, 250]:
            window = frame_rolls(notes, pedals, ALL_CHANNELS, start, length, 250)
            expect = whole[:, start + 20:start + 20 + length]
            np.testing.assert_array_equal(window[:, :expect.shape[1]], expect)
            assert not window[:, expect.shape[1]:].any()
    # A long sustained note that began long before the window is still found.
    long = make_notes((0.0, 20.0, 40, 100), *[(t, t + 0.1, 80, 50) for t in np.arange(0.5, 19, 0.5)])
    window = frame_rolls(long, PedalEvents.empty(), ("frame",), 4000, 10, 250)
    assert (window[40 - 21] == 100 / 127).all()


def _rolls_by_the_rules(notes: Notes, pedals: PedalEvents, start: int, n: int, fr: float) -> np.ndarray:
    """`frame_rolls(..., ALL_CHANNELS, ...)` written another way: note by note and frame by frame in
    Python, from the docstring's rules (the package's loops are numba's: midi_loops.py)."""
    out = np.zeros((4 * 88 + 3, n), np.float32)
    eps = 1e-6
    end_of_piece = 0  # past the last frame any note or pedal event touches
    for on_s, off_s in zip(notes.onset_s, notes.offset_s):
        on = int(np.floor(on_s * fr + eps))
        end_of_piece = max(end_of_piece, int(np.ceil(off_s * fr - eps)), on + 1, int(np.floor(off_s * fr + eps)) + 1)
    for t in pedals.time_s:
        end_of_piece = max(end_of_piece, int(np.ceil(t * fr - eps)) + 1)
    for on_s, off_s, pitch, velocity in zip(notes.onset_s, notes.offset_s, notes.pitch, notes.velocity):
        on = int(np.floor(on_s * fr + eps))
        end = max(int(np.ceil(off_s * fr - eps)), on + 1)
        off = max(int(np.floor(off_s * fr + eps)), on)
        level = np.float32(velocity / 127)
        key = int(pitch) - 21
        for f in range(start, start + n):
            cells = [(0, f == on, level), (88, on <= f < end, level), (176, f == on, 1.0), (264, f == off, 1.0)]
            for row, hit, value in cells:
                if hit:
                    out[row + key, f - start] = max(out[row + key, f - start], value)
    for r, cc in enumerate((64, 66, 67)):
        events = pedals.of(cc)
        for f in range(max(start, 0), min(start + n, end_of_piece)):
            in_force = [v for t, v in zip(events.time_s, events.value) if np.ceil(t * fr - eps) <= f]
            out[352 + r, f - start] = np.float32(in_force[-1] / 127) if in_force else 0.0
    return out


def test_frame_rolls_equal_the_rules_note_by_note():
    rng = np.random.default_rng(11)
    notes, pedals = random_notes(rng, 120, 6.0)
    # two notes of one key overlapping, the louder first: each cell takes the larger value
    notes = Notes(np.r_[notes.onset_s, 1.0, 1.2], np.r_[notes.offset_s, 1.5, 1.3], np.r_[notes.pitch, 60, 60],
                  np.r_[notes.velocity, 90, 20])
    n_end = piece_frames(notes, pedals, 250)
    for start, length in [(-5, 40), (0, 1), (250, 1), (300, 64), (n_end - 30, 50), (int(rng.integers(0, n_end)), 1)]:
        np.testing.assert_array_equal(frame_rolls(notes, pedals, ALL_CHANNELS, start, length, 250),
                                      _rolls_by_the_rules(notes, pedals, start, length, 250), err_msg=f"{start}+{length}")


# ------------------------------------------------------------------------------------ excitation


def test_excitation_window_equals_slice_of_whole_piece():
    rng = np.random.default_rng(3)
    notes, _ = random_notes(rng, 60, 5.0)
    sr = 16000
    whole = excitation_signal(notes, 0, 7 * sr, sr, 6)
    assert whole.dtype == np.float32 and np.abs(whole).max() > 0.05
    for start, length in [(0, 100), (12345, 8000), (sr * 3 + 17, 5000), (7 * sr - 100, 100)]:
        np.testing.assert_array_equal(excitation_signal(notes, start, length, sr, 6), whole[start:start + length])
    before = excitation_signal(notes, -500, 1000, sr, 6)
    assert not before[:500].any()
    np.testing.assert_array_equal(before[500:], whole[:500])


def test_excitation_equals_its_formula():
    """The numba loop (midi_loops.py, a Chebyshev recurrence) against the docstring's
    formula written with numpy's sin and exp, partial by partial."""
    rng = np.random.default_rng(5)
    notes, _ = random_notes(rng, 30, 2.0)
    sr, partials, start, n = 16000, 5, 8000, 24000
    t_abs = (start + np.arange(n)) / sr
    want = np.zeros(n)
    h = sum(1.0 / k for k in range(1, partials + 1))
    for on, off, pitch, velocity in zip(notes.onset_s, notes.offset_s, notes.pitch, notes.velocity):
        f0 = pitch_to_hz(int(pitch))
        tau = 3.0 * 2.0 ** (-(int(pitch) - 21) / 24.0)
        t = t_abs - on
        live = (t >= 0) & (t_abs < off + 0.3 - 1e-9)
        env = np.where(t < off - on, np.exp(-np.maximum(t, 0) / tau),
                       np.exp(-(off - on) / tau) * np.exp(-np.maximum(t - (off - on), 0) / 0.05))
        wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, partials + 1) if k * f0 < sr / 2)
        want += np.where(live, 0.5 * velocity / 127 / h * env * wave, 0.0)
    got = excitation_signal(notes, start, n, sr, partials).astype(np.float64)
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_excitation_of_hours_long_notes_warns_nothing_and_is_finite():
    """A note of three hours (an extreme tempo makes them): the release envelope is not evaluated
    before the offset, where exp(-(t - duration) / tau) overflows and 0 * inf would be NaN."""
    sr = 16000
    notes = make_notes((0.0, 3 * 3600.0, 30, 100), (0.2, 3 * 3600.0 + 0.5, 100, 127))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = excitation_signal(notes, 0, sr, sr, 4)
        late = excitation_signal(notes, round((3 * 3600.0 + 0.4) * sr), sr // 2, sr, 4)
    assert np.isfinite(x).all() and np.abs(x).max() > 0.05
    assert np.isfinite(late).all() and not late[-100:].any()  # both released and gone by the end


def test_excitation_spectrum_peaks_at_f0_and_silence_elsewhere():
    sr = 16000
    notes = make_notes((0.5, 1.5, 57, 100))  # A3, 220 Hz
    x = excitation_signal(notes, 0, 3 * sr, sr, 4).astype(np.float64)
    assert not x[:sr // 2].any()  # nothing before the onset
    tail_end = int(np.ceil((1.5 + 0.3) * sr))
    assert not x[tail_end:].any() and np.abs(x[tail_end - 200:tail_end]).max() < 0.01  # after the release
    assert np.abs(x[sr // 2 + 1:sr // 2 + 2000]).max() > 0.1
    segment = x[sr // 2:sr // 2 + sr]  # 1 s: 1 Hz bins
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
    assert np.argmax(spectrum) == 220
    for k in (2, 3, 4):  # partials present, weaker than the fundamental
        assert 0.05 * spectrum[220] < spectrum[220 * k] < spectrum[220]
    assert spectrum[220 * 5] < 0.01 * spectrum[220]  # only n_partials partials
    assert pitch_to_hz(69) == 440.0


def test_excitation_partials_above_nyquist_skipped_and_velocity_scales():
    sr = 16000
    high = make_notes((0.0, 1.0, 108, 127))  # C8, 4186 Hz: partial 2 is above 8 kHz
    x = excitation_signal(high, 0, sr, sr, 3).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(sr)))
    f0 = int(round(pitch_to_hz(108)))
    assert abs(int(np.argmax(spectrum)) - f0) <= 1
    alias = sr - 2 * f0  # where partial 2 would fold back to
    assert spectrum[alias - 3:alias + 4].max() < 1e-3 * spectrum.max()
    loud = excitation_signal(make_notes((0.0, 1.0, 60, 120)), 0, 4000, sr, 3)
    soft = excitation_signal(make_notes((0.0, 1.0, 60, 60)), 0, 4000, sr, 3)
    np.testing.assert_allclose(loud, 2 * soft, atol=1e-6)
    assert np.abs(loud).max() < 1.0
    assert not excitation_signal(high, 0, 100, sr, 0).any()


def test_write_midi_reads_back_the_same_notes_and_pedals(tmp_path):
    from midi2wave.midi import Notes, PedalEvents, write_midi

    notes = Notes(np.array([0.1, 0.5, 0.5, 1.0]), np.array([0.5, 0.9, 1.2, 1.5]), np.array([60, 60, 64, 108], np.int16),
                  np.array([90, 30, 127, 1], np.int16))
    pedals = PedalEvents(np.array([0.0, 0.5, 0.7, 1.1]), np.array([64, 67, 66, 64], np.int16),
                         np.array([100, 40, 127, 0], np.int16))
    back_notes, back_pedals = read_midi(write_midi(notes, pedals, tmp_path / "x.mid"))
    for name in ("onset_s", "offset_s"):
        np.testing.assert_allclose(getattr(back_notes, name), getattr(notes, name), atol=1 / 1920)
    np.testing.assert_array_equal(back_notes.pitch, notes.pitch)
    np.testing.assert_array_equal(back_notes.velocity, notes.velocity)
    np.testing.assert_allclose(back_pedals.time_s, pedals.time_s, atol=1 / 1920)
    np.testing.assert_array_equal(back_pedals.controller, pedals.controller)
    np.testing.assert_array_equal(back_pedals.value, pedals.value)
