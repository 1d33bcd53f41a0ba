"""Audio and MIDI devices for the live engine: `midi2wave live` and `midi2wave play`.

Backends (each optional; `pip install midi2wave[live]`):
- JACK (`JackBackend`, JACK-Client): a client with a MIDI input port and an audio output port
  (`NAME:midi_in`, `NAME:out`); MIDI events come with their frame offsets inside the period, so an
  event sounds exactly `RateAdapter.latency_frames` frames after it (the graph's frame clock);
- PortAudio + RtMidi (`DeviceBackend`, sounddevice + python-rtmidi: ALSA, CoreAudio/CoreMIDI,
  WASAPI/WinMM): messages arrive on RtMidi's thread and are placed at the start of the next period.

By default (`ahead_ms` None: 4 ms, or more where that leaves the render thread under `MIN_SLACK_MS`
per block, `default_ahead_samples`; `midi2wave live --ahead`) a render thread renders each period's
samples as soon as its events are in, into a ring buffered one frame more than the engine's own
latency (8 ms in all at 16 kHz), and the audio callback only hands over the events and copies a block out:
a block is rendered up to two frames before it is heard, so the machine's stalls of a few
milliseconds cost no xrun. `ahead_ms` 0 renders in the callback (4 ms of latency).

The audio callback never raises (an exception there silently stops a JACK client): it is caught,
counted and logged once, and the period is output as silence. It takes no lock the main thread
holds long: the status line only reads counters. The interpreter's thread switch interval is
lowered while live, so no other thread can hold the GIL for a whole period.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import logging
import math
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import constants as C
from ..errors import InputError
from .live import LiveError, LiveSynth, RateAdapter, SampleRing

logger = logging.getLogger(__name__)

# the output buffered one frame (4 ms at 16 kHz) more than the engine's own latency: 8 ms in all at
# 16 kHz, and each block rendered up to two frames before it is heard (see `_Processor`)
DEFAULT_AHEAD_MS = 4.0
# With the default buffering the render thread gets at least this long for each block (its spare
# periods x the period): 4 ms ahead gives 8 at 16 kHz with period 64 and 5.3 at 48 kHz with 128,
# but 2.9 at 44.1 kHz with 128 (the engine's frames do not line up with its periods there), where
# the dense piece then left 89 blocks a minute late. There the buffering is raised, in quarters of a
# millisecond up to AUTO_AHEAD_MAX_MS, until the thread has this long (BENCHMARKS.md, "live").
MIN_SLACK_MS = 5.0
AUTO_AHEAD_MAX_MS = 8.0
# Where 4 ms gives the thread no period at all (a long period), the callback renders without the
# buffering if the period is at least this long (16 kHz with 128 and 192; 48 kHz with 512): in the
# callback at 44.1 kHz with period 256 (5.8 ms) the dense piece had 5 and 7 xruns a minute, where a
# thread buffered 5.75 ms had none.
CALLBACK_MIN_PERIOD_MS = 8.0
# The period (frames) of `live --device`'s stream, and the one `live --jack` asks PipeWire's graph
# for where PIPEWIRE_LATENCY does not ask already: the setting at 48 kHz (2.7 ms). PipeWire's
# own default for a JACK client is 1024 (21 ms); a graph no client holds runs at the shortest asked for.
DEFAULT_PERIOD_FRAMES = 128

__all__ = ["CallbackMeter", "JackBackend", "DeviceBackend", "list_ports", "status_line"]


def _import(name: str, package: str) -> Any:
    try:
        module = __import__(name)
    except (ImportError, OSError) as e:
        raise InputError(f"live audio needs {package}: pip install 'midi2wave[live]' ({e})") from None
    if name == "jack":  # libjack's own messages ("Cannot connect to server socket ...") go to the debug log
        module.set_error_function(lambda message: logger.debug("libjack: %s", message))
        module.set_info_function(lambda message: logger.debug("libjack: %s", message))
    return module


@contextlib.contextmanager
def _quiet_c_stderr():
    """Silence what C libraries print on file descriptor 2 while probing (ALSA's "ALSA lib ...",
    libjack's "Cannot connect to server socket" when RtMidi tries its JACK API)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _device(device: str | int | None) -> str | int | None:
    """A device as sounddevice takes it: a number as `live --list` shows it, else a name or part of one."""
    if isinstance(device, str) and device.strip().isdigit():
        return int(device)
    return device


def _output_device(sd: Any, device: str | int | None) -> dict:
    """The PortAudio output device `device` (`_device`'s; None: the default), or a one-line InputError."""
    try:
        info = sd.query_devices(device, "output")
        if info["max_output_channels"] < 1:
            raise ValueError(f"{info['name']!r} has no output channels")
        return info
    except (ValueError, sd.PortAudioError) as e:
        what = f"audio device {device!r}" if device is not None else "the default audio output"
        hint = "no audio output on this machine" if device is None else str(e)
        raise InputError(f"{what}: {hint} (see `midi2wave live --list`)") from None


def _midi_inputs(rtmidi: Any) -> list[tuple[int, int, str]]:
    """Every MIDI input of every RtMidi API compiled in, as `live --list` numbers them: (api, port
    number within the api, "name [api]"). An API without its system part (no ALSA sequencer) has none."""
    ports = []
    for api in rtmidi.get_compiled_api():
        try:
            with _quiet_c_stderr():
                names = rtmidi.MidiIn(api).get_ports()
        except Exception:  # noqa: BLE001 - rtmidi raises SystemError and its own errors here
            continue
        ports += [(api, i, f"{name} [{rtmidi.get_api_display_name(api)}]") for i, name in enumerate(names)]
    return ports


def _open_midi_input(rtmidi: Any, wanted: str) -> Any:
    """An open RtMidi input: `wanted` is a number as `live --list` shows it, a whole name, or part of
    one (case-insensitive); else a one-line InputError listing the inputs."""
    ports = _midi_inputs(rtmidi)
    names = [name for _, _, name in ports]
    if wanted.strip().isdigit():  # a number, never part of a name
        if int(wanted) >= len(names):
            raise InputError(f"MIDI input {wanted}: no input has that number (inputs: "
                             f"{', '.join(f'{k}: {n}' for k, n in enumerate(names)) or 'none'}; "
                             f"see `midi2wave live --list`)")
        match = [int(wanted)]
    else:
        match = [k for k, name in enumerate(names) if wanted in (name, name.rsplit(" [", 1)[0])]
        match = match or [k for k, name in enumerate(names) if wanted.lower() in name.lower()]
    if not match:
        raise InputError(f"MIDI input {wanted!r} not found (inputs: {', '.join(names) or 'none'}; "
                         f"see `midi2wave live --list`)")
    api, number, name = ports[match[0]]
    try:
        with _quiet_c_stderr():
            port = rtmidi.MidiIn(api)
            port.open_port(number)
    except Exception as e:  # noqa: BLE001 - rtmidi's errors (a port gone since it was listed)
        raise InputError(f"MIDI input {name!r}: cannot open it ({e})") from None
    return port


def check_ahead_ms(ahead_ms: float) -> float:
    """`ahead_ms` if it is a usable extra buffering (`_Processor`), else a one-line InputError."""
    if not 0.0 <= ahead_ms <= 100.0:
        raise InputError(f"--ahead {ahead_ms:g} ms: give 0 (render in the audio callback) to 100 ms")
    return float(ahead_ms)


def ahead_samples(synth: LiveSynth, ahead_ms: float | None) -> int | None:
    """`ahead_ms` in the model's samples (at least 1 when it is not 0); None (the default) stays
    None: `default_ahead_samples` decides once the device's rate and period are known."""
    if ahead_ms is None:
        return None
    n = int(round(check_ahead_ms(ahead_ms) * synth.sr / 1000.0))
    return max(n, 1) if ahead_ms > 0 else 0


def default_ahead_samples(synth: LiveSynth, device_rate: int, period: int) -> int:
    """The default extra buffering, in model samples: `DEFAULT_AHEAD_MS`, or the least more (in
    steps of a quarter of a millisecond, up to `AUTO_AHEAD_MAX_MS`) that gives the render thread
    `MIN_SLACK_MS` for each block, where 4 ms gives it less. Not where 4 ms gives it no period at all
    and the period is `CALLBACK_MIN_PERIOD_MS` or longer: the callback renders then, with the
    period for each block, without the buffering (16 kHz with period 160 and up). Where no
    buffering up to the cap reaches it, 4 ms (the callback renders if the thread has no period)."""
    base = ahead_samples(synth, DEFAULT_AHEAD_MS)
    assert base is not None
    step = max(1, synth.sr // 4000)
    least = MIN_SLACK_MS / 1000.0

    def slack(n: int) -> float:  # seconds the render thread has for a block
        return _adapter(synth, device_rate, n).periods_to_spare(period) * period / device_rate

    first = slack(base)
    if first >= least or (first == 0.0 and period / device_rate >= CALLBACK_MIN_PERIOD_MS / 1000.0):
        return base
    for n in range(base + step, int(round(AUTO_AHEAD_MAX_MS * synth.sr / 1000.0)) + 1, step):
        if slack(n) >= least:
            return n
    return base


@dataclass
class CallbackMeter:
    """What the audio callback did: periods, time per period (worst, recent), xruns, errors."""

    periods: int = 0
    worst_s: float = 0.0
    load: float = 0.0  # recent callback time / period (exponential average)
    xruns: int = 0
    errors: int = 0
    overloads: int = 0  # periods whose callback took longer than the period
    # the latest callback times (seconds), a ring of 2^18 periods (bench/live.py reads percentiles)
    durations: np.ndarray = field(default_factory=lambda: np.zeros(1 << 18))
    # JACK: seconds from the start of the server's cycle to the callback's end, per period (its
    # wake-up and the GIL's wait included): where the callback began in its cycle plus how long it
    # took (read at the end, JACK's count would restart with a next cycle that began meanwhile;
    # a callback woken only after the next cycle began still reads from that one)
    ends: np.ndarray = field(default_factory=lambda: np.zeros(1 << 18))

    def add(self, seconds: float, period_s: float) -> None:
        self.durations[self.periods % len(self.durations)] = seconds
        self.periods += 1
        self.worst_s = max(self.worst_s, seconds)
        self.load += 0.05 * (seconds / period_s - self.load)
        if seconds > period_s:
            self.overloads += 1


class _Processor:
    """The callback's work, shared by the backends: events -> RateAdapter -> samples, guarded.

    `ahead_samples` None: `default_ahead_samples` for this rate and period. 0: the callback renders
    its period itself. D > 0: a render thread takes each
    period's events and renders everything they decide (`RateAdapter.produce`), the output is
    buffered D model samples more, and the callback only hands over the events and reads its
    block from the ring (`RateAdapter.periods_to_spare` periods before it is heard, at least one:
    with a period so long that a block would need its own period's events, the callback renders,
    without the extra buffering; `render_thread` says which). A block not ready in time (the
    callback waits for it at most half a period, 0.8 after a change to a period too long for the
    thread to have one to spare, `resize`; in JACK's freewheel mode as long as it takes) is
    output with silence for what is missing and counted in `late`, and the stream keeps time. When
    the thread falls `max_backlog` periods behind (an overload), it drops what it has not rendered
    (`skipped`; the engine falls silent until the next onset) rather than play it late."""

    def __init__(self, synth: LiveSynth, device_rate: int, period: int, ahead_samples: int | None = 0) -> None:
        synth.prepare()  # no note builds its oscillators' table in the callback
        if ahead_samples is None:  # the default: 4 ms, or more where that leaves the thread little time
            ahead_samples = default_ahead_samples(synth, device_rate, period)
        self.adapter = _adapter(synth, device_rate, ahead_samples)
        self.spare_periods = self.adapter.periods_to_spare(period)
        if ahead_samples and self.spare_periods < 1:  # a thread would have less time than the callback
            self.adapter = RateAdapter(synth, device_rate, 0)
        self.render_thread = self.adapter.ahead_samples > 0
        self._asked_ahead = ahead_samples > 0
        self.synth = synth
        self._set_period(period)
        self.meter = CallbackMeter()  # the audio callback
        self.work = CallbackMeter()  # the render of each period (the callback's own, or the render thread's)
        self.late = 0  # periods output (partly) silent: their samples were not rendered in time
        self.skipped = 0  # periods the render thread dropped, too far behind
        # how much of a period the callback waits for a block the thread has not rendered yet:
        # half, while the thread has a period to spare (`resize`: more when a server's period grows)
        self.wait_share = 0.5
        self.freewheel = False  # JACK's freewheel mode: the callback waits for the render thread
        self.closing = False  # `stop` was called: the stream is ending
        self.output_latency_s = 0.0  # the device's own buffering (PortAudio's stream latency)
        self.logged = False
        self.inbox: deque = deque()
        self.sent = self.done = 0  # periods handed to the render thread, and rendered (or failed)
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None
        self._stop: threading.Event | None = None

    def start(self) -> None:
        """Start the render thread (with `ahead_samples`), before the stream starts."""
        if self.render_thread and self.thread is None:
            self._stop = threading.Event()
            self.thread = threading.Thread(target=self._render_loop, args=(self._stop,), name="midi2wave-render",
                                           daemon=True)
            self.thread.start()

    def stop(self) -> None:
        """Stop the render thread. The stream may still run (a backend stops its stream after
        this): its callback then outputs what the ring holds, without waiting, and counts no block
        late."""
        self.closing = True
        if self.thread is not None and self._stop is not None:
            with self.cond:
                self._stop.set()
                self.cond.notify_all()
            self.thread.join(5.0)
            self.thread = None

    def _set_period(self, frames: int) -> None:
        self.period = frames  # device frames per callback, as the server last said
        self.period_s = frames / self.adapter.device_rate
        self.max_backlog = max(4, int(math.ceil(0.02 / self.period_s)))  # periods (20 ms): a thread further behind drops

    def resize(self, frames: int) -> None:
        """The server's period is now `frames` (JACK calls this before the first period and on each
        change; PipeWire changes its quantum as other programs come and go). With the render
        thread, a period too long for the thread to have one to spare (48 kHz with 128 -> 1024)
        makes each block wait for its own period's render: the callback then waits for it up to 0.8
        of the period, as long as a render in the callback could take, instead of half. The
        backlog at which the thread drops work stays 20 ms. (A stream that began in the callback,
        at a long period, stays there: its latency has no buffering to render ahead into.)"""
        frames = int(frames)
        if frames <= 0:
            return
        self._set_period(frames)
        if self.render_thread:
            self.spare_periods = self.adapter.periods_to_spare(frames)
            self.wait_share = 0.5 if self.spare_periods >= 1 else 0.8

    @property
    def mode(self) -> str:
        """Where the blocks are rendered, for the start line."""
        if self.render_thread:
            n = self.spare_periods
            return f"rendered on a thread, {n} period{'s' if n != 1 else ''} ahead"
        if self._asked_ahead:
            return "rendered in the audio callback (the period is too long to render ahead within the buffering)"
        return "rendered in the audio callback"

    @property
    def latency_ms(self) -> float:
        """From an event to its sound: the engine's latency in device frames plus the device's buffering."""
        return 1000.0 * (self.adapter.latency_frames / self.adapter.device_rate + self.output_latency_s)

    @property
    def errors(self) -> int:
        """Periods an error silenced, in the callback and on the render thread (each counts in its
        own meter: one writer per counter, no lock in the callback)."""
        return self.meter.errors + self.work.errors

    def _error(self, meter: CallbackMeter) -> None:
        meter.errors += 1
        if not self.logged:
            self.logged = True
            logger.exception("error in the audio engine (silence for this period; the stream goes on)")

    def _rendering(self) -> bool:
        thread = self.thread
        return thread is not None and thread.is_alive()

    def __call__(self, events: list[tuple[int, bytes]], frames: int, out: np.ndarray) -> None:
        start = time.perf_counter()
        period_s = frames / self.adapter.device_rate
        if self.render_thread:
            try:
                ring = self.adapter.ring
                silent_until = self.adapter.latency_frames  # no event can sound before this frame
                with self.cond:
                    self.inbox.append((events, frames))
                    self.sent += 1
                    self.cond.notify_all()
                    if ring.available < frames and ring.read + frames > silent_until:
                        # wait for it a little (as long as it takes in freewheel)
                        self.cond.wait_for(lambda: ring.available >= frames or self.done >= self.sent
                                           or not self._rendering(), 5.0 if self.freewheel else self.wait_share * period_s)
                first = ring.read
                if ring.read_into(out) < frames and first + frames > silent_until and not self.closing:
                    self.late += 1
            except Exception:  # never out of the audio callback
                out[:] = 0.0
                self._error(self.meter)
            self.meter.add(time.perf_counter() - start, period_s)
            return
        try:
            out[:] = self.adapter.process(events, frames)
        except Exception:  # never out of the audio callback: count, log once, output silence
            out[:] = 0.0
            self._error(self.meter)
        seconds = time.perf_counter() - start
        self.meter.add(seconds, period_s)
        self.work.add(seconds, period_s)
        self._keep_up()

    def _render_loop(self, stop: threading.Event) -> None:
        try:  # above the other threads of the machine, under JACK's (its clients run at 10 or more)
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))  # 0: this thread (Linux)
        except (AttributeError, OSError):
            pass
        adapter, ring = self.adapter, self.adapter.ring
        while not stop.is_set():
            try:
                with self.cond:
                    self.cond.wait_for(lambda: self.inbox or stop.is_set(), 0.5)
                    if stop.is_set() or not self.inbox:
                        continue
                    events, frames = self.inbox.popleft()
                    skip = len(self.inbox) >= self.max_backlog  # too far behind: drop, do not play late
                start = time.perf_counter()
                try:
                    ring.write(adapter.produce(events, frames, skip=skip))
                    self.skipped += skip
                except Exception:  # the period stays silent (the reader goes on without it)
                    self._error(self.work)
                with self.cond:
                    self.done += 1
                    self.cond.notify_all()
                self.work.add(time.perf_counter() - start, frames / adapter.device_rate)
                self._keep_up()
            except Exception:  # pragma: no cover - the loop itself: count, and go on
                self._error(self.work)

    def _keep_up(self) -> None:
        """Keep time under overload: while rendering takes most of the period, cap the notes held
        (a new note ends the oldest); lift the cap once the load is back down."""
        synth = self.synth
        if self.work.load > 0.8:
            if synth.voice_limit is None:
                synth.voice_limit = max(4, synth.polyphony - 2)
        elif self.work.load < 0.5 and synth.voice_limit is not None:
            synth.voice_limit = None


