"""Fit where the resonator bank's partials lie (data.resonators.tuning_cents, .inharmonicity), how
fast they decay (data.resonators.decay_scale, .decay_exponent) and how loud they are at the end of
the attack (data.resonators.level_pitches, .levels_db, .level_velocity_slopes) to a store's training
audio.

    python scripts/fit_partials.py STORE [--pieces 54] [--seconds 60] [-c CONFIG] [--level-corpus DIR]
        [--prompt-delay S --prompt-share F] [--velocity-tone [--velocity-tone-share F]]
        [--synthesis-inharmonicity]

Why: a resonator that misses its partial by more than about kappa * sample_rate / (2 pi) Hz (2.5 Hz
at the bundled model's sustain kappa 0.001) cannot track it, and the untracked partial lands in the
innovation the network must model. A real piano is stretch-tuned (bass flat, treble sharp) and its
stiff strings put partial k at k f0 sqrt(1 + B k^2), tens of cents above k f0 by the 8th partial.

How: every note whose onset has no other onset within its analysis window (30 ms after the onset,
8192 samples) is one observation; in its zero-padded spectrum the peak within -60..+120 cents of each
harmonic k f0 (k = 1..16, prominent against the median of +-10 % around it) gives the partial's
deviation in cents. A robust least-squares fit of `resonators.partial_hz`'s model (a cubic in octaves
from middle C for the tuning, a line in log10 B) to all observations gives the settings, printed as a
JSON `"data": {"resonators": {...}}` block, with the median absolute residual and the observation
count.

Decays: a held note with no other onset for 0.1 + 0.5 s + a window gives, per partial (at the fitted
position), its amplitude in two 2048-sample windows 0.5 s apart (0.1 s after the onset: past the
hammer); their ratio is the partial's decay time. A robust fit of log tau to
`decay_scale * midi.decay_tau_s(pitch) / k**decay_exponent` gives the two settings. Why: in
synthesis the bank's decays are how long each partial rings after the network's excitation; on the
Salamander demo data the upper partials ring about as long as the fundamental in the first half
second (exponent ~0), where the earlier configs used 1 (the 6th partial dying 6 times faster).

Levels: a held isolated note gives, per partial, its amplitude (the spectrum's peak within
`--level-search-cents`, 15) over a 2048-sample window `--level-delay` (0.25 s) after the bank's
`attack_s` past the onset, referred back to the attack's end with the bank's decay (`-c CONFIG`: the
model's bank; else the decays fitted here), skipping partials that coincide with a partial of an
earlier note still ringing (`--level-corpus DIR`: also every MIDI + WAV pair under DIR, e.g. the
training instrument's isolated notes from `note_corpus.py`; the levels only, since the tuning and
decays are the analysis's, which the network was trained with; with `-c` the levels are measured
where that config's bank puts its partials). A Huber-weighted least
squares fit of a table over pitch (every 3 semitones by default, linear in between) and partial, plus a slope
in dB per dB of velocity per pitch and partial (`--shared-slopes`: per partial), gives the levels that synthesis can set the bank's partials to
at each attack's end (`sampling.partial_levels`). Why: free-running, a partial's level is whatever
the few sampled innovations of its attack made it, and the bank's excitation drives a bass note's
fundamental, which the recordings barely have.

Velocity tone (`--velocity-tone`, with `-c`): the table's level is a straight line in dB of
velocity per pitch and partial, and a piano's is not (its loudest blows' top rises steeply). The
rows' residuals against the fitted table, by the note's velocity and the partial's frequency, give
a grid (velocities every 16, frequencies 250 Hz to 7 kHz) that synthesis adds to every fitted level
(`velocity_tone_db`; `fit_velocity_tone`). Rows whose peak stands under 10 dB over the spectrum's
median between the neighbouring partials are in the recording's floor and left out, and so are all
rows of a grid point most of whose rows are, and rows whose floor cannot be read (the bass, whose
partials stand too close). With `--prompt-delay` the prompt sound gets its own,
fitted to the early rows against their table and drawn back as that table is
(`prompt_velocity_tone_db`, `prompt_extrapolation`).

Where the synthesis-only partials lie (`--synthesis-inharmonicity`, with `-c`): the stiffness line
above is fitted on partials 1-16 and places a bass note's 30th partial up to 21 cents flat of the
training piano's. Searched stage by stage to ever higher partials around the positions fitted so far
(`STIFFNESS_STAGES`), the isolated notes' peaks give log10 B per grid pitch with the config's tuning
kept (`synthesis_inharmonicity_pitches`, `_log10`; `fit_synthesis_inharmonicity`), and the levels
are then measured where that table puts the partials.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy.optimize import least_squares

from fit_innovation_gain import training_pieces  # this folder: python scripts/fit_partials.py

from midi2wave import constants as C
from midi2wave.config import TONE_MAX_DB, ConfigError, load_config
from midi2wave.errors import InputError
from midi2wave.midi import decay_tau_s, pitch_to_hz
from midi2wave.conditioning.resonators import bank_partial_hz, inharmonicity_log10, partial_hz

WINDOW = 8192
PAD = 65536
MAX_PARTIAL = 16
DELAY_S = 0.03      # skip the hammer's noise
PROMINENCE = 8.0    # a peak must stand this far above the local median magnitude


def isolated(notes, i: int, end_s: float, n_samples: int, sample_rate_hz: int) -> bool:
    """Whether note i sounds alone from its onset to `end_s`: no other onset from 10 ms before it
    to `end_s`, and `end_s` inside the audio."""
    onsets = notes.onset_s
    if int(end_s * sample_rate_hz) > n_samples:
        return False
    others = (onsets > onsets[i] - 0.01) & (onsets < end_s)
    others[i] = False
    return not others.any()


def parabolic_shift(spectrum: np.ndarray, j: int, floor: float = 1e-12) -> float:
    """Where a spectrum's peak at bin j really lies, in bins from j: the vertex of the parabola
    through the logs of bins j - 1, j, j + 1 (magnitude or power alike: the log's factor cancels;
    `floor` keeps an empty bin's log finite). 0 at the spectrum's ends or where the three do not
    curve down. Why: a partial between bins reads a bin's width off, tens of cents in the bass."""
    if j <= 0 or j >= len(spectrum) - 1:
        return 0.0
    below, at, above = (math.log(spectrum[j - 1] + floor), math.log(max(float(spectrum[j]), floor)),
                        math.log(spectrum[j + 1] + floor))
    curve = below - 2 * at + above
    return 0.5 * (below - above) / curve if curve < 0 else 0.0


def level_grid(grid_step: int) -> np.ndarray:
    """The pitches (float64 [G]) a table over pitch is fitted on: every `grid_step` semitones from
    the lowest MIDI pitch (the level tables', the synthesis-only partials' stiffness)."""
    return np.arange(C.MIN_MIDI_PITCH, C.MAX_MIDI_PITCH + 1, grid_step, dtype=np.float64)


def measure(pieces, sample_rate_hz: int = C.SAMPLE_RATE_HZ) -> np.ndarray:
    """float64 [n, 3] observations (pitch, k, cents above k f0) from [(notes, audio float [n])]."""
    hann = np.hanning(WINDOW)
    freqs = np.fft.rfftfreq(PAD, 1.0 / sample_rate_hz)
    bin_hz = freqs[1]
    rows = []
    for notes, x in pieces:
        for i in range(len(notes)):
            t0 = notes.onset_s[i] + DELAY_S
            a = int(t0 * sample_rate_hz)
            if not isolated(notes, i, (a + WINDOW) / sample_rate_hz, len(x), sample_rate_hz):
                continue
            pitch = int(notes.pitch[i])
            f0 = float(pitch_to_hz(pitch))
            spec = np.abs(np.fft.rfft(np.asarray(x[a:a + WINDOW], np.float64) * hann, PAD))
            for k in range(1, MAX_PARTIAL + 1):
                fk = k * f0
                lo, hi = fk * 2 ** (-60 / 1200), fk * 2 ** (120 / 1200)
                if hi >= sample_rate_hz / 2 - 200:
                    break
                sel = np.nonzero((freqs >= lo) & (freqs <= hi))[0]
                seg = spec[sel]
                j = int(np.argmax(seg))
                if j == 0 or j == len(seg) - 1:
                    continue
                if seg[j] < PROMINENCE * np.median(spec[(freqs >= 0.9 * fk) & (freqs <= 1.1 * fk)]):
                    continue
                shift = parabolic_shift(seg, j)
                rows.append((pitch, k, 1200 * math.log2((freqs[sel[j]] + shift * bin_hz) / fk)))
    return np.asarray(rows, np.float64).reshape(-1, 3)


def fit(obs: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], float]:
    """(tuning_cents [4], inharmonicity [2], median |residual| in cents) from `measure`'s rows."""
    pitch, k, cents = obs[:, 0], obs[:, 1], obs[:, 2]
    harmonic = pitch_to_hz(pitch) * k

    def residual(theta):
        return 1200 * np.log2(partial_hz(pitch, k, tuple(theta[:4]), tuple(theta[4:])) / harmonic) - cents

    result = least_squares(residual, [0.0, 0.0, 0.0, 0.0, -3.4, 0.33], loss="soft_l1", f_scale=5.0)
    theta = result.x
    return (tuple(round(float(v), 4) for v in theta[:4]), tuple(round(float(v), 4) for v in theta[4:]),
            float(np.median(np.abs(residual(theta)))))


