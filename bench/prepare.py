"""Benchmark `prepare` against a librosa baseline on the same files.

Makes its own data in a temporary folder (MAESTRO layout: 44.1 kHz stereo 16-bit WAV of synthetic
piano-like tones + MIDI with ~10 notes/s and continuous sustain pedal, and a metadata CSV), then in
one run measures:

- `prepare_dataset` end to end (decode, mono, soxr HQ to 16 kHz, int16 .npy, MIDI -> .npz, records,
  manifest) with --jobs 1 and 2, into a fresh store each time;
- the baseline `librosa.load(path, sr=16000, mono=True)` on every WAV (one process; it does less:
  no MIDI, no int16, nothing written);
- the parts of the prepare hot loop on one core (audio decode path, MIDI read).

Throughput is audio seconds / wall seconds ("x real time"), and per core: divided by the jobs.
Each figure is the best of --repeats runs (the machine is shared). Usage:

    python bench/prepare.py [--minutes 10] [--pieces 10] [--repeats 3] [--jobs 1 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SOURCE_RATE = 44_100


def make_source(root: Path, minutes: float, pieces: int, seed: int = 0) -> float:
    """Write the MAESTRO-layout source; returns its total audio seconds."""
    import pretty_midi
    import soundfile as sf

    rng = np.random.default_rng(seed)
    seconds = minutes * 60 / pieces
    (root / "2018").mkdir(parents=True)
    rows = []
    # One decaying, slightly inharmonic tone per pitch, reused for every note of that pitch.
    note_len = int(1.5 * SOURCE_RATE)
    t = np.arange(note_len) / SOURCE_RATE
    templates = {}
    for pitch in range(21, 109):
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        tone = np.zeros(note_len)
        for k in range(1, 7):
            fk = f0 * k * np.sqrt(1 + 4e-4 * k * k)
            if fk < SOURCE_RATE / 2:
                tone += np.sin(2 * np.pi * fk * t) * np.exp(-t * (1.5 + 0.8 * k)) / k
        templates[pitch] = tone * np.minimum(1.0, t / 0.002)
    for i in range(pieces):
        n = int(seconds * SOURCE_RATE)
        audio = np.zeros((n, 2))
        pm = pretty_midi.PrettyMIDI()
        piano = pretty_midi.Instrument(program=0)
        onset = 0.0
        while True:
            onset += rng.exponential(0.1)
            duration = rng.uniform(0.1, 1.2)
            if onset + duration > seconds - 0.5:
                break
            pitch = int(np.clip(rng.normal(64, 12), 21, 108))
            velocity = int(rng.integers(30, 110))
            piano.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=onset, end=onset + duration))
            a = int(onset * SOURCE_RATE)
            b = min(n, a + note_len)
            pan = (pitch - 21) / 87
            tone = templates[pitch][: b - a] * (velocity / 127 * 0.08)
            audio[a:b, 0] += tone * (1 - 0.5 * pan)
            audio[a:b, 1] += tone * (0.5 + 0.5 * pan)
        for s in np.arange(0.0, seconds, 0.05):  # continuous sustain pedal curve, 20 events/s
            value = int(127 * max(0.0, np.sin(2 * np.pi * s / 3.0)))
            piano.control_changes.append(pretty_midi.ControlChange(number=64, value=value, time=float(s)))
        pm.instruments.append(piano)
        audio += rng.normal(0, 1e-3, audio.shape)
        name = f"2018/bench_piece_{i:02d}"
        pm.write(str(root / f"{name}.midi"))
        sf.write(str(root / f"{name}.wav"), np.clip(audio, -1, 1).astype(np.float32), SOURCE_RATE, subtype="PCM_16")
        rows.append({"canonical_composer": "Synthetic", "canonical_title": f"Piece {i}",
                     "split": ("train", "validation", "test")[i % 3], "year": 2018,
                     "midi_filename": f"{name}.midi", "audio_filename": f"{name}.wav", "duration": seconds})
    with open(root / "maestro-v3.0.0.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return pieces * int(seconds * SOURCE_RATE) / SOURCE_RATE


def best_of(repeats: int, fn) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="total audio (default 10)")
    parser.add_argument("--pieces", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import librosa

    from midi2wave.audio import decode_mono_int16
    from midi2wave.data.prepare import prepare_dataset
    from midi2wave.midi import read_midi

    tmp = Path(tempfile.mkdtemp(prefix="m2w-bench-"))
    try:
        source = tmp / "source"
        print(f"making {args.minutes:g} min of 44.1 kHz stereo WAV + MIDI in {args.pieces} pieces ...", flush=True)
        audio_s = make_source(source, args.minutes, args.pieces)
        wavs = sorted(source.glob("*/*.wav"))
        midis = sorted(source.glob("*/*.midi"))
        for path in wavs + midis:  # warm the page cache: measure decoding, not the disk
            path.read_bytes()
        rows = []

        def prepare(jobs: int) -> None:
            store = tmp / "store"
            shutil.rmtree(store, ignore_errors=True)
            summary = prepare_dataset(source, store, jobs=jobs, progress=False)
            assert len(summary.done) == len(wavs) and not summary.failed, summary

        for jobs in args.jobs:
            rows.append((f"prepare --jobs {jobs} (full)", jobs, best_of(args.repeats, lambda: prepare(jobs))))
        baseline = best_of(args.repeats, lambda: [librosa.load(str(p), sr=16000, mono=True) for p in wavs])
        rows.append(("librosa.load(sr=16000, mono=True)", 1, baseline))
        rows.append(("  part: decode_mono_int16 (audio path)", 1,
                     best_of(args.repeats, lambda: [decode_mono_int16(p, 16000) for p in wavs])))
        rows.append(("  part: read_midi", 1, best_of(args.repeats, lambda: [read_midi(p) for p in midis])))

        base_per_core = audio_s / baseline
        print(f"\n{audio_s / 60:.1f} min of audio, {len(wavs)} files, best of {args.repeats}; "
              f"{os.cpu_count()} CPUs visible\n")
        print("| what | jobs | wall s | x real time | x real time per core | vs librosa (per core) |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, jobs, wall in rows:
            per_core = audio_s / wall / jobs
            print(f"| {name} | {jobs} | {wall:.3f} | {audio_s / wall:.0f} | {per_core:.0f} | {per_core / base_per_core:.2f}x |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
