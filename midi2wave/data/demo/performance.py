"""The performances of the demo data: `Performance` (notes and pedal events in seconds), the
`Builder` that records humanised notes and continuous pedal curves, and the performance's MIDI
form (`midi_events`, ticks, `midi_bytes`), from which both the MIDI file and the audio are made.

The MIDI layout is MAESTRO's: type 1, 384 ticks per beat, 120 bpm (768 ticks a second)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ... import constants as C
from ...errors import Midi2WaveError
from ...files import atomic_write_bytes

AUDIO_SAMPLE_RATE_HZ: int = 44_100
AUDIO_CHANNELS: int = 2
MIDI_TICKS_PER_BEAT: int = 384  # as in MAESTRO
MIDI_TEMPO_US_PER_BEAT: int = 500_000  # 120 bpm, as in MAESTRO
TICKS_PER_SECOND: int = MIDI_TICKS_PER_BEAT * 1_000_000 // MIDI_TEMPO_US_PER_BEAT  # 768
GENERATED_COMPOSER: str = "Anonymous"


class DemoDataError(Midi2WaveError):
    """The demo dataset cannot be made: bad arguments, an existing output, missing tools."""


# =================================================================================== performances


@dataclass
class Performance:
    """One piano performance: notes and controller events in seconds, and what it is.

    `work` names the composition; every excerpt of one work goes to the same split."""

    onset_s: np.ndarray  # float64
    offset_s: np.ndarray  # float64
    pitch: np.ndarray  # int64, 21..108
    velocity: np.ndarray  # int64, 1..127
    cc_time_s: np.ndarray  # float64
    cc_controller: np.ndarray  # int64: 64, 66, 67
    cc_value: np.ndarray  # int64, 0..127
    composer: str = GENERATED_COMPOSER
    title: str = ""
    work: str = ""
    source: str = "generated"  # "generated" | "corpus"
    tail_s: float = 2.0  # release tail rendered after the last event

    @property
    def end_s(self) -> float:
        """Time of the last MIDI event."""
        ends = [0.0]
        if len(self.offset_s):
            ends.append(float(self.offset_s.max()))
        if len(self.cc_time_s):
            ends.append(float(self.cc_time_s.max()))
        return max(ends)

    @property
    def n_samples(self) -> int:
        """Audio length: the last event (as written to MIDI) plus the release tail."""
        last_tick = int(midi_events(self)[:, 0].max(initial=0))
        return tick_to_sample(last_tick) + int(round(self.tail_s * AUDIO_SAMPLE_RATE_HZ))

    @property
    def duration_s(self) -> float:
        return self.n_samples / AUDIO_SAMPLE_RATE_HZ


class Builder:
    """Collects notes and controller ramps in seconds."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.notes: list[tuple[float, float, int, int]] = []
        self.cc: list[tuple[float, int, int]] = []
        self._value = {C.SUSTAIN_CC: 0, C.SOSTENUTO_CC: 0, C.SOFT_CC: 0}
        self._last_t = {C.SUSTAIN_CC: -1.0, C.SOSTENUTO_CC: -1.0, C.SOFT_CC: -1.0}

    def note(self, onset: float, offset: float, pitch: int, velocity: float) -> None:
        pitch = fold_pitch(int(pitch))
        velocity = int(np.clip(round(velocity), 1, C.MAX_MIDI_VELOCITY))
        self.notes.append((float(onset), float(max(offset, onset + 0.03)), pitch, velocity))

    def down(self, controller: int) -> bool:
        return self._value[controller] >= C.PEDAL_ON_THRESHOLD

    def ramp(self, controller: int, t0: float, seconds: float, target: int) -> float:
        """A continuous pedal movement to `target` over `seconds`, as MIDI CC points every ~8-18 ms."""
        rng = self.rng
        t0 = max(t0, self._last_t[controller] + 0.01)
        v0 = self._value[controller]
        n = max(2, int(round(seconds / rng.uniform(0.008, 0.018))))
        for i in range(1, n + 1):
            x = i / n
            v = v0 + (target - v0) * x * x * (3 - 2 * x)
            if i < n:
                v += rng.normal(0.0, 0.8)
            self.cc.append((t0 + seconds * x, controller, int(np.clip(round(v), 0, 127))))
        self._value[controller] = int(target)
        self._last_t[controller] = t0 + seconds
        return t0 + seconds

    def press(self, t: float, controller: int = C.SUSTAIN_CC, depth: int | None = None) -> float:
        if depth is None:
            depth = int(self.rng.integers(84, 128)) if self.rng.random() < 0.85 else int(self.rng.integers(66, 84))
        return self.ramp(controller, t, self.rng.uniform(0.04, 0.14), depth)

    def release(self, t: float, controller: int = C.SUSTAIN_CC) -> float:
        floor = 0 if self.rng.random() < 0.75 else int(self.rng.integers(1, 24))
        return self.ramp(controller, t, self.rng.uniform(0.03, 0.10), floor)

    def change(self, t: float) -> None:
        """Legato pedalling: lift as the new harmony sounds at `t`, press again just after."""
        if self.down(C.SUSTAIN_CC):
            end = self.release(t - self.rng.uniform(0.0, 0.03))
        else:
            end = t
        self.press(max(end + 0.01, t + self.rng.uniform(0.06, 0.15)))

    def performance(self, **meta: Any) -> Performance:
        notes = sorted(self.notes, key=lambda n: (n[0], n[2]))
        arr = np.array(notes, dtype=np.float64).reshape(-1, 4)
        cc = sorted(self.cc, key=lambda e: e[0])
        cca = np.array(cc, dtype=np.float64).reshape(-1, 3)
        return Performance(
            onset_s=arr[:, 0].copy(), offset_s=arr[:, 1].copy(),
            pitch=arr[:, 2].astype(np.int64), velocity=arr[:, 3].astype(np.int64),
            cc_time_s=cca[:, 0].copy(), cc_controller=cca[:, 1].astype(np.int64),
            cc_value=cca[:, 2].astype(np.int64), **meta,
        )


