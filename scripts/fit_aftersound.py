"""Fit the aftersound (data.resonators.aftersound_pitches, aftersound_knee_s,
aftersound_decay_db_per_s) to long held notes of the training piano.

    python scripts/note_corpus.py CORPUS --velocities 40 68 100 124 --hold-seconds 5 --spacing-seconds 6.5
    python scripts/fit_aftersound.py CORPUS -c configs/default.json

Why: a struck string's partials die at one rate for the first second or so, then much more slowly
(its vertical motion couples to the soundboard and dies first; its horizontal motion and the
unison's out-of-phase modes ring on: a piano's double decay). The bank decays every partial at one
rate (`decay_scale`, fitted by fit_partials.py over the first half second), so a held note died
too fast: its partials a median 6.1 dB under the training piano's 1.5 s after its onset, 9.8 dB
under at 2 s and 19.3 at 3.4 s (docs/evaluation.md, "The aftersound").

What: every note that sounds alone (no other onset from its onset to its release, no earlier note
sounding within `QUIET_BEFORE_S` of it) and is held past `MIN_HOLD_S` gives, per partial below
7.8 kHz (at most `MAX_PARTIAL`), a track: the peak of a 2048-sample Hann window's spectrum (zero-padded
to 1 Hz bins) within 40 cents of where `-c CONFIG`'s bank puts the partial, every 50 ms from the end
of the bank's prompt sound (`attack_s` + `prompt_seconds` after the onset; there the lock's decay
is the bank's own) to 0.1 s before the release. Points under `CLEAR_DB` over the spectrum's median
between that partial and the next are the recording's floor and left out, and so are partials more
than `AUDIBLE_DB` under the note's loudest at the track's start.

How: the bank's trajectory in dB from there is a line at the bank's decay (`decay_scale`,
`decay_exponent`) to the knee, then one at the aftersound's decay. For each pitch of the grid (every
6 semitones from A0 and C8; the notes within 3 semitones of it), every knee on a 50-ms grid gives the
aftersound's decay in closed form (least squares, each track with its own level; Huber-weighted,
`HUBER_DB`); the knee with the least weighted error wins. The block printed on stdout is a
`"data": {"resonators": {...}}` to merge into a config (`midi2wave export --sampling-from`
re-exports a model with it: the analysis never reads it, so the network is unchanged). Per grid
pitch, stderr shows the knee, both decays, the tracks used and the error against one decay.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fit_partials import corpus_pieces  # this folder: python scripts/fit_aftersound.py

from midi2wave import constants as C
from midi2wave.config import ConfigError, ResonatorConfig, load_config
from midi2wave.errors import InputError
from midi2wave.conditioning.resonators import hold_tau_s, partial_hz

WINDOW = 2048
PAD = 16384          # zero-padded to 1-Hz bins at 16 kHz
HOP_S = 0.05
SEARCH_CENTS = 40.0
MAX_HZ = 7800.0
MAX_PARTIAL = 8
CLEAR_DB = 12.0      # a point must stand this far over the median between its partial and the next
AUDIBLE_DB = 30.0    # a track must start within this much of the note's loudest partial
MIN_POINTS = 10
MIN_HOLD_S = 1.5     # shorter holds cannot show a knee
QUIET_BEFORE_S = 0.3
RELEASE_MARGIN_S = 0.1
GRID_STEP = 6        # semitones between the grid's pitches
POOL_SEMITONES = 3   # notes this close to a grid pitch are its observations
KNEE_STEP_S = 0.05
MAX_DECAY_DB_PER_S = 200.0
HUBER_DB = 3.0
MIN_TRACKS = 8
DB_PER_NEPER = 20.0 / math.log(10.0)


@dataclass
class Track:
    """One partial of one held note: its level (dB) at times after the onset (s)."""
    pitch: int
    velocity: int
    k: int
    t_s: np.ndarray
    db: np.ndarray


def lock_end_s(config: ResonatorConfig) -> float:
    """Seconds from a note's onset to the end of its prompt sound: the bank decays by its own hold decay
    from there (`resonators.oscillators`: prompt_end)."""
    return float(config.attack_s) + (float(config.prompt_seconds) if config.prompt_levels_db else 0.0)


def bank_decay_db_per_s(pitch, k, config: ResonatorConfig) -> np.ndarray:
    """The bank's hold decay (dB per second) of partial k of notes of this pitch (`resonators.hold_tau_s`)."""
    return DB_PER_NEPER / hold_tau_s(np.asarray(pitch, np.float64), k, config)


