"""Make long test pieces: MIDI files played back to back (cycled) until a length is covered.

    python bench/pieces.py OUT.mid --seconds 120 IN1.mid [IN2.mid ...] [--gap 0]

Each input follows the previous one's last sustained note end (+ `--gap` seconds of silence); the
result is cut at `--seconds` (notes starting later are dropped). For the long-piece measurements in
BENCHMARKS.md (a dense 2-minute excerpt, 16- and 60-minute pieces from MAESTRO-like MIDI).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from midi2wave.midi import Notes, PedalEvents, apply_sustain, read_midi, write_midi  # noqa: E402


def concatenate(paths: list[Path], seconds: float, out: Path, gap_seconds: float = 0.0) -> int:
    """Write the concatenation to `out`; returns the number of notes."""
    notes_parts, pedal_parts, shift, k = [], [], 0.0, 0
    while shift < seconds:
        notes, pedals = read_midi(paths[k % len(paths)])
        k += 1
        keep = notes.onset_s + shift < seconds
        notes_parts.append(Notes(notes.onset_s[keep] + shift, np.minimum(notes.offset_s[keep] + shift, seconds),
                                 notes.pitch[keep], notes.velocity[keep]))
        keep = pedals.time_s + shift < seconds
        end = float(apply_sustain(notes, pedals).end_s)
        up = np.array([64, 66, 67])  # every pedal up before the next piece
        pedal_parts.append(PedalEvents(np.concatenate([pedals.time_s[keep] + shift, np.full(3, end + shift)]),
                                       np.concatenate([pedals.controller[keep], up]),
                                       np.concatenate([pedals.value[keep], np.zeros(3)])))
        shift += end + 0.05 + gap_seconds
    notes = Notes(*(np.concatenate([getattr(n, f) for n in notes_parts])
                    for f in ("onset_s", "offset_s", "pitch", "velocity")))
    pedals = PedalEvents(*(np.concatenate([getattr(p, f) for p in pedal_parts])
                           for f in ("time_s", "controller", "value")))
    write_midi(notes, pedals, out)
    return len(notes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("inputs", type=Path, nargs="+")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--gap", type=float, default=0.0, help="seconds of silence between inputs")
    args = parser.parse_args()
    n = concatenate(args.inputs, args.seconds, args.out, args.gap)
    print(f"wrote {args.out}: {n} notes in {args.seconds:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
