"""A small synthetic stand-in for MAESTRO v3, in its exact layout (`midi2wave make-demo-data`).

The real MAESTRO (~100 GB) is out of reach here, so this module writes a dataset that a MAESTRO
reader cannot tell from the real thing::

    OUT/maestro-v3.0.0.csv    canonical_composer, canonical_title, split, year, midi_filename,
                              audio_filename, duration  (sorted by composer, title; LF line ends)
    OUT/maestro-v3.0.0.json   the same rows, column-oriented {"col": {"0": v, ...}}, 4-space indent
    OUT/<YEAR>/MIDI-Unprocessed_..._wav--N.midi   one piano track (type 1, 384 ticks per beat,
                              120 bpm), note-offs as note-on velocity 0, CC64 continuous, some CC67
    OUT/<YEAR>/MIDI-Unprocessed_..._wav--N.wav    44.1 kHz stereo 16-bit PCM

The music, all of it humanised "performances":

- excerpts (~20-90 s; shorter for tiny datasets) of music21's corpus: solo piano (Joplin, Chopin,
  Mozart, Clara Schumann, J. S. Bach, C. P. E. Bach, Schoenberg), songs and chamber music with
  piano, string quartets (Mozart, Haydn, Beethoven, Robert Schumann), Bach chorales and Monteverdi
  madrigals, all played on one piano: a tempo per piece with rubato, phrase-end and final
  ritardandos and fermatas; onset jitter and melody lead; velocities from the score's dynamics
  with phrase arcs (crescendo/diminuendo), metric accents and voicing; legato pedalling (CC64
  lifted at harmony / bass changes and pressed again ~0.1 s later, as continuous ramps) and una
  corda (CC67) in some soft passages;
- generated "studies" (composer `GENERATED_COMPOSER`) covering what the corpus does not: every
  one of the 88 keys and every velocity 1..127 (the first study opens with a chromatic sweep over
  the whole keyboard through all velocities), scales and fast runs, arpeggios, block-chord
  progressions, repeated notes / trills / tremolos, velocity ramps, melody with accompaniment,
  and long pedalled decays next to the same notes unpedalled.

Audio: made by a pluggable instrument (`make_demo_dataset(renderer=...)`; the CLI's default is
the Salamander grand played by sfizz, `salamander.py`, which shares the events, rooms and output
gain below). The FluidSynth instrument: one persistent FluidSynth (pyfluidsynth) with the MuseScore General piano (velocity layers,
sustain pedal), driven event by event (notes, CC64, CC66) with the rendering in between, so the
audio follows the written MIDI to within one FluidSynth block (64 samples, 1.45 ms). FluidSynth has
no una corda, so notes struck while CC67 >= 64 are rendered at 78 % of their velocity (softer and
darker, as on a piano). The audio is made from the very events written to the MIDI file (times
quantised to its 1/768 s ticks). FluidSynth's own reverb and chorus are off (their state outlives
a reset, so one piece's reverb tail would leak into the next); each year gets its own
deterministic "room" in numpy instead (`ROOMS`: a synthetic stereo reverb impulse response,
low/high shelving EQ, stereo width and gain), so the year conditioning has something to learn.
There is no normalisation: one fixed gain (`OUTPUT_GAIN`) for everything, so velocity stays
audible; samples are clipped to int16 (it rarely happens).

Splits are by composition (every excerpt of a work, all movements of a quartet, go to one split),
about 80/10/10 by duration, each split non-empty. Years are dealt round-robin from a shuffled list.

Determinism: for a seed (and the same library versions and soundfont) every file is byte-identical
from run to run: MIDI and metadata are computed with numpy's seeded generators, the FluidSynth
render is bit-exact across runs and processes (its float output has no dither; the synth is warmed
up once, every key at every velocity, and fully reset between pieces, so a piece renders the same
whatever came before it; every piece starts on a 64-sample block boundary), and the room is plain
numpy. Without that warm-up a piece would render slightly differently the first time its samples
are used in a process (by a few % of its peak), which `tests/test_demo.py` guards.

music21 parses a corpus file in 0.05-3 s; the notes it gives are cached on disk (`CACHE_ENV`,
default ~/.cache/midi2wave; "off" disables it). The cache holds exactly what parsing gives, so it
only saves time. A 1-minute dataset takes ~4 s of CPU, 60 minutes ~2 minutes (one core).

The dataset is built in a hidden temporary folder beside `out` (metadata written last) and moved
into place at the end, so `out` is never half-written.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import warnings
import wave
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import constants as C
from ..errors import Midi2WaveError

__all__ = [
    "AUDIO_SAMPLE_RATE_HZ",
    "COLUMNS",
    "DemoDataError",
    "DemoSummary",
    "GENERATED_COMPOSER",
    "METADATA_CSV",
    "METADATA_JSON",
    "Performance",
    "PianoRenderer",
    "ROOMS",
    "Room",
    "corpus_excerpt",
    "find_soundfont",
    "generated_study",
    "make_demo_dataset",
    "midi_bytes",
    "write_midi",
]

AUDIO_SAMPLE_RATE_HZ: int = 44_100
AUDIO_CHANNELS: int = 2
MIDI_TICKS_PER_BEAT: int = 384  # as in MAESTRO
MIDI_TEMPO_US_PER_BEAT: int = 500_000  # 120 bpm, as in MAESTRO
TICKS_PER_SECOND: int = MIDI_TICKS_PER_BEAT * 1_000_000 // MIDI_TEMPO_US_PER_BEAT  # 768
METADATA_CSV: str = "maestro-v3.0.0.csv"
METADATA_JSON: str = "maestro-v3.0.0.json"
COLUMNS: tuple[str, ...] = (
    "canonical_composer", "canonical_title", "split", "year", "midi_filename", "audio_filename", "duration",
)
SPLITS: tuple[str, ...] = ("train", "validation", "test")
SPLIT_FRACTIONS: dict[str, float] = {"train": 0.8, "validation": 0.1, "test": 0.1}
GENERATED_COMPOSER: str = "Anonymous"
GENERATED_SHARE: float = 0.3  # of the total duration
MIN_MINUTES: float = 0.5
SOUNDFONT_ENV: str = "MIDI2WAVE_SOUNDFONT"
DEFAULT_SOUNDFONTS: tuple[str, ...] = (
    "/usr/share/sounds/sf3/MuseScore_General.sf3",  # Debian musescore-general-soundfont-small
    "/usr/share/sounds/sf2/MuseScore_General.sf2",
    "/usr/share/sounds/sf3/default-GM.sf3",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
)
FLUID_BLOCK: int = 64  # FluidSynth renders in blocks of this many samples; events apply per block
FLUID_GAIN: float = 0.2  # FluidSynth's own gain; the output level is OUTPUT_GAIN, applied in float
OUTPUT_GAIN: float = 5.0  # fixed for every piece (no normalisation): a lone fff note peaks ~0.23-0.31
UNA_CORDA_VELOCITY_SCALE: float = 0.78
PCM_MAX: float = 32767.0


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


class _Builder:
    """Collects notes and controller ramps in seconds."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.notes: list[tuple[float, float, int, int]] = []
        self.cc: list[tuple[float, int, int]] = []
        self._value = {C.SUSTAIN_CC: 0, C.SOSTENUTO_CC: 0, C.SOFT_CC: 0}
        self._last_t = {C.SUSTAIN_CC: -1.0, C.SOSTENUTO_CC: -1.0, C.SOFT_CC: -1.0}

    def note(self, onset: float, offset: float, pitch: int, velocity: float) -> None:
        pitch = _fold_pitch(int(pitch))
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


