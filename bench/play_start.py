"""How soon `midi2wave play` sounds: seconds from the process's start to the first period handed to
the audio output (interpreter, imports, the live model and the numba kernel's load included), in
fresh processes, against floors measured in the same run:

- `python -c pass`: the interpreter alone;
- the numba floor: a fresh interpreter that imports numba and calls one trivial cached `njit`
  function (numba's own start, which any numba kernel pays).

`play` runs twice per round: on numba's JIT (MIDI2WAVE_KERNELS=jit) and on the kernels built ahead of
time (`midi2wave kernels --build`, into a temporary folder here unless `--kernels-dir`), which never
import numba.

    python bench/play_start.py [--rounds 7] [--audio] [--kernels-dir DIR]

Rounds alternate the commands so a busy spell of the shared machine falls on all of them. `--audio`
plays to a JACK server's system ports through PortAudio (a jackd with the dummy backend is started
and stopped here), so opening the device counts too; without it, `--no-audio -o` renders the same
periods to a WAV. The play rows also give the wall time to exit with `--end 0.1` (comparable with
trees whose `play` reported its first sound from another point: `bench/compare.py --same-script
--metric "wall to exit s" --lower-is-better --key-columns 1 play_start.py`).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # audio_servers: the servers the tests start too
from audio_servers import ServerError, start_jackd  # noqa: E402

NUMBA = "numba floor (import, one cached njit call)"
FIRST = re.compile(r"first sound ([0-9.]+) s after the (?:command|process) started")
NUMBA_FLOOR = """
import numba, numpy as np
@numba.njit(cache=True, nogil=True)
def f(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += np.tanh(x[i])
    return s
f(np.ones(3))
"""


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
    t = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{run.stderr[-2000:]}")
    return wall, run.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--midi", default=str(ROOT / "examples" / "example.mid"))
    ap.add_argument("--audio", action="store_true", help="play to a JACK server's system ports (started here)")
    ap.add_argument("--kernels-dir", default=None, help="kernels built there (default: built into a temporary folder)")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    jackd = None
    if args.audio:
        try:
            jackd = start_jackd(48000, 256)
        except ServerError as e:
            raise SystemExit(f"bench/play_start.py: {e}")
        env["JACK_DEFAULT_SERVER"] = jackd.name
    try:
        with tempfile.TemporaryDirectory() as tmp:
            floor = Path(tmp) / "numba_floor.py"
            floor.write_text(NUMBA_FLOOR)
            out = str(Path(tmp) / "play.wav")
            play = [sys.executable, "-m", "midi2wave", "play", args.midi, "--end", "0.1", "-o", out, "--force"]
            if not args.audio:
                play.append("--no-audio")
            built_env = {**env, "MIDI2WAVE_KERNELS_DIR": args.kernels_dir or str(Path(tmp) / "kernels"), "MIDI2WAVE_KERNELS": ""}
            timed([sys.executable, "-m", "midi2wave", "kernels", "--build", "-q"], built_env)
            jit_env = {**env, "MIDI2WAVE_KERNELS": "jit"}
            commands = {"python -c pass": ([sys.executable, "-c", "pass"], env),
                        NUMBA: ([sys.executable, str(floor)], env),
                        "midi2wave play, numba JIT": (play, jit_env),
                        "midi2wave play, kernels built ahead of time": (play, built_env)}
            for cmd, cmd_env in commands.values():  # fill numba's caches
                timed(cmd, cmd_env)
            walls: dict[str, list[float]] = {k: [] for k in commands}
            firsts: dict[str, list[float]] = {k: [] for k in commands}
            for r in range(args.rounds):
                order = list(commands) if r % 2 == 0 else list(reversed(commands))
                for key in order:
                    wall, err = timed(*commands[key])
                    walls[key].append(wall)
                    m = FIRST.search(err)
                    if m:
                        firsts[key].append(float(m.group(1)))
    finally:  # the server stops whatever failed
        if jackd is not None:
            jackd.stop()
    floor_s = statistics.median(walls[NUMBA])
    print(f"{Path(args.midi).name}, {'to JACK through PortAudio' if args.audio else '--no-audio -o WAV'}, "
          f"median of {args.rounds} fresh processes; load average {os.getloadavg()[0]:.2f}\n")
    print("| command | wall to exit s | first sound s (from the process start) | wall / numba floor |")
    print("|---|---:|---:|---:|")
    for key, values in walls.items():
        wall = statistics.median(values)
        first = f"{statistics.median(firsts[key]):.2f}" if firsts[key] else ""
        print(f"| {key} | {wall:.2f} | {first} | {wall / floor_s:.2f} |")


if __name__ == "__main__":
    main()
