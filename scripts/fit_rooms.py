"""Fit each recording year's room in the resonator bank (data.resonators.room_years,
.room_release_tau_s, and with --tone .room_tone_hz, .room_tone_db) to a store's training audio.

    python scripts/fit_rooms.py STORE [--min-releases 5] [--sustain-threshold 64] [--pieces N]
    python scripts/fit_rooms.py STORE --tone -c CONFIG [--min-tone-seconds 60] [--tone-share 1]

Why: the years' rooms differ most in how long a note rings once its dampers fall (the room's
reverberation). On the Salamander demo data the release tail (below) of 2004 reads about 10 dB
above 2018's, while a model that conditions on the year alone made both alike (the note sheet,
docs/evaluation.md). The bank decays every partial by its `release_tau_s` after the release; a
year's room sets that decay for the recordings of that year (synthesis only: the analysis keeps
`release_tau_s`).

How: in every training piece (read one at a time), each moment where the last sounding (sustained) note is released
(not a key without dampers: with `-c`, from its `undamped_from_pitch` up),
with no onset from 0.1 s before it to 0.25 s after and no other release in the 0.1 s before, gives one
observation: the RMS 0.10-0.25 s after the release over the RMS of the last 0.1 s held (dB), the
note sheet's release-tail measure (evaluation/notesheet.py). A year's median over its observations
is matched by a partial decaying exp(-t / tau) from the release: mean of exp(-2 t / tau) over
0.10-0.25 s, in dB. Years with fewer than `--min-releases` (5) observations keep the config's release.
Prints the `"data": {"resonators": {...}}` block and, per year, the count, median and tau. The
block always carries the tone's keys (empty without `--tone`): a tone row belongs to the room year
at its position, so an old tone pasted under new rooms could land on the wrong years.

The tone (`--tone`, with the model's config `-c`): the bank's level table is the same in every
year, while the years' rooms differ in level and treble (on the demo data 2004's room is 1.5 dB
quieter and shelves 4 kHz by -3.5 dB, 2018's is 1.5 dB louder and +1.0 dB there). In every training
piece, each STFT frame's power in each band of `TONE_EDGES_HZ` is set against the power the bank's
partials carry there in that frame as synthesis sets them (`partial_levels` 1, the year's release
as this block fits it, no tone): each oscillator's `resonators.locked_amplitude` squared over 2, summed over the
oscillators of the band; frames where the bank carries under a tenth of its median there are left
out, and so are frames where the bank carries under 10 dB over the recording's floor in the band
(its 2nd percentile over the piece's frames: the room's noise is no partial). Per band, a robust regression (Huber weights) of the frames' log ratio on the years, and on
the bank's power-weighted mean velocity and pitch in the frame (each with its square: the level
table's own errors by velocity and register, which differ from piece to piece), gives each year's
offset; the tone is that offset less the frames' mean over the years (the level table is fitted
to all of them), times `--tone-share` and held within +-24 dB. Years with under
`--min-tone-seconds` of training audio get none (0 dB), and a year gets none in a band where it has
under `--min-tone-frames` frames. The partials' attacks are not modelled (the bank's power counts
from each attack's end), nor is the hammer: frames at onsets read a little high, the more so in a
piece played densely.

On the demo store (60 minutes, 133-415 s per year) the fitted tones stand 0.97 dB rms from the
demo rooms' own (their filters' power by band, and their regulation of the velocity through the
level table), whose spread over the years is 1.7 dB rms; half of each tone stands 0.99 dB from it,
0.7 of it 0.86 dB (docs/evaluation.md, "The rooms' tone").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections import defaultdict

import numpy as np

from midi2wave import constants as C
from midi2wave.conditioning import resonators
from midi2wave.config import TONE_MAX_DB, ResonatorConfig, load_config
from midi2wave.data.store import load_store_manifest, load_store_notes
from midi2wave.errors import Midi2WaveError
from midi2wave.evaluation import notesheet
from midi2wave.midi import Notes, apply_sustain

MEASURE = notesheet.DEFAULT     # the note sheet's release-tail measure (its windows)
TAIL_S = MEASURE.release_seconds  # after the release
HELD_S = MEASURE.held_seconds     # the last part held, the reference
QUIET_AFTER_S = 0.25    # no onset this long after the release (the tail window's end)
QUIET_BEFORE_S = 0.10   # no onset, and no other release, this long before it

TONE_EDGES_HZ: tuple[float, ...] = (60.0, 250.0, 500.0, 1000.0, 2000.0, 3000.0, 4000.0, 5500.0, 7800.0)
TONE_WINDOW = 2048      # STFT frame (samples at 16 kHz: 128 ms) and hop of the tone's frames
TONE_HOP = 512
TONE_MIN_FRAMES = 50    # a year with fewer frames in a band gets no tone there (`--min-tone-frames`)
TONE_POINTS = 8         # points per frame at which the bank's power is read
TONE_FLOOR_PERCENTILE = 2.0  # a band's floor in a piece: this percentile of its frames' power
TONE_MIN_SNR_DB = 10.0  # frames where the bank carries less over that floor are left out
TONE_MIN_SHARE = 0.1    # frames where the bank carries less than this share of its median band power are left out
HUBER_K = 1.5           # the regression's Huber threshold, in robust standard deviations


def tone_centres_hz(edges: tuple[float, ...] = TONE_EDGES_HZ) -> tuple[float, ...]:
    """The bands' geometric centres: where `room_tone_hz` reads each band's tone."""
    return tuple(round(math.sqrt(a * b), 1) for a, b in zip(edges[:-1], edges[1:]))


def recording_band_power(audio: np.ndarray, edges: tuple[float, ...] = TONE_EDGES_HZ,
                         sample_rate_hz: int = C.SAMPLE_RATE_HZ) -> np.ndarray:
    """float64 [frames, bands]: each Hann frame's mean-square power in each band (a sinusoid of
    amplitude a inside a band reads a**2 / 2 there), frames every `TONE_HOP` samples."""
    x = np.asarray(audio, np.float64)
    if len(x) < TONE_WINDOW:
        return np.zeros((0, len(edges) - 1))
    window = np.hanning(TONE_WINDOW)
    band = np.digitize(np.fft.rfftfreq(TONE_WINDOW, 1.0 / sample_rate_hz), edges) - 1
    out = np.zeros((1 + (len(x) - TONE_WINDOW) // TONE_HOP, len(edges) - 1))
    for start in range(0, len(out), 256):  # frames in batches: a long piece's STFT would not fit at once
        frames = np.lib.stride_tricks.sliding_window_view(x, TONE_WINDOW)[::TONE_HOP][start:start + 256]
        power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2 * (2.0 / (TONE_WINDOW * (window ** 2).sum()))
        for b in range(out.shape[1]):
            out[start:start + len(frames), b] = power[:, band == b].sum(axis=1)
    return out


def bank_band_power(notes: Notes, n_samples: int, bank: ResonatorConfig, year: int | None,
                    edges: tuple[float, ...] = TONE_EDGES_HZ, sample_rate_hz: int = C.SAMPLE_RATE_HZ
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(power, mean velocity, mean pitch), float64 [frames, bands] each, of the bank's partials in
    the frames of `recording_band_power`, as synthesis sets them without a tone (the year's release,
    the undamped top's): each oscillator's
    locked amplitude (`resonators.locked_amplitude`; 0 before its attack's end) squared over 2, its
    mean over the frame weighted as the frame's Hann window weighs power, summed over the
    oscillators of the band; velocity and pitch weighted by that power. `notes` sustained."""
    frames = 1 + (n_samples - TONE_WINDOW) // TONE_HOP if n_samples >= TONE_WINDOW else 0
    shape = (frames, len(edges) - 1)
    power, velocity, pitch = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    if frames == 0:
        return power, velocity, pitch
    s = resonators.schedule(notes, 0, n_samples, sample_rate_hz, bank).for_sampling(
        partial_levels=1.0, **resonators.sampling_release(bank, year, sample_rate_hz))
    band = np.digitize(s.omega * (sample_rate_hz / (2.0 * math.pi)), edges) - 1
    starts = np.arange(frames) * TONE_HOP
    # each frame's power is the Hann-squared-weighted mean over `TONE_POINTS` points of it, as the
    # STFT weighs the recording (a fast decay's value at the centre reads under its frame's mean)
    points = (np.arange(TONE_POINTS) + 0.5) * (TONE_WINDOW / TONE_POINTS)
    weights = np.hanning(TONE_WINDOW + 1)[np.round(points).astype(int)] ** 2
    weights /= weights.sum()
    points = points.astype(np.int64)
    for j in np.flatnonzero((band >= 0) & (band < shape[1]) & (s.level > 0)):
        first = max(0, int(np.searchsorted(starts, s.attack_end[j] - TONE_WINDOW, side="right")))
        end = int(np.searchsorted(starts, s.stop[j], side="left"))
        if end <= first:
            continue
        t = starts[first:end, None] + points[None, :]
        a = resonators.locked_amplitudes(t.ravel(), s.level[j], s.attack_end[j], s.release[j], s.r_hold_locked[j],
                                         s.r_release[j], s.r_prompt[j], s.prompt_end[j], s.knee[j],
                                         s.r_after[j]).reshape(t.shape)
        a[(t < s.attack_end[j]) | (t >= s.stop[j])] = 0.0
        e = (a * a / 2.0) @ weights
        b = band[j]
        power[first:end, b] += e
        velocity[first:end, b] += e * s.velocity[j]
        pitch[first:end, b] += e * s.pitch[j]
    carried = power > 0
    velocity[carried] /= power[carried]
    pitch[carried] /= power[carried]
    return power, velocity, pitch


