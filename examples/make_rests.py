"""Write examples/rests.mid: single notes and chords separated by rests (no pedal), the case where a
renderer must fall silent between notes. Deterministic.

    python examples/make_rests.py              # -> examples/rests.mid
    midi2wave synthesize examples/rests.mid    # gaps in the MIDI must be gaps in the audio
"""

from __future__ import annotations

from pathlib import Path

import mido

# (onset s, duration s, pitches, velocity): loud and soft, low and high, a rest of 1-2 s after each
EVENTS = [(0.2, 0.5, [60], 100), (2.0, 0.4, [48, 55, 64], 80), (4.0, 0.3, [72], 50), (5.5, 0.8, [36], 110),
          (8.0, 0.5, [67, 71, 74], 70), (10.0, 0.2, [84], 90), (11.5, 0.6, [57, 60, 64], 40)]
TICKS_PER_BEAT = 480
TEMPO_US = 500_000  # 120 bpm: one beat = 0.5 s


def make_rests(out: str | Path = Path(__file__).with_name("rests.mid")) -> Path:
    messages = []
    for onset, duration, pitches, velocity in EVENTS:
        for p in pitches:
            messages.append((onset, 1, mido.Message("note_on", note=p, velocity=velocity)))
            messages.append((onset + duration, 0, mido.Message("note_off", note=p, velocity=0)))
    messages.sort(key=lambda m: (m[0], m[1], m[2].note))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=TEMPO_US, time=0)])
    last = 0
    for t, _, msg in messages:
        tick = int(round(t / (TEMPO_US / 1e6) * TICKS_PER_BEAT))
        track.append(msg.copy(time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=TICKS_PER_BEAT))
    midi = mido.MidiFile(ticks_per_beat=TICKS_PER_BEAT, tracks=[track])
    out = Path(out)
    midi.save(out)
    return out


if __name__ == "__main__":
    print(make_rests())
