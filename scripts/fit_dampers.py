"""Fit the dampers' noise (data.resonators.damper_*) to isolated notes of the training piano.

    python scripts/note_corpus.py CORPUS
    python scripts/fit_dampers.py CORPUS/2006 CORPUS/2009 ... -c configs/default.json

Why: at the release of every damped key the training piano plays a damper noise, a low thump, that
the bank did not make: the sheet's release tail of MIDI 72-89 read -18.8 dB against the training
audio's -11.6 in 2018 (docs/evaluation.md, "The dampers' noise").

What, from the recordings alone: the notes of damped keys from `--from-pitch` (60: C4) to below the
config's undamped top that sound alone (no other onset from their onset to `TO_S` after their
release). Below such a key's fundamental nothing of the note sounds, so the power of a 1024-sample
Hann window (every 5 ms) in the band from `LOW_HZ` to `BAND_FRACTION` of the fundamental, less the
band's power in the 0.2 s before the release, is the dampers' noise heard in that band:
- its shape: the mean spectrum over 0.3 s after the release of the notes whose band reaches
  `SHAPE_BAND_HZ`, fitted by the bank's filter (`resonators.damper_filter`: a resonance at
  `damper_hz` of quality `damper_q`, a one-pole low-pass at `damper_lowpass_hz`) in dB, weighted by
  log frequency;
- its envelope: per note the band's power over 0.5 s after the release, divided by the share of
  the filter's power in the note's band, against `resonators.damper_gain`'s envelope (the note's
  release in its room, `-c` CONFIG's: a folder named for a year of its rooms is that room) for each
  rise time on a grid: the rise (`damper_rise_s`) with the least error in dB over the notes, and
  per note its level (from the mean power over the envelope's: a mean of dB reads noise low);
- its level: those levels less the room's tone at `damper_hz` (`resonators.room_level_gain`; a
  render adds it back), regressed on the velocity in dB (20 log10 v, from 127) and the pitch in
  octaves (from MIDI 60): `damper_level_db`, `damper_velocity_slope`,
  `damper_pitch_db_per_octave`. The pitch slope comes from the keys measured and holds below them.

The block printed on stdout is a `"data": {"resonators": {...}}` to merge into a config (`midi2wave
export --sampling-from` re-exports a model with it: the analysis never reads it); stderr shows the fit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from fit_partials import corpus_pieces  # this folder: python scripts/fit_dampers.py

from midi2wave import constants as C
from midi2wave.config import ConfigError, load_config
from midi2wave.conditioning import resonators
from midi2wave.errors import InputError
from midi2wave.midi import pitch_to_hz

WINDOW = 1024
HOP = 80  # 5 ms
LOW_HZ = 60.0  # below, the notes' own rumble before the release outweighs the noise
BAND_FRACTION = 0.7  # of the fundamental: the band below the note
SHAPE_BAND_HZ = 700.0  # notes whose band reaches this give the spectrum's shape
BEFORE_S = 0.2
TO_S = 0.5
SPECTRUM_S = 0.3
FROM_PITCH = 60
MIN_NOTES = 8
RISE_GRID_S = np.round(np.arange(0.0, 0.2001, 0.005), 3)


def frames_power(x: np.ndarray, first: int, n: int, sample_rate_hz: int) -> tuple[np.ndarray, np.ndarray]:
    """(power spectra [n, WINDOW // 2 + 1] of n Hann windows centred every HOP samples from sample
    `first`, their frequencies)."""
    window = np.hanning(WINDOW)
    idx = first + np.arange(n)[:, None] * HOP + np.arange(WINDOW)[None, :] - WINDOW // 2
    spectra = np.abs(np.fft.rfft(x[idx] * window, axis=1)) ** 2 / np.sum(window ** 2) / (WINDOW / 2)
    return spectra, np.fft.rfftfreq(WINDOW, 1.0 / sample_rate_hz)


def release_noise(notes, x: np.ndarray, from_pitch: int, below_pitch: int, sample_rate_hz: int = C.SAMPLE_RATE_HZ):
    """Per lone note of a damped key in [from_pitch, below_pitch): (pitch, velocity, band's top in Hz,
    the band's power after the release less before it [frames], the band's mean spectrum after the
    release less before it [bins], the frequencies)."""
    out = []
    sr = sample_rate_hz
    n_after = int(TO_S * sr) // HOP
    n_before = int(BEFORE_S * sr) // HOP
    for i in range(len(notes)):
        on, off, pitch = float(notes.onset_s[i]), float(notes.offset_s[i]), int(notes.pitch[i])
        if not from_pitch <= pitch < below_pitch:
            continue
        others = np.delete(np.arange(len(notes)), i)
        if ((notes.onset_s[others] > on - 0.01) & (notes.onset_s[others] < off + TO_S)).any():
            continue
        release = int(round(off * sr))
        first = release - n_before * HOP
        if first - WINDOW // 2 < 0 or release + n_after * HOP + WINDOW // 2 > len(x):
            continue
        spectra, freqs = frames_power(x, first, n_before + n_after, sr)
        top = BAND_FRACTION * float(pitch_to_hz(pitch))
        band = (freqs >= LOW_HZ) & (freqs <= top)
        before = spectra[:n_before].mean(0)
        power = spectra[n_before:, band].sum(1) - before[band].sum()
        n_spec = int(SPECTRUM_S * sr) // HOP
        spectrum = spectra[n_before:n_before + n_spec].mean(0) - before
        out.append((pitch, int(notes.velocity[i]), top, power, spectrum, freqs))
    return out


def filter_response_db(hz: float, q: float, lowpass_hz: float, freqs: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """The dampers' noise filter's power response (dB) at `freqs`: `resonators.damper_coefficients`'."""
    b0, a1, a2, c = resonators.damper_coefficients(hz, q, lowpass_hz, sample_rate_hz)
    z = np.exp(-1j * 2.0 * np.pi * np.asarray(freqs) / float(sample_rate_hz))
    h = b0 * (1.0 - z ** 2) / (1.0 - a1 * z + a2 * z ** 2) * c / (1.0 - (1.0 - c) * z)
    return 20.0 * np.log10(np.abs(h) + 1e-20)


def fit_shape(spectra: np.ndarray, freqs: np.ndarray, top_hz: float, sample_rate_hz: int) -> tuple[float, float, float, float]:
    """(damper_hz, damper_q, damper_lowpass_hz, the fit's RMS error in dB) of the mean spectrum (power,
    [notes, bins]) between LOW_HZ and `top_hz`."""
    from scipy.optimize import minimize

    mean = spectra.mean(0)
    band = (freqs >= LOW_HZ) & (freqs <= top_hz) & (mean > 0)  # where the release added power
    target = 10.0 * np.log10(mean[band])
    weight = 1.0 / freqs[band]  # log frequency: as many weight per octave

    def loss(params):
        hz, q, lowpass = np.exp(params)
        d = target - filter_response_db(hz, q, lowpass, freqs[band], sample_rate_hz)
        d -= np.sum(weight * d) / np.sum(weight)
        return float(np.sum(weight * d * d) / np.sum(weight))

    starts = [np.log([h, q, lp]) for h in (60.0, 150.0) for q in (0.7, 3.0) for lp in (200.0, 1000.0)]
    best = min((minimize(loss, s, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-6}) for s in starts),
               key=lambda r: r.fun)
    hz, q, lowpass = (float(v) for v in np.exp(best.x))
    return hz, q, lowpass, math.sqrt(best.fun)


