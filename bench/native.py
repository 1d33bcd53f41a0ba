"""The live engine's render speed on the kernels built ahead of time against numba's JIT.

Each round runs two fresh processes, one per kind of kernel (alternating which goes first), pinned
to one core; each renders `--midi` through `LiveSynth` in 64-sample blocks (`render_events`, as
`live --jack` at period 64 calls it) and reports the render's seconds (load excluded) and a hash of
its audio. Printed: the median seconds of each, their ratio, the real-time factor, and whether the
audio is the same.

    python bench/native.py [--midi FILE] [--seconds 20] [--rounds 5] [--core 0] [--kernels-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RENDER = r"""
import hashlib, sys, time
import numpy as np
from midi2wave import jit
jit.use_ahead_of_time()
from midi2wave.files import LIVE_ASSETS_DIR, find_checkpoint
from midi2wave.render.live import LiveSynth, file_events, render_events
from midi2wave.render.livemodel import load_live_model
synth = LiveSynth(load_live_model(find_checkpoint(LIVE_ASSETS_DIR)))
events = file_events(sys.argv[1], synth.sr)
n = int(float(sys.argv[2]) * synth.sr)
t = time.perf_counter()
audio = np.concatenate(list(render_events(synth, events, n, 64)))
seconds = time.perf_counter() - t
print(seconds, hashlib.sha1(audio.tobytes()).hexdigest()[:12], jit.ahead_of_time(), "numba" in sys.modules)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midi", default=str(ROOT / "examples" / "example.mid"))
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--kernels-dir", default=None, help="kernels built there (default: built into a temporary folder)")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory() as tmp:
        built = {**env, "MIDI2WAVE_KERNELS_DIR": args.kernels_dir or str(Path(tmp) / "kernels"), "MIDI2WAVE_KERNELS": ""}
        subprocess.run([sys.executable, "-m", "midi2wave", "kernels", "--build", "-q"], env=built, check=True)
        kinds = {"numba JIT": {**env, "MIDI2WAVE_KERNELS": "jit"}, "built ahead of time": built}
        seconds: dict[str, list[float]] = {k: [] for k in kinds}
        hashes: dict[str, set[str]] = {k: set() for k in kinds}
        for r in range(args.rounds + 1):  # round 0 fills numba's caches
            for kind in (list(kinds) if r % 2 else list(reversed(kinds))):
                run = subprocess.run(["taskset", "-c", str(args.core), sys.executable, "-c", RENDER, args.midi,
                                      str(args.seconds)], env=kinds[kind], capture_output=True, text=True, check=True)
                s, digest, aot, numba = run.stdout.split()
                assert (aot == "True") == (kind != "numba JIT") and (numba == "False") == (aot == "True"), run.stdout
                if r:
                    seconds[kind].append(float(s))
                    hashes[kind].add(digest)
    jit_s, aot_s = (statistics.median(v) for v in seconds.values())
    print(f"{Path(args.midi).name}, {args.seconds:g} s in 64-sample blocks, one core, median of {args.rounds} rounds; "
          f"load average {os.getloadavg()[0]:.2f}\n")
    print("| kernels | render s | RTF | / JIT | same audio |")
    print("|---|---:|---:|---:|---|")
    same = "yes" if len(hashes["numba JIT"] | hashes["built ahead of time"]) == 1 else "NO"
    print(f"| numba JIT | {jit_s:.2f} | {jit_s / args.seconds:.3f} | 1.00 | |")
    print(f"| built ahead of time | {aot_s:.2f} | {aot_s / args.seconds:.3f} | {aot_s / jit_s:.2f} | {same} |")


if __name__ == "__main__":
    main()
