"""How a note sheet's partials move through the first 0.7 s, generated against the training audio:
the median level difference (dB) at the partials' spectral peaks, by frequency band and time after
the onset.

    python scripts/partial_tracks.py SHEET [--velocities 120] [--min-pitch 48] [--years 2004 2018]

SHEET is a folder written by `midi2wave evaluate --note-sheet` (its note_sheet.json and WAVs). For
each note at the chosen velocities and pitches, each partial below 7.8 kHz (where the bundled
model's bank puts it, `--checkpoint` for another model's) is read in both renders as the highest
peak of a 64-ms Hann window's spectrum within -40..+50 cents of it (less where the next partial is
closer), at 25, 50, 100, 200, 400 and 700 ms after the onset. Why: the note sheet's measures
summarise the top as shares of all the energy; this shows where in frequency and time a render's
partials part from the training piano's (docs/evaluation.md, "The prompt sound": the bank decayed
every partial of a note at one rate, so a loud note's top left the attack 7-17 dB dark).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from midi2wave.checkpoint import bundled_model_path, load_state
from midi2wave.conditioning.resonators import bank_partial_hz
from midi2wave.evaluation.notesheet import NoteSheet

TIMES_S = (0.025, 0.05, 0.1, 0.2, 0.4, 0.7)
BANDS_HZ = ((0, 2000), (2000, 3000), (3000, 4000), (4000, 5000), (5000, 6000), (6000, 8000))
WINDOW = 1024
N_FFT = 16384
MAX_HZ = 7800.0


def peak_db(spectrum: np.ndarray, freqs: np.ndarray, hz: float, k: int) -> float:
    """The highest magnitude (dB) within -40..+50 cents of partial k's place `hz`, narrower where
    partials k - 0.4 .. k + 0.4 would overlap the search."""
    half = min(40.0, 1200.0 * np.log2((k + 0.4) / k))
    sel = (freqs > hz * 2.0 ** (-half / 1200.0)) & (freqs < hz * 2.0 ** ((half + 10.0) / 1200.0))
    return float(20.0 * np.log10(spectrum[sel].max() + 1e-12))


def tracks(sheet: Path, years, velocities, min_pitch: int, bank) -> dict:
    """{(band, time index): [model - reference dB, ...]} over the sheet's notes, at the partials of
    `bank` (a `ResonatorConfig`: where it puts them, `resonators.bank_partial_hz`)."""
    notes, _ = NoteSheet(**json.loads((sheet / "note_sheet.json").read_text())["sheet"]).notes()
    window = np.hanning(WINDOW)
    out: dict = {}
    for year in years:
        model, sr = sf.read(sheet / "audio" / f"model_{year}.wav")
        reference, _ = sf.read(sheet / "audio" / f"reference_{year}.wav")
        freqs = np.fft.rfftfreq(N_FFT, 1.0 / sr)
        for onset, pitch, velocity in zip(notes.onset_s, notes.pitch.tolist(), notes.velocity.tolist()):
            if velocity not in velocities or pitch < min_pitch:
                continue
            spectra = []
            for t in TIMES_S:
                a = int((onset + t) * sr) - WINDOW // 2
                spectra.append((np.abs(np.fft.rfft(model[a:a + WINDOW] * window, N_FFT)),
                                np.abs(np.fft.rfft(reference[a:a + WINDOW] * window, N_FFT))))
            for k in range(1, 49):
                hz = float(bank_partial_hz(pitch, k, bank))
                if hz > MAX_HZ:
                    break
                band = next(j for j, (lo, hi) in enumerate(BANDS_HZ) if lo <= hz < hi)
                for j, (m, r) in enumerate(spectra):
                    out.setdefault((band, j), []).append(peak_db(m, freqs, hz, k) - peak_db(r, freqs, hz, k))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sheet", type=Path)
    ap.add_argument("--velocities", type=int, nargs="+", default=[120])
    ap.add_argument("--min-pitch", type=int, default=48)
    ap.add_argument("--years", type=int, nargs="+", default=None, help="default: the sheet's")
    ap.add_argument("--checkpoint", default=None, help="where the partials lie (default: the bundled model's bank)")
    args = ap.parse_args(argv)
    if not (args.sheet / "note_sheet.json").is_file():
        print(f"{args.sheet}: no note_sheet.json (write one with midi2wave evaluate --note-sheet)", file=sys.stderr)
        return 1
    years = args.years or json.loads((args.sheet / "note_sheet.json").read_text())["comparison"]["years"]
    _, config, _ = load_state(args.checkpoint or bundled_model_path())
    bank = config.data.resonators
    table = tracks(args.sheet, years, set(args.velocities), args.min_pitch, bank)
    print(f"{args.sheet}: model - training audio at the partials' peaks (dB, median; partials counted), "
          f"velocities {args.velocities}, pitches >= {args.min_pitch}, years {list(years)}")
    print("band (Hz)  " + " ".join(f"{t * 1000:>9.0f}ms" for t in TIMES_S))
    for b, (lo, hi) in enumerate(BANDS_HZ):
        cells = [f"{np.median(table[(b, j)]):+6.1f}({len(table[(b, j)]):3d})" if (b, j) in table else " " * 11
                 for j in range(len(TIMES_S))]
        print(f"{lo:4d}-{hi:4d}  " + " ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