def alone(notes, i: int) -> bool:
    """Whether note i sounds alone from its onset to its release: no other onset in between (from 10 ms
    before), and no earlier note sounding within `QUIET_BEFORE_S` before its onset."""
    on, off = notes.onset_s[i], notes.offset_s[i]
    others = np.ones(len(notes), bool)
    others[i] = False
    clash = (notes.onset_s > on - 0.01) & (notes.onset_s < off)
    ringing = (notes.onset_s <= on - 0.01) & (notes.offset_s > on - QUIET_BEFORE_S)
    return not (others & (clash | ringing)).any()


def note_tracks(x: np.ndarray, onset_s: float, offset_s: float, pitch: int, velocity: int,
                config: ResonatorConfig, sample_rate_hz: int = C.SAMPLE_RATE_HZ) -> list[Track]:
    """The tracks of one held note's partials (see the module docstring); [] where it is held too
    briefly or runs past the audio."""
    t0 = lock_end_s(config)
    times = np.arange(t0, offset_s - onset_s - RELEASE_MARGIN_S + 1e-9, HOP_S)
    if len(times) < MIN_POINTS or offset_s - onset_s < MIN_HOLD_S:
        return []
    centres = np.round((onset_s + times) * sample_rate_hz).astype(np.int64)
    if centres[0] - WINDOW // 2 < 0 or centres[-1] + WINDOW // 2 > len(x):
        return []
    frames = np.stack([x[c - WINDOW // 2:c + WINDOW // 2] for c in centres]) * np.hanning(WINDOW)
    spectra = np.abs(np.fft.rfft(frames, PAD, axis=1))
    freqs = np.fft.rfftfreq(PAD, 1.0 / sample_rate_hz)
    ks = np.arange(1, MAX_PARTIAL + 2, dtype=np.float64)
    hz = partial_hz(np.full(len(ks), float(pitch)), ks, config.tuning_cents, config.inharmonicity)
    out = []  # (the track's level at its start, the track)
    for j in range(MAX_PARTIAL):
        if hz[j] > min(MAX_HZ, config.max_hz):
            break
        near = (freqs > hz[j] * 2.0 ** (-SEARCH_CENTS / 1200.0)) & (freqs < hz[j] * 2.0 ** (SEARCH_CENTS / 1200.0))
        between = (freqs > hz[j] + (hz[j + 1] - hz[j]) / 3.0) & (freqs < hz[j] + 2.0 * (hz[j + 1] - hz[j]) / 3.0)
        if not near.any() or not between.any():
            continue
        db = 20.0 * np.log10(spectra[:, near].max(axis=1) + 1e-12)
        floor = 20.0 * np.log10(np.median(spectra[:, between], axis=1) + 1e-12)
        clear = db > floor + CLEAR_DB
        out.append((float(db[0]), Track(int(pitch), int(velocity), j + 1, times[clear], db[clear])))
    loudest = max((start for start, _ in out), default=-np.inf)
    return [track for start, track in out if start >= loudest - AUDIBLE_DB and len(track.t_s) >= MIN_POINTS]


def measure(pieces, config: ResonatorConfig, sample_rate_hz: int = C.SAMPLE_RATE_HZ) -> list[Track]:
    """Every track of every held, lone note of [(sustained notes, audio float [n])]."""
    tracks = []
    for notes, x in pieces:
        for i in range(len(notes)):
            if alone(notes, i):
                tracks += note_tracks(x, float(notes.onset_s[i]), float(notes.offset_s[i]), int(notes.pitch[i]),
                                      int(notes.velocity[i]), config, sample_rate_hz)
    return tracks


def _huber_weights(residual: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(residual)
    return np.where(a <= delta, 1.0, delta / np.maximum(a, 1e-12))


def _huber_loss(residual: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(residual)
    return np.where(a <= delta, 0.5 * a * a, delta * (a - 0.5 * delta))


def fit_knee(tracks: list[Track], config: ResonatorConfig) -> tuple[float, float, float, float]:
    """(knee s after the onset, aftersound decay dB/s, mean |error| dB with it, the same with the bank's
    one decay) for these tracks (see the module docstring); the knee with the least Huber loss wins."""
    t0 = lock_end_s(config)
    n = max(len(tr.t_s) for tr in tracks)
    T = np.zeros((len(tracks), n))
    A = np.zeros((len(tracks), n))
    M = np.zeros((len(tracks), n))
    for i, tr in enumerate(tracks):
        T[i, :len(tr.t_s)], A[i, :len(tr.db)], M[i, :len(tr.t_s)] = tr.t_s, tr.db, 1.0
    s1 = bank_decay_db_per_s(np.array([tr.pitch for tr in tracks]), np.array([tr.k for tr in tracks]), config)[:, None]

    def solve(knee_s: float) -> tuple[float, float, float]:
        """(decay, Huber loss, mean |error|) at this knee: y = A + s1 (min(T, knee) - t0) ~ c_i - s2 max(0, T - knee)."""
        y = A + s1 * (np.minimum(T, knee_s) - t0)
        P = np.maximum(T - knee_s, 0.0)
        W = M.copy()
        s2 = 0.0
        for _ in range(4):  # Huber by reweighting
            w_sum = np.maximum(W.sum(axis=1, keepdims=True), 1e-12)
            yc = y - (W * y).sum(axis=1, keepdims=True) / w_sum
            pc = P - (W * P).sum(axis=1, keepdims=True) / w_sum
            den = (W * pc * pc).sum()
            s2 = float(np.clip(-(W * yc * pc).sum() / den, 0.0, MAX_DECAY_DB_PER_S)) if den > 0 else 0.0
            r = yc + s2 * pc
            W = M * _huber_weights(r, HUBER_DB)
        return s2, float((M * _huber_loss(r, HUBER_DB)).sum()), float((M * np.abs(r)).sum() / M.sum())

    best = None
    last = max(t0, float(T.max()) - 0.3)
    for knee in np.arange(t0, last + 1e-9, KNEE_STEP_S):
        s2, loss, err = solve(float(knee))
        if best is None or loss < best[2]:
            best = (float(knee), s2, loss, err)
    # the bank's one decay: the knee past every point
    y = A + s1 * (T - t0)
    W = M.copy()
    for _ in range(4):
        r = y - (W * y).sum(axis=1, keepdims=True) / np.maximum(W.sum(axis=1, keepdims=True), 1e-12)
        W = M * _huber_weights(r, HUBER_DB)
    one = float((M * np.abs(r)).sum() / M.sum())
    return round(best[0], 3), round(best[1], 2), best[3], one


def grid_pitches(step: int = GRID_STEP) -> list[int]:
    """A0, every `step` semitones, and C8."""
    grid = list(range(C.MIN_MIDI_PITCH, C.MAX_MIDI_PITCH + 1, step))
    return grid if grid[-1] == C.MAX_MIDI_PITCH else grid + [C.MAX_MIDI_PITCH]


def fit(tracks: list[Track], config: ResonatorConfig, log=print) -> dict:
    """The aftersound settings (`ResonatorConfig` keys) fitted to the tracks on `grid_pitches`: grid
    pitches with fewer than `MIN_TRACKS` tracks are left out (the neighbours' values reach them).
    Raises ValueError when no grid pitch has enough."""
    pitches, knees, decays = [], [], []
    track_pitch = np.array([tr.pitch for tr in tracks])
    for p in grid_pitches():
        pool = [tr for tr, q in zip(tracks, track_pitch) if abs(q - p) <= POOL_SEMITONES]
        if len(pool) < MIN_TRACKS:
            log(f"pitch {p}: {len(pool)} tracks, too few; left to its neighbours")
            continue
        knee, decay, err, one = fit_knee(pool, config)
        first = float(np.median(bank_decay_db_per_s(p, np.array([tr.k for tr in pool]), config)))
        log(f"pitch {p}: {len(pool)} tracks; knee {knee:.2f} s, decay {first:.1f} -> {decay:.1f} dB/s; "
            f"mean |error| {err:.2f} dB (one decay: {one:.2f})")
        pitches.append(float(p))
        knees.append(knee)
        decays.append(decay)
    if not pitches:
        raise ValueError(f"no grid pitch has {MIN_TRACKS} tracks")
    return {"aftersound_pitches": pitches, "aftersound_knee_s": knees, "aftersound_decay_db_per_s": decays}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path, nargs="+",
                    help="folders of MIDI + audio pairs (note_corpus.py --hold-seconds 5, or recordings)")
    ap.add_argument("-c", "--config", required=True,
                    help="the model's config: where its bank puts the partials, its decays and prompt sound")
    args = ap.parse_args(argv)
    try:
        config = load_config(args.config).data.resonators
    except (ConfigError, OSError, ValueError) as e:  # its message names the file
        print(f"fit_aftersound: {e}", file=sys.stderr)
        return 1
    if not config.enabled:
        print(f"fit_aftersound: {args.config}: the model has no resonator bank (data.resonators.partials 0)",
              file=sys.stderr)
        return 1
    pieces = []
    for folder in args.corpus:
        try:
            pieces += corpus_pieces(folder, log=lambda m: print(m, file=sys.stderr))
        except InputError as e:
            print(e, file=sys.stderr)
            return 1
    tracks = measure(pieces, config)
    print(f"{len(tracks)} partial tracks of {len({(t.pitch, t.velocity) for t in tracks})} pitch-velocity pairs",
          file=sys.stderr)
    try:
        block = fit(tracks, config, log=lambda m: print(m, file=sys.stderr))
    except ValueError as e:
        print(f"fit_aftersound: {', '.join(map(str, args.corpus))}: {e} (hold notes {MIN_HOLD_S:g} s or more, alone)",
              file=sys.stderr)
        return 1
    print(json.dumps({"data": {"resonators": block}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
