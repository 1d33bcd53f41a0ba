"""Where a note sheet's upper partials lie, generated against the training audio: per pitch and
year, the median distance (cents) from each of the recording's partials to the render's nearest
peak, and the median level difference (dB) between the two peaks.

    python scripts/partial_positions.py SHEET [--velocities 90 120] [--from-partial 17] [--to-partial 64]
        [--years 2004 2018]

SHEET is a folder written by `midi2wave evaluate --note-sheet` (its note_sheet.json and WAVs). For
each grid note at the chosen velocities, the held part (0.1 to 0.8 s after the onset, a Hann window
zero-padded 16 times) of the recording is searched for its partials, each near the previous one plus
the mean of the last intervals (`notesheet.find_partials`: a stiff string's stretch is followed).
Each partial from `--from-partial` to `--to-partial` (the bundled bank's highest in synthesis: a
render has none above it to compare) that stands `--min-db` (15) over the median of the spectrum
within half a partial spacing is compared with the render's largest peak within 0.4 of a spacing of
it (both parabolically interpolated), so a render's partial further off than that (17 cents at
partial 40) reads as at most that far: the render's partials tracked on their own slip on the
recording's bass, whose doubled and missing peaks renumber them. Why: partials above the analysis's 16 lie where the bank puts
them (synthesis only), so a bank that places them off the string's stretch detunes the upper
partials and reads their levels off their peaks (docs/evaluation.md, "Where the upper partials lie").
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from fit_partials import parabolic_shift  # this folder: python scripts/partial_positions.py

from midi2wave.evaluation.notesheet import DEFAULT, NoteSheet, find_partials
from midi2wave.midi import pitch_to_hz

HELD_S = (0.1, 0.8)  # after the onset: past the hammer, before the release of the sheet's 0.8-s notes
PAD = 16
REACH = 0.4  # the render's peak is searched this many partial spacings either side of the recording's


def _spectrum(x: np.ndarray, sr: int, onset_s: float) -> tuple[np.ndarray, float]:
    """(power spectrum of the held part, bin width Hz)."""
    seg = x[int((onset_s + HELD_S[0]) * sr):int((onset_s + HELD_S[1]) * sr)]
    n = len(seg)
    return np.abs(np.fft.rfft(seg * np.hanning(n), PAD * n)) ** 2, sr / (PAD * n)


def _peak_hz(power: np.ndarray, j: int, bin_hz: float) -> float:
    """Bin j's frequency, parabolically interpolated (`fit_partials.parabolic_shift`)."""
    return (j + parabolic_shift(power, j, floor=1e-30)) * bin_hz


def compare(model: np.ndarray, reference: np.ndarray, sr: int, onset_s: float, pitch: int, from_partial: int,
            to_partial: int, min_db: float) -> list[tuple[float, float]]:
    """[(cents from the recording's partial to the render's peak, level difference dB)] of one note's
    partials `from_partial` to `to_partial`."""
    ref, bin_hz = _spectrum(reference, sr, onset_s)
    gen, _ = _spectrum(model, sr, onset_s)
    options = DEFAULT
    peaks = find_partials(ref, float(pitch_to_hz(pitch)), bin_hz, options)
    out = []
    for k in range(from_partial, min(len(peaks), to_partial) + 1):
        j = int(peaks[k - 1])
        spacing_bins = (peaks[k - 1] - peaks[k - 2]) if k >= 2 else peaks[0]
        half_bins = max(int(0.5 * spacing_bins), 2)
        near = ref[max(j - half_bins, 0):j + half_bins + 1]
        if 10.0 * math.log10(ref[j] / (np.median(near) + 1e-30) + 1e-30) < min_db:
            continue
        reach_bins = max(int(REACH * spacing_bins), 1)
        lo = max(j - reach_bins, 1)
        m = lo + int(np.argmax(gen[lo:j + reach_bins + 1]))
        f_ref, f_gen = _peak_hz(ref, j, bin_hz), _peak_hz(gen, m, bin_hz)
        out.append((1200.0 * math.log2(f_gen / f_ref), 10.0 * math.log10((gen[m] + 1e-30) / (ref[j] + 1e-30))))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sheet", type=Path)
    ap.add_argument("--velocities", type=int, nargs="+", default=[90, 120])
    ap.add_argument("--from-partial", type=int, default=17,
                    help="the first partial compared (default 17: the bundled bank's first synthesis-only one)")
    ap.add_argument("--to-partial", type=int, default=64,
                    help="the last partial compared (default 64: the bundled bank's highest in synthesis)")
    ap.add_argument("--min-db", type=float, default=15.0,
                    help="a recording's partial counts where it stands this far over the spectrum around it")
    ap.add_argument("--years", type=int, nargs="+", default=None, help="default: the sheet's")
    args = ap.parse_args(argv)
    if not (args.sheet / "note_sheet.json").is_file():
        print(f"{args.sheet}: no note_sheet.json (write one with midi2wave evaluate --note-sheet)", file=sys.stderr)
        return 1
    if not 1 <= args.from_partial <= args.to_partial:
        ap.error("--from-partial must be >= 1 and <= --to-partial")
    written = json.loads((args.sheet / "note_sheet.json").read_text())
    years = args.years or written["comparison"]["years"]
    notes, _ = NoteSheet(**written["sheet"]).notes()
    print(f"{args.sheet}: the recording's partials {args.from_partial}-{args.to_partial} against the render's nearest peaks, "
          f"velocities {args.velocities}: median |cents|, median level difference dB (partials compared)")
    for year in years:
        try:
            model, sr = sf.read(args.sheet / "audio" / f"model_{year}.wav", dtype="float64")
            reference, _ = sf.read(args.sheet / "audio" / f"reference_{year}.wav", dtype="float64")
        except (OSError, RuntimeError) as e:  # soundfile's error names the file
            print(f"{args.sheet}: {e}", file=sys.stderr)
            return 1
        rows: dict[int, list[tuple[float, float]]] = {}
        for onset, pitch, velocity in zip(notes.onset_s, notes.pitch.tolist(), notes.velocity.tolist()):
            if velocity in args.velocities:
                rows.setdefault(pitch, []).extend(compare(model, reference, sr, float(onset), pitch, args.from_partial,
                                                          args.to_partial, args.min_db))
        for pitch, got in sorted(rows.items()):
            if got:
                cents, db = np.asarray(got).T
                print(f"{year} MIDI {pitch:3d}: {np.median(np.abs(cents)):5.1f} cents, {np.median(db):+5.1f} dB ({len(got)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
