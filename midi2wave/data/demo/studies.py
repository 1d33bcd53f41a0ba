"""Generated "studies" of the demo data (composer `GENERATED_COMPOSER`), covering what the corpus
does not: every one of the 88 keys and every velocity 1..127 (a `coverage` study opens with a
chromatic sweep over the whole keyboard through all velocities), scales and fast runs, arpeggios,
block-chord progressions, repeated notes / trills / tremolos, velocity ramps, melody with
accompaniment, and long pedalled decays next to the same notes unpedalled."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ... import constants as C
from .performance import GENERATED_COMPOSER, Builder, Performance

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
        self.b = Builder(rng)
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
