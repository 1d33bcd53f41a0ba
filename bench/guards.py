"""Benchmark what two guards add on hot paths, against the unguarded call in the same run.

- **Training, per step** (docs/training.md, "The end of a run"): `distributed.all_reduce_sum`
  (a lent copy, remembered until gloo frees it) against `torch.distributed.all_reduce` in place,
  on the step's 4-value stats tensor; and `distributed.all_gather_object` (pickled through lent
  tensors) against torch's, on one rank's RNG state (once per checkpoint). Two gloo ranks on
  loopback, one thread each; the variants alternate call by call.
- **Live, per audio callback** (docs/live.md, "Stopping under PipeWire"): `playback._uncancellable`
  (pthread_setcancelstate twice) around an empty callback, against the bare callback.

Per-call medians in microseconds, and the guarded / bare ratio.

    python bench/guards.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RANK = """
import json, sys, time, numpy as np, torch, torch.distributed as dist
from midi2wave.training import distributed as D
from midi2wave.training.checkpoints import rng_state
calls = int(sys.argv[1])
info, created = D.setup(torch.device("cpu"))
state = rng_state(torch.device("cpu"))
times = {"all_reduce": [], "all_reduce_sum": [], "torch all_gather_object": [], "all_gather_object": []}
for i in range(calls):
    stats = torch.ones(4)
    t = time.perf_counter(); dist.all_reduce(stats); times["all_reduce"].append(time.perf_counter() - t)
    t = time.perf_counter(); D.all_reduce_sum(stats); times["all_reduce_sum"].append(time.perf_counter() - t)
    if i % 10 == 0:
        out = [None] * info.world_size
        t = time.perf_counter(); dist.all_gather_object(out, state)
        times["torch all_gather_object"].append(time.perf_counter() - t)
        t = time.perf_counter(); D.all_gather_object(state); times["all_gather_object"].append(time.perf_counter() - t)
D.cleanup(created)
if info.rank == 0:
    print(json.dumps({k: float(np.median(v)) * 1e6 for k, v in times.items()}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def collectives(calls: int) -> dict[str, float]:
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2",
               OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", RANK, str(calls)], env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
                              stdout=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("a rank failed")
    return json.loads(outs[0].strip().splitlines()[-1])


def callback_guard(calls: int) -> dict[str, float]:
    import numpy as np

    from midi2wave.render.playback import _uncancellable

    def bare(frames: int) -> None:
        return None

    guarded = _uncancellable(bare)
    times: dict[str, list[float]] = {"callback": [], "uncancellable callback": []}
    for _ in range(calls):
        t = time.perf_counter()
        bare(128)
        times["callback"].append(time.perf_counter() - t)
        t = time.perf_counter()
        guarded(128)
        times["uncancellable callback"].append(time.perf_counter() - t)
    return {k: float(np.median(v)) * 1e6 for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    pairs = [("all_reduce_sum", "all_reduce"), ("all_gather_object", "torch all_gather_object"),
             ("uncancellable callback", "callback")]
    results = {**collectives(args.calls), **callback_guard(args.calls * 10)}
    print(f"{'guarded':>24} {'us':>8}   {'bare':>24} {'us':>8}  ratio  added us")
    for guarded, bare in pairs:
        g, b = results[guarded], results[bare]
        print(f"{guarded:>24} {g:8.2f}   {bare:>24} {b:8.2f}  {g / b:5.2f}  {g - b:8.2f}")


if __name__ == "__main__":
    main()