def tone_rows(notes: Notes, heard: np.ndarray, n_samples: int, bank: ResonatorConfig, year: int,
              edges: tuple[float, ...] = TONE_EDGES_HZ, sample_rate_hz: int = C.SAMPLE_RATE_HZ) -> np.ndarray:
    """float64 [rows, 5] (year, band, 10 log10(recording / bank), velocity, pitch) of one piece of
    `n_samples` whose recording's band power is `heard` (`recording_band_power`): its frames where the bank carries at least `TONE_MIN_SHARE` of its median power in the band and
    `TONE_MIN_SNR_DB` over the recording's floor there (the band's `TONE_FLOOR_PERCENTILE` over the
    piece's frames: where the room's noise would be read as its tone). Both choose frames by what
    the bank carries, never by what was recorded: a choice by the recording would favour the frames
    that came out loud, the more so in a quiet room."""
    power, velocity, pitch = bank_band_power(notes, n_samples, bank, year, edges, sample_rate_hz)
    rows = []
    for b in range(power.shape[1]):
        carried = power[:, b] > 0
        if not carried.any():
            continue
        floor = float(np.percentile(heard[:, b], TONE_FLOOR_PERCENTILE)) * 10.0 ** (TONE_MIN_SNR_DB / 10.0)
        keep = np.flatnonzero((power[:, b] >= max(TONE_MIN_SHARE * float(np.median(power[carried, b])), floor))
                              & (power[:, b] > 0) & (heard[:, b] > 0))
        rows.append(np.stack([np.full(len(keep), float(year)), np.full(len(keep), float(b)),
                              10.0 * np.log10(heard[keep, b] / power[keep, b]), velocity[keep, b], pitch[keep, b]], 1))
    return np.concatenate(rows) if rows else np.zeros((0, 5))