# Where the synthesis-only partials lie (--synthesis-inharmonicity): the search for each partial's
# peak widens to ever higher partials around the positions fitted so far, (the highest partial
# searched, the search's half-width in cents) per stage, so a partial tens of cents off the line
# is found where the line alone would pick its neighbour's skirt.
STIFFNESS_STAGES = ((16, 60.0), (24, 30.0), (32, 25.0), (48, 20.0), (64, 20.0))  # capped at the bank's partials
STIFFNESS_MIN_ROWS = 8  # peaks above the analysis's partials' half that a grid pitch needs for its own stiffness


def note_spectra(pieces, sample_rate_hz: int = C.SAMPLE_RATE_HZ) -> list[tuple[int, np.ndarray]]:
    """[(pitch, magnitude spectrum float32 [PAD // 2 + 1])] of every isolated note of [(notes, audio
    float [n])]: a Hann window of `WINDOW` samples `DELAY_S` after the onset, as `measure` takes it."""
    hann = np.hanning(WINDOW)
    out = []
    for notes, x in pieces:
        for i in range(len(notes)):
            a = int((notes.onset_s[i] + DELAY_S) * sample_rate_hz)
            if isolated(notes, i, (a + WINDOW) / sample_rate_hz, len(x), sample_rate_hz):
                spectrum = np.abs(np.fft.rfft(np.asarray(x[a:a + WINDOW], np.float64) * hann, PAD))
                out.append((int(notes.pitch[i]), spectrum.astype(np.float32)))  # 128 kB a note
    return out


def measure_positions(spectra, positions: Callable[[Any, Any], np.ndarray], partials: int, half_cents: float,
                      max_hz: float, sample_rate_hz: int = C.SAMPLE_RATE_HZ) -> np.ndarray:
    """float64 [n, 3] (pitch, k, Hz) of the peaks of `note_spectra`'s spectra nearest where
    `positions(pitch, k)` puts partials k = 1..partials below `max_hz`: the largest bin within
    `half_cents` (and 0.3 f0) of it, prominent (`PROMINENCE` x the median within half a partial
    spacing), parabolically interpolated."""
    freqs = np.fft.rfftfreq(PAD, 1.0 / sample_rate_hz)
    bin_hz = freqs[1]
    rows = []
    for pitch, spec in spectra:
        ks = np.arange(1, partials + 1)
        hz = np.asarray(positions(np.full(len(ks), float(pitch)), ks), np.float64)
        f0 = float(hz[0])
        for k, f in zip(ks, hz):
            if f >= max_hz:
                break
            half = min(0.3 * f0, f * (2.0 ** (half_cents / 1200.0) - 1.0))
            sel = np.nonzero((freqs >= f - half) & (freqs <= f + half))[0]
            if len(sel) < 3:
                continue
            seg = spec[sel]
            j = int(np.argmax(seg))
            if j == 0 or j == len(seg) - 1:
                continue
            if seg[j] < PROMINENCE * np.median(spec[(freqs >= f - 0.5 * f0) & (freqs <= f + 0.5 * f0)]):
                continue
            rows.append((pitch, int(k), freqs[sel[j]] + parabolic_shift(seg, j) * bin_hz))
    return np.asarray(rows, np.float64).reshape(-1, 3)