_saved_switch = [sys.getswitchinterval()]


def _realtime_python(on: bool) -> None:
    """While live: a short thread switch interval (another Python thread cannot hold the GIL for a
    whole period: 5 ms by default) and no cyclic garbage collection (a full collection stalls the
    callback for milliseconds; the engine makes no reference cycles). Undone after."""
    if on:
        _saved_switch[0] = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)
        gc.collect()
        gc.freeze()
        gc.disable()
    else:
        sys.setswitchinterval(_saved_switch[0])
        gc.unfreeze()
        gc.enable()


def status_line(proc: _Processor) -> str:
    m, w, synth = proc.meter, proc.work, proc.synth
    # with the render thread a render longer than the period is absorbed: only late blocks are heard
    flag = "  OVERLOAD: periods late" if (proc.late if proc.render_thread else w.overloads) else ""
    if proc.skipped:
        flag += f"  OVERLOAD: {proc.skipped} periods dropped"
    if synth.voice_limit is not None:
        flag += f"  OVERLOAD: notes limited to {synth.voice_limit} ({synth.stats.stolen} cut short)"
    late = f"  late {proc.late}" if proc.render_thread else ""
    return (f"latency {proc.latency_ms:.1f} ms  period {proc.period}  load {100 * w.load:3.0f}% (worst {1000 * w.worst_s:.1f} ms)  "
            f"polyphony {synth.polyphony:3d}  xruns {m.xruns}{late}  ignored {synth.stats.ignored_total}  "
            f"errors {proc.errors}{flag}")


