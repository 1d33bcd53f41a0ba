"""Fit each recording year's room in the resonator bank (data.resonators.room_years,
.room_release_tau_s) to a store's training audio.

    python scripts/fit_rooms.py STORE [--min-releases 5] [--sustain-threshold 64] [--pieces N]

Why: the years' rooms differ most in how long a note rings once its dampers fall (the room's
reverberation). On the Salamander demo data the release tail (below) of 2004 reads about 10 dB
above 2018's, while a model that conditions on the year alone made both alike (the note sheet,
docs/evaluation.md). The bank decays every partial by its `release_tau_s` after the release; a
year's room sets that decay for the recordings of that year (synthesis only: the analysis keeps
`release_tau_s`).

How: in every training piece (read one at a time), each moment where the last sounding (sustained) note is released,
with no onset from 0.1 s before it to 0.25 s after and no other release in the 0.1 s before, gives one
observation: the RMS 0.10-0.25 s after the release over the RMS of the last 0.1 s held (dB), the
note sheet's release-tail measure (evaluation/notesheet.py). A year's median over its observations
is matched by a partial decaying exp(-t / tau) from the release: mean of exp(-2 t / tau) over
0.10-0.25 s, in dB. Years with fewer than `--min-releases` (5) observations keep the config's release.
Prints the `"data": {"resonators": {...}}` block and, per year, the count, median and tau.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict

import numpy as np

from midi2wave import constants as C
from midi2wave.data.store import load_store_manifest, load_store_notes
from midi2wave.evaluation import notesheet
from midi2wave.midi import apply_sustain

MEASURE = notesheet.DEFAULT     # the note sheet's release-tail measure (its windows)
TAIL_S = MEASURE.release_seconds  # after the release
HELD_S = MEASURE.held_seconds     # the last part held, the reference
QUIET_AFTER_S = 0.25    # no onset this long after the release (the tail window's end)
QUIET_BEFORE_S = 0.10   # no onset, and no other release, this long before it


def release_tails(notes, audio: np.ndarray, sample_rate_hz: int = C.SAMPLE_RATE_HZ) -> list[float]:
    """The release tails (dB, `notesheet.release_tail_db`) of a piece's releases into silence (see
    the module docstring). `notes` sustained; audio [n] (any scale: the tail is a ratio)."""
    on, off = np.asarray(notes.onset_s), np.asarray(notes.offset_s)
    out = []
    for t in np.unique(off):
        if np.any((on < t) & (off > t)):  # another note still sounds
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
    ap.add_argument("--sustain-threshold", type=int, default=C.PEDAL_ON_THRESHOLD,
                    help="the sustain pedal's threshold (the model's data.sustain_threshold)")
    args = ap.parse_args(argv)

    tails: dict[int, list[float]] = defaultdict(list)
    records = [r for r in load_store_manifest(args.store) if r["split"] == "train" and r.get("year") in C.MAESTRO_YEARS]
    for record in records[:args.pieces or None]:  # one piece in memory at a time (a memory map)
        notes, pedals = load_store_notes(f"{args.store}/{record['notes']}")
        audio = np.load(f"{args.store}/{record['audio']}", mmap_mode="r")
        tails[int(record["year"])].extend(release_tails(apply_sustain(notes, pedals, args.sustain_threshold), audio))
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
    if not years:
        print(f"{args.store}: no year has {args.min_releases} releases into silence", file=sys.stderr)
        return 1
    print(json.dumps({"data": {"resonators": {"room_years": years, "room_release_tau_s": taus}}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
