"""Ticks on soft notes: 90 staccato notes (velocities 8-29, pitches 36-84, held 80 / 160 / 300 ms,
0.7 s apart) rendered by a model at each `--min-p` and seed, and by the Salamander grand, each
counted with the note sheet's tick measure (`evaluation.notesheet.count_ticks`, from each onset
to 0.25 s after its release).

    python scripts/soft_notes.py OUT [--min-p 0 0.002 0.01] [--seeds 0 1 2] [--live]

Why: the note sheet plays velocities 30-120, and on soft notes most ticks fall in the attacks
(docs/evaluation.md, "Ticks, and min-p sampling"). `--live` renders the live model with the live
engine (`midi2wave play --no-audio`), otherwise the bundled model (`midi2wave synthesize`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from midi2wave.audio import load_audio, to_mono
from midi2wave.evaluation.notesheet import count_ticks
from midi2wave.midi import Notes, PedalEvents, read_midi, write_midi


def soft_notes(seed: int = 0) -> Notes:
    rng = np.random.default_rng(seed)
    onset = 0.5 + 0.7 * np.arange(90)
    held = np.array([0.08, 0.16, 0.3])[np.arange(90) % 3]
    pitch = rng.integers(36, 85, 90).astype(np.int16)
    velocity = rng.integers(8, 30, 90).astype(np.int16)
    return Notes(onset, onset + held, pitch, velocity)


def ticks(wav: Path, notes: Notes) -> int:
    audio, rate = load_audio(wav)
    x = np.asarray(to_mono(audio), np.float64)
    return sum(count_ticks(x, rate, int(on * rate), int((off + 0.25) * rate))
               for on, off in zip(notes.onset_s, notes.offset_s))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--min-p", type=float, nargs="+", default=[0.0, 0.002, 0.005, 0.01, 0.02])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--live", action="store_true", help="the live model through the live engine")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    midi = write_midi(soft_notes(), PedalEvents.empty(), args.out / "soft.mid")
    notes, _ = read_midi(midi)
    run = [sys.executable, "-m", "midi2wave"]
    reference = args.out / "salamander.wav"
    subprocess.run(run + ["synthesize", str(midi), "--instrument", "salamander", "--year", "2018", "-o",
                          str(reference), "-q", "--force"], check=True)
    print(f"salamander: {ticks(reference, notes)} ticks in {len(notes)} notes")
    for p in args.min_p:
        counts = []
        for seed in args.seeds:
            wav = args.out / f"{'live' if args.live else 'bundled'}_{p:g}_{seed}.wav"
            command = (["play", str(midi), "--no-audio"] if args.live else ["synthesize", str(midi)])
            subprocess.run(run + command + ["-o", str(wav), "--seed", str(seed), "--min-p", str(p), "-q", "--force"],
                           check=True)
            counts.append(ticks(wav, notes))
        print(f"{'live' if args.live else 'bundled'} --min-p {p:g}: ticks at seeds "
              f"{' / '.join(map(str, args.seeds))}: {' / '.join(map(str, counts))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