def _jack_client_exists(jack: Any, name: str) -> bool:
    """Whether the running JACK server has a client `name` (one with ports), asked by a client of its own."""
    try:
        with _quiet_c_stderr():
            probe = jack.Client("midi2wave-probe", no_start_server=True)
    except jack.JackError:
        return False
    try:
        return any(p.name.split(":", 1)[0] == name for p in probe.get_ports())
    finally:
        probe.close()


def _adapter(synth: LiveSynth, device_rate: int, ahead: int) -> RateAdapter:
    """`RateAdapter`, or a one-line InputError for a device rate it cannot reach."""
    try:
        return RateAdapter(synth, device_rate, ahead)
    except LiveError as e:
        raise InputError(f"audio device: {e}") from None


def _on_pipewire(jack: Any) -> bool:
    """Whether the JACK library is PipeWire's (`pw-jack`, or installed in place of JACK's)."""
    try:
        return "PipeWire" in str(jack.version_string())
    except Exception:  # noqa: BLE001 - an odd library: take it for JACK's own
        return False


@contextlib.contextmanager
def _environment(values: dict[str, str | None]):
    """The environment variables `values` set (None: unset) for the block, then restored."""
    old = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _cancel_state_function() -> Any:
    """glibc's pthread_setcancelstate through ctypes.PyDLL (called holding the GIL: no thread
    switch around it), or None off Linux (other constants) or without it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.PyDLL(None).pthread_setcancelstate
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = [ctypes.c_int, ctypes.c_void_p], ctypes.c_int
    return function


_SET_CANCEL_STATE = _cancel_state_function()
_CANCEL_ENABLE, _CANCEL_DISABLE = 0, 1  # glibc's PTHREAD_CANCEL_ENABLE / _DISABLE


def _uncancellable(callback: Any) -> Any:
    """An audio callback that the audio library's thread runs with cancellation disabled (the
    thread's state before it is restored after it).

    JACK stops a client's audio thread with pthread_cancel: PipeWire's JACK (in jack_deactivate and
    jack_client_close: its data loop has `loop.cancel` set, and no setting of the client's reaches
    it), and jackd's libjack too (jack_deactivate cancels and joins the client's thread). Cancelled at a cancellation point inside the interpreter (waiting for the GIL, or in a
    lock's wait) the thread dies holding the GIL's mutex, and the whole process hangs for ever
    (docs/live.md, "Stopping under PipeWire"). With cancellation disabled for the callback, a
    cancel that comes meanwhile waits until the thread is at a cancellation point with it enabled
    again: in the library's own code, or, if another thread wants the GIL just then, at the one
    check for a thread switch after the state is restored. That moment and the thread's way in
    (waiting for the GIL before the callback runs) stay exposed; stopping with no other thread of
    ours taking the GIL keeps them uncontended (`deactivate_jack_client`)."""
    set_state = _SET_CANCEL_STATE
    if set_state is None:
        return callback

    @functools.wraps(callback)
    def guarded(*args: Any) -> Any:
        before = ctypes.c_int(_CANCEL_ENABLE)
        set_state(_CANCEL_DISABLE, ctypes.byref(before))
        try:
            return callback(*args)
        finally:
            set_state(before.value, None)

    return guarded


def deactivate_jack_client(client: Any) -> None:
    """`client.deactivate()`, after three periods in which this thread does not hold the GIL.

    JACK (PipeWire's, and jackd's libjack) cancels the client's audio thread in deactivate
    (`_uncancellable`); if that thread is then waiting for the GIL to begin a callback, it dies
    holding the GIL's mutex. The pause lets a callback that waits for the GIL now run first. What stays exposed is the moment
    between the pause and the library call, where this thread holds the GIL, so a caller stops the
    threads of its own that take the GIL (the render thread) before it."""
    time.sleep(3 * client.blocksize / client.samplerate)
    client.deactivate()


def close_jack_client(client: Any) -> None:
    """`client.close()` for a deactivated client, once a notification callback already on its way
    has run.

    jack_client_close cancels the client's notification thread (pthread_cancel: jackd's libjack stops
    the client's channel in JackClient::Close), the thread that runs the xrun, period and freewheel
    callbacks. One cancelled while it waits for the GIL to begin such a callback dies holding the
    GIL's mutex, and the process hangs for ever (bench/jack_close.py, with another Python thread
    busy). jackd's libjack calls no notification callback on an inactive client (but the shutdown
    callback), so after deactivate only one already dispatched can come; the pause, a few of the
    interpreter's switch intervals with this thread off the GIL, lets it run first."""
    time.sleep(max(0.02, 4 * sys.getswitchinterval()))
    client.close()