def _fold_pitch(pitch: int) -> int:
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
    _write_atomic(path, midi_bytes(perf))
    return path


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _wav_bytes(pcm: np.ndarray, sample_rate: int) -> bytes:
    pcm = np.ascontiguousarray(pcm, dtype="<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


# ======================================================================================== rooms


@dataclass(frozen=True)
class Room:
    """The recording "room" of one MAESTRO year: reverb, EQ, width and level."""

    rt60_s: float  # reverb decay time (-60 dB)
    predelay_s: float
    wet: float  # reverb level relative to the dry signal
    damping_hz: float  # cut-off of the reverb tail's one-pole low-pass (darker rooms lower)
    low_shelf_db: float  # at 250 Hz
    high_shelf_db: float  # at 4 kHz
    width: float  # side (L-R) gain
    gain_db: float
    # the piano of the year (used by the Salamander instrument, salamander.py; FluidSynth ignores them)
    tuning_cents: float = 0.0  # the whole piano sharp (+) or flat (-)
    velocity_gamma: float = 1.0  # key velocity v is played as 127 * (v / 127) ** gamma (regulation)


ROOMS: dict[int, Room] = {
    2004: Room(1.45, 0.014, 0.26, 4200.0, +2.0, -3.5, 0.80, -1.5, -4.0, 1.08),
    2006: Room(1.20, 0.010, 0.20, 5500.0, +1.0, -2.0, 0.90, -0.5, +2.0, 0.94),
    2008: Room(0.95, 0.008, 0.16, 7000.0, +0.5, -1.0, 1.00, 0.0, -1.0, 1.00),
    2009: Room(1.10, 0.012, 0.22, 6000.0, -0.5, -1.5, 0.95, -1.0, +3.0, 1.05),
    2011: Room(0.80, 0.006, 0.12, 8000.0, +1.5, +0.5, 1.05, +0.5, 0.0, 0.92),
    2013: Room(1.35, 0.016, 0.24, 5000.0, -1.0, +1.0, 1.10, -0.5, -2.5, 1.10),
    2014: Room(0.70, 0.005, 0.10, 9000.0, +0.0, +1.5, 1.00, +1.0, +1.5, 0.97),
    2015: Room(1.00, 0.009, 0.18, 6500.0, +2.5, -0.5, 0.85, 0.0, -3.0, 1.03),
    2017: Room(1.25, 0.011, 0.20, 7500.0, -1.5, +2.0, 1.15, +0.5, +4.0, 0.96),
    2018: Room(0.90, 0.007, 0.14, 8500.0, +1.0, +1.0, 1.00, +1.5, +1.0, 1.06),
}
assert tuple(sorted(ROOMS)) == C.MAESTRO_YEARS


@lru_cache(maxsize=len(ROOMS) + 1)
def _impulse_response(year: int, sample_rate: int) -> np.ndarray:
    """Stereo reverb of a year's room (float64 [n, 2], unit energy per channel): early reflections
    and a decaying, low-passed noise tail, decorrelated between the channels."""
    room = ROOMS[year]
    rng = np.random.default_rng([year, 0x5EED])
    n = int(room.rt60_s * sample_rate)
    t = np.arange(n) / sample_rate
    noise = rng.standard_normal((n, 2))
    f = np.fft.rfftfreq(n, 1.0 / sample_rate)
    noise = np.fft.irfft(np.fft.rfft(noise, axis=0) / (1.0 + 1j * f / room.damping_hz)[:, None], n, axis=0)
    tail = noise * (10.0 ** (-3.0 * t / room.rt60_s))[:, None]
    fade = int(0.004 * sample_rate)
    tail[:fade] *= np.linspace(0.0, 1.0, fade)[:, None]
    for k in range(6):  # early reflections
        d = int(rng.uniform(0.003, 0.035) * sample_rate)
        tail[d] += rng.uniform(0.5, 2.0) * (0.8**k) * np.sign(rng.standard_normal(2)) * 4.0
    tail /= np.sqrt((tail**2).sum(axis=0, keepdims=True))
    pre = int(room.predelay_s * sample_rate)
    return np.concatenate([np.zeros((pre, 2)), tail])


def _shelf_response(kind: str, freq: float, gain_db: float, w: np.ndarray, sample_rate: int) -> np.ndarray:
    """Frequency response at `w` (rad/sample) of an RBJ audio-EQ-cookbook shelving biquad (slope 1)."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * freq / sample_rate
    cw, sw = math.cos(w0), math.sin(w0)
    sa = 2.0 * math.sqrt(a) * sw / 2.0 * math.sqrt(2.0)
    if kind == "low":
        b = (a * ((a + 1) - (a - 1) * cw + sa), 2 * a * ((a - 1) - (a + 1) * cw), a * ((a + 1) - (a - 1) * cw - sa))
        den = ((a + 1) + (a - 1) * cw + sa, -2 * ((a - 1) + (a + 1) * cw), (a + 1) + (a - 1) * cw - sa)
    else:
        b = (a * ((a + 1) + (a - 1) * cw + sa), -2 * a * ((a - 1) + (a + 1) * cw), a * ((a + 1) + (a - 1) * cw - sa))
        den = ((a + 1) - (a - 1) * cw + sa, 2 * ((a - 1) - (a + 1) * cw), (a + 1) - (a - 1) * cw - sa)
    z1 = np.exp(-1j * w)
    return (b[0] + b[1] * z1 + b[2] * z1 * z1) / (den[0] + den[1] * z1 + den[2] * z1 * z1)


@lru_cache(maxsize=len(ROOMS) + 1)
def _room_filter(year: int, sample_rate: int) -> tuple[int, int, np.ndarray]:
    """(FFT size, filter length, rfft of the room's stereo filter [bins, 2]): the dry signal plus
    the reverb, through the shelving EQ."""
    room = ROOMS[year]
    ir = _impulse_response(year, sample_rate)
    h = room.wet * ir
    h[0] += 1.0
    m = len(h)
    nfft = 1 << max(16, math.ceil(math.log2(4 * m)))
    w = np.linspace(0.0, math.pi, nfft // 2 + 1)
    eq = _shelf_response("low", 250.0, room.low_shelf_db, w, sample_rate) * _shelf_response(
        "high", 4000.0, room.high_shelf_db, w, sample_rate)
    return nfft, m, np.fft.rfft(h, nfft, axis=0) * eq[:, None]


def _fft_filter(x: np.ndarray, spectrum: np.ndarray, nfft: int, m: int) -> np.ndarray:
    """Linear convolution (overlap-add) of x [n] with the filter whose rfft is `spectrum`,
    truncated to n samples."""
    n = len(x)
    step = nfft - m + 1
    y = np.zeros(n + nfft)
    for s in range(0, n, step):
        y[s: s + nfft] += np.fft.irfft(np.fft.rfft(x[s: s + step], nfft) * spectrum, nfft)
    return y[:n]


def apply_room(dry: np.ndarray, year: int | None, sample_rate: int = AUDIO_SAMPLE_RATE_HZ) -> np.ndarray:
    """Dry stereo float [n, 2] -> the year's room (same length), times OUTPUT_GAIN. year None: dry."""
    x = np.asarray(dry, dtype=np.float64)
    if year is None:
        return x * OUTPUT_GAIN
    room = ROOMS[year]
    nfft, m, spec = _room_filter(year, sample_rate)
    y = np.stack([_fft_filter(x[:, c], spec[:, c], nfft, m) for c in range(2)], axis=1)
    mid, side = (y[:, 0] + y[:, 1]) / 2.0, (y[:, 0] - y[:, 1]) / 2.0 * room.width
    return np.stack([mid + side, mid - side], axis=1) * (OUTPUT_GAIN * 10.0 ** (room.gain_db / 20.0))


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Float in [-1, 1] -> int16, clipping what lies outside."""
    return np.clip(np.rint(np.asarray(x) * PCM_MAX), -32768, 32767).astype(np.int16)


# ===================================================================================== renderer


def find_soundfont(soundfont: str | os.PathLike | None = None) -> Path:
    """The soundfont to use: `soundfont`, else $MIDI2WAVE_SOUNDFONT, else the first of
    DEFAULT_SOUNDFONTS that exists."""
    if soundfont is not None:
        candidates = [str(soundfont)]
    elif os.environ.get(SOUNDFONT_ENV):
        candidates = [os.environ[SOUNDFONT_ENV]]
    else:
        candidates = list(DEFAULT_SOUNDFONTS)
    for c in candidates:
        if Path(c).is_file():
            return Path(c)
    raise DemoDataError(
        f"{candidates[0]}: soundfont not found (Debian: apt-get install fluidsynth "
        f"musescore-general-soundfont-small; or set {SOUNDFONT_ENV} to a .sf2/.sf3 with a piano)"
    )


def _import_fluidsynth() -> Any:
    try:
        import fluidsynth  # pyfluidsynth
    except (ImportError, OSError) as e:
        raise DemoDataError(
            f"make-demo-data needs pyfluidsynth and the FluidSynth library ({e}); "
            "pip install 'midi2wave[demo]' and apt-get install fluidsynth"
        ) from None
    if not hasattr(fluidsynth, "Synth"):
        raise DemoDataError(f"{getattr(fluidsynth, '__file__', 'fluidsynth')}: not pyfluidsynth "
                            "(another package named fluidsynth is installed)")
    return fluidsynth


class PianoRenderer:
    """One FluidSynth synth with the soundfont's grand piano, reused for every piece.

    `render(perf, year)` -> int16 [n_samples, 2] at 44.1 kHz: the MIDI events of `perf` (exactly as
    `midi_bytes` writes them) played event by event, a release tail, then the year's room."""

    def __init__(self, soundfont: str | os.PathLike | None = None, sample_rate_hz: int = AUDIO_SAMPLE_RATE_HZ):
        from ctypes import c_int, c_void_p

        fluidsynth = _import_fluidsynth()
        self.soundfont = find_soundfont(soundfont)
        self.sample_rate_hz = int(sample_rate_hz)
        settings = {
            "synth.reverb.active": 0, "synth.chorus.active": 0,  # the room is added in numpy
            "synth.polyphony": 1024, "synth.cpu-cores": 1,
            "synth.dynamic-sample-loading": 1,  # decode only the piano's samples (seconds saved)
        }
        self._synth = fluidsynth.Synth(gain=FLUID_GAIN, samplerate=float(self.sample_rate_hz), channels=16, **settings)
        self._sfid = self._synth.sfload(str(self.soundfont))
        if self._sfid < 0:
            raise DemoDataError(f"{self.soundfont}: FluidSynth cannot load this soundfont")
        self._write_float = fluidsynth.cfunc(
            "fluid_synth_write_float", c_int, ("synth", c_void_p, 1), ("len", c_int, 1),
            ("lout", c_void_p, 1), ("loff", c_int, 1), ("lincr", c_int, 1),
            ("rout", c_void_p, 1), ("roff", c_int, 1), ("rincr", c_int, 1),
        )
        if self._write_float is None:
            raise DemoDataError("the FluidSynth library lacks fluid_synth_write_float")
        self._lib = fluidsynth
        self._reset()
        # FluidSynth renders the first block of a fresh synth, and a sample the first time it is
        # played, a little differently from later times. Play every key at every velocity once,
        # so every piece meets the same state whatever was rendered before it.
        block = np.zeros((FLUID_BLOCK, 2), dtype=np.float32)
        for v in range(1, C.MAX_MIDI_VELOCITY + 1):
            for key in range(C.MIN_MIDI_PITCH, C.MAX_MIDI_PITCH + 1):
                self._synth.noteon(0, key, v)
            self._render_block(block)
            self._reset()

    def _render_block(self, out: np.ndarray) -> None:
        """Fill `out` (float32 [n, 2], C-contiguous) with the next n samples."""
        if len(out):
            ptr = out.ctypes.data
            self._write_float(self._synth.synth, len(out), ptr, 0, 2, ptr + 4, 0, 2)

    def _reset(self) -> None:
        """Silence everything and reset the controllers. The order matters: killing the voices,
        rendering a block, then resetting the pedals (resetting first releases sustained voices,
        which then keep sounding)."""
        fs = self._synth
        for key in range(128):
            fs.noteoff(0, key)
        fs.all_sounds_off(0)
        scratch = np.zeros((FLUID_BLOCK * 4, 2), dtype=np.float32)
        self._render_block(scratch)
        for cc in C.PEDAL_CONTROLLERS:
            fs.cc(0, cc, 0)
        fs.cc(0, 121, 0)  # reset all controllers
        fs.program_select(0, self._sfid, 0, 0)
        fs.all_sounds_off(0)
        self._render_block(scratch)

    def render_dry(self, perf: Performance) -> np.ndarray:
        """The synth's own output, float32 [n_samples, 2], before the room and the output gain."""
        events = midi_events(perf)
        n = perf.n_samples
        total = -(-n // FLUID_BLOCK) * FLUID_BLOCK  # whole blocks, so the next piece starts aligned
        out = np.zeros((total, 2), dtype=np.float32)
        fs = self._synth
        cur = 0
        soft = 0
        try:
            for tick, kind, a, b in events.tolist():
                s = tick_to_sample(tick)
                if s > cur:
                    self._render_block(out[cur:s])
                    cur = s
                if kind == NOTE_ON_EVENT:
                    v = b if soft < C.PEDAL_ON_THRESHOLD else max(1, int(round(b * UNA_CORDA_VELOCITY_SCALE)))
                    fs.noteon(0, a, v)
                elif kind == NOTE_OFF_EVENT:
                    fs.noteoff(0, a)
                elif a == C.SOFT_CC:
                    soft = b  # FluidSynth ignores CC67: una corda is a softer stroke (above)
                else:
                    fs.cc(0, a, b)
            self._render_block(out[cur:])
        finally:
            self._reset()
        return out[:n]

    def render(self, perf: Performance, year: int | None = None) -> np.ndarray:
        """int16 [n_samples, 2]: the performance in the room of `year` (None: no room)."""
        return to_pcm16(apply_room(self.render_dry(perf), year, self.sample_rate_hz))

    def close(self) -> None:
        if getattr(self, "_synth", None) is not None:
            self._synth.delete()
            self._synth = None


@lru_cache(maxsize=1)
def _shared_renderer(soundfont: str) -> PianoRenderer:
    return PianoRenderer(soundfont)


# ===================================================================================== corpus


@dataclass(frozen=True)
class _Piece:
    path: str  # music21 corpus path
    title: str
    qpm: tuple[float, float]  # quarter notes per minute


@dataclass(frozen=True)
class _Work:
    key: str  # the composition (split unit)
    composer: str
    category: str
    pieces: tuple[_Piece, ...]
    pedal: str  # "legato" | "light" | "sparse"


def _quartet(key: str, composer: str, name: str, folder: str, movements: Sequence[int], fast: tuple[float, float] = (104, 132),
             slow: tuple[float, float] = (56, 80)) -> _Work:
    ordinal = {1: "First", 2: "Second", 3: "Third", 4: "Fourth", 5: "Fifth"}
    pieces = tuple(
        _Piece(f"{folder}/movement{m}.mxl", f"{name}, {ordinal[m]} Movement", slow if m == 2 else fast) for m in movements
    )
    return _Work(key, composer, "quartet", pieces, "sparse")


_MOZART = "Wolfgang Amadeus Mozart"
_HAYDN = "Joseph Haydn"
_BEETHOVEN = "Ludwig van Beethoven"
_CATALOG: tuple[_Work, ...] = (
    # solo piano
    _Work("joplin/maple_leaf_rag", "Scott Joplin", "piano",
          (_Piece("joplin/maple_leaf_rag.mxl", "Maple Leaf Rag", (76, 92)),), "light"),
    _Work("chopin/op6no2", "Frédéric Chopin", "piano",
          (_Piece("chopin/mazurka06-2.krn", "Mazurka in C-sharp Minor, Op. 6, No. 2", (120, 150)),), "legato"),
    _Work("mozart/k545", _MOZART, "piano",
          (_Piece("mozart/k545/movement1_exposition.mxl", "Sonata in C Major, K. 545, First Movement", (112, 132)),), "light"),
    _Work("schumann_clara/op1", "Clara Schumann", "piano", tuple(
        _Piece(f"schumann_clara/polonaise_op1n{i}.mxl", f"Polonaise, Op. 1, No. {i}", (88, 108)) for i in range(1, 5)), "legato"),
    _Work("schoenberg/op19", "Arnold Schoenberg", "piano", (
        _Piece("schoenberg/opus19/movement2.mxl", "Six Little Piano Pieces, Op. 19, No. 2", (54, 66)),
        _Piece("schoenberg/opus19/movement6.mxl", "Six Little Piano Pieces, Op. 19, No. 6", (44, 56)),
    ), "legato"),
    _Work("cpebach/h186", "Carl Philipp Emanuel Bach", "piano",
          (_Piece("cpebach/h186.mxl", "Sonata, H. 186", (84, 104)),), "sparse"),
    _Work("bach/bwv846", "Johann Sebastian Bach", "piano",
          (_Piece("bach/bwv846.mxl", "Prelude in C Major, BWV 846", (60, 76)),), "legato"),
    # songs and chamber music with piano
    _Work("schumann_clara/op17", "Clara Schumann", "chamber",
          (_Piece("schumann_clara/opus17/movement3.xml", "Piano Trio in G Minor, Op. 17, Third Movement", (60, 72)),), "legato"),
    _Work("beach/op75no4", "Amy Beach", "chamber",
          (_Piece("beach/prayer_of_a_tired_child.musicxml", "A Prayer of a Tired Child, Op. 75, No. 4", (60, 76)),), "legato"),
    _Work("schubert/d911", "Franz Schubert", "chamber",
          (_Piece("schubert/Lindenbaum.xml", "Der Lindenbaum, D. 911, No. 5", (84, 100)),), "legato"),
    _Work("schumann_robert/op48", "Robert Schumann", "chamber",
          (_Piece("schumann_robert/dichterliebe_no2.xml", "Dichterliebe, Op. 48, No. 2", (56, 68)),), "legato"),
    _Work("handel/hwv7", "George Frideric Handel", "chamber",
          (_Piece("handel/rinaldo/Lascia_chio_pianga.mxl", "Lascia ch'io pianga, HWV 7", (54, 66)),), "light"),
    _Work("verdi/rigoletto", "Giuseppe Verdi", "chamber",
          (_Piece("verdi/laDonnaEMobile.mxl", "La donna è mobile", (120, 140)),), "light"),
    _Work("corelli/op3no1", "Arcangelo Corelli", "chamber",
          (_Piece("corelli/opus3no1/1grave.xml", "Trio Sonata, Op. 3, No. 1, First Movement", (50, 60)),), "light"),
    # string quartets, played on the piano
    _quartet("mozart/k155", _MOZART, "String Quartet in D Major, K. 155", "mozart/k155", (1, 2, 3)),
    _quartet("mozart/k156", _MOZART, "String Quartet in G Major, K. 156", "mozart/k156", (1, 2, 3, 4)),
    _quartet("mozart/k458", _MOZART, "String Quartet in B-flat Major, K. 458", "mozart/k458", (1, 2, 3, 4)),
    _quartet("mozart/k80", _MOZART, "String Quartet in G Major, K. 80", "mozart/k80", (1, 2, 3, 4)),
    _quartet("haydn/op1no1", _HAYDN, "String Quartet in B-flat Major, Op. 1, No. 1", "haydn/opus1no1", (1, 2, 3, 4, 5)),
    _quartet("haydn/op74no1", _HAYDN, "String Quartet in C Major, Op. 74, No. 1", "haydn/opus74no1", (1, 2, 3, 4)),
    _quartet("beethoven/op18no1", _BEETHOVEN, "String Quartet in F Major, Op. 18, No. 1", "beethoven/opus18no1", (1, 2, 3, 4)),
    _quartet("beethoven/op59no1", _BEETHOVEN, "String Quartet in F Major, Op. 59, No. 1", "beethoven/opus59no1", (1, 2, 3, 4)),
    _quartet("beethoven/op59no2", _BEETHOVEN, "String Quartet in E Minor, Op. 59, No. 2", "beethoven/opus59no2", (1, 2, 3, 4)),
    _quartet("beethoven/op59no3", _BEETHOVEN, "String Quartet in C Major, Op. 59, No. 3", "beethoven/opus59no3", (1, 2, 3, 4)),
    _quartet("schumann_robert/op41no1", "Robert Schumann", "String Quartet in A Minor, Op. 41, No. 1",
             "schumann_robert/opus41no1", (1, 2, 3, 4, 5)),
)
_CATEGORY_WEIGHTS: dict[str, float] = {"piano": 0.34, "chamber": 0.14, "quartet": 0.24, "chorale": 0.22, "madrigal": 0.06}


@lru_cache(maxsize=1)
def _works() -> dict[str, tuple[_Work, ...]]:
    """The catalog by category, with the Bach chorales and Monteverdi madrigals that the installed
    music21 corpus lists (sorted, so the choice is deterministic for a corpus)."""
    from music21 import corpus

    def rel(p: Any) -> str:
        s = str(p).replace("\\", "/")
        return s.split("/corpus/", 1)[1] if "/corpus/" in s else s

    chorales = []
    for p in sorted(rel(p) for p in corpus.getComposer("bach")):
        m = re.fullmatch(r"bach/bwv(\d+)(?:\.(\d+))?\.mxl", p)
        if not m or (m.group(2) is None and not 250 <= int(m.group(1)) <= 438):
            continue
        number = m.group(1) + (f".{m.group(2)}" if m.group(2) else "")
        chorales.append(_Work(f"bach/bwv{number}", "Johann Sebastian Bach", "chorale",
                              (_Piece(p, f"Chorale, BWV {number}", (60, 80)),), "legato"))
    madrigals = []
    for p in sorted(rel(p) for p in corpus.getComposer("monteverdi")):
        m = re.fullmatch(r"monteverdi/madrigal\.(\d+)\.(\d+)\.mxl", p)
        if m:
            madrigals.append(_Work(f"monteverdi/{m.group(1)}.{m.group(2)}", "Claudio Monteverdi", "madrigal",
                                   (_Piece(p, f"Madrigal, Book {m.group(1)}, No. {m.group(2)}", (88, 112)),), "light"))
    by: dict[str, list[_Work]] = {c: [] for c in _CATEGORY_WEIGHTS}
    for w in _CATALOG:
        by[w.category].append(w)
    by["chorale"] = chorales
    by["madrigal"] = madrigals
    return {c: tuple(ws) for c, ws in by.items() if ws}


@dataclass
class _Score:
    """The notes of a corpus file in quarter notes (ql), all parts merged."""

    on: np.ndarray  # ql
    dur: np.ndarray  # ql (0 for grace notes)
    pitch: np.ndarray
    part: np.ndarray
    grace: np.ndarray  # bool
    fermata: np.ndarray  # bool
    n_parts: int
    bar_on: np.ndarray  # ql of each bar line
    bar_len: np.ndarray
    bar_beat: np.ndarray  # ql per beat in each bar
    dyn_on: np.ndarray  # ql of dynamic markings
    dyn_level: np.ndarray  # velocity level, NaN for accents only
    dyn_accent: np.ndarray  # bool: sf, fz, ...


_DYNAMIC_LEVELS = {"pppp": 20, "ppp": 28, "pp": 38, "p": 50, "mp": 62, "mf": 72, "f": 86, "ff": 98, "fff": 108, "ffff": 116,
                   "fp": 50, "sfp": 50, "fzp": 50}
_DYNAMIC_ACCENTS = {"sf", "sfz", "fz", "rf", "rfz", "sffz", "fp", "sfp", "fzp"}


CACHE_ENV: str = "MIDI2WAVE_CACHE_DIR"
_SCORE_CACHE_VERSION = 1


def _score_cache_file(path: str) -> Path | None:
    """Where the parsed notes of a corpus file are kept between runs: $MIDI2WAVE_CACHE_DIR (or
    $XDG_CACHE_HOME/midi2wave, ~/.cache/midi2wave)/demo-scores-v1/music21-<version>/. None if
    MIDI2WAVE_CACHE_DIR is "off"."""
    root = os.environ.get(CACHE_ENV)
    if root and root.lower() in ("0", "off", "none", "false"):
        return None
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "midi2wave")
    import music21

    name = re.sub(r"[^A-Za-z0-9._-]", "_", path) + ".npz"
    return Path(root) / f"demo-scores-v{_SCORE_CACHE_VERSION}" / f"music21-{music21.__version__}" / name


@lru_cache(maxsize=64)
def _load_score(path: str) -> _Score:
    """The merged notes of a corpus file: from the disk cache, else parsed with music21 (0.05-3 s
    a file) and cached. The cache holds exactly what parsing gives, so it never changes a dataset."""
    cache = _score_cache_file(path)
    if cache is not None and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                fields = {k: z[k] for k in z.files}
            fields["n_parts"] = int(fields["n_parts"])
            return _Score(**fields)
        except Exception:  # unreadable or from another layout: parse again
            pass
    score = _parse_score(path)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            np.savez(buf, **{k: np.asarray(v) for k, v in score.__dict__.items()})
            _write_atomic(cache, buf.getvalue())
        except OSError:
            pass  # a read-only home: no cache
    return score


def _parse_score(path: str) -> _Score:
    """Parse a corpus file with music21 and merge its parts."""
    from music21 import corpus, dynamics, expressions, stream

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = corpus.parse(path, forceSource=True)
        parts = list(s.parts) or [s]
        rows: list[tuple[float, float, int, int, bool, bool]] = []
        for k, part in enumerate(parts):
            for el in part.stripTies().flatten().notes:
                try:
                    pitches = [int(p.midi) for p in el.pitches]
                except AttributeError:
                    continue
                ferm = any(isinstance(e, expressions.Fermata) for e in el.expressions)
                grace = bool(el.duration.isGrace)
                q, d = float(el.offset), float(el.duration.quarterLength)
                rows.extend((q, d, p, k, grace, ferm) for p in pitches)
        measures = list(parts[0].getElementsByClass(stream.Measure))
        end = float(s.highestTime)
        bar_on, bar_beat = [], []
        beat = 1.0
        for m in measures:
            if m.timeSignature is not None:
                beat = float(m.timeSignature.beatDuration.quarterLength)
            bar_on.append(float(m.offset))
            bar_beat.append(beat)
        if len(bar_on) < 2:
            bar_on = list(np.arange(0.0, max(end, 4.0), 4.0))
            bar_beat = [1.0] * len(bar_on)
        dyn = []
        for d in s.flatten().getElementsByClass(dynamics.Dynamic):
            v = str(d.value)
            if v in _DYNAMIC_LEVELS or v in _DYNAMIC_ACCENTS:
                dyn.append((float(d.offset), float(_DYNAMIC_LEVELS.get(v, np.nan)), v in _DYNAMIC_ACCENTS))
    rows.sort(key=lambda r: (r[0], r[2], r[3]))
    a = np.array(rows, dtype=np.float64).reshape(-1, 6)
    bar_on_a = np.array(bar_on, dtype=np.float64)
    bar_len = np.diff(np.append(bar_on_a, max(end, bar_on_a[-1] + bar_beat[-1])))
    dyn.sort()
    da = np.array(dyn, dtype=np.float64).reshape(-1, 3)
    return _Score(
        on=a[:, 0], dur=a[:, 1], pitch=a[:, 2].astype(np.int64), part=a[:, 3].astype(np.int64),
        grace=a[:, 4].astype(bool), fermata=a[:, 5].astype(bool), n_parts=len(parts),
        bar_on=bar_on_a, bar_len=np.maximum(bar_len, 1e-3), bar_beat=np.array(bar_beat, dtype=np.float64),
        dyn_on=da[:, 0], dyn_level=da[:, 1], dyn_accent=da[:, 2].astype(bool),
    )


def _choose_qpm(score: _Score, piece: _Piece, rng: np.random.Generator) -> float:
    """A tempo in the piece's range, slowed down where its fastest common notes would exceed
    ~13 onsets per second."""
    qpm = rng.uniform(*piece.qpm)
    u = np.unique(score.on[~score.grace])
    if len(u) > 8:
        fast_ql = float(np.percentile(np.diff(u), 10))
        if fast_ql > 0:
            qpm = min(qpm, fast_ql * 60.0 * 13.0)
    return max(qpm, 30.0)


def _perform(score: _Score, bar0: int, bar1: int, qpm: float, pedal_style: str, rng: np.random.Generator,
             lead_s: float, ring_s: float, **meta: Any) -> Performance:
    """Humanised performance of bars [bar0, bar1) of a score."""
    q0 = float(score.bar_on[bar0])
    q1 = float(score.bar_on[bar1 - 1] + score.bar_len[bar1 - 1])
    sel = (score.on >= q0 - 1e-9) & (score.on < q1 - 1e-9)
    on_q, dur_q, pitch = score.on[sel], score.dur[sel], score.pitch[sel]
    part, grace, ferm = score.part[sel], score.grace[sel], score.fermata[sel]
    bars_on = score.bar_on[bar0:bar1]
    bars_len = score.bar_len[bar0:bar1]
    bars_beat = score.bar_beat[bar0:bar1]

    # --- tempo map: t(q) on a fine grid
    dq = 1.0 / 48.0
    grid = np.arange(q0, q1 + 16.0 + dq, dq)
    bar_ql = float(np.median(bars_len))
    factor = np.ones_like(grid)
    amp = rng.uniform(0.02, 0.05)
    wobble = np.zeros_like(grid)
    for period_bars in (2.0, 4.0, 8.0):
        wobble += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * (grid - q0) / (period_bars * bar_ql) + rng.uniform(0, 2 * np.pi))
    factor *= 1.0 + amp * wobble / 2.0
    phrase_bars = 4 if bar_ql <= 3.0 else 2
    phrase_bars = phrase_bars * 2 if bar_ql <= 1.5 else phrase_bars
    bar_idx = np.clip(np.searchsorted(bars_on, grid, side="right") - 1, 0, len(bars_on) - 1)
    pos_in_bar = np.clip((grid - bars_on[bar_idx]) / bars_len[bar_idx], 0.0, 1.0)
    phrase_end = ((bar_idx + 1) % phrase_bars == 0) & (grid < q1)
    rit = rng.uniform(0.04, 0.12)
    factor *= np.where(phrase_end, 1.0 - rit * pos_in_bar**2, 1.0)
    last = (bar_idx == len(bars_on) - 1) | (grid >= q1)
    final_rit = rng.uniform(0.12, 0.3)
    factor *= np.where(last, 1.0 - final_rit * np.clip((grid - bars_on[-1]) / bars_len[-1], 0.0, 1.0) ** 1.5, 1.0)
    for q, d in zip(on_q[ferm], dur_q[ferm]):
        factor[(grid >= q) & (grid < q + max(d, 0.5))] = np.minimum(
            factor[(grid >= q) & (grid < q + max(d, 0.5))], 1.0 / rng.uniform(1.6, 2.4))
    seconds = dq * 60.0 / (qpm * np.maximum(factor, 0.3))
    tcum = np.concatenate([[0.0], np.cumsum(seconds)[:-1]])

    def t_of(q: np.ndarray) -> np.ndarray:
        return np.interp(q, grid, tcum)

    # --- voices: melody (top of the first part), bass (bottom of the last part)
    n = len(on_q)
    melody = np.zeros(n, dtype=bool)
    bass = np.zeros(n, dtype=bool)
    first, lastp = part.min(initial=0), part.max(initial=0)
    key = np.round(on_q * 48).astype(np.int64)
    for grp in np.unique(key):
        idx = np.nonzero((key == grp) & ~grace)[0]
        top = idx[part[idx] == first]
        if len(top):
            melody[top[np.argmax(pitch[top])]] = True
        bot = idx[part[idx] == lastp]
        if len(bot) and lastp != first:
            bass[bot[np.argmin(pitch[bot])]] = True

    # --- velocities
    base = rng.uniform(58, 78)
    if len(score.dyn_on) and np.isfinite(score.dyn_level).any():
        lv_on = score.dyn_on[np.isfinite(score.dyn_level)]
        lv = score.dyn_level[np.isfinite(score.dyn_level)]
        i = np.searchsorted(lv_on, on_q, side="right") - 1
        level = np.where(i >= 0, lv[np.clip(i, 0, len(lv) - 1)], base)
        level = 0.8 * level + 0.2 * base
    else:
        level = np.full(n, base)
        # no markings: terraced dynamics per phrase
        nb = max(1, len(bars_on) // phrase_bars + 1)
        terr = rng.normal(0.0, 9.0, size=nb)
        level = level + terr[np.clip(np.searchsorted(bars_on, on_q, side="right") - 1, 0, len(bars_on) - 1) // phrase_bars]
    note_bar = np.clip(np.searchsorted(bars_on, on_q, side="right") - 1, 0, len(bars_on) - 1)
    phrase_pos = ((note_bar % phrase_bars) + (on_q - bars_on[note_bar]) / bars_len[note_bar]) / phrase_bars
    arcs = rng.uniform(6.0, 18.0, size=len(bars_on) // phrase_bars + 2)
    peak = rng.uniform(0.5, 0.75)
    shape = np.where(phrase_pos < peak, phrase_pos / peak, (1 - phrase_pos) / (1 - peak))
    vel = level + arcs[note_bar // phrase_bars] * (shape - 0.5)
    vel += rng.uniform(-8.0, 8.0) * (on_q - q0) / max(q1 - q0, 1e-6)  # a long crescendo or diminuendo
    beat_pos = (on_q - bars_on[note_bar]) / bars_beat[note_bar]
    vel += np.where(np.abs(beat_pos) < 1e-6, 4.0, np.where(np.abs(beat_pos - np.round(beat_pos)) < 1e-6, 1.5, 0.0))
    vel += np.where(melody, rng.uniform(5.0, 10.0), np.where(bass, 3.0, -3.0 if score.n_parts > 1 else 0.0))
    if len(score.dyn_on) and score.dyn_accent.any():
        acc_on = score.dyn_on[score.dyn_accent]
        near = np.abs(on_q[:, None] - acc_on[None, :]).min(axis=1) < 1e-3
        vel += np.where(near, 14.0, 0.0)
    vel += rng.normal(0.0, 4.5, size=n)
    vel = np.where(grace, vel - 8.0, vel)

    # --- timing and articulation
    onset = t_of(on_q) + rng.normal(0.0, rng.uniform(0.004, 0.011), size=n)
    onset -= np.where(melody, rng.uniform(0.004, 0.014), 0.0)
    legato = rng.uniform(0.9, 1.02)
    staccato_p = {"legato": 0.05, "light": 0.25, "sparse": 0.3}[pedal_style]
    short = (dur_q <= 0.5) & (rng.random(n) < staccato_p)
    artic = np.where(short, rng.uniform(0.45, 0.65, size=n), legato + rng.normal(0.0, 0.03, size=n))
    offset = t_of(on_q + dur_q * artic) + rng.normal(0.0, 0.008, size=n)
    # grace notes: just before their main note, the last one closest
    gidx = np.nonzero(grace)[0]
    for i in gidx:
        k = int(np.sum(grace & (key == key[i]) & (part == part[i]) & (np.arange(n) > i)))
        onset[i] = t_of(on_q[i]) - 0.065 * (k + 1) + rng.normal(0.0, 0.006)
        offset[i] = onset[i] + 0.06
    t_end = float(t_of(np.array([q1]))[0])
    offset = np.where(offset > t_end, t_end + ring_s * rng.uniform(0.7, 1.0, size=n), offset)
    offset = np.maximum(offset, onset + 0.04)

    shift = lead_s - float(onset.min()) if n else lead_s
    b = _Builder(rng)
    for o, f, p, v in zip(onset + shift, offset + shift, pitch, vel):
        b.note(o, f, int(p), v)
    b.notes.extend(_octave_doubling(score, pitch, bass, onset + shift, offset + shift, vel, rng))

    # --- sustain pedal
    groups = np.unique(key[~grace]) if n else np.zeros(0, dtype=np.int64)
    group_t = {g: float(np.min(onset[(key == g) & ~grace]) + shift) for g in groups}
    group_q = {g: g / 48.0 for g in groups}
    style = pedal_style
    if style == "sparse" and rng.random() < 0.35:
        style = "none"
    if style == "legato" or (style == "light" and rng.random() < 0.5):
        min_gap = rng.uniform(0.3, 0.6) if style == "legato" else rng.uniform(0.6, 1.2)
        prev_bass: int | None = None
        last_change = -10.0
        for g in groups:
            gq = group_q[g]
            gb = int(np.clip(np.searchsorted(bars_on, gq, side="right") - 1, 0, len(bars_on) - 1))
            bp = (gq - bars_on[gb]) / bars_beat[gb]
            on_beat = abs(bp - round(bp)) < 1e-6
            idx = np.nonzero((key == g) & ~grace)[0]
            low = int(pitch[idx].min())
            downbeat = abs(bp) < 1e-6
            if on_beat and (low != prev_bass or downbeat) and group_t[g] - last_change >= min_gap:
                b.change(group_t[g])
                last_change = group_t[g]
            if on_beat:
                prev_bass = low
    elif style in ("light", "sparse"):
        for k in range(len(bars_on)):
            if rng.random() < (0.35 if style == "light" else 0.15):
                gs = [g for g in groups if bars_on[k] - 1e-9 <= group_q[g] < bars_on[k] + bars_len[k] - 1e-9]
                if len(gs) < 2:
                    continue
                t0 = group_t[gs[0]] + rng.uniform(0.05, 0.15)
                t1 = group_t[gs[-1]] + rng.uniform(0.05, 0.2)
                if t1 - t0 > 0.4:
                    b.press(t0)
                    b.release(t1)
    t_final = t_end + shift + ring_s
    if b.down(C.SUSTAIN_CC):
        b.release(t_final - rng.uniform(0.0, 0.2))

    # --- una corda in soft passages
    if n and (np.median(level) < 60 or rng.random() < 0.15) and rng.random() < 0.6:
        t_soft0 = max(0.05, lead_s - rng.uniform(0.1, 0.4))
        b.press(t_soft0, C.SOFT_CC, int(rng.integers(70, 128)))
        if rng.random() < 0.5:
            b.release(t_soft0 + (t_final - t_soft0) * rng.uniform(0.4, 0.9), C.SOFT_CC)
        else:
            b.release(t_final, C.SOFT_CC)
    return b.performance(source="corpus", **meta)


def _octave_doubling(score: _Score, pitch: np.ndarray, bass: np.ndarray, onset: np.ndarray, offset: np.ndarray,
                     vel: np.ndarray, rng: np.random.Generator) -> list[tuple[float, float, int, int]]:
    """Pianists often double a chorale's or quartet's bass an octave lower."""
    if score.n_parts < 3 or rng.random() > 0.35:
        return []
    out = []
    for o, f, p, v, is_bass in zip(onset, offset, pitch, vel, bass):
        if is_bass and p - 12 >= C.MIN_MIDI_PITCH:
            out.append((float(o + rng.normal(0.0, 0.004)), float(f), int(p - 12), int(np.clip(round(v - 6), 1, 127))))
    return out


class _CorpusPicker:
    """Chooses corpus excerpts: a work by category weight (unused works first), a piece, and a run
    of bars not used before."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.works = _works()
        self.used: dict[str, set[int]] = {}  # path -> bars used
        self.exhausted: set[str] = set()
        self.used_works: set[str] = set()

    def excerpt(self, target_s: float, index: int, seed: int) -> Performance | None:
        rng = self.rng
        cats = [c for c in _CATEGORY_WEIGHTS if c in self.works]
        for _ in range(40):
            w = np.array([_CATEGORY_WEIGHTS[c] for c in cats])
            cat = cats[int(rng.choice(len(cats), p=w / w.sum()))]
            works = [wk for wk in self.works[cat] if any(p.path not in self.exhausted for p in wk.pieces)]
            if not works:
                cats.remove(cat)
                if not cats:
                    return None
                continue
            fresh = [wk for wk in works if wk.key not in self.used_works]
            pool = fresh if fresh and rng.random() < 0.85 else works
            work = pool[int(rng.integers(len(pool)))]
            pieces = [p for p in work.pieces if p.path not in self.exhausted]
            piece = pieces[int(rng.integers(len(pieces)))]
            perf = self._try(work, piece, target_s, np.random.default_rng([seed, 3, index]))
            if perf is not None:
                self.used_works.add(work.key)
                return perf
        return None

    def _try(self, work: _Work, piece: _Piece, target_s: float, rng: np.random.Generator) -> Performance | None:
        try:
            score = _load_score(piece.path)
        except Exception:  # a corpus file this music21 cannot read: skip it
            self.exhausted.add(piece.path)
            return None
        if len(score.on) == 0 or (work.category == "chorale" and score.n_parts != 4):
            self.exhausted.add(piece.path)
            return None
        qpm = _choose_qpm(score, piece, rng)
        lead = rng.uniform(0.3, 1.0)
        ring = rng.uniform(0.8, 1.6)
        tail = rng.uniform(1.4, 2.0)
        music_s = max(target_s - lead - ring - tail, 2.0)
        bar_s = score.bar_len * 60.0 / qpm * 1.06
        used = self.used.setdefault(piece.path, set())
        nb = len(score.bar_on)
        # candidate runs of unused bars long enough for music_s (within 25 %)
        starts = []
        for s0 in range(nb):
            if s0 in used:
                continue
            acc, e = 0.0, s0
            while e < nb and e not in used and acc < music_s:
                acc += bar_s[e]
                e += 1
            if acc >= 0.8 * music_s:
                starts.append((s0, e))
        if not starts:
            if not used:
                starts = [(0, nb)]  # a short piece: all of it
            else:
                self.exhausted.add(piece.path)
                return None
        # prefer phrase beginnings (bar 0 or every 4th bar)
        good = [s for s in starts if s[0] % 4 == 0] or starts
        s0, e = good[int(rng.integers(len(good)))]
        used.update(range(s0, e))
        if len(used) >= nb - 2:
            self.exhausted.add(piece.path)
        return _perform(score, s0, e, qpm, work.pedal, rng, lead, ring,
                        composer=work.composer, title=piece.title, work=work.key, tail_s=tail)


def corpus_excerpt(path: str, seconds: float = 15.0, seed: int = 0, start_bar: int = 0,
                   composer: str = "", title: str = "") -> Performance:
    """A humanised performance of about `seconds` from bar `start_bar` of a music21 corpus file
    (e.g. "chopin/mazurka06-2.krn"); catalog pieces get their tempo range and pedalling."""
    rng = np.random.default_rng([seed, 4])
    work = next((w for ws in _works().values() for w in ws if any(p.path == path for p in w.pieces)), None)
    piece = next((p for p in work.pieces if p.path == path), None) if work else _Piece(path, title or path, (72, 100))
    score = _load_score(path)
    qpm = _choose_qpm(score, piece, rng)
    lead, ring, tail = 0.5, 1.2, 1.5
    music_s = max(seconds - lead - ring, 1.0)
    bar_s = score.bar_len * 60.0 / qpm * 1.06
    start_bar = int(np.clip(start_bar, 0, len(score.bar_on) - 1))
    acc, e = 0.0, start_bar
    while e < len(score.bar_on) and acc < music_s:
        acc += bar_s[e]
        e += 1
    return _perform(score, start_bar, e, qpm, work.pedal if work else "legato", rng, lead, ring,
                    composer=composer or (work.composer if work else ""), title=title or piece.title,
                    work=work.key if work else path, tail_s=tail)


# ============================================================================ generated studies

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 11)
_PROGRESSIONS = ((0, 3, 4, 0), (0, 5, 3, 4), (0, 3, 6, 2, 5, 1, 4, 0), (5, 3, 0, 4), (0, 4, 5, 3, 0, 3, 4, 0), (1, 4, 0, 0))


def _scale_pitches(tonic: int, mode: Sequence[int], lo: int = C.MIN_MIDI_PITCH, hi: int = C.MAX_MIDI_PITCH) -> np.ndarray:
    return np.array([p for p in range(lo, hi + 1) if (p - tonic) % 12 in mode])


def _chord(tonic: int, mode: Sequence[int], degree: int, seventh: bool = False) -> list[int]:
    """Pitch classes (as offsets from C) of a diatonic chord."""
    steps = (0, 2, 4, 6) if seventh else (0, 2, 4)
    return [(tonic + mode[(degree + s) % 7]) % 12 for s in steps]


def _voicing(pcs: Sequence[int], bass_oct: int, top_lo: int, n_top: int) -> list[int]:
    """Bass (root, and its octave sometimes) plus `n_top` chord tones from `top_lo` upwards."""
    notes = [12 * bass_oct + pcs[0]]
    p = top_lo
    while len(notes) < n_top + 1 and p <= C.MAX_MIDI_PITCH:
        if p % 12 in pcs:
            notes.append(p)
        p += 1
    return notes


class _Study:
    """Generated material, block by block (each block ends with keys and pedals up)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.b = _Builder(rng)
        self.names: list[str] = []

    def _key(self) -> tuple[int, tuple[int, ...]]:
        return int(self.rng.integers(12)), (_MAJOR if self.rng.random() < 0.6 else _MINOR)

    def _vel_ramp(self, n: int, lo: int | None = None, hi: int | None = None) -> np.ndarray:
        rng = self.rng
        a = int(rng.integers(1, 60)) if lo is None else lo
        z = int(rng.integers(70, 128)) if hi is None else hi
        v = np.linspace(a, z, n)
        return v[::-1] if rng.random() < 0.4 else v

    def coverage(self, t: float) -> float:
        """All 88 keys, up then down, through every velocity 1..127 (each key soft and loud)."""
        rng = self.rng
        keys = list(range(C.MIN_MIDI_PITCH, C.MAX_MIDI_PITCH + 1))
        seq = keys + keys[::-1]
        vel = np.rint(np.linspace(1, C.MAX_MIDI_VELOCITY, len(seq))).astype(int)
        ioi = 1.0 / rng.uniform(15.0, 17.0)
        for i, (p, v) in enumerate(zip(seq, vel)):
            o = t + i * ioi + rng.normal(0.0, 0.003)
            self.b.note(o, o + ioi * rng.uniform(1.1, 1.6), p, v)
        self.names.append("full-range sweep")
        return t + len(seq) * ioi + 0.3

    def scales(self, t: float, budget: float) -> float:
        rng = self.rng
        tonic, mode = self._key()
        chromatic = rng.random() < 0.25
        pool = np.arange(C.MIN_MIDI_PITCH, C.MAX_MIDI_PITCH + 1) if chromatic else _scale_pitches(tonic, mode)
        rate = rng.uniform(6.0, 16.0)
        n_max = int(budget * rate)
        span = int(min(len(pool), max(8, rng.integers(len(pool) // 4, len(pool) + 1)), max(8, n_max)))
        lo = int(rng.integers(0, len(pool) - span + 1))
        seq = list(pool[lo: lo + span])
        if rng.random() < 0.5:
            seq = seq + seq[-2::-1] if rng.random() < 0.5 and 2 * span <= n_max else seq[::-1]
        seq = seq[: max(8, n_max)]
        vel = self._vel_ramp(len(seq))
        stacc = rng.random() < 0.3
        octaves = rng.random() < 0.3
        pedal = rng.random() < 0.25
        if pedal:
            self.b.press(t - 0.05)
        for i, (p, v) in enumerate(zip(seq, vel)):
            o = t + i / rate + rng.normal(0.0, 0.004)
            d = (0.5 if stacc else rng.uniform(1.0, 1.25)) / rate
            self.b.note(o, o + d, int(p), v + rng.normal(0, 3))
            if octaves and p - 12 >= C.MIN_MIDI_PITCH:
                self.b.note(o + rng.normal(0.0, 0.004), o + d, int(p) - 12, v - 4 + rng.normal(0, 3))
        end = t + len(seq) / rate
        if pedal:
            self.b.release(end + 0.2)
        self.names.append("chromatic runs" if chromatic else "scales")
        return end + 0.5

    def arpeggios(self, t: float, budget: float) -> float:
        rng = self.rng
        tonic, mode = self._key()
        prog = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
        rate = rng.uniform(7.0, 13.0)
        octaves = int(rng.integers(2, 5))
        start = int(rng.integers(24, 60))
        base_v = rng.uniform(35, 95)
        for j, deg in enumerate(prog):
            pcs = _chord(tonic, mode, deg, seventh=rng.random() < 0.2)
            tones = [p for p in range(start, min(start + 12 * octaves, C.MAX_MIDI_PITCH) + 1) if p % 12 in pcs]
            seq = tones + tones[-2:0:-1] if rng.random() < 0.5 else tones
            if t + len(seq) / rate > t + budget and j > 0:
                break
            self.b.change(t)
            for i, p in enumerate(seq):
                o = t + i / rate + rng.normal(0.0, 0.005)
                v = base_v + 15 * math.sin(math.pi * i / max(len(seq) - 1, 1)) + rng.normal(0, 4)
                self.b.note(o, o + rng.uniform(0.8, 1.2) / rate, p, v)
            t += len(seq) / rate
            budget -= len(seq) / rate
            base_v = float(np.clip(base_v + rng.normal(0, 10), 20, 110))
        self.b.release(t + rng.uniform(0.3, 0.8))
        self.names.append("arpeggios")
        return t + 1.0

    def chords(self, t: float, budget: float) -> float:
        rng = self.rng
        tonic, mode = self._key()
        prog = list(_PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))])
        pedal = rng.random() < 0.8
        soft = rng.random() < 0.2
        if soft:
            self.b.press(t - 0.3, C.SOFT_CC, int(rng.integers(80, 128)))
        ramp = rng.random() < 0.4
        vels = self._vel_ramp(len(prog), 5, 127) if ramp else rng.uniform(10, 127, size=len(prog))
        end = t
        for deg, v in zip(prog, vels):
            d = rng.uniform(0.5, 1.8)
            if end + d > t + budget and end > t:
                break
            pcs = _chord(tonic, mode, deg, seventh=rng.random() < 0.25)
            notes = _voicing(pcs, int(rng.integers(2, 4)), int(rng.integers(52, 67)), int(rng.integers(3, 6)))
            if rng.random() < 0.4 and notes[0] - 12 >= C.MIN_MIDI_PITCH:
                notes.append(notes[0] - 12)
            if pedal:
                self.b.change(end)
            hold = d * (rng.uniform(0.2, 0.5) if pedal else rng.uniform(0.7, 0.95))
            for p in notes:
                o = end + rng.normal(0.0, 0.006)
                self.b.note(o, end + hold, p, v + rng.normal(0, 4) + (4 if p == max(notes) else 0))
            end += d
        if pedal:
            self.b.release(end + rng.uniform(0.5, 1.5))
            end += 1.6
        if soft:
            self.b.release(end, C.SOFT_CC)
        self.names.append("pedalled chords" if pedal else "chords")
        return end + 0.4

    def repeated(self, t: float, budget: float) -> float:
        rng = self.rng
        kind = rng.choice(["repeated", "trill", "tremolo"])
        p = int(rng.integers(30, 100))
        q = p + (int(rng.choice([1, 2])) if kind == "trill" else 12 if kind == "tremolo" else 0)
        q = min(q, C.MAX_MIDI_PITCH)
        rate = rng.uniform(6.0, 12.0) if kind == "repeated" else rng.uniform(10.0, 18.0)
        n = int(min(budget, rng.uniform(1.5, 4.0)) * rate)
        vel = self._vel_ramp(max(n, 2))
        for i in range(n):
            o = t + i / rate + rng.normal(0.0, 0.004)
            key = p if (i % 2 == 0 or kind == "repeated") else q
            self.b.note(o, o + rng.uniform(0.5, 0.9) / rate, key, vel[i] + rng.normal(0, 3))
        self.names.append({"repeated": "repeated notes", "trill": "trills", "tremolo": "tremolos"}[str(kind)])
        return t + n / rate + 0.5

    def decays(self, t: float, budget: float) -> float:
        """Notes and chords left to ring under the pedal, next to the same unpedalled."""
        rng = self.rng
        end = t + budget
        while t < end - 1.0:
            p = int(rng.integers(C.MIN_MIDI_PITCH, C.MAX_MIDI_PITCH - 12))
            notes = [p] if rng.random() < 0.5 else [p, p + int(rng.choice([3, 4])), p + 7, p + 12]
            notes = [x for x in notes if x <= C.MAX_MIDI_PITCH]
            v = rng.integers(15, 128)
            mode = rng.choice(["pedal", "held", "short"], p=[0.5, 0.25, 0.25])
            if mode == "pedal":
                self.b.press(t - 0.2)
                ring = rng.uniform(1.5, 4.0)
                for x in notes:
                    self.b.note(t, t + rng.uniform(0.1, 0.3), x, v + rng.normal(0, 3))
                self.b.release(t + ring)
                t += ring + 0.5
            elif mode == "held":
                hold = rng.uniform(1.0, 3.0)
                for x in notes:
                    self.b.note(t, t + hold, x, v + rng.normal(0, 3))
                t += hold + 0.5
            else:
                for x in notes:
                    self.b.note(t, t + rng.uniform(0.1, 0.3), x, v + rng.normal(0, 3))
                t += 0.9
        self.names.append("pedalled decays")
        return t + 0.2

    def velocity_ramp(self, t: float, budget: float) -> float:
        rng = self.rng
        n = int(rng.integers(8, 17))
        step = rng.uniform(0.22, 0.45)
        n = max(4, min(n, int(budget / step)))
        p = int(rng.integers(28, 100))
        notes = [p] if rng.random() < 0.5 else [p, p + 4, p + 7] if rng.random() < 0.5 else [p, p + 12]
        notes = [x for x in notes if x <= C.MAX_MIDI_PITCH]
        vel = self._vel_ramp(n, int(rng.integers(1, 20)), int(rng.integers(110, 128)))
        for i in range(n):
            o = t + i * step
            for x in notes:
                self.b.note(o + rng.normal(0.0, 0.003), o + step * 0.7, x, vel[i])
        self.names.append("velocity ramps")
        return t + n * step + 0.5

    def texture(self, t: float, budget: float) -> float:
        """Melody over an Alberti or waltz accompaniment, phrased and pedalled."""
        rng = self.rng
        tonic, mode = self._key()
        prog = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
        beat = 60.0 / rng.uniform(72, 126)
        waltz = rng.random() < 0.4
        beats_per_chord = 3 if waltz else 4
        mel_pool = _scale_pitches(tonic, mode, 60, 88)
        m = int(rng.integers(len(mel_pool) // 3, 2 * len(mel_pool) // 3))
        level = rng.uniform(40, 95)
        soft = level < 55 and rng.random() < 0.5
        if soft:
            self.b.press(t - 0.3, C.SOFT_CC, int(rng.integers(80, 128)))
        bass_oct = int(rng.integers(3, 5))
        total = len(prog)
        for j, deg in enumerate(prog):
            if j > 0 and t + beats_per_chord * beat > t + budget:
                break
            pcs = _chord(tonic, mode, deg)
            self.b.change(t)
            arc = 12 * math.sin(math.pi * (j + 0.5) / total)
            # accompaniment
            root = 12 * bass_oct + pcs[0] - 12
            third = 12 * bass_oct + pcs[1]
            fifth = 12 * bass_oct + pcs[2]
            pattern = [root, fifth, third, fifth, root, fifth, third, fifth] if not waltz else [root, third, third]
            sub = beat / 2 if not waltz else beat
            for i, p in enumerate(pattern):
                o = t + i * sub + rng.normal(0, 0.006)
                self.b.note(o, o + sub * (3.0 if waltz and i == 0 else 0.95), p, level - 10 + arc + rng.normal(0, 4))
                if waltz and i > 0:
                    self.b.note(o, o + sub * 0.7, third + 4 if (third + 4) % 12 in pcs else fifth, level - 12 + arc)
            # melody
            mt = t
            while mt < t + beats_per_chord * beat - 1e-6:
                d = beat * float(rng.choice([0.5, 1.0, 1.0, 2.0]))
                d = min(d, t + beats_per_chord * beat - mt)
                m = int(np.clip(m + rng.integers(-2, 3), 0, len(mel_pool) - 1))
                o = mt + rng.normal(0, 0.006) - 0.008
                self.b.note(o, o + d * 0.95, int(mel_pool[m]), level + 6 + arc + rng.normal(0, 4))
                mt += d
            t += beats_per_chord * beat
        self.b.release(t + rng.uniform(0.3, 0.8))
        if soft:
            self.b.release(t + 0.9, C.SOFT_CC)
        self.names.append("melody and accompaniment")
        return t + 1.0


def generated_study(seconds: float, seed: int = 0, number: int = 1, coverage: bool = False) -> Performance:
    """A generated study of about `seconds` (audio, tail included). `coverage`: it opens with
    every key of the piano through every velocity 1..127."""
    return _generated_study(seconds, np.random.default_rng([seed, 5, number]), number, coverage)


def _generated_study(seconds: float, rng: np.random.Generator, number: int, coverage: bool) -> Performance:
    s = _Study(rng)
    tail = rng.uniform(1.4, 2.0)
    t = rng.uniform(0.3, 0.8)
    end = seconds - tail
    if coverage:
        t = s.coverage(t)
    blocks: list[tuple[Callable[[float, float], float], float]] = [
        (s.scales, 0.18), (s.arpeggios, 0.16), (s.chords, 0.18), (s.repeated, 0.1),
        (s.decays, 0.12), (s.velocity_ramp, 0.1), (s.texture, 0.16),
    ]
    weights = np.array([w for _, w in blocks])
    while end - t > 2.5:
        fn = blocks[int(rng.choice(len(blocks), p=weights / weights.sum()))][0]
        t = fn(t, min(end - t, rng.uniform(4.0, 14.0)))
    names = list(dict.fromkeys(s.names))
    title = f"Study No. {number}: " + ", ".join(n[0].upper() + n[1:] if i == 0 else n for i, n in enumerate(names))
    return s.b.performance(composer=GENERATED_COMPOSER, title=title, work=f"generated/study{number}",
                           source="generated", tail_s=tail)


# ========================================================================= planning the dataset


def _excerpt_bounds(total_s: float) -> tuple[float, float]:
    """Excerpt lengths: ~20-90 s, shorter for tiny datasets (so that there are >= 3 pieces)."""
    hi = float(np.clip(total_s / 4.0, 12.0, 90.0))
    lo = float(np.clip(total_s / 8.0, 8.0, 20.0))
    return lo, max(hi, lo + 2.0)


def _plan(total_s: float, seed: int, progress: Callable[[float], None] | None = None) -> list[Performance]:
    """The pieces of a dataset of about `total_s` seconds (>= 3 of them): first a generated study
    that opens with the full-range sweep, then corpus excerpts and studies (~GENERATED_SHARE of the
    duration). `progress` is called with each piece's duration."""
    rng = np.random.default_rng([seed, 1])
    lo, hi = _excerpt_bounds(total_s)
    picker = _CorpusPicker(np.random.default_rng([seed, 2]))
    perfs: list[Performance] = []
    acc = gen = 0.0
    studies = 0
    while acc < total_s - 0.5 * lo or len(perfs) < 3:
        remaining = total_s - acc
        if remaining <= hi:
            target = max(remaining, lo)
        else:
            target = rng.uniform(lo, min(hi, remaining - lo))
        perf = None
        # generated or corpus: whichever keeps the generated share closer to GENERATED_SHARE
        if perfs and abs(gen / (acc + target) - GENERATED_SHARE) <= abs((gen + target) / (acc + target) - GENERATED_SHARE):
            perf = picker.excerpt(target, len(perfs), seed)
        if perf is None:
            studies += 1
            perf = _generated_study(target, np.random.default_rng([seed, 5, studies]), studies, coverage=not perfs)
            gen += perf.duration_s
        perfs.append(perf)
        acc += perf.duration_s
        if progress:
            progress(perf.duration_s)
    return perfs


def _assign_splits(durations: dict[str, float], rng: np.random.Generator, forced: dict[str, str] | None = None) -> dict[str, str]:
    """Works -> splits, ~SPLIT_FRACTIONS of the duration each, every split non-empty when there
    are >= 3 works. The smallest works seed the empty splits, the rest go largest first to the
    split furthest below its target, then single moves and swaps improve the balance."""
    forced = dict(forced or {})
    total = sum(durations.values()) or 1.0
    keys = sorted(durations)
    keys = [keys[i] for i in rng.permutation(len(keys))]  # a seeded order among equal durations
    free = [k for k in keys if k not in forced]
    split_of = {k: forced[k] for k in keys if k in forced}
    for s, k in zip([s for s in SPLITS[::-1] if s not in split_of.values()], sorted(free, key=lambda k: durations[k])):
        split_of[k] = s  # validation and test first get the smallest works
    cur = {s: sum(durations[k] for k, v in split_of.items() if v == s) for s in SPLITS}
    for k in sorted((k for k in free if k not in split_of), key=lambda k: -durations[k]):
        s = max(SPLITS, key=lambda s: (SPLIT_FRACTIONS[s] * total - cur[s], -SPLITS.index(s)))
        split_of[k] = s
        cur[s] += durations[k]

    def cost(c: dict[str, float]) -> float:
        return sum((c[s] / total - SPLIT_FRACTIONS[s]) ** 2 for s in SPLITS)

    def count(s: str) -> int:
        return sum(v == s for v in split_of.values())

    for _ in range(100):
        best, best_cost = None, cost(cur) - 1e-12
        for k in free:
            a = split_of[k]
            if count(a) > 1:
                for b in SPLITS:
                    if b != a:
                        c = dict(cur)
                        c[a] -= durations[k]
                        c[b] += durations[k]
                        if cost(c) < best_cost:
                            best, best_cost = ((k, b),), cost(c)
            for k2 in free:
                b = split_of[k2]
                if b != a and k < k2:
                    c = dict(cur)
                    d = durations[k] - durations[k2]
                    c[a] -= d
                    c[b] += d
                    if cost(c) < best_cost:
                        best, best_cost = ((k, b), (k2, a)), cost(c)
        if best is None:
            break
        for k, b in best:
            cur[split_of[k]] -= durations[k]
            cur[b] += durations[k]
            split_of[k] = b
    return split_of


_YEAR_NAMES: dict[int, Callable[[int], str]] = {
    2004: lambda i: f"MIDI-Unprocessed_XP_{i // 12 + 1:02d}_R1_2004_{i % 4 + 1:02d}_ORIG_MID--AUDIO_{i // 12 + 1:02d}_R1_2004_{i % 12 + 1:02d}_Track{i % 12 + 1:02d}_wav",
    2006: lambda i: f"MIDI-Unprocessed_{i // 8 + 1:02d}_R1_2006_01-{i % 8 + 2:02d}_ORIG_MID--AUDIO_{i // 8 + 1:02d}_R1_2006_{i % 8 + 1:02d}_Track{i % 8 + 1:02d}_wav",
    2008: lambda i: f"MIDI-Unprocessed_{i // 4 + 1:02d}_R{i % 3 + 1}_2008_01-04_ORIG_MID--AUDIO_{i // 4 + 1:02d}_R{i % 3 + 1}_2008_wav--{i % 4 + 1}",
    2009: lambda i: f"MIDI-Unprocessed_{i // 6 + 1:02d}_R1_2009_01-06_ORIG_MID--AUDIO_{i // 6 + 1:02d}_R1_2009_{i // 6 + 1:02d}_R1_2009_{i % 6 + 1:02d}_WAV",
    2011: lambda i: f"MIDI-Unprocessed_{i // 10 + 1:02d}_R1_2011_MID--AUDIO_R1-D{i // 10 + 1}_{i % 10 + 1:02d}_Track{i % 10 + 1:02d}_wav",
    2013: lambda i: f"ORIG-MIDI_{i // 5 % 3 + 1:02d}_7_{i // 15 + 6}_13_Group__MID--AUDIO_{i // 5 + 1:02d}_R1_2013_wav--{i % 5 + 1}",
    2014: lambda i: f"MIDI-UNPROCESSED_{2 * (i // 6) + 1:02d}-{2 * (i // 6) + 2:02d}_R1_2014_MID--AUDIO_{2 * (i // 6) + 1 + i % 2:02d}_R1_2014_wav--{i // 2 % 3 + 1}",
    2015: lambda i: f"MIDI-Unprocessed_R1_D1-{i // 5 * 2 + 1}-{i // 5 * 2 + 2}_mid--AUDIO-from_mp3_{i // 5 + 1:02d}_R1_2015_wav--{i % 5 + 1}",
    2017: lambda i: f"MIDI-Unprocessed_{i // 4 + 51:03d}_PIANO{i // 4 + 51:03d}_MID--AUDIO-split_07-{i // 12 + 6:02d}-17_Piano-e_{i // 4 % 3 + 1}-{i % 4 + 1:02d}_wav--{i % 4 + 1}",
    2018: lambda i: f"MIDI-Unprocessed_Recital{3 * (i // 4) + 1}-{3 * (i // 4) + 3}_MID--AUDIO_{i // 4 + 1:02d}_R1_2018_wav--{i % 4 + 1}",
}


# ================================================================================= the dataset


@dataclass(frozen=True)
class DemoSummary:
    """What `make_demo_dataset` wrote."""

    out: Path
    n_pieces: int
    total_seconds: float
    seconds_by_split: dict[str, float]
    rows: tuple[dict[str, Any], ...] = field(repr=False)


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DemoDataError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise DemoDataError(f"{out}: exists and is not empty (pass force=True / --force to replace it)")
        allowed = {METADATA_CSV, METADATA_JSON} | {str(y) for y in C.MAESTRO_YEARS}
        foreign = sorted(e.name for e in out.iterdir() if e.name not in allowed)
        if foreign:
            raise DemoDataError(
                f"{out}: not replaced even with force: it holds {foreign[0]!r}, which a demo dataset "
                "does not (only year folders and maestro-v3.0.0.csv/.json)"
            )


def make_demo_dataset(
    out: str | os.PathLike,
    minutes: float = 60.0,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
    soundfont: str | os.PathLike | None = None,
    renderer: Callable[[], Any] | None = None,
) -> DemoSummary:
    """Write a synthetic dataset of about `minutes` of piano in the exact MAESTRO v3 layout to
    `out` (see the module docstring). Refuses a non-empty `out` unless `force` (and even then one
    holding anything but a demo dataset's files). Deterministic for a seed.

    `renderer`: a factory, called once the arguments are checked, of the instrument (an object
    with `render(perf, year) -> int16 [n, 2]` at 44.1 kHz, such as `salamander.SalamanderRenderer`;
    `instruments.make_renderer` builds one by name); None: FluidSynth with `soundfont`."""
    out = Path(out)
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not math.isfinite(minutes):
        raise DemoDataError(f"minutes = {minutes!r}: must be a number")
    if minutes < MIN_MINUTES:
        raise DemoDataError(f"minutes = {minutes!r}: must be >= {MIN_MINUTES}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DemoDataError(f"seed = {seed!r}: must be an integer >= 0")
    seed = int(seed)
    _check_out(out, force)
    try:
        import mido  # noqa: F401
        import music21  # noqa: F401
    except ImportError as e:
        raise DemoDataError(f"make-demo-data needs {e.name}: pip install 'midi2wave[demo]'") from None
    instrument = renderer() if renderer is not None else _shared_renderer(str(find_soundfont(soundfont)))
    from tqdm import tqdm

    total_s = float(minutes) * 60.0
    with tqdm(total=round(total_s), unit="s", desc="composing", disable=not progress, leave=False) as bar:
        perfs = _plan(total_s, seed, progress=lambda s: bar.update(min(s, bar.total - bar.n)))

    rng = np.random.default_rng([seed, 6])
    durations: dict[str, float] = {}
    for p in perfs:
        durations[p.work] = durations.get(p.work, 0.0) + p.duration_s
    split_of = _assign_splits(durations, rng, forced={perfs[0].work: "train"})
    years = [int(y) for y in rng.permutation(np.array(C.MAESTRO_YEARS))]
    per_year: dict[int, int] = {}
    plan = []
    for i, p in enumerate(perfs):
        year = years[i % len(years)]
        k = per_year.get(year, 0)
        per_year[year] = k + 1
        stem = _YEAR_NAMES[year](k)
        plan.append((p, year, f"{year}/{stem}.midi", f"{year}/{stem}.wav"))

    out_abs = out.absolute()
    tmp = out_abs.parent / f".{out_abs.name}.tmp-{os.getpid()}"
    old = out_abs.parent / f".{out_abs.name}.old-{os.getpid()}"
    out_abs.parent.mkdir(parents=True, exist_ok=True)
    if tmp.exists():
        shutil.rmtree(tmp)
    rows: list[dict[str, Any]] = []
    try:
        tmp.mkdir()
        with tqdm(total=round(sum(p.duration_s for p in perfs)), unit="s", desc="rendering",
                  disable=not progress) as bar:
            for perf, year, midi_name, audio_name in plan:
                (tmp / str(year)).mkdir(exist_ok=True)
                _write_atomic(tmp / midi_name, midi_bytes(perf))
                pcm = instrument.render(perf, year)
                _write_atomic(tmp / audio_name, _wav_bytes(pcm, AUDIO_SAMPLE_RATE_HZ))
                rows.append({
                    "canonical_composer": perf.composer,
                    "canonical_title": perf.title,
                    "split": split_of[perf.work],
                    "year": year,
                    "midi_filename": midi_name,
                    "audio_filename": audio_name,
                    "duration": float(f"{len(pcm) / AUDIO_SAMPLE_RATE_HZ:.12g}"),
                })
                bar.update(min(round(perf.duration_s), bar.total - bar.n))
        rows.sort(key=lambda r: (r["canonical_composer"], r["canonical_title"], r["midi_filename"]))
        _write_atomic(tmp / METADATA_JSON, _metadata_json(rows).encode("utf-8"))
        _write_atomic(tmp / METADATA_CSV, _metadata_csv(rows).encode("utf-8"))
        # move into place: out is either absent, empty, or (force) an earlier demo dataset
        _check_out(out_abs, force)  # again: something may have appeared there meanwhile
        if out_abs.exists():
            if any(out_abs.iterdir()):
                os.replace(out_abs, old)
            else:
                out_abs.rmdir()
        os.replace(tmp, out_abs)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
    by_split = {s: 0.0 for s in SPLITS}
    for r in rows:
        by_split[r["split"]] += r["duration"]
    return DemoSummary(out=out, n_pieces=len(rows), total_seconds=sum(by_split.values()),
                       seconds_by_split=by_split, rows=tuple(rows))


def _metadata_csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([r[c] for c in COLUMNS])
    return buf.getvalue()


def _metadata_json(rows: Sequence[dict[str, Any]]) -> str:
    data = {c: {str(i): r[c] for i, r in enumerate(rows)} for c in COLUMNS}
    return json.dumps(data, indent=4, ensure_ascii=False)
