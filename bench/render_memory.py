"""Peak memory of a full default `midi2wave synthesize` (`synthesize.synthesize_files`: MIDI read,
conditioning, chunk rounds, joins, the WAV written) with the generation kernel stubbed out
(`generate.generate` returns zeros of the right shape, so an hour of music takes seconds): what
the render path itself holds as the piece grows. Every (tree, piece) runs in a fresh process
(peak RSS from getrusage); the baseline tree (a checkout of an earlier commit) is measured in the
same run.

    python bench/render_memory.py PIECE.mid [PIECE.mid ...] [--baseline TREE] [--threads 2]

Prints per piece: the output length, peak RSS, what the render added to the RSS after the model
load, and the output's size as float32 (what an in-memory render holds at least once).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(tree: str, piece: str, threads: int) -> dict:
    sys.path.insert(0, tree)
    import torch

    import midi2wave
    assert midi2wave.__file__.startswith(tree), midi2wave.__file__
    from midi2wave.render import generate as gen
    from midi2wave.checkpoint import load_model
    from midi2wave.config import SamplingOptions
    from midi2wave.render import synthesize as S

    generated = [0]

    def stub(model, n_samples, *, uniforms=None, progress=None, **_):
        rows = uniforms.shape[0]
        generated[0] += rows * n_samples
        if progress is not None:
            progress(n_samples, n_samples)
        return torch.zeros(rows, n_samples)

    gen.generate = stub
    model, _ = load_model(None)  # what the model load holds, before the render
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    S.read_piece(piece, model.data_config.sustain_threshold)  # the MIDI alone (mido's messages, the notes)
    midi = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        rc = S.synthesize_files([Path(piece)], SamplingOptions(threads=threads), out=out, quiet=True, force=True)
        import soundfile as sf

        frames = sf.info(str(out)).frames
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(rc=rc, minutes=frames / 16000 / 60, generated_minutes=generated[0] / 16000 / 60,
                peak_mb=peak / 1024, before_mb=before / 1024, midi_mb=midi / 1024, float32_mb=frames * 4 / 2**20, seconds=time.time() - t)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pieces", nargs="*")
    parser.add_argument("--baseline", help="a checkout of the baseline tree")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", nargs=2, metavar=("TREE", "PIECE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.threads)))
        return 0
    trees = ([("baseline", str(Path(args.baseline).resolve()))] if args.baseline else []) + [("this tree", str(ROOT))]
    print("| piece | output min | tree | peak RSS MB | added by reading the MIDI MB | added by the render MB | "
          "output float32 MB |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for piece in args.pieces:
        for name, tree in trees:
            env = dict(os.environ, PYTHONPATH=tree)
            res = subprocess.run([sys.executable, __file__, "--worker", tree, piece, "--threads", str(args.threads)],
                                 env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
            if res.returncode:
                print(res.stderr, file=sys.stderr)
                return 1
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"| {Path(piece).name} | {r['minutes']:.1f} | {name} | {r['peak_mb']:.0f} | "
                  f"{r['midi_mb'] - r['before_mb']:.0f} | {r['peak_mb'] - r['midi_mb']:.0f} | {r['float32_mb']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
