#!/usr/bin/env python3
"""Realism measures (midi2wave/realism.py) of renders of one MIDI file, beside a sampled piano's.

    python scripts/realism_of_renders.py piece.mid --wav model.wav [--wav other.wav ...]
        [--instrument musescore] [--start 10] [--seconds 30] [--json out.json]

Renders the MIDI's notes (sustain pedal applied, as `evaluate` does) with a sampled piano from
`evaluate.OTHER_INSTRUMENTS` (default musescore: FluidSynth with the demo data's soundfont), then
prints, for that render and for each WAV (read at its own rate, mixed to mono, resampled to 16 kHz,
its first sample taken as the MIDI's time 0): gap noise (dB), tonal purity, the share of the
spectrum the partial bands cover (white noise's purity), the log-mel distance to the
sampled-piano render, and the release jumps (median and largest, dB, over the releases into a
rest; `realism.release_jumps_db`). `--start/--seconds` pick a window of the MIDI's time line (default: the whole
file plus 1 s). The instrument's render is the reference: its own distance is 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's midi2wave, not an installed one

from midi2wave import constants as C
from midi2wave.evaluation import realism
from midi2wave.audio import load_audio, resample, to_mono
from midi2wave.errors import InputError, Midi2WaveError, OutputExistsError
from midi2wave.evaluation.evaluate import OTHER_INSTRUMENTS
from midi2wave.midi import Notes, apply_sustain, read_midi


def _window_notes(sustained: Notes, start_s: float, seconds: float) -> Notes:
    inside = sustained.window(start_s - realism.DEFAULT.release_margin_seconds, start_s + seconds)
    return Notes(inside.onset_s - start_s, inside.offset_s - start_s, inside.pitch, inside.velocity)


def _read_wav(path: Path, start: int, n: int, sr: int) -> np.ndarray:
    audio, rate = load_audio(path)
    mono = to_mono(audio)
    if rate != sr:
        mono = resample(mono, rate, sr)
    out = np.zeros(n, np.float32)
    piece = mono[start:start + n]
    out[:len(piece)] = piece
    if len(piece) < n:
        print(f"{path}: shorter than the window ({len(mono) / sr:.2f} s); padded with silence", file=sys.stderr)
    return out


def measure(audio: np.ndarray, notes: Notes, reference: np.ndarray, sr: int) -> dict:
    mask = realism.gap_mask(notes, len(audio), sr)
    jumps = realism.release_jumps_db(audio, notes, sr)
    return {"gap_noise_db": realism.gap_noise_db(audio, mask, sr),
            "tonal_purity": realism.tonal_purity(audio, notes, sr),
            "log_mel_distance": realism.log_mel_distance(audio, reference, sr),
            "gap_seconds": float(mask.sum() / sr),
            "release_jumps_db": [round(float(v), 2) for v in jumps]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("midi", type=Path)
    parser.add_argument("--wav", type=Path, nargs="*", default=[], help="renders of the same MIDI to measure")
    parser.add_argument("--instrument", default="musescore", help=f"one of {', '.join(OTHER_INSTRUMENTS)}")
    parser.add_argument("--start", type=float, default=0.0, help="window start in the MIDI's time (s)")
    parser.add_argument("--seconds", type=float, default=None, help="window length (default: to the end + 1 s)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--force", action="store_true", help="overwrite --json")
    args = parser.parse_args(argv)
    try:
        if args.instrument not in OTHER_INSTRUMENTS:
            raise InputError(f"--instrument {args.instrument}: not one of {', '.join(OTHER_INSTRUMENTS)}")
        if args.json is not None and args.json.exists() and not args.force:
            raise OutputExistsError(f"{args.json}: already exists (use --force to overwrite)")
        for wav in args.wav:
            if not wav.is_file():
                raise InputError(f"{wav}: no such file")
        sr = C.SAMPLE_RATE_HZ
        raw, pedals = read_midi(args.midi)
        sustained = apply_sustain(raw, pedals)
        seconds = args.seconds if args.seconds is not None else max(sustained.end_s - args.start, 0.0) + 1.0
        if not seconds > 0:
            raise InputError(f"{args.midi}: the window from {args.start:g} s is empty")
        n = int(round(seconds * sr))
        notes = _window_notes(sustained, args.start, seconds)
        reference = OTHER_INSTRUMENTS[args.instrument](notes, n, sr)
        rows = {f"{args.instrument} (reference)": measure(reference, notes, reference, sr)}
        start = int(round(args.start * sr))
        for wav in args.wav:
            rows[str(wav)] = measure(_read_wav(wav, start, n, sr), notes, reference, sr)
    except Midi2WaveError as e:
        print(f"realism_of_renders: error: {e}", file=sys.stderr)
        return 2
    coverage = realism.partial_coverage(notes, n, sr)
    print(f"{args.midi}: {seconds:.2f} s from {args.start:g} s, {len(notes)} notes, "
          f"gap {rows[next(iter(rows))]['gap_seconds']:.2f} s, white noise's purity ~{coverage:.3f}")
    print(f"{'':<48}{'gap dB':>8}{'purity':>8}{'log-mel':>9}  release jumps dB (median / max of k)")
    for name, r in rows.items():
        gap = "-" if r["gap_noise_db"] is None else f"{r['gap_noise_db']:.1f}"
        purity = "-" if r["tonal_purity"] is None else f"{r['tonal_purity']:.3f}"
        jumps = r["release_jumps_db"]
        jump = f"{np.median(jumps):+.1f} / {max(jumps):+.1f} of {len(jumps)}" if jumps else "-"
        print(f"{name[-48:]:<48}{gap:>8}{purity:>8}{r['log_mel_distance']:>9.2f}  {jump}")
    if args.json is not None:
        from midi2wave.audio import atomic_path

        with atomic_path(args.json, force=args.force) as tmp:
            tmp.write_text(json.dumps({"midi": str(args.midi), "start_s": args.start, "seconds": seconds,
                                       "instrument": args.instrument, "partial_coverage": coverage,
                                       "renders": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
