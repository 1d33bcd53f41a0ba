"""MIDI notes and pedals: reading, the sustain-pedal rule, frame-rate rolls and an audio-rate excitation.

Times are seconds (float64). A time `s` falls in frame `floor(s * frame_rate_hz)` (see docs/DESIGN.md);
to keep times that sit exactly on a frame boundary in that frame despite float rounding (e.g.
`4.004 * 250 = 1000.9999999999999`), frame indices are computed with a tolerance of `_FRAME_EPS`
frames (4 ns at 250 Hz).

Nothing here builds a dense whole-piece roll: `frame_rolls` and `excitation_signal` render any window
directly from the note list, and a window is bit-identical to the same slice of a whole-piece render.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import constants as C
from .errors import MidiError

# Tolerance, in frames, when mapping times to frame indices (see the module docstring).
_FRAME_EPS = 1e-6
_DRUM_CHANNEL = 9  # MIDI channel 10, 0-based

# Excitation envelope: exponential decay with a time constant that halves every two octaves up from
# A0, and an exponential release after the (sustained) offset, cut after `_RELEASE_TAIL_S`.
_DECAY_TAU_A0_S = 3.0
_DECAY_TAU_HALVING_SEMITONES = 24.0
_RELEASE_TAU_S = 0.05
_RELEASE_TAIL_S = 6 * _RELEASE_TAU_S
# Overall gain of the excitation: one note at velocity 127 peaks below this; a handful of typical
# notes sum to within about +-1.
EXCITATION_GAIN = 0.5


# ------------------------------------------------------------------------------------ containers


def _as_1d(values: Any, dtype: Any, name: str) -> np.ndarray:
    array = np.ascontiguousarray(np.asarray(values, dtype=dtype))
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Notes:
    """Piano notes as equal-length arrays, sorted by (onset, pitch) (the constructor sorts).

    onset_s, offset_s: float64 [N] seconds; pitch: int16 [N] MIDI number (21..108 from `read_midi`);
    velocity: int16 [N] 1..127. The arrays are read-only.
    """

    onset_s: np.ndarray
    offset_s: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray

    def __post_init__(self) -> None:
        arrays = {
            "onset_s": _as_1d(self.onset_s, np.float64, "onset_s"),
            "offset_s": _as_1d(self.offset_s, np.float64, "offset_s"),
            "pitch": _as_1d(self.pitch, np.int16, "pitch"),
            "velocity": _as_1d(self.velocity, np.int16, "velocity"),
        }
        n = len(arrays["onset_s"])
        if any(len(a) != n for a in arrays.values()):
            raise ValueError(f"Notes arrays differ in length: { {k: len(a) for k, a in arrays.items()} }")
        order = np.lexsort((arrays["pitch"], arrays["onset_s"]))
        if n and np.any(order != np.arange(n)):
            arrays = {k: _as_1d(a[order], a.dtype, k) for k, a in arrays.items()}
        for name, array in arrays.items():
            object.__setattr__(self, name, array)

    @classmethod
    def empty(cls) -> "Notes":
        return cls(np.zeros(0), np.zeros(0), np.zeros(0, np.int16), np.zeros(0, np.int16))

    def __len__(self) -> int:
        return len(self.onset_s)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Notes):
            return NotImplemented
        return all(np.array_equal(getattr(self, k), getattr(other, k))
                   for k in ("onset_s", "offset_s", "pitch", "velocity"))

    def take(self, index: np.ndarray | slice) -> "Notes":
        """The notes selected by an index array, boolean mask or slice (order kept)."""
        return Notes(self.onset_s[index], self.offset_s[index], self.pitch[index], self.velocity[index])

    def window(self, start_s: float, end_s: float) -> "Notes":
        """The notes that sound somewhere in [start_s, end_s) (times unchanged, not clipped)."""
        return self.take((self.onset_s < end_s) & (self.offset_s > start_s))

    @property
    def end_s(self) -> float:
        """The latest offset (0.0 when there are no notes)."""
        return float(self.offset_s.max()) if len(self) else 0.0

    def _cached(self, key: Any, make: Any) -> Any:
        # Derived arrays (frame indices...) are cached on the instance; the arrays are read-only.
        cache = self.__dict__.setdefault("_cache", {})
        if key not in cache:
            cache[key] = make()
        return cache[key]


@dataclass(frozen=True, eq=False)
class PedalEvents:
    """Pedal controller changes, sorted by time (stable: same-time events keep their file order).

    time_s: float64 [M] seconds; controller: int16 [M] (64 sustain, 66 sostenuto, 67 una corda);
    value: int16 [M] 0..127 (the continuous controller value).
    """

    time_s: np.ndarray
    controller: np.ndarray
    value: np.ndarray

    def __post_init__(self) -> None:
        arrays = {
            "time_s": _as_1d(self.time_s, np.float64, "time_s"),
            "controller": _as_1d(self.controller, np.int16, "controller"),
            "value": _as_1d(self.value, np.int16, "value"),
        }
        n = len(arrays["time_s"])
        if any(len(a) != n for a in arrays.values()):
            raise ValueError(f"PedalEvents arrays differ in length: { {k: len(a) for k, a in arrays.items()} }")
        order = np.argsort(arrays["time_s"], kind="stable")
        if n and np.any(order != np.arange(n)):
            arrays = {k: _as_1d(a[order], a.dtype, k) for k, a in arrays.items()}
        for name, array in arrays.items():
            object.__setattr__(self, name, array)

    @classmethod
    def empty(cls) -> "PedalEvents":
        return cls(np.zeros(0), np.zeros(0, np.int16), np.zeros(0, np.int16))

    def __len__(self) -> int:
        return len(self.time_s)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PedalEvents):
            return NotImplemented
        return all(np.array_equal(getattr(self, k), getattr(other, k)) for k in ("time_s", "controller", "value"))

    def take(self, index: np.ndarray | slice) -> "PedalEvents":
        return PedalEvents(self.time_s[index], self.controller[index], self.value[index])

    def of(self, controller: int) -> "PedalEvents":
        """The events of one controller."""
        return self.take(self.controller == controller)

    def _cached(self, key: Any, make: Any) -> Any:
        cache = self.__dict__.setdefault("_cache", {})
        if key not in cache:
            cache[key] = make()
        return cache[key]


def notes_to_arrays(notes: Notes, pedals: PedalEvents) -> dict[str, np.ndarray]:
    """The arrays of a store's `<id>.notes.npz` (keys as in data/store.py)."""
    return {
        "onset_s": notes.onset_s, "offset_s": notes.offset_s, "pitch": notes.pitch, "velocity": notes.velocity,
        "pedal_time_s": pedals.time_s, "pedal_controller": pedals.controller, "pedal_value": pedals.value,
    }


