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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

JACKD_NAMES = tuple(f"m2w-jackd-{i}" for i in range(4))

# environment variables that would point a client at another server, or set its period, behind
# the back of the one started here
_FOREIGN = ("PIPEWIRE_LATENCY", "PIPEWIRE_PROPS", "PIPEWIRE_REMOTE", "JACK_DEFAULT_SERVER")

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
    def setup() -> None:
        die_with_parent()
        if cores:
            os.sched_setaffinity(0, cores)

    return setup


def jackd_running(name: str) -> bool:
    """Whether a jackd of that name runs (and answers)."""
    done = subprocess.run(["jack_wait", "-s", name, "-c"], capture_output=True, text=True)
    return done.stdout.strip() == "running"


@dataclass
class Server:
    """A server started here. `environ` is the environment its clients run in (the caller's, with
    JACK_DEFAULT_SERVER naming a jackd, or XDG_RUNTIME_DIR pointing at a PipeWire daemon's socket);
    `stop` ends it by its PID (and its output's stamper, and its folder)."""

    proc: subprocess.Popen
    environ: dict[str, str]
    name: str = ""  # jackd's server name; "" for PipeWire
    realtime: bool | None = None  # jackd's -R (else --no-realtime); None for PipeWire
    stamper: subprocess.Popen | None = None
    folder: Path | None = None  # removed on stop
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; waits for the stamper (it ends with the server's output,
        so the log is whole once this returns). Idempotent."""
        if self._stopped:
            return
        self._stopped = True
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

    @contextlib.contextmanager
    def as_default(self) -> Iterator[Server]:
        """This process's JACK clients reach this server while the block runs (os.environ is set to
        `environ`, and restored after)."""
        old = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.environ)
        try:
            yield self
        finally:
            os.environ.clear()
            os.environ.update(old)

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
        if log is None:
            proc = subprocess.Popen(cmd, stdout=said, stderr=subprocess.STDOUT, preexec_fn=setup)
        else:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=setup)
            try:
                stamper = subprocess.Popen([sys.executable, "-c", _STAMPER, str(log)], stdin=proc.stdout,
                                           preexec_fn=setup)
            except OSError:
                proc.kill()
                proc.wait()
                raise
            finally:
                proc.stdout.close()  # the stamper's now: it ends with jackd's output
        server = Server(proc, _client_environ(JACK_DEFAULT_SERVER=name), name=name, realtime=realtime,
                        stamper=stamper)
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            if jackd_running(name):
                return server, ""
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
    """A PipeWire daemon of its own: a runtime folder (its socket) and an otherwise empty
    configuration home, so the system's defaults (the dummy driver, 48 kHz, a period of 1024) or
    `rate`; on `cores`. Its clients run in `environ` (under `pw-jack` for JACK ones), which drops
    any PIPEWIRE_LATENCY, PIPEWIRE_PROPS, PIPEWIRE_REMOTE and JACK_DEFAULT_SERVER of the caller's."""
    if shutil.which("pipewire") is None or shutil.which("pw-cli") is None:
        raise ServerMissing("pipewire / pw-cli not installed (Debian: pipewire, pipewire-bin; "
                            "scripts/setup-dev.sh installs them)")
    folder = Path(tempfile.mkdtemp(prefix="m2w-pipewire-"))
    (folder / "run").mkdir(mode=0o700)
    conf = folder / "config" / "pipewire" / "pipewire.conf.d"
    conf.mkdir(parents=True)
    if rate is not None:
        (conf / "rate.conf").write_text(f"context.properties = {{ default.clock.rate = {rate} "
                                        f"default.clock.allowed-rates = [ {rate} ] }}\n")
    env = _client_environ(XDG_RUNTIME_DIR=str(folder / "run"), XDG_CONFIG_HOME=str(folder / "config"))
    proc = subprocess.Popen(["pipewire"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_child_setup(cores))
    server = Server(proc, env, folder=folder)
    deadline = time.monotonic() + timeout_s
    while not _answers(["pw-cli", "info", "0"], env):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise ServerError(f"pipewire did not start{'' if rate is None else f' at {rate} Hz'} "
                              f"(exit status {proc.returncode})")
        time.sleep(0.1)
    return server