def _open_jack_client(jack: Any, name: str) -> Any:
    """A client of the running JACK server named exactly `name`, or a one-line InputError."""
    try:
        with _quiet_c_stderr():  # the exact name: JACK would rename a second instance (NAME-01)
            return jack.Client(name, use_exact_name=True, no_start_server=True)
    except jack.JackOpenError as e:
        if e.status.server_failed:
            raise InputError("JACK: no server to connect to (start one, e.g. `jackd -d alsa`, or run under "
                             f"PipeWire's JACK: `pw-jack midi2wave live --jack`) ({e.status})") from None
        if e.status.name_not_unique or _jack_client_exists(jack, name):  # jackd2 says only "server error"
            raise InputError(f"JACK: a client named {name!r} is already running (give another --name)") from None
        raise InputError(f"JACK: the server refused a client named {name!r} ({e.status})") from None
    except jack.JackError as e:
        raise InputError(f"JACK: cannot open a client named {name!r} ({e})") from None


class JackBackend:
    """The live engine as a JACK client (`NAME:midi_in` -> `NAME:out`).

    `period_frames`: under PipeWire's JACK, the period to ask the graph for (its quantum), as
    PIPEWIRE_LATENCY at the graph's rate (default `DEFAULT_PERIOD_FRAMES`; a PIPEWIRE_LATENCY the
    user set stands unless `period_frames` is given), and `node.lock-quantum = false`
    (PIPEWIRE_PROPS, unless the user set it). PipeWire runs its graph at the shortest period its
    nodes ask for, rounded down to a power of two, except while a JACK client that joined it at a
    longer one holds it there; the engine follows the period it gets (`_blocksize`), and does not
    hold the graph itself. jackd's period is the server's, for every client (`jack_bufsize`
    changes it): `period_frames_asked` stays None there."""

    def __init__(self, synth: LiveSynth, name: str = "midi2wave", connect: bool = False,
                 ahead_ms: float | None = None, period_frames: int | None = None) -> None:
        jack = _import("jack", "JACK-Client (and the JACK library, e.g. Debian's jackd2)")
        self.pipewire = _on_pipewire(jack)
        self.period_frames_asked: int | None = None  # of PipeWire
        # PipeWire's JACK reads these as the client opens (setting the process's environment is safe
        # here: no thread of ours reads it meanwhile)
        request: dict[str, str] = {}
        if self.pipewire and "PIPEWIRE_PROPS" not in os.environ:  # the user's own properties stand
            # PipeWire's JACK clients hold the graph at the period it had when they joined: do not,
            # so that it comes down to the period asked for once a program holding it longer leaves
            request["PIPEWIRE_PROPS"] = "{ node.lock-quantum = false }"
        if self.pipewire and (period_frames is not None or "PIPEWIRE_LATENCY" not in os.environ):
            asked = DEFAULT_PERIOD_FRAMES if period_frames is None else int(period_frames)
            if asked <= 0:
                raise InputError(f"--period {asked}: give a number of frames above 0")
            probe = _open_jack_client(jack, name)  # the graph's rate, to ask for whole frames at it
            try:
                request["PIPEWIRE_LATENCY"] = f"{asked}/{probe.samplerate}"
            finally:
                with contextlib.suppress(jack.JackError):
                    probe.close()
            self.period_frames_asked = asked
        with _environment(request):
            self.client = _open_jack_client(jack, name)
        self.jack = jack
        self.failure: str | None = None  # set when the server shuts the client down
        self.rate = self.client.samplerate
        try:
            self.proc = _Processor(synth, self.rate, self.client.blocksize, ahead_samples(synth, ahead_ms))
        except InputError:
            self.client.close()
            raise
        self.midi_in = self.client.midi_inports.register("midi_in")
        self.out = self.client.outports.register("out")
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)
        self.client.set_freewheel_callback(self._freewheel)
        self.client.set_blocksize_callback(self._blocksize)
        self.client.set_shutdown_callback(self._shutdown)
        self.connect = connect
        self.first_frame: int | None = None  # the graph's frame time of this client's first period

    # JACK's notification thread runs these: uncancellable for their bodies (close cancels that thread)
    @_uncancellable
    def _xrun(self, delay: float) -> None:
        self.proc.meter.xruns += 1

    @_uncancellable
    def _freewheel(self, starting: bool) -> None:
        self.proc.freewheel = bool(starting)

    @_uncancellable
    def _shutdown(self, status: Any, reason: str) -> None:  # JACK's thread: only a flag
        self.failure = f"JACK: the server shut the client down ({reason or status})"

    @property
    def period(self) -> int:
        """Frames per period, as the server last said (`_Processor.period`)."""
        return self.proc.period

    @_uncancellable
    def _blocksize(self, frames: int) -> None:
        """JACK's period changed (outside the process cycle): the engine's period, and how long
        the callback waits for the render thread (`_Processor.resize`). Never raises."""
        try:
            self.proc.resize(frames)
        except Exception:  # noqa: BLE001 - a notification callback must not raise into JACK
            logger.exception("error on JACK's period change (the stream goes on)")

    @_uncancellable
    def _process(self, frames: int) -> None:
        try:
            began = self.client.frames_since_cycle_start / self.rate
            start = time.perf_counter()
            if self.first_frame is None:
                self.first_frame = self.client.last_frame_time
            events = [(offset, bytes(data)) for offset, data in self.midi_in.incoming_midi_events()]
            self.proc(events, frames, self.out.get_array())
            meter = self.proc.meter
            meter.ends[(meter.periods - 1) % len(meter.ends)] = began + time.perf_counter() - start
        except Exception:  # pragma: no cover - _Processor catches its own; this guards the port reads
            self.proc.meter.errors += 1

    def start(self) -> None:
        _realtime_python(True)
        self.proc.start()
        try:
            try:
                self.client.activate()
                if self.connect:
                    playback = self.client.get_ports(is_physical=True, is_input=True, is_audio=True)
                    if not playback:
                        raise InputError("JACK --connect: the server has no playback ports to connect to")
                    for port in playback:
                        self.client.connect(self.out, port)
            except self.jack.JackError as e:
                raise InputError(f"JACK: cannot start the client ({e})") from None
        except BaseException:  # not started: nothing left running or open (in `stop`'s order)
            self.proc.stop()
            if _bounded(lambda: deactivate_jack_client(self.client), "JACK: deactivating the client", log=False):
                _bounded(lambda: close_jack_client(self.client), "JACK: closing the client", log=False)
            _realtime_python(False)
            raise

    @property
    def latency_ms(self) -> float:
        return self.proc.latency_ms

    def stop(self) -> None:
        # the render thread first: while the client is deactivated no other thread of ours competes
        # for the GIL with its audio thread, and the callback no longer waits (`_uncancellable`)
        self.proc.stop()
        # an overloaded server can leave deactivate() waiting for ever: give it up after a while (and
        # then do not close the client under it: the process's exit does)
        if self.failure is not None or _bounded(lambda: deactivate_jack_client(self.client),
                                                "JACK: deactivating the client"):
            # shut down (the server gone, or it dropped the client: its shutdown callback may still be on its way)
            _bounded(lambda: close_jack_client(self.client), "JACK: closing the client")
        _realtime_python(False)