def fit_synthesis_inharmonicity(spectra, config, partials: int, grid_step: int = 3
                                ) -> tuple[np.ndarray, np.ndarray, int, float]:
    """(grid pitches [G], log10 B [G], peaks fitted, median |residual| in cents): where the bank's
    synthesis-only partials should lie (`synthesis_inharmonicity_pitches`, `_log10`), with the
    config's tuning (`tuning_cents`) kept, so a note's partials all share the f0 the analysis's do.

    Stage by stage (`STIFFNESS_STAGES`) the peaks of `note_spectra`'s isolated notes are searched
    around the positions fitted so far (first: the config's `inharmonicity` line), and each grid
    pitch takes the log10 B whose `partial_hz` best places the peaks of the notes nearest it (a
    robust fit over the partials above half the analysis's, whose offsets tell B; a grid pitch with
    fewer than `STIFFNESS_MIN_ROWS` such peaks keeps the line's value: from MIDI 81 up, which has no
    synthesis-only partials below `max_hz` either way). B is all the fit moves: a recording's tuning
    off the config's (a room's piano a few cents flat) goes into it, where it places the upper
    partials best for that f0."""

    grid = level_grid(grid_step)
    # without a line, harmonic within a hair: the search starts at k f0
    line = inharmonicity_log10(grid, config.inharmonicity) if config.inharmonicity else np.full(len(grid), -8.0)
    table = line.copy()
    mad, used = float("nan"), 0
    lowest = max(config.partials // 2, 1)
    for highest, half_cents in STIFFNESS_STAGES:
        def positions(pitch, k, table=table):
            return partial_hz(pitch, k, config.tuning_cents, log10_b=np.interp(pitch, grid, table))

        found = measure_positions(spectra, positions, min(highest, partials), half_cents, config.max_hz)
        tuned = partial_hz(found[:, 0], found[:, 1], config.tuning_cents)  # k f0 2^(c/1200): no stiffness
        cents = 1200.0 * np.log2(found[:, 2] / tuned)
        nearest = np.abs(found[:, 0][:, None] - grid[None, :]).argmin(axis=1)
        new, residuals, used = table.copy(), [], 0
        for g in range(len(grid)):
            m = (nearest == g) & (found[:, 1] > lowest)
            if m.sum() < STIFFNESS_MIN_ROWS:
                new[g] = line[g]
                continue
            p, k, c = found[m, 0], found[m, 1], cents[m]

            def residual(x, p=p, k=k, c=c, tuned=tuned[m]):
                return 1200.0 * np.log2(partial_hz(p, k, config.tuning_cents, log10_b=x[0]) / tuned) - c

            x = least_squares(residual, [table[g]], bounds=([-8.0], [-1.0]), loss="soft_l1", f_scale=3.0).x
            new[g] = float(x[0])
            residuals.append(residual(x))
            used += int(m.sum())
        table = new
        mad = float(np.median(np.abs(np.concatenate(residuals)))) if residuals else float("nan")
    return grid, np.round(table, 4), used, mad


DECAY_WINDOW = 2048
DECAY_START_S = 0.1
DECAY_SPAN_S = 0.5


def measure_decays(pieces, tuning_cents: tuple[float, ...], inharmonicity: tuple[float, ...],
                   sample_rate_hz: int = C.SAMPLE_RATE_HZ) -> np.ndarray:
    """float64 [n, 3] (pitch, k, decay time in s; inf where the partial did not decay) of held,
    isolated notes' partials below 7.5 kHz, from [(notes, audio float [n])]. A partial counts when it
    stands `PROMINENCE` times above the spectrum halfway to the next one."""
    hann = np.hanning(DECAY_WINDOW)
    n = np.arange(DECAY_WINDOW)
    rows = []
    for notes, x in pieces:
        for i in range(len(notes)):
            t1 = notes.onset_s[i] + DECAY_START_S
            t2 = t1 + DECAY_SPAN_S
            end = (int(t2 * sample_rate_hz) + DECAY_WINDOW) / sample_rate_hz
            if end > notes.offset_s[i] or not isolated(notes, i, end, len(x), sample_rate_hz):
                continue
            pitch = int(notes.pitch[i])
            segments = [np.asarray(x[int(t * sample_rate_hz):int(t * sample_rate_hz) + DECAY_WINDOW], np.float64) * hann
                        for t in (t1, t2)]
            for k in range(1, MAX_PARTIAL + 1):
                f = float(partial_hz(pitch, k, tuning_cents, inharmonicity))
                if f > 7500.0:
                    break
                probe = np.exp(-2j * np.pi * f * n / sample_rate_hz)
                a1, a2 = (abs(np.dot(seg, probe)) for seg in segments)
                between = np.exp(-2j * np.pi * float(partial_hz(pitch, k + 0.5, tuning_cents, inharmonicity)) * n
                                 / sample_rate_hz)
                if a1 <= PROMINENCE * abs(np.dot(segments[0], between)) or a2 <= 0.0:
                    continue  # no partial there (or buried in another's)
                rows.append((pitch, k, DECAY_SPAN_S / math.log(a1 / a2) if a2 < a1 else math.inf))
    return np.asarray(rows, np.float64).reshape(-1, 3)


def fit_decays(obs: np.ndarray) -> tuple[float, float, float]:
    """(decay_scale, decay_exponent, median |log error|) from `measure_decays`' rows (decay times
    outside 0.02..10 s are dropped: noise or another note's partial)."""
    obs = obs[(obs[:, 2] > 0.02) & (obs[:, 2] < 10.0)]
    pitch, k, tau = obs[:, 0], obs[:, 1], obs[:, 2]

    def residual(theta):
        return np.log(theta[0] * decay_tau_s(pitch) / k ** theta[1]) - np.log(tau)

    result = least_squares(residual, [0.5, 0.5], bounds=([1e-3, -1.0], [100.0, 3.0]), loss="soft_l1", f_scale=0.5)
    scale, exponent = result.x
    return round(float(scale), 4), round(float(exponent), 4), float(np.median(np.abs(residual(result.x))))


LEVEL_WINDOW = 2048
LEVEL_GRID_STEP = 3      # semitones between the level table's pitches (every key: 1, noisier: docs/evaluation.md)
LEVEL_SMOOTHING = 0.5    # weight of the first difference between neighbouring grid pitches (dB)
LEVEL_SLOPE_SMOOTHING = 10.0  # the same for the velocity slopes (dB per dB: a difference of 0.1 weighs 1 dB)
LEVEL_HUBER_DB = 4.0


COINCIDE_HZ = 20.0  # a partial this close to a still-ringing note's partial is not measured
# With --level-search-cents C a partial's level is the spectrum's peak within C cents of the bank's
# position for it (-c's): the fitted positions lie some 5-15 cents off the upper partials
# (docs/evaluation.md), where a probe at the position itself reads them 15-45 dB low.
# `measure_levels` defaults to the probe (0); the command line to the bundled table's settings, 15
# cents 0.25 s after the attack's end, which met the note sheet's level and upper-partial bars
# together with --level-corpus (the store alone at those settings: not the levels; docs/evaluation.md).
LEVEL_SEARCH_CENTS = 0.0
BUNDLED_LEVEL_SEARCH_CENTS = 15.0
BUNDLED_LEVEL_DELAY_S = 0.25
PROMPT_MIN_HZ = 2000.0  # partials below this get no prompt sound (`prompt_tables`)
# The velocity tone's grid (`fit_velocity_tone`): velocities every 16 (linear in dB of velocity in
# between) and frequencies an octave apart up to 1 kHz, then every kHz (the hammer's top is where the
# line misses most).
VELOCITY_TONE_VELOCITIES = (16, 32, 48, 64, 80, 96, 112, 127)
VELOCITY_TONE_HZ = (250, 500, 1000, 2000, 3000, 4000, 5000, 6000, 7000)
VELOCITY_TONE_SMOOTHING = 1.0  # weight of a first difference between neighbouring grid cells (dB)
VELOCITY_TONE_MIN_CLEAR = 0.5  # the share of a grid point's rows that must stand clear of their floor
VELOCITY_TONE_OVER_FLOOR_DB = 10.0  # a row's peak must stand this far over the median between its
# neighbouring partials (the peak of noise within the search band reads about 6 dB over that median)
LEVEL_PAD = 8  # the window zero-padded this many times (bins of 1 Hz) for the peak
FLOOR_LOBE_BINS = 2.5  # `measure_levels(floor=True)` reads the floor this many resolution bins clear of partials
FLOOR_MIN_BINS = 8      # and only where that leaves this many resolution bins between them


def measure_levels(pieces, tuning_cents: tuple[float, ...], inharmonicity: tuple[float, ...], decay_scale: float,
                   decay_exponent: float, attack_s: float = 0.05, max_hz: float = 7800.0,
                   sample_rate_hz: int = C.SAMPLE_RATE_HZ, partials: int = MAX_PARTIAL,
                   delay_s: float = 0.0, search_cents: float = LEVEL_SEARCH_CENTS, floor: bool = False,
                   positions: Callable[[Any, Any], np.ndarray] | None = None) -> np.ndarray:
    """float64 [n, 4] (pitch, velocity, k, amplitude) of isolated held notes' partials below `max_hz`
    at `attack_s` after the onset, from [(notes, audio float [n])]: the amplitude of the Hann-windowed
    spectrum's peak within `search_cents` of the partial's position (0: a probe at the position itself)
    over `LEVEL_WINDOW` samples from `delay_s` after then, referred back
    from the window's centre with the decay `decay_scale * midi.decay_tau_s(pitch) / k**decay_exponent` (pass
    the bank's: a bank set to this amplitude then rings as the recording does). A partial within
    `COINCIDE_HZ` of the searched band around a partial of an earlier note still sounding (pedalled) is
    skipped: the probe would add that note's. `floor`: [n, 5], with the spectrum's median amplitude
    between the neighbouring partials' midpoints (the floor the peak stands on, referred back the
    same way). Why: a soft note's top partials sink into the recording's floor, and their peaks
    then measure the floor (velocity 20 above 4 kHz: within 1 dB of the level between partials).
    `positions(pitch, k)`: where the bank puts its partials (Hz; default `partial_hz` with
    `tuning_cents` and `inharmonicity`; a model's config: `resonators.bank_partial_hz`)."""
    def on_the_line(pitch, k):
        return partial_hz(pitch, k, tuning_cents, inharmonicity)

    where = positions if positions is not None else on_the_line
    hann = np.hanning(LEVEL_WINDOW)
    n = np.arange(LEVEL_WINDOW)
    centre_s = delay_s + LEVEL_WINDOW / 2 / sample_rate_hz  # the window's centre after the attack end
    ks = np.arange(1, partials + 1)
    rows = []
    for notes, x in pieces:
        for i in range(len(notes)):
            t0 = notes.onset_s[i] + attack_s
            a = int(round((t0 + delay_s) * sample_rate_hz))
            end = (a + LEVEL_WINDOW) / sample_rate_hz
            if end > notes.offset_s[i] or not isolated(notes, i, end, len(x), sample_rate_hz):
                continue
            pitch = int(notes.pitch[i])
            ringing = (notes.onset_s < notes.onset_s[i]) & (notes.offset_s > t0)
            others = (where(notes.pitch[ringing][:, None], ks[None, :]).reshape(-1)
                      if ringing.any() else np.zeros(0))
            seg = np.asarray(x[a:a + LEVEL_WINDOW], np.float64) * hann
            spectrum = np.abs(np.fft.rfft(seg, LEVEL_PAD * LEVEL_WINDOW)) if search_cents > 0 or floor else None
            bin_hz = sample_rate_hz / (LEVEL_PAD * LEVEL_WINDOW)
            tau = decay_scale * float(decay_tau_s(pitch))
            for k in ks:
                f = float(where(pitch, k))
                if f >= max_hz:
                    break
                reach = f * (2.0 ** (search_cents / 1200.0) - 1.0)
                if others.size and np.abs(others - f).min() < COINCIDE_HZ + reach:
                    continue
                if search_cents <= 0:
                    peak = abs(np.dot(seg, np.exp(-2j * np.pi * f * n / sample_rate_hz)))
                else:
                    lo = int(math.floor(f * 2.0 ** (-search_cents / 1200.0) / bin_hz))
                    hi = int(math.ceil(f * 2.0 ** (search_cents / 1200.0) / bin_hz)) + 1
                    peak = float(spectrum[lo:hi].max())
                back = math.exp(centre_s * k ** decay_exponent / tau)
                row = (pitch, int(notes.velocity[i]), k, 2.0 * peak / hann.sum() * back)
                if floor:  # the median between the neighbours' midpoints, outside the main lobes
                    below = float(where(pitch, k - 1)) if k > 1 else 0.0
                    above = float(where(pitch, k + 1))
                    lobe = FLOOR_LOBE_BINS * sample_rate_hz / LEVEL_WINDOW
                    band = np.r_[(f + below) / 2.0 + lobe:f - lobe:bin_hz,
                                 f + lobe:min((f + above) / 2.0, sample_rate_hz / 2.0) - lobe:bin_hz]
                    level = (2.0 * float(np.median(spectrum[np.round(band / bin_hz).astype(np.int64)])) / hann.sum()
                             if len(band) >= FLOOR_MIN_BINS * LEVEL_PAD else 0.0)  # packed partials: no floor read
                    row += (level * back,)
                rows.append(row)
    return np.asarray(rows, np.float64).reshape(-1, 5 if floor else 4)


def corpus_pieces(folder, sustain_threshold: int = C.PEDAL_ON_THRESHOLD, log=print) -> list[tuple[Any, np.ndarray]]:
    """[(sustained notes, audio float64 [n] at the bank's rate)] of the MIDI + audio pairs under
    `folder`, found as `midi2wave prepare` finds a folder's pairs (`data.maestro.find_pieces`;
    `note_corpus.py` writes such pairs). The audio must be at the store's scale (the levels are
    absolute). A file without its partner is skipped and reported through `log`; raises
    `errors.InputError` naming the file or folder for one that cannot be read, a missing folder or
    a folder without pairs."""
    from midi2wave.audio import load_audio, resample, to_mono
    from midi2wave.data.maestro import find_pieces
    from midi2wave.midi import apply_sustain, read_midi

    out = []
    for piece in find_pieces(folder):
        if piece.problem is not None:
            log(f"skipped: {piece.problem}")
            continue
        notes, pedals = read_midi(piece.midi_path)
        audio, rate = load_audio(piece.audio_path)
        x = resample(to_mono(audio), rate, C.SAMPLE_RATE_HZ) if rate != C.SAMPLE_RATE_HZ else to_mono(audio)
        out.append((apply_sustain(notes, pedals, sustain_threshold), np.asarray(x, np.float64)))
    if not out:
        raise InputError(f"{folder}: no MIDI file with an audio file of the same name")
    return out


def _level_rows(pos: np.ndarray, vdb: np.ndarray, G: int, slope_table: bool) -> np.ndarray:
    """One partial's design [rows, G + (G if slope_table else 1)]: its table column pair at the rows'
    grid positions `pos` (linear between grid pitches), then its velocity slope's, times `vdb`."""
    lo = pos.astype(np.int64)
    hi = np.minimum(lo + 1, G - 1)
    w = pos - lo
    rows = np.arange(len(pos))
    design = np.zeros((len(pos), G + (G if slope_table else 1)))
    design[rows, lo] = 1.0 - w
    design[rows, hi] += w
    if slope_table:
        design[rows, G + lo] = (1.0 - w) * vdb
        design[rows, G + hi] += w * vdb
    else:
        design[:, G] = vdb
    return design


def _level_penalty(G: int, slope_table: bool) -> np.ndarray:
    """One partial's smoothing rows: the first differences between neighbouring grid pitches of its
    table (`LEVEL_SMOOTHING`) and of its slope table (`LEVEL_SLOPE_SMOOTHING`)."""
    n = G + (G if slope_table else 1)
    blocks = ((0, LEVEL_SMOOTHING), (G, LEVEL_SLOPE_SMOOTHING)) if slope_table else ((0, LEVEL_SMOOTHING),)
    penalty = np.zeros(((G - 1) * len(blocks), n))
    for b, (block, weight) in enumerate(blocks):
        for g in range(1, G):
            penalty[b * (G - 1) + g - 1, block + g - 1] = -weight
            penalty[b * (G - 1) + g - 1, block + g] = weight
    return penalty


def solve_levels(obs: np.ndarray, partials: int, reference_velocity: float, grid_step: int, slope_table: bool
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(grid pitches [G], table [G, partials] dB, slopes [G, partials] or [partials], residuals [rows] dB)
    of `fit_levels`' least squares, unrounded.

    Each row and each smoothing row involves one partial's unknowns only, and the Huber weight of a
    row is its own residual's, so the fit splits into one small problem per partial (2G unknowns)
    with the same solution as the whole system (partials x 2G unknowns; minutes of dense lstsq on
    tens of thousands of rows, where this takes a fraction of a second)."""
    grid = level_grid(grid_step)
    G, K = len(grid), partials
    obs = obs[obs[:, 2] <= K]
    level = 20.0 * np.log10(np.maximum(obs[:, 3], 1e-7))
    pos = np.clip((obs[:, 0] - grid[0]) / grid_step, 0.0, G - 1 - 1e-9)
    vdb = 20.0 * np.log10(np.maximum(obs[:, 1], 1.0) / reference_velocity)
    penalty = _level_penalty(G, slope_table)
    table = np.zeros((G, K))
    slopes = np.zeros((G, K)) if slope_table else np.zeros(K)
    residual = np.zeros(len(obs))
    for k in range(1, K + 1):
        mine = np.flatnonzero(obs[:, 2].astype(np.int64) == k)
        design = _level_rows(pos[mine], vdb[mine], G, slope_table)
        weight = np.ones(len(mine))
        for _ in range(6):  # iteratively reweighted least squares (Huber)
            theta = np.linalg.lstsq(np.vstack([design * weight[:, None], penalty]),
                                    np.concatenate([level[mine] * weight, np.zeros(len(penalty))]), rcond=None)[0]
            residual[mine] = level[mine] - design @ theta
            weight = np.sqrt(1.0 / np.maximum(1.0, np.abs(residual[mine]) / LEVEL_HUBER_DB))
        table[:, k - 1] = theta[:G]
        if slope_table:
            slopes[:, k - 1] = theta[G:]
        else:
            slopes[k - 1] = theta[G]
    return grid, table, slopes, residual


def fit_levels(obs: np.ndarray, partials: int = MAX_PARTIAL, reference_velocity: float = 64.0,
               grid_step: int = LEVEL_GRID_STEP, slope_table: bool = True
               ) -> tuple[tuple[float, ...], tuple[tuple[float, ...], ...], Any, float]:
    """(grid pitches, levels_db [grid][partials], velocity slopes, median |residual| dB) of
    `measure_levels`' rows: level(p, v, k) = table(p, k) + slope(p, k) * 20 log10(v / reference_velocity),
    in dB, both linear between grid pitches (every `grid_step` semitones from A0), by least squares
    with a Huber weight (`LEVEL_HUBER_DB`) and a small pull of neighbouring grid pitches together
    (`LEVEL_SMOOTHING`, `LEVEL_SLOPE_SMOOTHING`: pitches without notes take their neighbours'). The
    slopes: a table [grid][partials] (`slope_table`), or one per partial [partials] shared by every
    pitch. These are `config.ResonatorConfig`'s level_pitches, levels_db and
    level_velocity_slope_table (or level_velocity_slopes)."""
    grid, table, slopes, residual = solve_levels(obs, partials, reference_velocity, grid_step, slope_table)
    slopes_out: Any = (tuple(tuple(round(float(v), 3) for v in row) for row in slopes) if slope_table
                       else tuple(round(float(v), 3) for v in slopes))
    return (tuple(float(p) for p in grid), tuple(tuple(round(float(v), 2) for v in row) for row in table),
            slopes_out, float(np.median(np.abs(residual))))


def fit_velocity_tone(obs: np.ndarray, config, velocities=VELOCITY_TONE_VELOCITIES, hz=VELOCITY_TONE_HZ,
                      share: float = 1.0, min_over_floor_db: float = VELOCITY_TONE_OVER_FLOOR_DB
                      ) -> tuple[tuple[tuple[float, ...], ...], float, float]:
    """(velocity_tone_db [velocities][hz], median |residual| dB before, after) of `measure_levels`'
    rows (with `floor`: only those standing `min_over_floor_db` over their floor; a row in the floor
    measures the floor, which would read the soft blows' top loud) against `config`'s level table (`config.ResonatorConfig`, its own velocity tone left out):
    what the table's straight line in dB of velocity misses, by the note's velocity and the
    partial's frequency. A grid over (dB of velocity, log frequency), bilinear between its points
    as `resonators.velocity_tone_db` reads it, fitted to the rows' residuals by least squares with a
    Huber weight (`LEVEL_HUBER_DB`) and a pull of neighbouring points together
    (`VELOCITY_TONE_SMOOTHING`; points without rows take their neighbours'); `share` of it kept (in
    dB). Why on the residuals: the table's line is per pitch and partial, the bend is the blow's
    (the hammer's felt hardens with force: the loudest blows' top rises steeply, docs/evaluation.md)."""
    from midi2wave.conditioning.resonators import fitted_levels, grid_weights, velocity_db

    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the velocity tone's share must lie in [0, 1], got {share}")
    base = dataclasses.replace(config, velocity_tone_velocities=(), velocity_tone_hz=(), velocity_tone_db=(),
                               prompt_velocity_tone_db=())
    pitch, velocity, k = obs[:, 0], obs[:, 1], obs[:, 2].astype(np.int64)
    knots_v, knots_f = velocity_db(np.asarray(velocities)), np.log2(np.asarray(hz, np.float64))
    V, F = len(knots_v), len(knots_f)
    # each row's place on the grid's axes, as `resonators.velocity_tone_db` reads it
    row_v = velocity_db(velocity)
    row_f = np.log2(np.maximum(bank_partial_hz(pitch, k, config), 1e-3))
    keep = k <= len(base.levels_db[0])
    if obs.shape[1] > 4:
        # a row in its floor is left out, and so is every row of a grid point most of whose rows are:
        # the few that stand out there are the loud ones (velocity 20 at 5-8 kHz: 135 of 555); a row whose
        # floor could not be read (partials packed too close: the bass) is left out too, unknown
        read = obs[:, 4] > 0.0
        clear = read & (obs[:, 3] >= obs[:, 4] * 10.0 ** (min_over_floor_db / 20.0))
        cell = (np.abs(row_v[:, None] - knots_v[None, :]).argmin(axis=1) * F
                + np.abs(row_f[:, None] - knots_f[None, :]).argmin(axis=1))  # the nearest grid point
        clear_share = (np.bincount(cell, clear, V * F) / np.maximum(np.bincount(cell, read, V * F), 1))[cell]
        keep &= clear & (clear_share >= VELOCITY_TONE_MIN_CLEAR)
    pitch, velocity, k, amp = pitch[keep], velocity[keep], k[keep], obs[keep, 3]
    residual = (20.0 * np.log10(np.maximum(amp, 1e-7))
                - 20.0 * np.log10(np.maximum(fitted_levels(pitch, velocity, k, base), 1e-7)))
    vlo, vhi, vw = grid_weights(row_v[keep], knots_v)
    flo, fhi, fw = grid_weights(row_f[keep], knots_f)
    rows = np.arange(len(residual))
    design = np.zeros((len(residual), V * F))
    for v_at, wv in ((vlo, 1.0 - vw), (vhi, vw)):
        for f_at, wf in ((flo, 1.0 - fw), (fhi, fw)):
            np.add.at(design, (rows, v_at * F + f_at), wv * wf)
    penalty = []
    for i in range(V):
        for j in range(F):
            for i2, j2 in ((i + 1, j), (i, j + 1)):
                if i2 < V and j2 < F:
                    row = np.zeros(V * F)
                    row[i * F + j], row[i2 * F + j2] = -VELOCITY_TONE_SMOOTHING, VELOCITY_TONE_SMOOTHING
                    penalty.append(row)
    penalty = np.asarray(penalty).reshape(-1, V * F)
    weight = np.ones(len(residual))
    for _ in range(6):  # iteratively reweighted least squares (Huber)
        theta = np.linalg.lstsq(np.vstack([design * weight[:, None], penalty]),
                                np.concatenate([residual * weight, np.zeros(len(penalty))]), rcond=None)[0]
        after = residual - design @ theta
        weight = np.sqrt(1.0 / np.maximum(1.0, np.abs(after) / LEVEL_HUBER_DB))
    tone = np.clip(share * theta.reshape(V, F), -TONE_MAX_DB, TONE_MAX_DB)
    return (tuple(tuple(round(float(v), 2) for v in row) for row in tone), float(np.median(np.abs(residual))),
            float(np.median(np.abs(residual - design @ tone.reshape(-1)))))


def prompt_extrapolation(late, early, level_centre_s: float, prompt_centre_s: float, share: float = 1.0,
                         hz=None, min_hz: float = 0.0) -> np.ndarray:
    """The prompt sound's value at the attack's end (float64, the shape of `late`) of a quantity in dB
    measured `level_centre_s` (`late`) and `prompt_centre_s` (`early`) after it: the straight line
    through both drawn back to the attack's end, `share` of its excess over `late` kept; `late` where
    `hz` (the partials' frequencies, the same shape; None: everywhere) is below `min_hz`. One line
    for the prompt's levels, its slopes (`prompt_tables`) and its velocity tone."""
    if not 0.0 <= prompt_centre_s < level_centre_s:
        raise ValueError(f"the prompt must be measured before the levels ({prompt_centre_s} s, {level_centre_s} s)")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the prompt's share must lie in [0, 1], got {share}")
    scale = share * level_centre_s / (level_centre_s - prompt_centre_s)
    late, early = np.asarray(late, np.float64), np.asarray(early, np.float64)
    out = late + scale * (early - late)
    if hz is not None:
        low = np.broadcast_to(np.asarray(hz, np.float64), out.shape) < min_hz
        out[low] = late[low]
    return out


def prompt_velocity_tone(late_tone, early_tone, hz, level_centre_s: float, prompt_centre_s: float, share: float,
                         min_hz: float) -> tuple[tuple[tuple[float, ...], ...], int]:
    """(prompt_velocity_tone_db [velocities][hz], how many values were clipped to
    +-TONE_MAX_DB) from the velocity tones fitted to the level rows (`late_tone`) and to the
    rows at the attack's end (`early_tone`), on the grid's frequencies `hz`: drawn back as the
    prompt's table is (`prompt_extrapolation`), the level table's tone at the grid's points at and
    below `min_hz`. Why at them too: the prompt table is the level table's below `min_hz`, and a
    partial between two grid points reads both."""
    out = prompt_extrapolation(late_tone, early_tone, level_centre_s, prompt_centre_s, share)
    low = np.asarray(hz, np.float64) <= min_hz
    out[:, low] = np.asarray(late_tone, np.float64)[:, low]
    clipped = int((np.abs(out) > TONE_MAX_DB).sum())
    out = np.clip(out, -TONE_MAX_DB, TONE_MAX_DB)
    return tuple(tuple(round(float(v), 2) for v in row) for row in out), clipped


def prompt_tables(table, slopes, prompt_table, prompt_slopes, level_centre_s: float, prompt_centre_s: float,
                  partial_hz_table=None, min_hz: float = 0.0, share: float = 1.0
                  ) -> tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]]:
    """(prompt_levels_db, prompt_velocity_slope_table) at the attack's end, from the level table
    (`table`, `slopes`: measured `level_centre_s` after the attack's end) and a table measured
    earlier (`prompt_table`, `prompt_slopes`: at `prompt_centre_s`), both referred back along the
    bank's decay. The bank's prompt sound falls in a straight line in dB from its level at the attack's
    end onto the level table's decay at `level_centre_s` (`config.ResonatorConfig.prompt_seconds`),
    so its excess over that decay is the earlier table's at `prompt_centre_s` times
    level_centre_s / (level_centre_s - prompt_centre_s) at the attack's end. Why a second
    measurement: a struck string's upper partials die fast first and then ring on; one table carried
    back along one decay from 0.3 s left a loud note's top 7-17 dB dark through its first 100 ms.
    `partial_hz_table` (float [grid pitches, partials], where the bank puts each partial) and
    `min_hz`: the partials below `min_hz` keep the level table (no prompt sound). Why: below about
    2 kHz the instrument's isolated notes show no double decay (the median excess at the attack's
    end is within 1 dB), and the table fitted there is the measurements' scatter (+12 dB on the
    fundamental at MIDI 48), which made the fundamentals fall 1-2 dB/s too fast. `share`: the
    fraction of the excess kept (in dB; 1: all of it)."""
    levels = prompt_extrapolation(table, prompt_table, level_centre_s, prompt_centre_s, share, partial_hz_table, min_hz)
    slope_table = prompt_extrapolation(slopes, prompt_slopes, level_centre_s, prompt_centre_s, share, partial_hz_table,
                                       min_hz)
    return (tuple(tuple(round(float(v), 2) for v in row) for row in levels),
            tuple(tuple(round(float(v), 3) for v in row) for row in slope_table))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store")
    ap.add_argument("--pieces", type=int, default=54)
    ap.add_argument("--seconds", type=float, default=60.0, help="at most this much of each piece")
    ap.add_argument("--sustain-threshold", type=int, default=C.PEDAL_ON_THRESHOLD)
    ap.add_argument("--level-step", type=int, default=LEVEL_GRID_STEP,
                    help=f"semitones between the level table's pitches (default {LEVEL_GRID_STEP})")
    ap.add_argument("--level-partials", type=int, default=None,
                    help=f"partials per note to fit levels for (default: the -c config's synthesis_partials or "
                         f"partials, else {MAX_PARTIAL})")
    ap.add_argument("--shared-slopes", action="store_true",
                    help="one velocity slope per partial for every pitch (default: a slope per pitch and partial)")
    ap.add_argument("--level-delay", type=float, default=BUNDLED_LEVEL_DELAY_S,
                    help=f"measure the levels this many seconds after the attack's end and refer them back along "
                         f"the bank's decay (default {BUNDLED_LEVEL_DELAY_S:g}, the bundled table's)")
    ap.add_argument("--level-search-cents", type=float, default=BUNDLED_LEVEL_SEARCH_CENTS,
                    help=f"a level is the spectrum's peak within this many cents of the partial's fitted position "
                         f"(default {BUNDLED_LEVEL_SEARCH_CENTS:g}, the bundled table's; 0: a probe at the position)")
    ap.add_argument("--prompt-delay", type=float, default=None,
                    help="also measure the levels this many seconds after the attack's end (before --level-delay) "
                         "and fit the prompt sound from the two (prompt_levels_db; default: none)")
    ap.add_argument("--prompt-min-hz", type=float, default=PROMPT_MIN_HZ,
                    help=f"partials below this frequency get no prompt sound (default {PROMPT_MIN_HZ:g})")
    ap.add_argument("--prompt-share", type=float, default=1.0,
                    help="keep this fraction of the fitted prompt's excess over the level table, in dB (default 1)")
    ap.add_argument("--velocity-tone", action="store_true",
                    help="also fit what the level table's straight line in dB of velocity misses, by velocity and "
                         "partial frequency (velocity_tone_db; needs -c)")
    ap.add_argument("--velocity-tone-share", type=float, default=1.0,
                    help="keep this fraction of the fitted velocity tone, in dB (default 1)")
    ap.add_argument("--synthesis-inharmonicity", action="store_true",
                    help="also fit where the synthesis-only partials lie (synthesis_inharmonicity_pitches, "
                         "synthesis_inharmonicity_log10: log10 B every --level-step semitones, the tuning kept) "
                         "and measure their levels there (needs -c with synthesis_partials)")
    ap.add_argument("--level-corpus", type=Path, action="append", default=[], metavar="DIR",
                    help="also fit the levels to every MIDI + WAV pair under DIR (note_corpus.py; repeatable)")
    ap.add_argument("-c", "--config", default=None,
                    help="the model's config: its bank's partial positions (tuning_cents, inharmonicity), decays, "
                         "attack_s and max_hz are used for the partial levels (default: the positions and decays "
                         "fitted here, attack 0.05 s, 7800 Hz)")
    args = ap.parse_args(argv)
    if args.level_step < 1:
        ap.error("--level-step must be >= 1")
    if not 0.0 <= args.level_search_cents <= 200.0:
        ap.error("--level-search-cents must be between 0 and 200")
    if not 0.0 <= args.level_delay <= 1.0:
        ap.error("--level-delay must be between 0 and 1 s")
    if args.prompt_delay is not None and not 0.0 <= args.prompt_delay < args.level_delay:
        ap.error("--prompt-delay must be >= 0 and before --level-delay")
    if not 0.0 <= args.prompt_share <= 1.0:
        ap.error("--prompt-share must be between 0 and 1")
    if not 0.0 <= args.velocity_tone_share <= 1.0:
        ap.error("--velocity-tone-share must be between 0 and 1")
    if args.velocity_tone and args.config is None:
        ap.error("--velocity-tone needs -c CONFIG (the bank whose partial frequencies the tone is read at)")
    if args.synthesis_inharmonicity:
        if args.config is None:
            ap.error("--synthesis-inharmonicity needs -c CONFIG (the bank whose synthesis-only partials it places)")
        bank_config = load_config(args.config).data.resonators
        if bank_config.synthesis_partials <= bank_config.partials:
            ap.error(f"--synthesis-inharmonicity: {args.config} has no synthesis-only partials "
                     f"(synthesis_partials {bank_config.synthesis_partials}, partials {bank_config.partials})")
    if args.prompt_delay is not None and args.shared_slopes:
        ap.error("--prompt-delay needs the slope table (without --shared-slopes)")
    if args.level_partials is None:
        bank_config = load_config(args.config).data.resonators if args.config is not None else None
        args.level_partials = (max(bank_config.partials, bank_config.synthesis_partials, MAX_PARTIAL)
                               if bank_config is not None else MAX_PARTIAL)
    corpus = []  # read first: a bad folder is reported before the store is loaded
    for folder in args.level_corpus:
        try:
            corpus += corpus_pieces(folder, args.sustain_threshold, log=lambda m: print(m, file=sys.stderr))
        except InputError as e:
            print(e, file=sys.stderr)
            return 1
    pieces = [(notes, x) for _, notes, x in training_pieces(args.store, args.sustain_threshold, args.pieces,
                                                            args.seconds)]
    level_pieces = pieces + corpus
    obs = measure(pieces)
    if len(obs) < 20:
        print(f"{args.store}: only {len(obs)} partials measured (too few isolated notes); nothing fitted",
              file=sys.stderr)
        return 1
    tuning, stiffness, mad = fit(obs)
    print(f"{len(obs)} partials of {len(np.unique(obs[:, 0]))} pitches; median |residual| {mad:.1f} cents",
          file=sys.stderr)
    decays = measure_decays(pieces, tuning, stiffness)
    bank = {"tuning_cents": list(tuning), "inharmonicity": list(stiffness)}  # config.ResonatorConfig settings
    if len(decays) >= 20:
        scale, exponent, log_err = fit_decays(decays)
        bank.update(decay_scale=scale, decay_exponent=exponent)
        print(f"{len(decays)} partial decays; median |log error| {log_err:.2f}", file=sys.stderr)
    else:
        print(f"only {len(decays)} partial decays measured (too few held isolated notes); decays not fitted",
              file=sys.stderr)
    if args.config is not None:  # the levels are for this bank: where it puts its partials, its decays, attack, top
        target = load_config(args.config).data.resonators
        if args.synthesis_inharmonicity:
            grid, log10_b, used, cents_err = fit_synthesis_inharmonicity(
                note_spectra(level_pieces), target, max(target.synthesis_partials, target.partials), args.level_step)
            target = dataclasses.replace(target, synthesis_inharmonicity_pitches=tuple(grid),
                                         synthesis_inharmonicity_log10=tuple(log10_b))
            bank.update(synthesis_inharmonicity_pitches=list(grid), synthesis_inharmonicity_log10=list(log10_b))
            print(f"synthesis-only partials' stiffness: {used} peaks; median |residual| {cents_err:.1f} cents",
                  file=sys.stderr)

        def bank_positions(pitch, k, target=target):
            return bank_partial_hz(pitch, k, target)

        level_bank = dict(tuning_cents=target.tuning_cents, inharmonicity=target.inharmonicity,
                          decay_scale=target.decay_scale, decay_exponent=target.decay_exponent,
                          attack_s=target.attack_s, max_hz=target.max_hz, positions=bank_positions)
    else:
        level_bank = dict(tuning_cents=tuning, inharmonicity=stiffness, decay_scale=bank.get("decay_scale", 0.5),
                          decay_exponent=bank.get("decay_exponent", 1.0), attack_s=0.05, max_hz=7800.0)
    levels = measure_levels(level_pieces, **level_bank, partials=args.level_partials,
                            delay_s=args.level_delay, search_cents=args.level_search_cents, floor=args.velocity_tone)
    if len(levels) >= 20 * MAX_PARTIAL:
        pitches, table, slopes, level_err = fit_levels(levels, partials=args.level_partials, grid_step=args.level_step,
                                                       slope_table=not args.shared_slopes)
        bank.update(level_pitches=list(pitches), levels_db=[list(row) for row in table])
        if args.shared_slopes:  # the other key empty, so the block merges over a config that had it
            bank.update(level_velocity_slopes=list(slopes), level_velocity_slope_table=[])
        else:
            bank.update(level_velocity_slope_table=[list(row) for row in slopes], level_velocity_slopes=[])
        print(f"{len(levels)} partial levels of {len(np.unique(levels[:, 0]))} pitches; median |residual| "
              f"{level_err:.1f} dB", file=sys.stderr)
        # without --prompt-delay (--velocity-tone) the prompt (the tone) is emptied: one fitted beside another
        # table would not fit this one
        bank.update(prompt_levels_db=[], prompt_velocity_slope_table=[], prompt_seconds=0.0,
                    velocity_tone_velocities=[], velocity_tone_hz=[], velocity_tone_db=[], prompt_velocity_tone_db=[])
        if args.velocity_tone:
            try:  # the -c bank with the table just fitted (its tone read at that bank's partial frequencies)
                fitted = dataclasses.replace(target, synthesis_partials=0, level_pitches=tuple(pitches), levels_db=table,
                                             level_velocity_slopes=() if not args.shared_slopes else slopes,
                                             level_velocity_slope_table=slopes if not args.shared_slopes else (),
                                             prompt_levels_db=(), prompt_velocity_slope_table=(), prompt_seconds=0.0,
                                             room_tone_hz=(), room_tone_db=(), velocity_tone_velocities=(),
                                             velocity_tone_hz=(), velocity_tone_db=(), prompt_velocity_tone_db=())
            except ConfigError as e:
                print(f"{args.config}: the fitted table does not fit its bank: {e}", file=sys.stderr)
                return 1
            tone, before, after = fit_velocity_tone(levels, fitted, share=args.velocity_tone_share)
            bank.update(velocity_tone_velocities=list(VELOCITY_TONE_VELOCITIES),
                        velocity_tone_hz=list(VELOCITY_TONE_HZ), velocity_tone_db=[list(row) for row in tone])
            print(f"velocity tone: median |residual| {before:.2f} -> {after:.2f} dB", file=sys.stderr)
        if args.prompt_delay is not None:
            early = measure_levels(level_pieces, **level_bank, partials=args.level_partials,
                                   delay_s=args.prompt_delay, search_cents=args.level_search_cents,
                                   floor=args.velocity_tone)
            _, early_table, early_slopes, early_err = fit_levels(early, partials=args.level_partials,
                                                                 grid_step=args.level_step)
            centre = LEVEL_WINDOW / 2 / C.SAMPLE_RATE_HZ  # each measurement's window centre after its delay
            at = (np.asarray(pitches)[:, None], np.arange(1, args.level_partials + 1)[None, :])
            positions = (bank_positions(*at) if args.config is not None
                         else partial_hz(*at, level_bank["tuning_cents"], level_bank["inharmonicity"]))
            prompt, prompt_slopes = prompt_tables(table, slopes, early_table, early_slopes, args.level_delay + centre,
                                                  args.prompt_delay + centre, positions, args.prompt_min_hz,
                                                  args.prompt_share)
            bank.update(prompt_levels_db=[list(row) for row in prompt],
                        prompt_velocity_slope_table=[list(row) for row in prompt_slopes],
                        prompt_seconds=round(args.level_delay + centre, 4))
            if args.velocity_tone:  # the prompt's tone: fitted at the attack's end, drawn back as its table is
                early_tone, _, early_after = fit_velocity_tone(
                    early, dataclasses.replace(fitted, levels_db=early_table,
                                               level_velocity_slope_table=early_slopes), share=args.velocity_tone_share)
                prompt_tone, clipped = prompt_velocity_tone(tone, early_tone, VELOCITY_TONE_HZ, args.level_delay + centre,
                                                            args.prompt_delay + centre, args.prompt_share,
                                                            args.prompt_min_hz)
                if clipped:
                    print(f"the prompt's velocity tone: {clipped} values clipped to +-{TONE_MAX_DB:g} dB",
                          file=sys.stderr)
                bank.update(prompt_velocity_tone_db=[list(row) for row in prompt_tone])
                print(f"the prompt's velocity tone: median |residual| {early_after:.2f} dB at the attack's end",
                      file=sys.stderr)
            print(f"{len(early)} partial levels {args.prompt_delay:g} s after the attack's end (the prompt sound); "
                  f"median |residual| {early_err:.1f} dB", file=sys.stderr)
    else:
        print(f"only {len(levels)} partial levels measured (too few held isolated notes); levels not fitted",
              file=sys.stderr)
        if args.synthesis_inharmonicity:  # new positions beside levels read at the old ones would not fit
            print("--synthesis-inharmonicity: the partials' positions need their levels refitted; nothing printed",
                  file=sys.stderr)
            return 1
    print(json.dumps({"data": {"resonators": bank}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
