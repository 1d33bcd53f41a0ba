"""The audio servers that the live tests and the live benches start for themselves and stop by their
PID, on a machine without a sound card: jackd with its dummy backend (`start_jackd`) and a PipeWire
daemon in a runtime folder of its own (`start_pipewire`).

Imported as `from audio_servers import ...`: pytest puts tests/ on sys.path, and the benches
(bench/live.py and the others) put it there themselves. No pytest here: a server that cannot start
raises `ServerError` with one line that says why (`ServerMissing` where it is not installed); the
tests turn it into a failure or a skip (`helpers.started`), the benches into their exit.

**jackd's names.** jackd keeps its servers in a registry of 8 slots (/dev/shm/jack-shm-registry). It
frees the slot of a server that died without unregistering (killed: a crashed test run, an
interrupted bench) only when a server *of the same name* starts. So every server started here takes
its name from one pool of four, `JACKD_NAMES`: killed runs can hold no more than four slots, and a
later run reclaims them. Names made up each time (uuids) filled the registry after a few killed
runs, and then every jackd failed with "Too many servers already active".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

JACKD_NAMES = tuple(f"m2w-jackd-{i}" for i in range(4))

# environment variables that would point a client (or pw-cli) at another server, or set its period
# or rate, behind the back of the one started here
_FOREIGN = ("PIPEWIRE_LATENCY", "PIPEWIRE_QUANTUM", "PIPEWIRE_RATE", "PIPEWIRE_PROPS", "PIPEWIRE_REMOTE",
            "PIPEWIRE_RUNTIME_DIR", "JACK_DEFAULT_SERVER")
# how long a jackd that answers must stay up before it counts as ours: one started under a name
# that another run took meanwhile exits at once ("server already active"), while jack_wait sees
# the other run's
_SETTLE_S = 0.2

# jackd's output lines with the CLOCK_MONOTONIC time they came at (`start_jackd(log=...)`)
_STAMPER = r"""
import sys, time
with open(sys.argv[1], "w") as log:
    for line in sys.stdin.buffer:
        log.write(f"{time.monotonic():.6f} {line.decode(errors='replace')}")
        log.flush()
"""


class ServerError(RuntimeError):
    """An audio server that did not start; the message is one line that says why."""


class ServerMissing(ServerError):
    """The server's programs are not installed."""


def die_with_parent() -> None:
    """In the child (`preexec_fn`): SIGTERM when the process that started it dies, so that a crashed
    test run or bench leaves no server behind."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _child_setup(cores: set[int] | None):
    """The child's setup (`preexec_fn`); `cores` checked here, in the parent, where a bad one can
    be said in one line (in the child it is a SubprocessError)."""
    if cores is not None and not cores <= set(range(os.cpu_count() or 1)):
        raise ServerError(f"no core {sorted(cores)} here (cores 0 to {(os.cpu_count() or 1) - 1})")

    def setup() -> None:
        die_with_parent()
        if cores:
            os.sched_setaffinity(0, cores)

    return setup


def jackd_running(name: str) -> bool:
    """Whether a jackd of that name runs (and answers within 10 s)."""
    try:
        done = subprocess.run(["jack_wait", "-s", name, "-c"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return done.stdout.strip() == "running"


@dataclass
class Server:
    """A server started here. `environ` is the environment its clients run in: the caller's, less
    what would point them elsewhere (`_FOREIGN`), with JACK_DEFAULT_SERVER naming a jackd, or
    XDG_RUNTIME_DIR pointing at a PipeWire daemon's socket. `stop` ends it by its PID (and its
    output's stamper, and its folder)."""

    proc: subprocess.Popen
    environ: dict[str, str]
    name: str = ""  # jackd's server name; "" for PipeWire
    realtime: bool | None = None  # jackd's -R (else --no-realtime); None for PipeWire
    stamper: subprocess.Popen | None = None
    folder: Path | None = None  # removed on stop

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; waits for the stamper (it ends with the server's output,
        so the log is whole once this returns). Idempotent: a process already waited for gets no
        signal, and the folder's removal ignores a missing one."""
        for proc in (self.proc, self.stamper):
            if proc is None:
                continue
            if proc is self.proc:
                proc.send_signal(signal.SIGTERM)  # nothing when it has already exited
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def as_default(self) -> contextlib.AbstractContextManager:
        """This process's JACK clients reach this server while the block runs: the variables in
        which os.environ differs from `environ` are set (or removed), and only those are restored
        after (`playback._environment`)."""
        from midi2wave.render.playback import _environment

        differ: dict[str, str | None] = {k: v for k, v in self.environ.items() if os.environ.get(k) != v}
        differ.update((k, None) for k in os.environ if k not in self.environ)
        return _environment(differ)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _client_environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
    env.update(extra)
    return env