def notes_from_arrays(arrays: Any) -> tuple[Notes, PedalEvents]:
    """Inverse of `notes_to_arrays` (accepts the mapping returned by `np.load` of a `.notes.npz`)."""
    notes = Notes(arrays["onset_s"], arrays["offset_s"], arrays["pitch"], arrays["velocity"])
    pedals = PedalEvents(arrays["pedal_time_s"], arrays["pedal_controller"], arrays["pedal_value"])
    return notes, pedals


# --------------------------------------------------------------------------------------- reading


def _tick_to_seconds(ticks_per_beat: int, tempo_events: list[tuple[int, int]]):
    """A vectorised tick -> seconds map from (tick, microseconds per beat) tempo changes."""
    if ticks_per_beat & 0x8000:  # SMPTE division: -frames per second in the high byte, ticks per frame low
        fps = 256 - (ticks_per_beat >> 8)
        ticks_per_frame = ticks_per_beat & 0xFF
        if fps <= 0 or ticks_per_frame <= 0:
            raise ValueError(f"invalid SMPTE time division {ticks_per_beat:#06x}")
        smpte_seconds_per_tick = 1.0 / (fps * ticks_per_frame)
        return lambda ticks: np.asarray(ticks, np.float64) * smpte_seconds_per_tick
    if ticks_per_beat <= 0:
        raise ValueError(f"invalid time division {ticks_per_beat}")
    events = sorted(tempo_events, key=lambda e: e[0])  # stable: the last change at a tick wins
    change_ticks = np.array([0] + [t for t, _ in events], np.int64)
    tempi = np.array([500_000] + [tempo for _, tempo in events], np.float64)
    seconds_per_tick = tempi / 1e6 / ticks_per_beat
    change_seconds = np.concatenate([[0.0], np.cumsum(np.diff(change_ticks) * seconds_per_tick[:-1])])

    def convert(ticks: Any) -> np.ndarray:
        ticks = np.asarray(ticks, np.int64)
        j = np.searchsorted(change_ticks, ticks, side="right") - 1
        return change_seconds[j] + (ticks - change_ticks[j]) * seconds_per_tick[j]

    return convert