def fit_tone(rows: np.ndarray, bands: int, min_frames: int = 1) -> dict[int, list[float]]:
    """Each year's tone, dB per band ({year: [bands]}), from `tone_rows` of every piece: per band a
    Huber-weighted least squares of the log ratio on the years' indicators and the frame's mean
    velocity and pitch (and their squares), each year's offset less the frames' mean over the
    years. Years with fewer than `min_frames` frames in a band get 0 there."""
    years = sorted({int(y) for y in rows[:, 0]})
    out = {y: [0.0] * bands for y in years}
    for b in range(bands):
        r = rows[rows[:, 1] == b]
        counts = np.array([np.count_nonzero(r[:, 0] == y) for y in years])
        fitted = [y for y, n in zip(years, counts) if n >= max(min_frames, 1)]
        if not fitted:
            continue
        r = r[np.isin(r[:, 0], fitted)]
        v, p = (r[:, 3] - 64.0) / 32.0, (r[:, 4] - 64.0) / 12.0
        design = np.concatenate([np.stack([(r[:, 0] == y).astype(float) for y in fitted], 1),
                                 np.stack([v, v * v, p, p * p], 1)], 1)
        weight = np.ones(len(r))
        for _ in range(20):  # iteratively reweighted: Huber
            theta = np.linalg.lstsq(design * weight[:, None], r[:, 2] * weight, rcond=None)[0]
            residual = r[:, 2] - design @ theta
            scale = 1.4826 * float(np.median(np.abs(residual))) + 1e-9
            weight = np.sqrt(np.minimum(1.0, HUBER_K * scale / np.maximum(np.abs(residual), 1e-12)))
        n = np.array([np.count_nonzero(r[:, 0] == y) for y in fitted], np.float64)
        offsets = theta[:len(fitted)]
        mean = float((offsets * n).sum() / n.sum())
        for y, o in zip(fitted, offsets):
            out[y][b] = float(o - mean)
    return out