def start_jackd(rate: int, period: int, *, cores: set[int] | None = None, log: Path | None = None,
                timeout_s: float = 10.0) -> Server:
    """jackd -d dummy at `rate` Hz and `period` frames, realtime (-R) where allowed, else
    --no-realtime, under the first name of `JACKD_NAMES` that no server runs under, on `cores`
    (default: wherever this process may run). With `log`, its output goes through a process that
    writes each line after its CLOCK_MONOTONIC time (`time.monotonic()`), so that its xrun reports
    can be told by client and time (bench/live.py); the log is whole once `stop` returns."""
    if shutil.which("jackd") is None or shutil.which("jack_wait") is None:
        raise ServerMissing("jackd / jack_wait not installed (Debian: jackd2; scripts/setup-dev.sh installs it)")
    free = [name for name in JACKD_NAMES if not jackd_running(name)]
    if not free:
        raise ServerError(f"jackd servers run under every name of {JACKD_NAMES}")
    said = ""
    for name in free:
        for realtime in (True, False):
            server, said = _try_jackd(name, realtime, rate, period, cores, log, timeout_s)
            if server is not None:
                return server
            if "Too many servers" in said:
                raise ServerError(
                    f"jackd did not start at {rate} Hz: its registry is full (8 servers; killed ones keep their "
                    "slots under names not of the pool); with no jackd running, remove /dev/shm/jack-shm-registry")
            if jackd_running(name):  # another run took the name meanwhile: try the next
                break
        else:
            break  # neither realtime nor not, and not for the name's sake
    tail = " ".join(said.split())[-300:]
    raise ServerError(f"jackd did not start at {rate} Hz, period {period} (realtime or not): {tail!r}")


def _try_jackd(name: str, realtime: bool, rate: int, period: int, cores: set[int] | None, log: Path | None,
               timeout_s: float) -> tuple[Server | None, str]:
    """One try: the server once it answers, else (None, what jackd said)."""
    cmd = ["jackd", "-n", name, "-R" if realtime else "--no-realtime", "-d", "dummy", "-r", str(rate), "-p", str(period)]
    setup = _child_setup(cores)
    with tempfile.TemporaryFile("w+") as said:
        stamper = None
        try:
            if log is None:
                proc = subprocess.Popen(cmd, stdout=said, stderr=subprocess.STDOUT, preexec_fn=setup)
            else:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=setup)
                try:
                    stamper = subprocess.Popen([sys.executable, "-c", _STAMPER, str(log)], stdin=proc.stdout,
                                               preexec_fn=setup)
                except BaseException:
                    proc.kill()
                    proc.wait()
                    raise
                finally:
                    proc.stdout.close()  # the stamper's now: it ends with jackd's output
        except (OSError, subprocess.SubprocessError) as e:
            raise ServerError(f"jackd did not start: {e}") from None
        server = Server(proc, _client_environ(JACK_DEFAULT_SERVER=name), name=name, realtime=realtime,
                        stamper=stamper)
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            if jackd_running(name):
                time.sleep(_SETTLE_S)  # ours, or another run's while ours exits
                if proc.poll() is None:
                    return server, ""
                break
            time.sleep(0.05)
        server.stop()
        said.seek(0)
        return None, said.read() if log is None else log.read_text(errors="replace") if log.exists() else ""