def envelope(since: np.ndarray, pole: float, rise: float) -> np.ndarray:
    """`resonators.damper_gain`'s envelope of one note (level 1) `since` samples after its release."""
    a = np.exp(since * math.log(pole))
    if rise > 0:
        a = np.where(since < rise, a * (0.5 - 0.5 * np.cos(np.pi * since / rise)), a)
    return a


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path, nargs="+",
                    help="folders of MIDI + audio pairs (note_corpus.py's year folders, or recordings)")
    ap.add_argument("-c", "--config", required=True, help="the model's config (its rooms and undamped top)")
    ap.add_argument("--from-pitch", type=int, default=FROM_PITCH,
                    help=f"the lowest key measured (default {FROM_PITCH}: its band below the fundamental "
                         f"reaches past the thump's resonance)")
    args = ap.parse_args(argv)
    try:
        bank = load_config(args.config).data.resonators
    except (ConfigError, OSError) as e:
        print(f"fit_dampers: {args.config}: {e}", file=sys.stderr)
        return 1
    sr = C.SAMPLE_RATE_HZ
    below = bank.undamped_from_pitch if bank.undamped_from_pitch > 0 else C.MAX_MIDI_PITCH + 1
    if not C.MIN_MIDI_PITCH <= args.from_pitch < below:
        ap.error(f"--from-pitch must be a damped key ({C.MIN_MIDI_PITCH}..{below - 1}), got {args.from_pitch}")
    rows = []
    for folder in args.corpus:
        year = int(folder.name) if folder.name.isdigit() and int(folder.name) in bank.room_years else None
        try:
            for notes, x in corpus_pieces(folder, log=lambda m: print(m, file=sys.stderr)):
                rows += [(year, *r) for r in release_noise(notes, x, args.from_pitch, below, sr)]
        except InputError as e:
            print(e, file=sys.stderr)
            return 1
    if len(rows) < MIN_NOTES:
        print(f"fit_dampers: {', '.join(map(str, args.corpus))}: {len(rows)} lone notes of damped keys from MIDI "
              f"{args.from_pitch} up, need {MIN_NOTES} (released into {TO_S:g} s of silence)", file=sys.stderr)
        return 1
    freqs = rows[0][6]
    wide = [r for r in rows if r[3] >= SHAPE_BAND_HZ]
    if len(wide) < MIN_NOTES:
        print(f"fit_dampers: {len(wide)} lone notes with a band to {SHAPE_BAND_HZ:g} Hz under their fundamental, "
              f"need {MIN_NOTES}", file=sys.stderr)
        return 1
    hz, q, lowpass, err = fit_shape(np.array([r[5] for r in wide]), freqs, SHAPE_BAND_HZ, sr)
    print(f"shape from {len(wide)} notes: resonance {hz:.1f} Hz, Q {q:.2f}, low-pass {lowpass:.1f} Hz "
          f"({err:.2f} dB RMS from the mean spectrum, {LOW_HZ:g}-{SHAPE_BAND_HZ:g} Hz)", file=sys.stderr)
    # each note's band holds this share of the filter's power
    fine = np.linspace(1.0, sr / 2.0, 8000)
    response = 10.0 ** (filter_response_db(hz, q, lowpass, fine, sr) / 10.0)
    share = {top: float(response[(fine >= LOW_HZ) & (fine <= top)].sum() / response.sum()) for top in {r[3] for r in rows}}
    since = (np.arange(len(rows[0][4])) * HOP).astype(np.float64)
    poles = {r[0]: resonators.release_pole_for(bank, r[0], sr) for r in rows}
    power = np.array([np.clip(r[4] / share[r[3]], 1e-30, None) for r in rows])  # the whole noise's power
    heard = power > 1e-12 * power.max(1, keepdims=True)
    best = None
    for rise_s in RISE_GRID_S:
        env_db = np.array([20.0 * np.log10(np.clip(envelope(since, poles[r[0]], rise_s * sr), 1e-15, None)) for r in rows])
        d = 10.0 * np.log10(power) - env_db
        keep = heard & (env_db > -40.0)  # where the envelope has fallen 40 dB the room's noise rules
        level = np.array([np.mean(d[i][keep[i]]) for i in range(len(rows))])
        error = float(np.sqrt(np.mean([np.mean((d[i][keep[i]] - level[i]) ** 2) for i in range(len(rows))])))
        if best is None or error < best[1]:
            best = (float(rise_s), error, level)
    rise_s, error, _ = best
    # each note's level from the mean of its power over the envelope's (the mean of the dB would read
    # a noise's power low: a few windows' worth of noise in a narrow band scatter by several dB)
    env = np.array([envelope(since, poles[r[0]], rise_s * sr) for r in rows])
    keep = heard & (20.0 * np.log10(np.clip(env, 1e-15, None)) > -40.0)
    level = np.array([10.0 * np.log10(np.mean(power[i][keep[i]] / env[i][keep[i]] ** 2)) for i in range(len(rows))])
    print(f"envelope: rise {rise_s:g} s, then the room's release ({error:.2f} dB RMS over {len(rows)} notes)",
          file=sys.stderr)
    # RMS level (dB) of the noise at the envelope's full level, less the room's tone at the resonance
    omega = np.array([2.0 * math.pi * hz / sr])
    tone_db = np.array([20.0 * math.log10(float(resonators.room_level_gain(bank, r[0], omega, sr)[0]))
                        if bank.room_tone_for(r[0]) is not None else 0.0 for r in rows])
    level_db = level - tone_db  # 10 log10 of the power: the RMS amplitude in dB
    pitch = np.array([r[1] for r in rows], np.float64)
    velocity = np.array([r[2] for r in rows], np.float64)
    X = np.c_[np.ones(len(rows)), resonators.velocity_db(velocity) - resonators.velocity_db(np.float64(127)),
              (pitch - 60.0) / 12.0]
    coef, *_ = np.linalg.lstsq(X, level_db, rcond=None)
    residual = level_db - X @ coef
    print(f"level: {coef[0]:.2f} dB at velocity 127 and MIDI 60, {coef[1]:.3f} dB per dB of velocity, "
          f"{coef[2]:+.2f} dB per octave ({np.std(residual):.2f} dB RMS over {len(rows)} notes, MIDI "
          f"{int(pitch.min())}-{int(pitch.max())})", file=sys.stderr)
    for p in sorted(set(pitch.tolist())):
        m = pitch == p
        print(f"MIDI {int(p)}: {int(m.sum())} notes, residual {np.mean(residual[m]):+.2f} dB", file=sys.stderr)
    print(json.dumps({"data": {"resonators": {
        "damper_level_db": round(float(coef[0]), 2), "damper_velocity_slope": round(float(coef[1]), 3),
        "damper_pitch_db_per_octave": round(float(coef[2]), 2), "damper_hz": round(hz, 1),
        "damper_q": round(q, 2), "damper_lowpass_hz": round(lowpass, 1), "damper_rise_s": rise_s}}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
