"""How notes ring after their release on note sheets (`midi2wave evaluate --note-sheet DIR`), model
against training audio.

    python scripts/release_tails.py SHEET [SHEET ...] [--labels A B ...] [--figure OUT.png]

Per sheet and year: the sheet's release tail (`release_db`: RMS 0.10-0.25 s after the release over the
last 0.1 s held), the median over the notes of each key range (`RANGES`: below 72, 72-89, and the
undamped top from 90); then for each key from `TOP_FROM` up, its fundamental's level (the peak within
60 cents in a 1024-sample Hann window, zero-padded to 1-Hz bins) 0.1 / 0.2 / 0.4 / 0.6 s after the
release, relative to 50 ms before it, the median over the sheet's velocities. `--figure` draws that
level from 0.2 s before to 0.8 s after the release for every sheet, the first sheet's training audio
beside it (the sheets must share the notes; a sheet's reference is the training audio whatever model
rendered it). Why: the bank damped every key alike, where a piano's top has no dampers
(docs/evaluation.md, "The undamped top").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from midi2wave.midi import pitch_to_hz

RANGES = ((0, 71, "below 72"), (72, 89, "72-89"), (90, 127, "90 up"))
TOP_FROM = 90
TIMES_S = (0.1, 0.2, 0.4, 0.6)
WINDOW = 1024
PAD = 16384
SEARCH_CENTS = 60.0


def fundamental_db(x: np.ndarray, sample_rate_hz: int, t_s: float, hz: float) -> float:
    c = int(round(t_s * sample_rate_hz))
    seg = x[c - WINDOW // 2:c + WINDOW // 2] * np.hanning(WINDOW)
    spectrum = np.abs(np.fft.rfft(seg, PAD))
    freqs = np.fft.rfftfreq(PAD, 1.0 / sample_rate_hz)
    near = (freqs > hz * 2.0 ** (-SEARCH_CENTS / 1200.0)) & (freqs < hz * 2.0 ** (SEARCH_CENTS / 1200.0))
    return float(20.0 * np.log10(spectrum[near].max() + 1e-12))


def after_release(sheet: Path, side: str, year: str, pitch: int, times_s) -> np.ndarray:
    """The median over the sheet's notes of this pitch of the fundamental's level at `times_s` after the
    release, relative to 50 ms before it (dB)."""
    report = json.loads((sheet / "note_sheet.json").read_text())
    hold = report["sheet"]["hold_seconds"]
    x, sr = sf.read(sheet / "audio" / f"{side}_{year}.wav", dtype="float64")
    hz = float(pitch_to_hz(pitch))
    rows = []
    for note in report["per_note"][side][year]:
        if note["pitch"] != pitch:
            continue
        off = note["onset_s"] + hold
        rows.append([fundamental_db(x, sr, off + t, hz) - fundamental_db(x, sr, off - 0.05, hz) for t in times_s])
    return np.median(np.array(rows), axis=0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sheets", type=Path, nargs="+", help="note sheet folders (evaluate --note-sheet)")
    ap.add_argument("--labels", nargs="+", help="a name per sheet (default: the folders' names)")
    ap.add_argument("--figure", type=Path, help="draw the top keys' fundamentals after their release here")
    args = ap.parse_args(argv)
    labels = args.labels or [s.name for s in args.sheets]
    if len(labels) != len(args.sheets):
        ap.error(f"--labels: {len(labels)} names for {len(args.sheets)} sheets")
    reports = {}
    for sheet in args.sheets:
        try:
            reports[sheet] = json.loads((sheet / "note_sheet.json").read_text())
        except (OSError, ValueError) as e:
            print(f"release_tails: {sheet}: not a note sheet ({e})", file=sys.stderr)
            return 1
    first = reports[args.sheets[0]]
    years = [str(y) for y in first["comparison"]["years"]]
    pitches = [p for p in first["sheet"]["pitches"] if p >= TOP_FROM]
    for sheet, label in zip(args.sheets, labels):
        report = reports[sheet]
        for year in years:
            cells = []
            for lo, hi, name in RANGES:
                tails = {side: [n["release_db"] for n in report["per_note"][side][year] if lo <= n["pitch"] <= hi]
                         for side in ("model", "reference")}
                if tails["model"] and tails["reference"]:  # a sheet may leave a range out
                    cells.append(f"{name} {np.median(tails['model']):.1f} / {np.median(tails['reference']):.1f}")
            print(f"{label} {year}: release tail (dB, model / training audio): " + ", ".join(cells))
            gaps = []
            for p in pitches:
                m = after_release(sheet, "model", year, p, TIMES_S)
                r = after_release(sheet, "reference", year, p, TIMES_S)
                gaps += list(np.abs(m - r))
                print(f"  MIDI {p} fundamental at {'/'.join(f'{t:g}' for t in TIMES_S)} s after the release: "
                      + " ".join(f"{v:.1f}" for v in m) + "  (training audio " + " ".join(f"{v:.1f}" for v in r) + ")")
            if gaps:
                print(f"  the top's fundamentals after the release: {np.mean(gaps):.1f} dB from the training audio's "
                      f"on average ({len(gaps)} points)")
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        times = np.arange(-0.2, 0.801, 0.025)
        fig, axes = plt.subplots(len(years), len(pitches), figsize=(3.6 * len(pitches), 3.0 * len(years)),
                                 sharex=True, sharey=True, squeeze=False)
        for i, year in enumerate(years):
            for j, p in enumerate(pitches):
                ax = axes[i, j]
                ax.plot(times, after_release(args.sheets[0], "reference", year, p, times), "k", lw=2, label="training audio")
                for sheet, label in zip(args.sheets, labels):
                    ax.plot(times, after_release(sheet, "model", year, p, times), lw=1.2, label=label)
                ax.axvline(0.0, color="grey", lw=0.5)
                ax.set_title(f"{year}, MIDI {p}", fontsize=9)
                ax.set_ylim(-60, 8)
                if i == len(years) - 1:
                    ax.set_xlabel("s after the release")
                if j == 0:
                    ax.set_ylabel("fundamental (dB)")
        axes[0, 0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.figure, dpi=80)
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