def _remove_restrike_overlaps(onset: np.ndarray, offset: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """End each note no later than the next onset of its pitch; returns the new offsets."""
    offset = offset.copy()
    order = np.lexsort((onset, pitch))
    same_pitch_next = pitch[order][1:] == pitch[order][:-1]
    cur, nxt = order[:-1][same_pitch_next], order[1:][same_pitch_next]
    offset[cur] = np.minimum(offset[cur], onset[nxt])
    return offset


def read_midi(path: str | Path) -> tuple[Notes, PedalEvents]:
    """Read the piano notes and pedal events of a MIDI file (no sustain applied).

    All tracks and channels except the drum channel (10) are merged. A note-on with velocity 0 is a
    note-off; a note-off ends every open note of its key on its track and channel that began at an
    earlier tick (as pretty_midi does); a note still open at the end of the file ends at the file's
    last event. A new onset of a pitch that is still sounding ends the earlier note there, and notes
    left with zero or negative length are dropped, as are pitches outside 21..108. CC64 (sustain),
    CC66 (sostenuto) and CC67 (una corda) events are kept with their continuous values.

    Raises `MidiError("<path>: <problem>")` for a missing file, a file that is not MIDI or is corrupt,
    and a file with no piano notes.
    """
    import mido

    path = Path(path)
    if not path.exists():
        raise MidiError(f"{path}: no such file")
    if not path.is_file():
        raise MidiError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise MidiError(f"{path}: empty file, not a MIDI file")
    try:
        midi = mido.MidiFile(path)
    except EOFError:  # mido's EOFError says nothing
        raise MidiError(f"{path}: not a MIDI file or corrupt (its data ends early: truncated?)") from None
    except OSError as e:
        raise MidiError(f"{path}: cannot read as MIDI ({e.strerror or e})") from None
    except Exception as e:  # mido raises EOFError, KeyError, ValueError... on corrupt data
        raise MidiError(f"{path}: not a MIDI file or corrupt ({type(e).__name__}: {e})") from None

    onset_ticks: list[int] = []
    offset_ticks: list[int] = []
    pitches: list[int] = []
    velocities: list[int] = []
    pedal_ticks: list[int] = []
    pedal_order: list[tuple[int, int, int]] = []  # (track, index in track) to keep file order stable
    pedal_controllers: list[int] = []
    pedal_values: list[int] = []
    tempo_events: list[tuple[int, int]] = []
    last_tick = 0
    try:
        for track_index, track in enumerate(midi.tracks):
            tick = 0
            open_notes: dict[tuple[int, int], list[tuple[int, int]]] = {}
            for message_index, message in enumerate(track):
                tick += message.time
                kind = message.type
                if kind == "set_tempo":
                    tempo_events.append((tick, message.tempo))
                    continue
                if kind not in ("note_on", "note_off", "control_change"):
                    continue
                last_tick = max(last_tick, tick)
                if message.channel == _DRUM_CHANNEL:
                    continue
                if kind == "note_on" and message.velocity > 0:
                    open_notes.setdefault((message.channel, message.note), []).append((tick, message.velocity))
                elif kind in ("note_on", "note_off"):
                    key = (message.channel, message.note)
                    still_open = []
                    for start, note_velocity in open_notes.get(key, ()):
                        if start == tick:  # a note-on at this very tick continues
                            still_open.append((start, note_velocity))
                        else:
                            onset_ticks.append(start)
                            offset_ticks.append(tick)
                            pitches.append(message.note)
                            velocities.append(note_velocity)
                    if still_open:
                        open_notes[key] = still_open
                    else:
                        open_notes.pop(key, None)
                elif message.control in C.PEDAL_CONTROLLERS:
                    pedal_ticks.append(tick)
                    pedal_order.append((tick, track_index, message_index))
                    pedal_controllers.append(message.control)
                    pedal_values.append(message.value)
            for (_, note), starts in open_notes.items():
                for start, note_velocity in starts:
                    onset_ticks.append(start)
                    offset_ticks.append(-1)  # closed at the file's last event below
                    pitches.append(note)
                    velocities.append(note_velocity)
        to_seconds = _tick_to_seconds(midi.ticks_per_beat, tempo_events)
    except Exception as e:
        raise MidiError(f"{path}: corrupt MIDI data ({type(e).__name__}: {e})") from None

    offset_ticks_array = np.asarray(offset_ticks, np.int64)
    offset_ticks_array[offset_ticks_array < 0] = last_tick
    onset = to_seconds(np.asarray(onset_ticks, np.int64))
    offset = to_seconds(offset_ticks_array)
    pitch = np.asarray(pitches, np.int16)
    velocity = np.asarray(velocities, np.int16)
    keep = (pitch >= C.MIN_MIDI_PITCH) & (pitch <= C.MAX_MIDI_PITCH)
    onset, offset, pitch, velocity = onset[keep], offset[keep], pitch[keep], velocity[keep]
    if len(onset):
        offset = _remove_restrike_overlaps(onset, offset, pitch)
        keep = offset > onset
        onset, offset, pitch, velocity = onset[keep], offset[keep], pitch[keep], velocity[keep]
    if len(onset) == 0:
        raise MidiError(f"{path}: no notes in the piano range "
                        f"{C.MIN_MIDI_PITCH}..{C.MAX_MIDI_PITCH} (drum channel ignored)")

    order = sorted(range(len(pedal_order)), key=pedal_order.__getitem__)
    pedals = PedalEvents(
        to_seconds(np.asarray(pedal_ticks, np.int64)[order]) if order else np.zeros(0),
        np.asarray(pedal_controllers, np.int16)[order] if order else np.zeros(0, np.int16),
        np.asarray(pedal_values, np.int16)[order] if order else np.zeros(0, np.int16),
    )
    return Notes(onset, offset, pitch, velocity), pedals


# --------------------------------------------------------------------------------------- sustain


def write_midi(notes: Notes, pedals: PedalEvents, path: str | Path) -> Path:
    """Write notes and pedal events as a one-track MIDI file (120 bpm, 480 ticks per beat: 960 ticks
    a second) that `read_midi` reads back to the same notes and pedals, times rounded to a tick. At
    one tick, pedal changes come first, then note-offs, then note-ons (a re-struck key ends before
    it starts again). Used by tests and benchmarks to make pieces; the demo data has its own
    MAESTRO-like layout (`data.demo.performance.midi_bytes`)."""
    import mido

    ticks_per_s = 960
    events = []
    for on, off, pitch, vel in zip(notes.onset_s, notes.offset_s, notes.pitch, notes.velocity):
        events.append((round(float(on) * ticks_per_s), 2, mido.Message("note_on", note=int(pitch), velocity=int(vel))))
        events.append((round(float(off) * ticks_per_s), 1, mido.Message("note_off", note=int(pitch), velocity=64)))
    for t, cc, value in zip(pedals.time_s, pedals.controller, pedals.value):
        events.append((round(float(t) * ticks_per_s), 0,
                       mido.Message("control_change", control=int(cc), value=int(value))))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000, time=0)])
    now = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(str(path))
    return Path(path)