_STREAM_STOPPED = "audio device: the stream stopped (the device is gone?)"


def _start_stream(sd: Any, stream: Any) -> None:
    """Start a PortAudio stream, or a one-line InputError."""
    try:
        stream.start()
    except sd.PortAudioError as e:
        raise InputError(f"audio device: cannot start the stream ({e})") from None


def _bounded(call: Any, what: str, seconds: float = 5.0, log: bool = True) -> bool:
    """`call()` on a daemon thread, waited for at most `seconds`: whether it finished (returned or
    raised). A call that raised or hangs is logged in one line (with `log`); the process can exit
    past one that hangs."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except Exception as e:  # noqa: BLE001 - reported below
            failed.append(e)

    thread = threading.Thread(target=run, name="midi2wave-bounded", daemon=True)
    thread.start()
    thread.join(seconds)
    if (thread.is_alive() or failed) and log:
        logger.warning("%s: %s", what, f"gave up after {seconds:g} s" if thread.is_alive() else failed[0])
    return not thread.is_alive()


class DeviceBackend:
    """The live engine on a PortAudio output (sounddevice), MIDI from an RtMidi input port."""

    def __init__(self, synth: LiveSynth, midi_in: str | None, device: str | None, period: int = DEFAULT_PERIOD_FRAMES,
                 rate: int | None = None, ahead_ms: float | None = None) -> None:
        sd = _import("sounddevice", "sounddevice (and PortAudio, e.g. Debian's libportaudio2)")
        device = _device(device)
        self.sd, self.started, self.queue, self.midi = sd, False, deque(), None
        if midi_in is not None:
            self.midi = _open_midi_input(_import("rtmidi", "python-rtmidi"), midi_in)
        try:
            info = _output_device(sd, device)
            self.rate = int(rate or info["default_samplerate"])
            self.period = int(period)
            self.proc = _Processor(synth, self.rate, self.period, ahead_samples(synth, ahead_ms))
            try:
                self.stream = sd.OutputStream(samplerate=self.rate, blocksize=self.period, device=device,
                                              channels=1, dtype="float32", latency="low", callback=self._callback)
            except (ValueError, sd.PortAudioError) as e:
                raise InputError(f"audio device {device!r}: {e} (see `midi2wave live --list`)") from None
            self.proc.output_latency_s = float(self.stream.latency)
        except BaseException:
            if self.midi is not None:
                self.midi.close_port()
            raise
        if self.midi is not None:
            # sysex passes (counted as ignored); clock and active sensing need not reach the engine
            self.midi.ignore_types(sysex=False, timing=True, active_sense=True)
            self.midi.set_callback(lambda message, _: self.queue.append(bytes(message[0])))

    @_uncancellable
    def _callback(self, outdata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
        if status.output_underflow:
            self.proc.meter.xruns += 1
        events = []
        while self.queue:
            events.append((0, self.queue.popleft()))
        self.proc(events, frames, outdata[:, 0])

    def start(self) -> None:
        _realtime_python(True)
        self.proc.start()
        try:
            _start_stream(self.sd, self.stream)
            self.started = True
        except BaseException:  # not started: nothing left running or open
            self._close()
            self.proc.stop()
            _realtime_python(False)
            raise

    @property
    def latency_ms(self) -> float:
        return self.proc.latency_ms

    @property
    def failure(self) -> str | None:
        """Why the stream stopped by itself (the device gone), else None."""
        return _STREAM_STOPPED if self.started and not self.stream.active else None

    def _close(self) -> None:
        """Stop and close the stream (a device gone can make PortAudio raise or block: bounded, logged)
        and the MIDI port."""
        self.started = False
        _bounded(self.stream.stop, "audio device: stopping the stream")
        _bounded(self.stream.close, "audio device: closing the stream")
        if self.midi is not None:
            _bounded(self.midi.close_port, "MIDI input: closing the port")

    def stop(self) -> None:
        self.proc.stop()  # the render thread first, as JackBackend.stop does
        self._close()
        _realtime_python(False)


def run_live(backend: Any, quiet: bool = False, seconds: float | None = None) -> int:
    """Run until Ctrl-C (or `seconds`), a status line every half second. Returns the exit status."""
    backend.start()
    stop = threading.Event()
    t0 = time.monotonic()
    failure = None  # why the backend stopped by itself (the server quit, the device went away)
    try:
        while not stop.wait(0.5):
            if not quiet:
                print("\r" + status_line(backend.proc), end="", file=sys.stderr, flush=True)
            failure = backend.failure
            if failure is not None or seconds is not None and time.monotonic() - t0 >= seconds:
                break
    except KeyboardInterrupt:
        pass
    finally:
        backend.stop()
        if not quiet:
            print("\r" + status_line(backend.proc), file=sys.stderr)
    if failure is not None:
        raise InputError(failure)
    return 0


def list_ports() -> str:
    """The JACK ports, MIDI inputs and audio outputs this machine offers (lines of text)."""
    lines = []
    try:
        jack = _import("jack", "JACK-Client")

        try:
            with _quiet_c_stderr():
                client = jack.Client("midi2wave-list", no_start_server=True)
            if _on_pipewire(jack):  # a client that asks for nothing gets PipeWire's default period
                lines.append(f"JACK server: PipeWire's, {client.samplerate} Hz (`live --jack` asks for a period of "
                             f"{DEFAULT_PERIOD_FRAMES} frames, --period for another)")
            else:
                lines.append(f"JACK server: {client.samplerate} Hz, period {client.blocksize}")
            for p in client.get_ports(is_midi=True, is_output=True):
                lines.append(f"  JACK MIDI source: {p.name}")
            for p in client.get_ports(is_audio=True, is_input=True):
                lines.append(f"  JACK audio sink:  {p.name}")
            client.close()
        except jack.JackError:
            lines.append("JACK: no server running")
    except InputError:
        lines.append("JACK: JACK-Client not installed")
    try:
        import rtmidi

        for k, (_, _, name) in enumerate(_midi_inputs(rtmidi)):
            lines.append(f"MIDI input {k}: {name}")
        if not any(line.startswith("MIDI input") for line in lines):
            lines.append("MIDI inputs: none")
    except ImportError:
        lines.append("MIDI: python-rtmidi not installed")
    try:
        import sounddevice as sd

        for i, d in enumerate(sd.query_devices()):
            if d["max_output_channels"] > 0:
                lines.append(f"audio output {i}: {d['name']} ({int(d['default_samplerate'])} Hz)")
        if not any(line.startswith("audio output") for line in lines):
            lines.append("audio outputs: none")
    except (ImportError, OSError):
        lines.append("audio: sounddevice / PortAudio not installed")
    return "\n".join(lines)


class _Feed:
    """`play`'s samples on their way to a PortAudio callback stream: a `SampleRing` of about half a
    second that the render loop fills (waiting while it is full) and the callback empties. Not
    PortAudio's blocking writes: through its JACK host API (Debian's libportaudio2) those put
    stretches of other memory (NaN, 1e17) on the port as soon as the writes are bursty
    (tests/test_live_jack.py records the device). The stream starts once the first block is in.
    Unlike `live`, nothing is dropped to keep time: a block the render did not finish in time is
    a gap of silence (counted in `gaps`), and the rest of the piece follows it, later."""

    def __init__(self, sd: Any, rate: int, device: str | int | None, stall_s: float = 5.0) -> None:
        self.rate, self.sd, self.stall_s = rate, sd, stall_s
        self.ring = SampleRing(rate // 2 + 8192)
        self.gaps = 0
        self.started = self.finishing = False
        # blocksize 0: PortAudio's own (its JACK host API aborts in malloc for a mono stream whose
        # blocksize exceeds JACK's period: measured with Debian's libportaudio2)
        self.stream = sd.OutputStream(samplerate=rate, blocksize=0, device=device, channels=1, dtype="float32",
                                      callback=self._callback)

    @_uncancellable
    def _callback(self, outdata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
        if self.ring.read_into(outdata[:, 0], keep_time=False) < frames and not self.finishing:
            self.gaps += 1  # the render fell behind: a gap, and the piece goes on after it

    def _wait(self, done: Any, what: str) -> None:
        """Wait until `done()`; a one-line InputError when the stream stops or takes no sample for `stall_s`."""
        read, since = self.ring.read, time.monotonic()
        while not done():
            if not self.stream.active:
                raise InputError(_STREAM_STOPPED)
            if self.ring.read != read:
                read, since = self.ring.read, time.monotonic()
            elif time.monotonic() - since > self.stall_s:
                raise InputError(f"audio device: took no sample for {self.stall_s:g} s {what}")
            time.sleep(0.005)

    def write(self, x: np.ndarray) -> None:
        ring = self.ring
        if self.started:
            self._wait(lambda: len(x) <= len(ring.buffer) - ring.available, "(the stream hangs)")
        ring.write(x)
        if not self.started:
            _start_stream(self.sd, self.stream)
            self.started = True

    def finish(self) -> None:
        """Wait until every sample written has been handed to the device (and its buffer), then stop."""
        self.finishing = True
        if self.started:
            self._wait(lambda: self.ring.available <= 0, "(the stream hangs)")
            time.sleep(min(1.0, float(self.stream.latency)))
            _bounded(self.stream.stop, "audio device: stopping the stream")

    def close(self) -> None:
        _bounded(self.stream.close, "audio device: closing the stream")


def play_file(synth: LiveSynth, midi: Any, *, out: Any = None, device: str | None = None, audio: bool = True,
              force: bool = False, end_s: float | None = None, period: int = 1024, quiet: bool = False) -> float:
    """Stream a MIDI file through the live engine to an audio device as it is generated (and to a WAV
    with `out`). `midi`: a path, or what `read_midi` read from one. Returns the seconds from the call
    to the first period's sound: handed to the device, plus the output latency PortAudio reports
    for it (0 without audio)."""
    from ..audio import wav_writer
    from .live import file_events, render_events

    t_start = time.perf_counter()
    sr = synth.sr
    events = file_events(midi, sr)
    if end_s is None:
        end_s = max((e[0] for e in events), default=0) / sr + C.RELEASE_SECONDS
    n = int(round(end_s * sr))
    L = synth.latency_samples
    feed = resampler = None
    if audio:
        sd = _import("sounddevice", "sounddevice (and PortAudio, e.g. Debian's libportaudio2)")
        device = _device(device)
        rate = int(_output_device(sd, device)["default_samplerate"])
        if rate != sr:  # the device's own rate (a JACK server's cannot change): resampled as `live` does
            resampler = _adapter(synth, rate, 0)
        try:
            feed = _Feed(sd, rate, device)
        except (ValueError, sd.PortAudioError) as e:
            raise InputError(f"audio device {device!r}: {e} (see `midi2wave live --list`; "
                             f"--no-audio writes only the WAV)") from None
    first_sound = math.nan
    with contextlib.ExitStack() as stack:
        if feed is not None:
            stack.callback(feed.close)
        wav = stack.enter_context(wav_writer(out, sr, force=force)) if out is not None else None
        done = 0
        for block in render_events(synth, events, n + L, period):
            part = block[max(0, L - done):]
            done += len(block)
            if not len(part):
                continue
            if wav is not None:
                wav.write(part)
            if feed is not None:
                feed.write(resampler.resample(part) if resampler is not None else np.asarray(part, np.float32))
            if math.isnan(first_sound):  # handed to the device, plus the device's own buffering
                first_sound = time.perf_counter() - t_start + (float(feed.stream.latency) if feed is not None else 0.0)
            if not quiet and synth.stats.blocks % 16 == 0:
                print(f"\rplay {done / sr:6.1f} / {n / sr:.1f} s", end="", file=sys.stderr, flush=True)
        if feed is not None:
            feed.finish()
    if not quiet:
        gaps = f" ({feed.gaps} gaps: the render fell behind)" if feed is not None and feed.gaps else ""
        print(gaps, file=sys.stderr)
    return first_sound