def _answers(cmd: list[str], env: dict[str, str]) -> bool:
    try:
        return subprocess.run(cmd, env=env, capture_output=True, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def start_pipewire(rate: int | None = None, *, cores: set[int] | None = None, timeout_s: float = 15.0) -> Server:
    """A PipeWire daemon of its own, on `cores`: a runtime folder (its socket) and an otherwise
    empty configuration home, so it runs on the system's defaults (the dummy driver, 48 kHz, a
    period of 1024), at `rate` if given. Its clients run in `environ` (under `pw-jack` for JACK
    ones), which drops the caller's variables that would point them at another server or set their
    period or rate (PIPEWIRE_LATENCY, PIPEWIRE_REMOTE, PIPEWIRE_RUNTIME_DIR, ...: `_FOREIGN`)."""
    if shutil.which("pipewire") is None or shutil.which("pw-cli") is None:
        raise ServerMissing("pipewire / pw-cli not installed (Debian: pipewire, pipewire-bin; "
                            "scripts/setup-dev.sh installs them)")
    folder = Path(tempfile.mkdtemp(prefix="m2w-pipewire-"))
    (folder / "run").mkdir(mode=0o700)
    conf = folder / "config" / "pipewire" / "pipewire.conf.d"
    conf.mkdir(parents=True)
    if rate is not None:  # else the defaults
        (conf / "rate.conf").write_text(f"context.properties = {{ default.clock.rate = {rate} "
                                        f"default.clock.allowed-rates = [ {rate} ] }}\n")
    env = _client_environ(XDG_RUNTIME_DIR=str(folder / "run"), XDG_CONFIG_HOME=str(folder / "config"))
    try:
        proc = subprocess.Popen(["pipewire"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=_child_setup(cores))
    except BaseException as e:
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(e, (OSError, subprocess.SubprocessError)):
            raise ServerError(f"pipewire did not start: {e}") from None
        raise
    server = Server(proc, env, folder=folder)
    where = "" if rate is None else f" at {rate} Hz"
    deadline = time.monotonic() + timeout_s
    while not _answers(["pw-cli", "info", "0"], env):
        if proc.poll() is not None:
            server.stop()
            raise ServerError(f"pipewire did not start{where}: it exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            server.stop()
            raise ServerError(f"pipewire did not start{where}: pw-cli had no answer in {timeout_s:g} s")
        time.sleep(0.1)
    return server


# a process per core that notes the moments the core did not run it (bench/live.py --stall-probe, and the
# real-clock tests of tests/test_live_jack.py and tests/test_live_pipewire.py)
PROBE = r"""
import ctypes, os, signal, sys, time
ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: never outlives its bench or test

def done(*_):
    raise KeyboardInterrupt

signal.signal(signal.SIGTERM, done)
os.sched_setaffinity(0, {int(sys.argv[1])})
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(90))
    fifo = True
except PermissionError:
    fifo = False
sleep_s, over_s = float(sys.argv[2]), float(sys.argv[3])
stalls = []
try:
    t = time.monotonic()
    while True:
        time.sleep(sleep_s)
        now = time.monotonic()
        if now - t - sleep_s > over_s:
            stalls.append((now, now - t - sleep_s))
        t = now
except KeyboardInterrupt:
    pass
print(repr((fifo, stalls)), flush=True)
"""


class StallProbe:
    """A process per core at SCHED_FIFO 90 (above JACK's threads) that sleeps `sleep_ms` at a time
    and notes each wake-up later than `over_ms` past its sleep: moments the core did not run even
    that thread (a stopped vCPU, or the kernel's own interrupt work). Costs each core a few
    microseconds per wake-up. Without the right to SCHED_FIFO the probe runs at normal priority,
    where any busy thread delays it (bench/live.py's `stall_summary` says so; `near_a_stall`
    can leave it out)."""

    def __init__(self, cores: list[int], sleep_ms: float = 2.0, over_ms: float = 1.0) -> None:
        self.procs = [subprocess.Popen([sys.executable, "-c", PROBE, str(c), str(sleep_ms / 1e3), str(over_ms / 1e3)],
                                       stdout=subprocess.PIPE, text=True) for c in cores]
        self.cores = cores

    def stop(self) -> dict[int, tuple[bool, list[tuple[float, float]]]]:
        """{core: (ran at SCHED_FIFO, [(monotonic time of a late wake-up, seconds late)])}; a probe
        that does not answer is killed, with nothing found."""
        import ast

        found = {}
        for core, proc in zip(self.cores, self.procs):
            proc.terminate()
            try:
                out, _ = proc.communicate(timeout=10)
                found[core] = ast.literal_eval(out.strip() or "(False, [])")
            except (subprocess.TimeoutExpired, ValueError, SyntaxError):
                proc.kill()
                proc.wait()
                found[core] = (False, [])
        return found

    def __enter__(self) -> StallProbe:
        return self

    def __exit__(self, *_: object) -> None:
        if any(p.poll() is None for p in self.procs):
            self.stop()


def near_a_stall(times, stalls: dict[int, tuple[bool, list[tuple[float, float]]]], near_s: float = 0.05,
                 fifo_only: bool = False) -> list[bool]:
    """For each of `times` (CLOCK_MONOTONIC seconds): whether a `StallProbe` (`stop()`'s answer)
    woke up late within `near_s` of it on any core; with `fifo_only`, counting only the probes that
    ran at SCHED_FIFO (one at normal priority is also late behind any busy thread, the engine's
    included)."""
    found = [u for fifo, late in stalls.values() if fifo or not fifo_only for u, _ in late]
    return [any(abs(float(t) - u) <= near_s for u in found) for t in times]


def stalled_during(starts, durations, stalls: dict[int, tuple[bool, list[tuple[float, float]]]],
                   sleep_s: float = 0.002, margin_s: float = 0.001, fifo_only: bool = True) -> np.ndarray:
    """For each span from `starts[i]` lasting `durations[i]` (CLOCK_MONOTONIC seconds): whether a
    stall that a `StallProbe` (of `sleep_s` sleeps: `stop()`'s answer `stalls`) noted could have
    fallen in it, `margin_s` either side. A probe late by d at time u missed d seconds somewhere
    in [u - d - sleep_s, u]; with `fifo_only`, only probes that ran at SCHED_FIFO count."""
    starts = np.asarray(starts, float)
    ends = starts + np.asarray(durations, float)
    found = np.array([(u - d - sleep_s, u) for fifo, late in stalls.values() if fifo or not fifo_only for u, d in late]
                     ).reshape(-1, 2)
    if not len(found):
        return np.zeros(len(starts), bool)
    return ((found[None, :, 0] <= ends[:, None] + margin_s) & (found[None, :, 1] >= starts[:, None] - margin_s)).any(1)