def apply_sustain(notes: Notes, pedals: PedalEvents, threshold: int = C.PEDAL_ON_THRESHOLD) -> Notes:
    """Extend notes held by the sustain pedal (the Onsets and Frames / note_seq rule).

    The pedal is down while the latest CC64 value is >= `threshold`. A note released while the pedal
    is down keeps sounding until the pedal lifts or its pitch is struck again (it then ends at that
    onset), whichever comes first; while the pedal is down a new onset also ends a still-held note
    of the same pitch. Notes still sustained after the last event end at the last event (note or
    pedal). Notes left with zero length are dropped. Events at the same time are ordered pedal-down,
    pedal-up, note-on, note-off.
    """
    n = len(notes)
    if n == 0:
        return notes
    sustain = pedals.of(C.SUSTAIN_CC)
    down = sustain.value >= threshold
    # Only changes of state matter (repeated "down" or "up" values are no-ops in the rule).
    changes = np.flatnonzero(np.diff(np.concatenate([[False], down])) != 0)
    SUS_ON, SUS_OFF, NOTE_ON, NOTE_OFF = 0, 1, 2, 3
    times = np.concatenate([sustain.time_s[changes], notes.onset_s, notes.offset_s])
    kinds = np.concatenate([np.where(down[changes], SUS_ON, SUS_OFF),
                            np.full(n, NOTE_ON), np.full(n, NOTE_OFF)])
    which = np.concatenate([np.full(len(changes), -1), np.arange(n), np.arange(n)])
    order = np.lexsort((kinds, times))

    onset, offset = notes.onset_s, notes.offset_s
    pitch = notes.pitch.tolist()
    new_offset = offset.copy()
    dropped = np.zeros(n, bool)
    active: dict[int, list[int]] = {}  # pitch -> notes held or sustained
    sustained = False
    time = 0.0
    for time, kind, i in zip(times[order].tolist(), kinds[order].tolist(), which[order].tolist()):
        if kind == SUS_ON:
            sustained = True
        elif kind == SUS_OFF:
            sustained = False
            for p in list(active):
                held = []
                for j in active[p]:
                    if offset[j] < time:  # released earlier, kept sounding by the pedal
                        new_offset[j] = time
                    else:
                        held.append(j)
                if held:
                    active[p] = held
                else:
                    del active[p]
        elif kind == NOTE_ON:
            p = pitch[i]
            if sustained and p in active:
                for j in active.pop(p):
                    new_offset[j] = time
                    if onset[j] == time:
                        dropped[j] = True
            active.setdefault(p, []).append(i)
        elif not sustained:  # NOTE_OFF without pedal: the note ends at its own offset
            lst = active.get(pitch[i])
            if lst is not None and i in lst:
                lst.remove(i)
                if not lst:
                    del active[pitch[i]]
    for lst in active.values():
        for j in lst:
            new_offset[j] = max(time, offset[j])
    keep = ~dropped & (new_offset > onset)
    return Notes(onset[keep], new_offset[keep], notes.pitch[keep], notes.velocity[keep])