def release_tails(notes, audio: np.ndarray, sample_rate_hz: int = C.SAMPLE_RATE_HZ,
                  undamped_from_pitch: int = 0) -> list[float]:
    """The release tails (dB, `notesheet.release_tail_db`) of a piece's releases into silence (see
    the module docstring). `notes` sustained; audio [n] (any scale: the tail is a ratio). A release of a
    key from `undamped_from_pitch` up (0: none) is left out: those strings have no dampers, and the bank
    gives them their own release (`ResonatorConfig.undamped_release_db_per_s`), not the room's."""
    on, off = np.asarray(notes.onset_s), np.asarray(notes.offset_s)
    pitch = np.asarray(notes.pitch)
    out = []
    for t in np.unique(off):
        if np.any((on < t) & (off > t)):  # another note still sounds
            continue
        if undamped_from_pitch > 0 and np.any((off == t) & (pitch >= undamped_from_pitch)):
            continue
        if np.any((on >= t - QUIET_BEFORE_S) & (on < t + QUIET_AFTER_S)):
            continue
        if np.any((off > t - QUIET_BEFORE_S) & (off < t)):
            continue
        offset = int(round(t * sample_rate_hz))
        if offset - HELD_S * sample_rate_hz < 0 or offset + TAIL_S[1] * sample_rate_hz > len(audio):
            continue
        tail = notesheet.release_tail_db(audio, sample_rate_hz, offset, MEASURE)
        if tail > notesheet.FLOOR_DB:  # silence held or after: no room to read
            out.append(tail)
    return out


def tail_db(tau_s: float) -> float:
    """The release tail (dB) of a partial decaying exp(-t / tau) from its held level."""
    a, b = TAIL_S
    mean = tau_s / 2.0 * (math.exp(-2.0 * a / tau_s) - math.exp(-2.0 * b / tau_s)) / (b - a)
    return 10.0 * math.log10(mean)


