"""Fit the aftersound (data.resonators.aftersound_pitches, aftersound_knee_s,
aftersound_decay_db_per_s, aftersound_hold_decay_db_per_s) to long held notes of the training piano.

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

How: the bank's trajectory in dB from there is a line at its hold decay to the knee, then one at the
aftersound's decay. For each pitch of the grid (every `--grid-step` semitones from A0, and C8; the
notes within half a step of it), every knee on a 50-ms grid gives both decays in closed form (least
squares, each track with its own level; Huber-weighted, `HUBER_DB`); the knee with the least
weighted error wins. The hold decay is fitted too (`aftersound_hold_decay_db_per_s`): the bank's own,
`decay_scale` times one law of pitch (`midi.decay_tau_s`, halving every two octaves), is fitted over
the first half second of played notes, and the training piano's top does not follow the law (from
MIDI 81 up it dies at 16-29 dB/s where the law gives 33-71). Where the fitted hold decay is within
`--hold-tolerance` times the bank's (either way), the bank's is kept, and the knee and the
aftersound's decay are those fitted with it: there the free fit moved the decays of the notes in the
music more than it mended them (docs/evaluation.md, "The top's hold"). `--bank-hold` keeps the
bank's everywhere. The table is one decay per pitch for every partial, as the bank's is with
`decay_exponent` 0 (the bundled models'); the bank's is given at the grid pitches where it is kept. The block printed on stdout is a
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
from midi2wave.conditioning.resonators import bank_partial_hz, hold_tau_s

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
HOLD_TOLERANCE = 1.5  # the fitted hold decay replaces the bank's only where it is this many times faster or slower
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
    hz = bank_partial_hz(np.full(len(ks), float(pitch)), ks, config)
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


@dataclass
class Fit:
    """One grid pitch's fit: the knee (s after the onset), the hold decay to it and the aftersound's
    decay past it (dB/s; `hold_db_per_s` None: the bank's own), and the tracks' mean |error| (dB)
    against that trajectory and against the bank's one decay."""
    knee_s: float
    hold_db_per_s: float | None
    decay_db_per_s: float
    error_db: float
    one_decay_error_db: float


def fit_knee(tracks: list[Track], config: ResonatorConfig, fit_hold: bool = True) -> Fit:
    """The knee and decays of these tracks (see the module docstring): at each knee on the grid, the
    decays by Huber-reweighted least squares, each track with its own level; the knee with the least
    Huber loss wins. `fit_hold` False: the hold decay is the bank's (`bank_decay_db_per_s`)."""
    t0 = lock_end_s(config)
    n = max(len(tr.t_s) for tr in tracks)
    T = np.zeros((len(tracks), n))
    A = np.zeros((len(tracks), n))
    M = np.zeros((len(tracks), n))
    for i, tr in enumerate(tracks):
        T[i, :len(tr.t_s)], A[i, :len(tr.db)], M[i, :len(tr.t_s)] = tr.t_s, tr.db, 1.0
    s1_bank = bank_decay_db_per_s(np.array([tr.pitch for tr in tracks]), np.array([tr.k for tr in tracks]), config)[:, None]

    def solve(knee_s: float) -> tuple[float | None, float, float, float]:
        """(hold decay, aftersound decay, Huber loss, mean |error|) at this knee:
        A ~ c_i - s1 (min(T, knee) - t0) - s2 max(0, T - knee)."""
        X1 = np.minimum(T, knee_s) - t0
        X2 = np.maximum(T - knee_s, 0.0)
        W = M.copy()
        s1: float | None = None
        s2 = 0.0
        for _ in range(4):  # Huber by reweighting
            w_sum = np.maximum(W.sum(axis=1, keepdims=True), 1e-12)

            def centred(Z: np.ndarray) -> np.ndarray:
                return Z - (W * Z).sum(axis=1, keepdims=True) / w_sum

            y, x1, x2 = centred(A), centred(X1), centred(X2)
            if fit_hold:
                gram = np.array([[(W * x1 * x1).sum(), (W * x1 * x2).sum()], [(W * x1 * x2).sum(), (W * x2 * x2).sum()]])
                rhs = np.array([(W * x1 * y).sum(), (W * x2 * y).sum()])
                if abs(np.linalg.det(gram)) > 1e-12 * max(1.0, float(np.abs(gram).max())) ** 2:
                    b1, b2 = np.linalg.solve(gram, rhs)
                else:  # a knee past every point: one decay
                    b1, b2 = ((W * x1 * y).sum() / gram[0, 0] if gram[0, 0] > 0 else 0.0), 0.0
                s1 = float(np.clip(-b1, 0.0, MAX_DECAY_DB_PER_S))
                s2 = float(np.clip(-b2, 0.0, MAX_DECAY_DB_PER_S))
                r = y + s1 * x1 + s2 * x2
            else:
                y = y + centred(s1_bank * X1)
                den = (W * x2 * x2).sum()
                s2 = float(np.clip(-(W * y * x2).sum() / den, 0.0, MAX_DECAY_DB_PER_S)) if den > 0 else 0.0
                r = y + s2 * x2
            W = M * _huber_weights(r, HUBER_DB)
        return s1, s2, float((M * _huber_loss(r, HUBER_DB)).sum()), float((M * np.abs(r)).sum() / M.sum())

    best = None
    last = max(t0, float(T.max()) - 0.3)
    for knee in np.arange(t0, last + 1e-9, KNEE_STEP_S):
        s1, s2, loss, err = solve(float(knee))
        if best is None or loss < best[3]:
            best = (float(knee), s1, s2, loss, err)
    # the bank's one decay: the knee past every point
    y = A + s1_bank * (T - t0)
    W = M.copy()
    for _ in range(4):
        r = y - (W * y).sum(axis=1, keepdims=True) / np.maximum(W.sum(axis=1, keepdims=True), 1e-12)
        W = M * _huber_weights(r, HUBER_DB)
    one = float((M * np.abs(r)).sum() / M.sum())
    knee, s1, s2, _, err = best
    return Fit(round(knee, 3), None if s1 is None else round(s1, 2), round(s2, 2), err, one)


def grid_pitches(step: int = GRID_STEP) -> list[int]:
    """A0, every `step` semitones, and C8."""
    grid = list(range(C.MIN_MIDI_PITCH, C.MAX_MIDI_PITCH + 1, step))
    return grid if grid[-1] == C.MAX_MIDI_PITCH else grid + [C.MAX_MIDI_PITCH]


def fit(tracks: list[Track], config: ResonatorConfig, log=print, step: int = GRID_STEP,
        hold_tolerance: float = HOLD_TOLERANCE) -> dict:
    """The aftersound settings (`ResonatorConfig` keys) fitted to the tracks on `grid_pitches(step)`,
    each grid pitch from the notes within half a step of it: grid pitches with fewer than `MIN_TRACKS`
    tracks are left out (the neighbours' values reach them). The hold decay
    (`aftersound_hold_decay_db_per_s`) is the fitted one where it is more than `hold_tolerance` times
    faster or slower than the bank's, else the bank's (math.inf: the bank's everywhere, and no table).
    Raises ValueError when no grid pitch has enough."""
    pitches, knees, holds, decays = [], [], [], []
    any_fitted = False  # a table only where some grid pitch takes its fitted hold decay
    track_pitch = np.array([tr.pitch for tr in tracks])
    for p in grid_pitches(step):
        pool = [tr for tr, q in zip(tracks, track_pitch) if abs(q - p) <= step // 2]
        if len(pool) < MIN_TRACKS:
            log(f"pitch {p}: {len(pool)} tracks, too few; left to its neighbours")
            continue
        bank = float(np.median(bank_decay_db_per_s(p, np.array([tr.k for tr in pool]), config)))
        kept = fit_knee(pool, config, fit_hold=False)
        got, note = kept, "the bank's"
        if math.isfinite(hold_tolerance):
            free = fit_knee(pool, config)
            assert free.hold_db_per_s is not None
            if not bank / hold_tolerance <= free.hold_db_per_s <= bank * hold_tolerance:
                got, note, any_fitted = free, f"fitted; the bank's {bank:.1f}", True
            else:
                note = f"the bank's; fitted {free.hold_db_per_s:.1f}"
        hold = got.hold_db_per_s if got.hold_db_per_s is not None else round(bank, 2)
        log(f"pitch {p}: {len(pool)} tracks; decay {hold:.1f} ({note}) -> knee {got.knee_s:.2f} s -> "
            f"{got.decay_db_per_s:.1f} dB/s; mean |error| {got.error_db:.2f} dB (one decay: {got.one_decay_error_db:.2f})")
        pitches.append(float(p))
        knees.append(got.knee_s)
        holds.append(hold)
        decays.append(got.decay_db_per_s)
    if not pitches:
        raise ValueError(f"no grid pitch has {MIN_TRACKS} tracks")
    block = {"aftersound_pitches": pitches, "aftersound_knee_s": knees, "aftersound_decay_db_per_s": decays}
    # [] keeps the bank's hold decay (its law of pitch) everywhere. With a table, the pitches between
    # grid pitches that keep the bank's get it linearly interpolated: within 0.5 % of the law at a
    # 6-semitone step (its time constant halves every 24)
    block["aftersound_hold_decay_db_per_s"] = holds if any_fitted else []
    return block


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path, nargs="+",
                    help="folders of MIDI + audio pairs (note_corpus.py --hold-seconds 5, or recordings)")
    ap.add_argument("-c", "--config", required=True,
                    help="the model's config: where its bank puts the partials, its decays and prompt sound")
    ap.add_argument("--grid-step", type=int, default=GRID_STEP,
                    help=f"semitones between the grid's pitches (default {GRID_STEP}; 3: every sampled key of "
                         "note_corpus.py's default pitches)")
    ap.add_argument("--hold-tolerance", type=float, default=HOLD_TOLERANCE,
                    help="the fitted hold decay replaces the bank's only where it is more than this many times "
                         f"faster or slower (default {HOLD_TOLERANCE:g}; 1: everywhere)")
    ap.add_argument("--bank-hold", action="store_true",
                    help="keep the bank's hold decay everywhere; fit only the knee and the aftersound's decay")
    args = ap.parse_args(argv)
    if args.grid_step < 1:
        ap.error(f"--grid-step must be at least 1, got {args.grid_step}")
    if not (math.isfinite(args.hold_tolerance) and args.hold_tolerance >= 1.0):
        ap.error(f"--hold-tolerance must be a number >= 1, got {args.hold_tolerance:g}")
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
        block = fit(tracks, config, log=lambda m: print(m, file=sys.stderr), step=args.grid_step,
                    hold_tolerance=math.inf if args.bank_hold else args.hold_tolerance)
    except ValueError as e:
        print(f"fit_aftersound: {', '.join(map(str, args.corpus))}: {e} (hold notes {MIN_HOLD_S:g} s or more, alone)",
              file=sys.stderr)
        return 1
    print(json.dumps({"data": {"resonators": block}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