# ----------------------------------------------------------------------------------------- rolls


def _note_frames(notes: Notes, frame_rate_hz: float) -> dict[str, Any]:
    def make() -> dict[str, Any]:
        onset = np.floor(notes.onset_s * frame_rate_hz + _FRAME_EPS).astype(np.int64)
        end = np.maximum(np.ceil(notes.offset_s * frame_rate_hz - _FRAME_EPS).astype(np.int64), onset + 1)
        off = np.maximum(np.floor(notes.offset_s * frame_rate_hz + _FRAME_EPS).astype(np.int64), onset)
        reach = np.maximum(end, off + 1)  # exclusive: the note touches no channel at frames >= reach
        return {
            "onset": onset, "end": end, "offset": off, "reach": reach,
            "reach_cummax": np.maximum.accumulate(reach) if len(reach) else reach,
            "key": (notes.pitch - C.MIN_MIDI_PITCH).astype(np.int64),
            "level": (notes.velocity / C.MAX_MIDI_VELOCITY).astype(np.float32),
            "on_keys": bool(((notes.pitch >= C.MIN_MIDI_PITCH) & (notes.pitch <= C.MAX_MIDI_PITCH)).all()),
        }
    return notes._cached(("frames", float(frame_rate_hz)), make)


def _pedal_frames(pedals: PedalEvents, frame_rate_hz: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per pedal controller: (first frame each event is in force at, value / 127)."""
    def make() -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for cc in C.PEDAL_CONTROLLERS:
            events = pedals.of(cc)
            first = np.ceil(events.time_s * frame_rate_hz - _FRAME_EPS).astype(np.int64)
            out.append((first, (events.value / C.MAX_MIDI_VELOCITY).astype(np.float32)))
        return out
    return pedals._cached(("frames", float(frame_rate_hz)), make)


def _pedal_table(pedals: PedalEvents, frame_rate_hz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_pedal_frames` concatenated, as `midi_loops.held_values` takes it: (first frames, values,
    bounds [4]: controller r's events are bounds[r] .. bounds[r + 1] - 1)."""
    def make() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        per = _pedal_frames(pedals, frame_rate_hz)
        bounds = np.cumsum([0] + [len(first) for first, _ in per]).astype(np.int64)
        return (np.concatenate([first for first, _ in per]).astype(np.int64),
                np.concatenate([values for _, values in per]).astype(np.float32), bounds)
    return pedals._cached(("table", float(frame_rate_hz)), make)


def piece_frames(notes: Notes, pedals: PedalEvents, frame_rate_hz: float) -> int:
    """Frames of the piece: past the last frame any note or pedal event touches (rolls are zero beyond)."""
    end = 0
    if len(notes):
        end = int(_note_frames(notes, frame_rate_hz)["reach_cummax"][-1])
    for first, _ in _pedal_frames(pedals, frame_rate_hz):
        if len(first):  # in time order (PedalEvents sorts), so the last is the latest
            end = max(end, int(first[-1]) + 1)
    return end


# `midi_loops.note_rows`' kind of each note channel
_NOTE_ROW_KINDS = {"onset_velocity": 0, "onset": 1, "offset": 2, "frame": 3}


def frame_rolls(notes: Notes, pedals: PedalEvents, channels: Sequence[str], start_frame: int, n_frames: int,
                frame_rate_hz: float) -> np.ndarray:
    """Frame-rate conditioning rows for frames `start_frame .. start_frame + n_frames - 1`.

    `notes` should already be sustained (`apply_sustain`). Returns float32 [C, n_frames], the rows of
    each name in `channels` stacked in that order (sizes as `config.FRAME_CHANNELS`; key rows are
    MIDI pitch 21..108):

    - `onset_velocity`: velocity/127 in the onset frame `floor(onset * fr)` of each note;
    - `frame`: velocity/127 in frames `floor(onset * fr) .. ceil(offset * fr) - 1` (at least the
      onset frame) while the key sounds;
    - `onset`: 1 in the onset frame;
    - `offset`: 1 in frame `floor(offset * fr)` (never before the onset frame);
    - `pedals`: 3 rows, the CC64, CC66, CC67 value in force at each frame's start time, / 127.

    Overlapping notes of one key take the larger value. Frames before 0 or at/after
    `piece_frames(notes, pedals, fr)` are zero. Cost grows with the notes near the window, not the
    length of the piece.
    """
    start_frame, n_frames = int(start_frame), int(n_frames)
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    n_rows, kinds, first_rows, pedal_row = _row_plan(tuple(channels))
    out = np.zeros((n_rows, n_frames), np.float32)
    stop_frame = start_frame + n_frames
    if n_frames == 0:
        return out

    from .midi_loops import note_rows

    idx = np.zeros(0, np.int64)
    if len(kinds) and len(notes):
        nf = _note_frames(notes, frame_rate_hz)
        if not nf["on_keys"]:  # the loops write row `key` unchecked
            raise ValueError(f"notes outside the piano's keys {C.MIN_MIDI_PITCH}..{C.MAX_MIDI_PITCH}: "
                             f"{sorted(set(notes.pitch.tolist()) - set(range(C.MIN_MIDI_PITCH, C.MAX_MIDI_PITCH + 1)))[:5]}")
        lo = int(np.searchsorted(nf["reach_cummax"], start_frame, side="right"))
        hi = int(np.searchsorted(nf["onset"], stop_frame, side="left"))
        idx = np.arange(lo, hi)
        idx = idx[nf["reach"][idx] > start_frame]
        onset, end, off = nf["onset"][idx], nf["end"][idx], nf["offset"][idx]
        key, level = nf["key"][idx], nf["level"][idx]
    if pedal_row is not None:
        _fill_pedals(out[pedal_row:pedal_row + 3], notes, pedals, start_frame, n_frames, frame_rate_hz)
    if len(idx):
        note_rows(out, kinds, first_rows, onset, end, off, key, level, start_frame)
    return out


@functools.lru_cache(maxsize=32)
def _row_plan(channels: tuple[str, ...]) -> tuple[int, np.ndarray, np.ndarray, int | None]:
    """Where each channel's rows go in `frame_rolls`' output, worked out once per channel list:
    (rows in all, the note channels' `midi_loops.note_rows` kinds and first rows, the pedals' first
    row or None)."""
    from .config import FRAME_CHANNELS

    kinds, first_rows, pedal_row, row = [], [], None, 0
    for name in channels:
        if name not in FRAME_CHANNELS:
            raise ValueError(f"unknown conditioning channel {name!r} (choose from {sorted(FRAME_CHANNELS)})")
        if name == "pedals":
            pedal_row = row
        else:
            kinds.append(_NOTE_ROW_KINDS[name])
            first_rows.append(row)
        row += FRAME_CHANNELS[name]
    kinds_array, rows_array = np.array(kinds, np.int64), np.array(first_rows, np.int64)
    kinds_array.setflags(write=False)
    rows_array.setflags(write=False)
    return row, kinds_array, rows_array, pedal_row


def _fill_pedals(block: np.ndarray, notes: Notes, pedals: PedalEvents, start_frame: int, n_frames: int,
                 frame_rate_hz: float) -> None:
    if not len(pedals):
        return
    end = piece_frames(notes, pedals, frame_rate_hz)
    lo, hi = max(start_frame, 0), min(start_frame + n_frames, end)
    if hi <= lo:
        return
    from .midi_loops import held_values

    first, values, bounds = _pedal_table(pedals, frame_rate_hz)
    held_values(block, first, values, bounds, lo, hi, start_frame)


# ------------------------------------------------------------------------------------ excitation


def pitch_to_hz(pitch: np.ndarray | int) -> np.ndarray:
    """Equal-temperament fundamental in Hz (A4 = MIDI 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((np.asarray(pitch, np.float64) - 69.0) / 12.0)


def decay_tau_s(pitch: np.ndarray) -> np.ndarray:
    """A held piano note's decay time constant in seconds by pitch (a rough model: long in the bass,
    halving every `_DECAY_TAU_HALVING_SEMITONES`); the excitation and the resonator bank use it."""
    return _DECAY_TAU_A0_S * 2.0 ** (-(np.asarray(pitch, np.float64) - C.MIN_MIDI_PITCH) / _DECAY_TAU_HALVING_SEMITONES)


@functools.lru_cache(maxsize=8)
def _harmonics(n_partials: int) -> tuple[np.ndarray, float]:
    """The partials' weights 1 / k, k = 1..n_partials, and EXCITATION_GAIN over their sum."""
    harmonic = 1.0 / np.arange(1, n_partials + 1, dtype=np.float64)
    harmonic.setflags(write=False)
    return harmonic, EXCITATION_GAIN / harmonic.sum()


