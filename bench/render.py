"""Benchmark `synthesize` end to end on a 60-second piece: chunked batch generation on every core
against one-stream unchunked generation, in the same run.

The piece is examples/example.mid looped to `--seconds` (written to a temporary MIDI file). Each
measurement is the whole render path as `midi2wave synthesize` runs it: MIDI read + sustain rule ->
conditioning -> generation -> 16-bit WAV written. The model has the size of the preset `--config`
(configs/demo.json by default) with random weights (speed does not depend on the weights). Not
timed: building the model and one short warm-up render (numba compilation or cache load).

Wall-clock real-time factor (RTF) = wall seconds / audio seconds (below 1: faster than real time).
Chunked runs cut the piece into K chunks (`--chunks`, each C = (seconds - overlap) / K long plus
`--overlap` of warm-up) generated as one batch of K streams over `--threads` cores. Usage:

    python bench/render.py [--config configs/demo.json] [--seconds 60] [--chunks 2 4 8]
                           [--overlap 0.5] [--baseline-seconds 60] [--threads 0] [--precision fp32]
                           [--repeats 1]

Each figure is the best of `--repeats` runs (the machine is shared; the load average before each
measurement is printed with it).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def looped_midi(src: Path, seconds: float, out: Path) -> float:
    """Write `src` repeated back to back (period: its last sounding note's end rounded up to a second) until
    `seconds` are covered; returns the period."""
    from midi2wave.midi import Notes, PedalEvents, apply_sustain, read_midi, write_midi

    notes, pedals = read_midi(src)
    period = math.ceil(apply_sustain(notes, pedals).end_s + 0.25)  # each copy's pedal tail ends before the next
    shifts = period * np.arange(math.ceil(seconds / period))
    write_midi(Notes(*(np.concatenate([a + s for s in shifts]) for a in (notes.onset_s, notes.offset_s)),
                     np.tile(notes.pitch, len(shifts)), np.tile(notes.velocity, len(shifts))),
               PedalEvents(np.concatenate([pedals.time_s + s for s in shifts]), np.tile(pedals.controller, len(shifts)),
                           np.tile(pedals.value, len(shifts))), out)
    return float(period)


def render_once(model, config, midi: Path, out: Path, seconds: float, options, precision: str) -> float:
    """Wall seconds of MIDI read -> conditioning -> generation -> WAV."""
    from midi2wave.audio import save_wav
    from midi2wave.render.synthesize import read_piece, render_notes

    t0 = time.perf_counter()
    notes, pedals = read_piece(midi, config.data.sustain_threshold)
    audio = render_notes(model, notes, pedals, dataclasses.replace(options, precision=precision), end_s=seconds,
                         progress=False)
    save_wav(out, audio, config.data.sample_rate_hz, force=True)
    wall = time.perf_counter() - t0
    assert len(audio) == round(seconds * config.data.sample_rate_hz)
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=None,
                        help="model preset (default configs/demo.json, else configs/nv-wavenet.json)")
    parser.add_argument("--midi", type=Path, default=ROOT / "examples" / "example.mid")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--chunks", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--baseline-seconds", type=float, default=None,
                        help="length of the one-stream baseline (default: --seconds); its RTF is per audio second")
    parser.add_argument("--threads", type=int, default=0, help="0: all cores")
    parser.add_argument("--engine", default="numba", choices=("numba", "torch", "auto"))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"))
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs of each (shared machine)")
    args = parser.parse_args()

    import torch

    from midi2wave.config import SamplingOptions, load_config
    from midi2wave.render.generate import available_cores
    from midi2wave.model import Midi2Wave

    config_path = args.config
    if config_path is None:
        config_path = ROOT / "configs" / "demo.json"
        if not config_path.exists():
            config_path = ROOT / "configs" / "nv-wavenet.json"
    config = load_config(config_path)
    torch.manual_seed(0)
    model = Midi2Wave(config.model, config.data).eval()
    m = config.model
    cores = args.threads or available_cores()
    baseline_seconds = args.baseline_seconds or args.seconds
    print(f"# {config_path.name}: R={m.residual_channels} G={m.gate_channels} S={m.skip_channels} "
          f"layers={m.n_layers} output={m.output_kind} input={m.input_kind}; "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    print(f"# {platform.processor() or platform.machine()}, {cores} cores used, engine {args.engine}, "
          f"precision {args.precision}, load average {os.getloadavg()[0]:.1f}")

    with tempfile.TemporaryDirectory(prefix="midi2wave-bench-") as tmp:
        tmp = Path(tmp)
        midi = tmp / "piece.mid"
        period = looped_midi(args.midi, args.seconds, midi)
        print(f"# piece: {args.midi.name} looped every {period:.0f} s to {args.seconds:g} s")
        t0 = time.perf_counter()
        # warm-ups long enough to hold notes (a window where nothing sounds is not generated)
        render_once(model, config, midi, tmp / "warm.wav", 1.0,
                    SamplingOptions(engine=args.engine, threads=args.threads, chunk_seconds=0.0), args.precision)
        render_once(model, config, midi, tmp / "warm.wav", 1.0,
                    SamplingOptions(engine=args.engine, threads=args.threads, chunk_seconds=0.4,
                                    overlap_seconds=0.2), args.precision)
        print(f"# warm-up (compile / cache load): {time.perf_counter() - t0:.1f} s")

        fr = config.data.frame_rate_hz
        runs = []  # (label, audio seconds, options)
        for k in args.chunks:
            # K chunks exactly: C = (seconds - overlap) / K, rounded up to whole frames
            chunk = math.ceil((args.seconds - args.overlap) * fr / k) / fr
            runs.append((f"{k} chunks of {chunk:.2f} s + {args.overlap:g} s overlap, one batch", args.seconds,
                         SamplingOptions(engine=args.engine, threads=args.threads, chunk_seconds=chunk,
                                         overlap_seconds=args.overlap)))
        runs.append(("one stream, unchunked", baseline_seconds,
                     SamplingOptions(engine=args.engine, threads=args.threads, chunk_seconds=0.0)))
        # Round robin, so that a busy spell of the shared machine does not fall on one row only.
        walls: list[list[tuple[float, float]]] = [[] for _ in runs]
        for rep in range(args.repeats):
            for i, (label, seconds, opts) in enumerate(runs):
                load = os.getloadavg()[0]
                wall = render_once(model, config, midi, tmp / f"run{i}.wav", seconds, opts, args.precision)
                walls[i].append((wall, load))
                print(f"[{rep + 1}/{args.repeats}] {label}: {wall:.1f} s wall for {seconds:g} s, "
                      f"RTF {wall / seconds:.3f} (load {load:.1f})", flush=True)
        rows = [(label, seconds) + min(w) + (float(np.median([x for x, _ in w])),)
                for (label, seconds, _), w in zip(runs, walls)]

    base_rtf = rows[-1][2] / rows[-1][1]
    print()
    print("| generation | audio s | best wall s | wall-clock RTF (best) | speed-up vs one stream "
          "| median wall s | load avg (best run) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, seconds, wall, load, median in rows:
        rtf = wall / seconds
        print(f"| {name} | {seconds:g} | {wall:.1f} | {rtf:.3f} | {base_rtf / rtf:.2f}x | {median:.1f} | {load:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