def fold_pitch(pitch: int) -> int:
    while pitch < C.MIN_MIDI_PITCH:
        pitch += 12
    while pitch > C.MAX_MIDI_PITCH:
        pitch -= 12
    return pitch


# ========================================================================= MIDI (ticks) and files

NOTE_OFF_EVENT, CC_EVENT, NOTE_ON_EVENT = 0, 1, 2  # kinds of `midi_events` rows; their order at one tick


def _tick(seconds: np.ndarray | float) -> np.ndarray:
    return np.maximum(np.rint(np.asarray(seconds, dtype=np.float64) * TICKS_PER_SECOND), 0).astype(np.int64)


def tick_to_sample(tick: int, sample_rate_hz: int = AUDIO_SAMPLE_RATE_HZ) -> int:
    """The audio sample (at `sample_rate_hz`) of a MIDI tick, rounded to the nearest."""
    return (2 * tick * sample_rate_hz + TICKS_PER_SECOND) // (2 * TICKS_PER_SECOND)


def midi_events(perf: Performance) -> np.ndarray:
    """The performance as MIDI events `[tick, kind, a, b]` (int64 [n, 4]) in file order: notes
    quantised to ticks with no overlapping notes of one key, controller values that change only.
    The MIDI file and the audio are both made from this."""
    rows: list[np.ndarray] = []
    on = _tick(perf.onset_s)
    off = np.maximum(_tick(perf.offset_s), on + 1)
    pitch = perf.pitch.astype(np.int64)
    vel = perf.velocity.astype(np.int64)
    keep = np.ones(len(on), dtype=bool)
    for p in np.unique(pitch):
        idx = np.nonzero(pitch == p)[0]
        idx = idx[np.lexsort((-vel[idx], on[idx]))]
        prev = -1
        for i in idx:
            if prev >= 0 and on[i] <= on[prev]:
                keep[i] = False  # the same key struck twice at once: keep the louder
                continue
            if prev >= 0 and off[prev] > on[i]:
                off[prev] = on[i]  # a key must be released before it is struck again
            prev = i
    on, off, pitch, vel = on[keep], off[keep], pitch[keep], vel[keep]
    if len(on):
        rows.append(np.stack([on, np.full_like(on, NOTE_ON_EVENT), pitch, vel], axis=1))
        rows.append(np.stack([off, np.full_like(off, NOTE_OFF_EVENT), pitch, np.zeros_like(off)], axis=1))
    if len(perf.cc_time_s):
        t = _tick(perf.cc_time_s)
        ctrl = perf.cc_controller.astype(np.int64)
        val = np.clip(perf.cc_value.astype(np.int64), 0, 127)
        order = np.argsort(t, kind="stable")
        t, ctrl, val = t[order], ctrl[order], val[order]
        keep_cc = np.zeros(len(t), dtype=bool)
        for c in np.unique(ctrl):
            idx = np.nonzero(ctrl == c)[0]
            last_at_tick = np.append(t[idx][1:] != t[idx][:-1], True)  # the last value at each tick
            idx = idx[last_at_tick]
            changed = np.append(val[idx][0] != 0, val[idx][1:] != val[idx][:-1])  # starts at 0
            keep_cc[idx[changed]] = True
        t, ctrl, val = t[keep_cc], ctrl[keep_cc], val[keep_cc]
        rows.append(np.stack([t, np.full_like(t, CC_EVENT), ctrl, val], axis=1))
    if not rows:
        return np.zeros((0, 4), dtype=np.int64)
    ev = np.concatenate(rows)
    order = np.lexsort((ev[:, 2], ev[:, 1], ev[:, 0]))
    return ev[order]


def midi_bytes(perf: Performance) -> bytes:
    """The MIDI file of a performance, laid out like MAESTRO's: type 1, 384 ticks per beat, a tempo
    track (120 bpm, 4/4) and one piano track (program 0) with note-offs as note-on velocity 0."""
    import mido

    mid = mido.MidiFile(type=1, ticks_per_beat=MIDI_TICKS_PER_BEAT)
    tempo = mido.MidiTrack()
    tempo.append(mido.MetaMessage("set_tempo", tempo=MIDI_TEMPO_US_PER_BEAT, time=0))
    tempo.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, clocks_per_click=24,
                                  notated_32nd_notes_per_beat=8, time=0))
    tempo.append(mido.MetaMessage("end_of_track", time=1))
    piano = mido.MidiTrack()
    piano.append(mido.Message("program_change", channel=0, program=0, time=0))
    last = 0
    for tick, kind, a, b in midi_events(perf).tolist():
        dt = tick - last
        last = tick
        if kind == CC_EVENT:
            piano.append(mido.Message("control_change", channel=0, control=a, value=b, time=dt))
        else:
            piano.append(mido.Message("note_on", channel=0, note=a, velocity=b, time=dt))
    piano.append(mido.MetaMessage("end_of_track", time=1))
    mid.tracks.extend([tempo, piano])
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def write_midi(perf: Performance, path: str | os.PathLike) -> Path:
    """Write `midi_bytes(perf)` to `path` (through a temporary name)."""
    path = Path(path)
    atomic_write_bytes(path, midi_bytes(perf), sync=False)
    return path