def excitation_signal(notes: Notes, start_sample: int, n_samples: int, sample_rate_hz: int,
                      n_partials: int) -> np.ndarray:
    """An audio-rate excitation rendered from the notes alone, for samples `start_sample ..
    start_sample + n_samples - 1` (float32 [n_samples]; samples outside the piece are 0).

    Each note contributes from its onset until `_RELEASE_TAIL_S` after its offset:
    `EXCITATION_GAIN * (velocity/127) / H * env(t) * sum_k sin(2 pi k f0 t) / k` over partials
    k = 1..n_partials below Nyquist, where t is the time since the onset (so the phase is continuous
    from the onset and any window equals the same slice of the whole-piece signal, bit for bit),
    f0 the equal-tempered fundamental, H = sum_{k<=n_partials} 1/k, and env decays as exp(-t/tau)
    (tau = 3 s at A0, halving every two octaves) until the offset, then as exp(-t/0.05 s).
    `notes` should already be sustained.
    """
    start_sample, n_samples = int(start_sample), int(n_samples)
    out = np.zeros(n_samples, np.float64)
    if n_samples <= 0 or n_partials <= 0 or len(notes) == 0:
        return out.astype(np.float32)
    sr = float(sample_rate_hz)

    def make() -> dict[str, np.ndarray]:
        on = notes.onset_s * sr
        tail = (notes.offset_s + _RELEASE_TAIL_S) * sr
        return {"on": on, "first": np.ceil(on).astype(np.int64), "stop": np.ceil(tail).astype(np.int64),
                "stop_cummax": np.maximum.accumulate(np.ceil(tail).astype(np.int64)),
                "f0": pitch_to_hz(notes.pitch), "tau": decay_tau_s(notes.pitch)}
    cache = notes._cached(("excitation", sr), make)

    stop_sample = start_sample + n_samples
    lo = int(np.searchsorted(cache["stop_cummax"], start_sample, side="right"))
    hi = int(np.searchsorted(cache["first"], stop_sample, side="left"))
    harmonic, norm = _harmonics(int(n_partials))
    idx = np.arange(lo, hi)
    if not len(idx):
        return out.astype(np.float32)
    # partials strictly below Nyquist
    k = np.minimum(n_partials, np.ceil(sr / 2 / cache["f0"][idx]) - 1).astype(np.int64)
    keep = (np.minimum(cache["stop"][idx], stop_sample) > np.maximum(cache["first"][idx], start_sample)) & (k >= 1)
    idx, k = idx[keep], k[keep]
    # Each note in order, sample by sample (`midi_loops`: numba, IEEE arithmetic in numpy's
    # expression order), so any window equals the same slice of the whole-piece signal, bit for bit.
    from .midi_loops import excitation_notes

    excitation_notes(out, start_sample, idx, k, cache["on"], cache["first"], cache["stop"], cache["f0"],
                     cache["tau"], notes.onset_s, notes.offset_s, notes.velocity, harmonic, norm, sr, _RELEASE_TAU_S)
    return out.astype(np.float32)
