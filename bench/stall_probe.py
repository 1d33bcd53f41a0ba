"""How often this machine stretches a periodic real-time load: what the live engine's callback
meets besides its own work (BENCHMARKS.md "live").

A fixed chunk of plain computation (numba, `--busy-ms` long when undisturbed), started every
`--period-ms` on one core (SCHED_FIFO when allowed), optionally reading `--megabytes` of memory
per chunk, for `--seconds`; with `--jack`, a JACK server (dummy backend, realtime, the rate and
period of bench/live.py) runs on another core with a client that writes silence (the probe's
own core carries no JACK thread). Reported: each chunk's time over the median (the stretch), how
many chunks were stretched by more than 1, 2 and 2.5 ms, and the worst. Compare the stretches with
the live engine's callback time and its period (bench/live.py).

    python bench/stall_probe.py [--seconds 60] [--busy-ms 1.5] [--period-ms 4] [--megabytes 4] [--jack] [--core 0]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

NULL_CLIENT = r"""
import os, sys, time, jack
client = jack.Client("m2w-probe-null", no_start_server=True)
out = client.outports.register("out")

@client.set_process_callback
def process(frames):
    out.get_array()[:] = 0.0

client.activate()
print("ready", flush=True)
sys.stdin.read()
client.deactivate()
client.close()
"""


def _work():
    """The chunk: read `buf` (one float per 64-byte line), then `n` dependent multiply-adds."""
    from numba import njit

    @njit(nogil=True)
    def work(buf, n):
        x = 0.0
        for i in range(0, buf.shape[0], 8):
            x += buf[i]
        for i in range(n):
            x = x * 0.9999999 + (i & 7)
        return x

    return work


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--busy-ms", type=float, default=1.5)
    ap.add_argument("--period-ms", type=float, default=4.0)
    ap.add_argument("--megabytes", type=float, default=4.0)
    ap.add_argument("--jack", action="store_true", help="a JACK server and a silent client on another core meanwhile")
    ap.add_argument("--core", type=int, default=0)
    args = ap.parse_args()
    server = client = None
    realtime_server = None
    times: list[float] = []
    try:
        if args.jack:
            from live import ServerError, server_cores, start_jackd

            other = server_cores(args.core)  # before this process is pinned
            try:
                server = start_jackd(16000, 64, cores=other)
            except ServerError as e:
                raise SystemExit(f"bench/stall_probe.py: {e}")
            realtime_server = server.realtime
            client = subprocess.Popen([sys.executable, "-c", NULL_CLIENT], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, env=server.environ,
                                      preexec_fn=lambda: os.sched_setaffinity(0, other))
            if client.stdout.readline().strip() != "ready":
                raise SystemExit("the silent JACK client did not start")
        os.sched_setaffinity(0, {args.core})
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(5))
            realtime = True
        except PermissionError:
            realtime = False
        buf = np.ones(max(8, int(args.megabytes * (1 << 20) / 8)))
        work = _work()
        work(buf, 10)
        n = 1000
        while True:  # calibrate the chunk to --busy-ms
            t = time.perf_counter()
            work(buf, n)
            dt = time.perf_counter() - t
            if dt > args.busy_ms * 1e-3:
                break
            n *= 2
        n = max(1, int(n * args.busy_ms * 1e-3 / dt))
        start = next_start = time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            next_start += args.period_ms * 1e-3
            t = time.perf_counter()
            work(buf, n)
            times.append(time.perf_counter() - t)
            wait = next_start - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
    finally:
        if client is not None:
            try:
                client.communicate("", timeout=30)
            except subprocess.TimeoutExpired:
                client.kill()
        if server is not None:
            server.stop()
    d = 1e3 * np.array(times)
    stretch = d - np.median(d)
    server_kind = "" if realtime_server is None else (" (realtime)" if realtime_server else " (not realtime)")
    print(f"core {args.core}{' SCHED_FIFO' if realtime else ''}, {len(d)} chunks of {np.median(d):.2f} ms "
          f"every {args.period_ms:g} ms reading {args.megabytes:g} MB, {'JACK server' + server_kind + ' on another core' if args.jack else 'no JACK'}"
          f" (load average {os.getloadavg()[0]:.2f}): stretched by > 1 ms {int((stretch > 1).sum())}, > 2 ms "
          f"{int((stretch > 2).sum())}, > 2.5 ms {int((stretch > 2.5).sum())}; worst +{stretch.max():.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
