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

import mido

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from midi2wave.midi import apply_sustain, read_midi  # noqa: E402


def concatenate(paths: list[Path], seconds: float, out: Path, gap_seconds: float = 0.0) -> int:
    """Write the concatenation to `out`; returns the number of notes."""
    events, shift, k, n_notes = [], 0.0, 0, 0
    while shift < seconds:
        notes, pedals = read_midi(paths[k % len(paths)])
        k += 1
        for on, off, pitch, vel in zip(notes.onset_s, notes.offset_s, notes.pitch, notes.velocity):
            if on + shift < seconds:
                events.append((on + shift, 2, mido.Message("note_on", note=int(pitch), velocity=int(vel))))
                events.append((min(off + shift, seconds), 1, mido.Message("note_off", note=int(pitch), velocity=64)))
                n_notes += 1
        for t, cc, value in zip(pedals.time_s, pedals.controller, pedals.value):
            if t + shift < seconds:
                events.append((t + shift, 0, mido.Message("control_change", control=int(cc), value=int(value))))
        end = float(apply_sustain(notes, pedals).end_s)
        for cc in (64, 66, 67):  # every pedal up before the next piece
            events.append((end + shift, 0, mido.Message("control_change", control=cc, value=0)))
        shift += end + 0.05 + gap_seconds
    events.sort(key=lambda e: (e[0], e[1]))
    ticks_per_s = 960  # 480 ticks per beat at 120 bpm
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000, time=0)])
    now = 0
    for t, _, msg in events:
        tick = round(t * ticks_per_s)
        track.append(msg.copy(time=tick - now))
        now = tick
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(out)
    return n_notes


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
