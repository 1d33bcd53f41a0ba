"""Whether closing a JACK client can hang the process (`playback.close_jack_client`).

jack_client_close cancels the client's notification thread, the thread that runs its xrun,
period and freewheel callbacks. If that thread is waiting for the GIL to begin a callback when the
cancel comes, it dies holding the GIL's mutex, and the process hangs for ever.

This bench starts a jackd (dummy backend, 16 kHz, period 64; tests/audio_servers.py). It also
starts a client in another process that spins for 1.5 periods in each callback, so every cycle
is an xrun and the server notifies every client with an xrun callback. Each round then runs a
child process per mode, in turn (the order rotating):
- `plain`: deactivate, then `client.close()` at once;
- `paused`: deactivate, then `playback.close_jack_client`, which pauses first.

Each child opens, activates, deactivates and closes a client with an xrun and a period callback,
`--closes` times, while another Python thread spins (it holds the GIL, so JACK's threads wait for
it). A child that reports no progress for `--stall-s` seconds is counted as hung and killed.
Reported per mode: the closes made and the hangs.

    python bench/jack_close.py [--closes 300] [--rounds 3] [--stall-s 20]
"""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # audio_servers: the servers the tests start too
from audio_servers import ServerError, die_with_parent, start_jackd  # noqa: E402

MODES = ("plain", "paused")

XRUNNER = r"""
import sys, time, jack
client = jack.Client("m2w-xrunner", no_start_server=True)
client.outports.register("out")
spin_s = float(sys.argv[1])

@client.set_process_callback
def process(frames):
    t = time.perf_counter()
    while time.perf_counter() - t < spin_s:
        pass

client.activate()
print("ready", flush=True)
sys.stdin.read()
import os
os._exit(0)
"""


def child(mode: str, closes: int) -> None:
    """Open, activate, deactivate and close a client `closes` times with a Python thread spinning;
    print the count after each close."""
    import jack

    from midi2wave.render.playback import close_jack_client

    spinning = threading.Event()

    def spin() -> None:
        x = 0
        while not spinning.is_set():
            x += 1

    threading.Thread(target=spin, daemon=True).start()
    xruns = 0
    for i in range(closes):
        client = jack.Client("m2w-closing", no_start_server=True)
        client.outports.register("out")
        seen = [0]
        client.set_xrun_callback(lambda delay, seen=seen: seen.__setitem__(0, seen[0] + 1))
        client.set_blocksize_callback(lambda frames: None)
        client.activate()
        time.sleep(0.05)
        client.deactivate()
        if mode == "paused":
            close_jack_client(client)
        else:
            client.close()
        xruns += seen[0]
        print(i + 1, xruns, flush=True)
    spinning.set()
    os._exit(0)


def run_child(mode: str, closes: int, stall_s: float) -> tuple[int, int, bool, int, float]:
    """(closes made, xrun callbacks seen, hung, exit status, seconds) of one child; a hung child
    (it cannot handle a signal: every thread waits for the GIL's mutex) is killed."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", mode, "--closes", str(closes)],
                            stdout=subprocess.PIPE, preexec_fn=die_with_parent)
    done = xruns = 0
    t0 = last = time.monotonic()
    hung = False
    pending = b""
    try:
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)  # unbuffered: select sees what is left
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                if lines:
                    done, xruns = (int(x) for x in lines[-1].split())
                    last = time.monotonic()
            elif time.monotonic() - last > stall_s:
                hung = True
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
    return done, xruns, hung, proc.returncode, time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--closes", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stall-s", type=float, default=20.0)
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.closes)
        return
    try:
        jackd = start_jackd(16000, 64)
    except ServerError as e:
        raise SystemExit(f"bench/jack_close.py: {e}")
    with jackd, jackd.as_default():
        xrunner = subprocess.Popen([sys.executable, "-c", XRUNNER, str(1.5 * 64 / 16000)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
        try:
            if not select.select([xrunner.stdout], [], [], 30)[0] or xrunner.stdout.readline().strip() != "ready":
                raise SystemExit("bench/jack_close.py: the xrun maker did not start in 30 s")
            print(f"jackd 16000:64 ({'realtime' if jackd.realtime else 'not realtime'}), a client making an xrun "
                  f"every period; {args.closes} closes per child, a Python thread spinning; load average "
                  f"{os.getloadavg()[0]:.2f}")
            print("| round | mode | closes made | hung | exit status | xrun callbacks per client | s |")
            print("|---:|---|---:|---|---:|---:|---:|")
            totals = {mode: [0, 0] for mode in MODES}
            for r in range(args.rounds):
                for mode in MODES[r % 2:] + MODES[:r % 2]:
                    done, xruns, hung, status, seconds = run_child(mode, args.closes, args.stall_s)
                    totals[mode][0] += done
                    totals[mode][1] += hung
                    print(f"| {r + 1} | {mode} | {done} | {'**yes**' if hung else 'no'} | {status} | "
                          f"{xruns / max(done, 1):.1f} | {seconds:.0f} |", flush=True)
            for mode, (done, hangs) in totals.items():
                print(f"{mode}: {hangs} hangs in {args.rounds} children, {done} closes made")
        finally:
            xrunner.stdin.close()
            try:
                xrunner.wait(10)
            except subprocess.TimeoutExpired:
                xrunner.kill()
                xrunner.wait()


if __name__ == "__main__":
    main()
