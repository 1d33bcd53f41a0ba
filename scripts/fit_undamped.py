"""Fit the undamped top's release (data.resonators.undamped_from_pitch, undamped_release_db_per_s) to
isolated notes of the training piano.

    python scripts/note_corpus.py CORPUS
    python scripts/fit_undamped.py CORPUS [--from-pitch 90]

Why: a piano's strings from about F#6 up have no dampers, so a released key there rings on, where the
bank damped every key by its room's release: on the note sheet a top note's fundamental fell 10-60 dB
under the training piano's within 0.6 s of its release (docs/evaluation.md, "The undamped top").

What: every note that sounds alone (no other onset from its onset to 0.6 s after its release) gives
its fundamental's level (the peak of a 1024-sample Hann window's spectrum, zero-padded to 1-Hz bins,
within 60 cents of the key's frequency) every 25 ms from `FROM_S` to `TO_S` after its release, and
the 50 ms before it. Per note the slope of a straight line through the points after the release is its
release decay (dB/s), and the drop from 50 ms before the release to 100 ms after it shows the damper:
a damped key loses 10-20 dB there, an undamped one a few. The decay printed is the median over the
notes from `--from-pitch` up (the piano's damper line: the demo instrument's, `salamander.
UNDAMPED_FROM_KEY`, and a real grand's about F#6); stderr shows both per key, so the line can be
read off. The block printed on stdout is a `"data": {"resonators": {...}}` to merge into a config
(`midi2wave export --sampling-from` re-exports a model with it: the analysis never reads it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fit_partials import corpus_pieces  # this folder: python scripts/fit_undamped.py

from midi2wave import constants as C
from midi2wave.errors import InputError
from midi2wave.midi import pitch_to_hz

WINDOW = 1024
PAD = 16384
SEARCH_CENTS = 60.0
HOP_S = 0.025
FROM_S = 0.05
TO_S = 0.6
FROM_PITCH = 90
MIN_NOTES = 8


def level_db(x: np.ndarray, centre: int, hz: float, sample_rate_hz: int = C.SAMPLE_RATE_HZ) -> float:
    """The fundamental's level (dB) in the window centred on sample `centre`."""
    seg = x[centre - WINDOW // 2:centre + WINDOW // 2] * np.hanning(WINDOW)
    spectrum = np.abs(np.fft.rfft(seg, PAD))
    freqs = np.fft.rfftfreq(PAD, 1.0 / sample_rate_hz)
    near = (freqs > hz * 2.0 ** (-SEARCH_CENTS / 1200.0)) & (freqs < hz * 2.0 ** (SEARCH_CENTS / 1200.0))
    return float(20.0 * np.log10(spectrum[near].max() + 1e-12))


def release_decays(notes, x: np.ndarray, sample_rate_hz: int = C.SAMPLE_RATE_HZ) -> list[tuple[int, float, float]]:
    """(pitch, release decay in dB/s (negative: falling), drop in dB 100 ms after the release) of every
    note of a piece that rings alone to `TO_S` after its release and whose windows lie in the audio."""
    out = []
    times = np.arange(FROM_S, TO_S + 1e-9, HOP_S)
    for i in range(len(notes)):
        on, off, pitch = float(notes.onset_s[i]), float(notes.offset_s[i]), int(notes.pitch[i])
        others = np.delete(np.arange(len(notes)), i)
        if ((notes.onset_s[others] > on - 0.01) & (notes.onset_s[others] < off + TO_S)).any():
            continue
        first, last = int((off - 0.05) * sample_rate_hz), int((off + TO_S) * sample_rate_hz)
        if first - WINDOW // 2 < 0 or last + WINDOW // 2 > len(x):
            continue
        hz = float(pitch_to_hz(pitch))
        db = np.array([level_db(x, int(round((off + t) * sample_rate_hz)), hz, sample_rate_hz) for t in times])
        before = level_db(x, first, hz, sample_rate_hz)
        after = level_db(x, int(round((off + 0.1) * sample_rate_hz)), hz, sample_rate_hz)
        out.append((pitch, float(np.polyfit(times, db, 1)[0]), before - after))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path, nargs="+", help="folders of MIDI + audio pairs (note_corpus.py, or recordings)")
    ap.add_argument("--from-pitch", type=int, default=FROM_PITCH,
                    help=f"the lowest key without a damper (default {FROM_PITCH}, F#6)")
    args = ap.parse_args(argv)
    if not C.MIN_MIDI_PITCH <= args.from_pitch <= C.MAX_MIDI_PITCH:
        ap.error(f"--from-pitch must be a piano key ({C.MIN_MIDI_PITCH}..{C.MAX_MIDI_PITCH}), got {args.from_pitch}")
    rows = []
    for folder in args.corpus:
        try:
            for notes, x in corpus_pieces(folder, log=lambda m: print(m, file=sys.stderr)):
                rows += release_decays(notes, x)
        except InputError as e:
            print(e, file=sys.stderr)
            return 1
    pitch = np.array([r[0] for r in rows], np.int64)
    decay = np.array([r[1] for r in rows])
    drop = np.array([r[2] for r in rows])
    for p in sorted(set(pitch.tolist())):
        m = pitch == p
        print(f"MIDI {p}: {m.sum()} notes; after the release {np.median(decay[m]):.1f} dB/s, "
              f"{np.median(drop[m]):.1f} dB down at 0.1 s", file=sys.stderr)
    top = pitch >= args.from_pitch
    if top.sum() < MIN_NOTES:
        print(f"fit_undamped: {', '.join(map(str, args.corpus))}: {int(top.sum())} lone notes from MIDI {args.from_pitch} "
              f"up, need {MIN_NOTES} (released into {TO_S:g} s of silence)", file=sys.stderr)
        return 1
    rate = float(round(-np.median(decay[top])))  # whole dB/s: the notes' quartiles lie 20 dB/s apart
    if not rate > 0:
        print(f"fit_undamped: the notes from MIDI {args.from_pitch} up do not fall after their release "
              f"({-rate:+.1f} dB/s)", file=sys.stderr)
        return 1
    print(f"{int(top.sum())} notes from MIDI {args.from_pitch} up: {rate:.1f} dB/s after the release "
          f"(quartiles {-np.percentile(decay[top], 75):.1f}, {-np.percentile(decay[top], 25):.1f})", file=sys.stderr)
    print(json.dumps({"data": {"resonators": {"undamped_from_pitch": args.from_pitch,
                                              "undamped_release_db_per_s": rate}}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