def tau_for(tail: float) -> float:
    """The decay time whose `tail_db` is `tail` (bisection in log tau; tail_db rises with tau)."""
    lo, hi = math.log(0.005), math.log(5.0)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if tail_db(math.exp(mid)) < tail:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store")
    ap.add_argument("--min-releases", type=int, default=5, help="fewer observations: the year keeps the base release")
    ap.add_argument("--pieces", type=int, default=0, help="at most this many training pieces (0: all)")
    ap.add_argument("--sustain-threshold", type=int, default=None,
                    help="the sustain pedal's threshold (default: -c's data.sustain_threshold, else "
                         f"{C.PEDAL_ON_THRESHOLD})")
    ap.add_argument("--tone", action="store_true", help="fit each room's tone too (needs -c)")
    ap.add_argument("-c", "--config", default=None,
                    help="the model's config: its bank (levels, decays, rooms) for --tone, its sustain threshold")
    ap.add_argument("--min-tone-seconds", type=float, default=60.0,
                    help="a year with less training audio gets no tone")
    ap.add_argument("--min-tone-frames", type=int, default=TONE_MIN_FRAMES,
                    help="a year with fewer frames in a band gets no tone there")
    ap.add_argument("--tone-share", type=float, default=1.0,
                    help="keep this fraction of each fitted tone in dB (a noisy year's estimate shrunk towards none)")
    args = ap.parse_args(argv)
    if args.tone and args.config is None:
        ap.error("--tone needs the model's config (-c)")
    if not 0.0 <= args.tone_share <= 1.0:
        ap.error("--tone-share must be between 0 and 1")
    bank = None
    data = None
    if args.config is not None:
        try:
            data = load_config(args.config).data
        except Midi2WaveError as e:  # names the file
            print(e, file=sys.stderr)
            return 1
        if data.sample_rate_hz != C.SAMPLE_RATE_HZ:
            print(f"{args.config}: data.sample_rate_hz is {data.sample_rate_hz}; a store's audio is at "
                  f"{C.SAMPLE_RATE_HZ} Hz", file=sys.stderr)
            return 1
    if args.sustain_threshold is None:  # the model's own, as its training read the pedals
        args.sustain_threshold = data.sustain_threshold if data is not None else C.PEDAL_ON_THRESHOLD
    if args.tone:
        assert data is not None  # -c is required with --tone (checked above)
        bank = data.resonators
        if not bank.levels_db:
            print(f"{args.config}: the bank has no fitted partial levels (data.resonators.levels_db) for a tone to set",
                  file=sys.stderr)
            return 1

    tails: dict[int, list[float]] = defaultdict(list)
    seconds: dict[int, float] = defaultdict(float)
    records = [r for r in load_store_manifest(args.store) if r["split"] == "train" and r.get("year") in C.MAESTRO_YEARS]
    records = records[:args.pieces or None]

    # the store is read once; the tone needs the rooms' releases first, so each piece's recording is
    # kept as its band power (a few kB) and set against the bank once the rooms are fitted
    heard: list[tuple[int, Notes, np.ndarray, int]] = []
    for record in records:  # one piece in memory at a time (a memory map)
        notes, pedals = load_store_notes(f"{args.store}/{record['notes']}")
        audio = np.load(f"{args.store}/{record['audio']}", mmap_mode="r")
        year, sustained = int(record["year"]), apply_sustain(notes, pedals, args.sustain_threshold)
        tails[year].extend(release_tails(sustained, audio, undamped_from_pitch=data.resonators.undamped_from_pitch
                                         if data is not None else 0))
        seconds[year] += len(audio) / C.SAMPLE_RATE_HZ
        if bank is not None:
            heard.append((year, sustained, recording_band_power(np.asarray(audio, np.float64) / C.PCM_SCALE),
                          len(audio)))
    years, taus = [], []
    for year in C.MAESTRO_YEARS:
        v = tails.get(year, [])
        median = float(np.median(v)) if v else float("nan")
        fitted = len(v) >= args.min_releases
        tau = tau_for(median) if fitted else float("nan")
        print(f"{year}: {len(v):4d} releases, median tail {median:6.1f} dB"
              + (f", tau {tau:.4f} s" if fitted else " (too few: the base release)"), file=sys.stderr)
        if fitted:
            years.append(year)
            taus.append(round(tau, 4))
    # the block always says what tone goes with these rooms: a tone row is a room year's, by position
    tone_hz: list[float] = []
    tone_db: list[list[float]] = []
    if bank is not None:
        toned = [y for y in C.MAESTRO_YEARS if seconds.get(y, 0.0) >= args.min_tone_seconds]
        for y in toned:  # a year with a tone but too few releases keeps the base release
            if y not in years:
                years.append(y)
                taus.append(round(bank.release_tau_s, 4))
        order = np.argsort(years)
        years, taus = [years[i] for i in order], [taus[i] for i in order]
        # the tone is measured against the bank as this block's rooms set it (their releases), without a tone
        rooms = dataclasses.replace(bank, room_years=tuple(years), room_release_tau_s=tuple(taus),
                                    room_tone_hz=(), room_tone_db=())
        fitted: dict[int, list[float]] = {}
        if len(toned) > 1:
            rows = [tone_rows(sustained, power, n, rooms, year) for year, sustained, power, n in heard if year in toned]
            fitted = fit_tone(np.concatenate(rows), len(TONE_EDGES_HZ) - 1, args.min_tone_frames)
        else:
            print(f"{args.store}: fewer than two years have {args.min_tone_seconds:g} s of training audio; "
                  "no tone fitted", file=sys.stderr)
        kept = "" if args.tone_share == 1.0 else f" (fitted; {args.tone_share:g} of it kept)"
        for y in years:
            print(f"{y}: tone{kept} " + (" ".join(f"{v:+.1f}" for v in fitted[y]) + " dB at " +
                                   " ".join(f"{f:g}" for f in tone_centres_hz()) + " Hz" if y in fitted else
                                   f"none ({seconds.get(y, 0.0):.0f} s of training audio)"), file=sys.stderr)
        if fitted:
            tone_hz = list(tone_centres_hz())
            for y in years:
                row = [args.tone_share * v for v in fitted.get(y, [0.0] * len(tone_hz))]
                if any(abs(v) > TONE_MAX_DB for v in row):
                    print(f"{y}: tone beyond +-{TONE_MAX_DB:g} dB, held there", file=sys.stderr)
                tone_db.append([round(float(np.clip(v, -TONE_MAX_DB, TONE_MAX_DB)), 2) for v in row])
    if not years:
        print(f"{args.store}: no year has {args.min_releases} releases into silence", file=sys.stderr)
        return 1
    print(json.dumps({"data": {"resonators": {"room_years": years, "room_release_tau_s": taus,
                                              "room_tone_hz": tone_hz, "room_tone_db": tone_db}}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
