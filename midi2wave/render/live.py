"""The live engine: MIDI events in, audio out, block by block (`midi2wave live`, `midi2wave play`).

`LiveSynth(model, options, year)` holds one stream's whole state, explicit and resettable:
- the notes sounding and the pedals (the sustain rule applied as events arrive: a key released
  while the sustain pedal is down sounds on until the pedal lifts or the key is struck again; the
  sostenuto pedal holds the keys down when it goes down; the soft pedal is a conditioning row);
- the context stack's past frames (`model.stepping.ContextStepper`: a causal context, one frame
  at a time), and the gate conditioning of the frames computed so far;
- the resonator bank (`conditioning.resonators.LiveBank`: oscillators appended as notes begin and
  released when they end), the WaveNet's ring buffers (`kernel.NumbaState`), the random stream,
  the DC blocker.

Events: `note_on(pitch, velocity, offset)`, `note_off(pitch, offset)`, `control_change(cc, value,
offset)` or raw bytes `midi_message(data, offset)`, `offset` samples into the next `render(n)`
block. Unknown or bad messages (sysex, pressure, bend, keys outside 21..108, stray data bytes) are
ignored and counted in `stats`, never raised.

Timing: frame f's roll (`midi.frame_rolls` of the notes known then) is complete once every event
before its end has arrived, so the engine lags its input by one frame: `render(n)` returns the
piece's samples [clock - L, clock + n - L) with `latency_samples` L = samples_per_frame (4 ms at
16 kHz). An event at sample T sounds from output sample T + L exactly, in any block size. Per block:
the events are applied in time order, each completed frame's roll goes through the context stepper
(numpy, per frame), and the samples go through one call of the numba kernel (nogil: the bank step is
inlined in it), so there is no Python per sample. The render of a block depends on no block size:
`render_events` (the offline render of a file through this engine, `midi2wave play --out`) equals
any block-wise render bit for bit (tests/test_live.py). A piece sample depends only on the events
before the end of its frame, so `advance(n)` + `render_ready()` can generate the same stream up to
one frame sooner than `render` does (`RateAdapter`'s `ahead_samples`: a render thread then has
time to spare, playback.py).

Silence: once every note is released and its tail (the longer of `constants.RELEASE_SECONDS` and
the bank's; an undamped key's longer, `ResonatorConfig.undamped_tail_s`) is over, the engine outputs exact zeros without running the network, and starts again
from a silent state at the frame of the next onset.

Rates: `RateAdapter` turns the model's rate into the device's through a `StreamResampler`: one
short linear-phase polyphase FIR for every ratio (48, 44.1, 96, 22.05 kHz ...), with a whole
number of frames of delay (24 at 48 kHz, 23 at 44.1 kHz: 0.5 ms above the model's rate), part of
`RateAdapter.latency_frames`.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from .. import constants as C
from .. import jit
from ..config import Config, SamplingOptions
from ..conditioning import resonators
from ..midi import Notes, PedalEvents, excitation_signal, frame_rolls, read_midi
from .rows import bank_sampling, temperature_track

_njit = jit.njit(cache=True, nogil=True)

logger = logging.getLogger(__name__)

__all__ = ["LiveSynth", "LiveStats", "RateAdapter", "SampleRing", "file_events", "event_bytes", "render_events",
           "render_file_live", "LiveError"]

_FAR_S = 1.0e9  # the offset of a note still sounding, for the roll and excitation builders (seconds)
_PRUNE_S = 2.0  # a finished note leaves the table this long after its tail (past every builder that reads it)
_PRUNE_EVERY_S = 0.064  # the table is pruned at most this often (each prune that drops a note rebuilds the builders' caches)


class LiveError(ValueError):
    """A model or setting the live engine cannot run (one line)."""


@dataclass
class LiveStats:
    """Counters of a live stream (read by the status line)."""

    notes: int = 0  # note-ons played
    dropped: int = 0  # note-ons refused: the bank was full
    stolen: int = 0  # notes ended early to keep up (`LiveSynth.voice_limit`)
    ignored: Counter = field(default_factory=Counter)  # messages ignored, by reason
    realtime: int = 0  # system real-time messages (clock, start / stop, active sensing): no sound, not errors
    blocks: int = 0
    max_polyphony: int = 0  # the most notes sounding at a block's end so far

    @property
    def ignored_total(self) -> int:
        return sum(self.ignored.values())


@dataclass
class _Note:
    pitch: int
    velocity: int
    onset: int  # sample
    rows: int | None  # the note's handle in the bank (`LiveBank.add_note`)
    offset: int | None = None  # sample it ended (None: sounding)
    key_down: bool = True
    sostenuto: bool = False  # held by the sostenuto pedal


def _seconds(samples: list[int], sample_rate_hz: int) -> np.ndarray:
    """Times in seconds of sample indices, each the largest double x with x * sr <= T: the offline
    builders take a note's first sample as ceil(x * sr), which T / sr alone would make T + 1 for some T
    (its product rounds up)."""
    t = np.asarray(samples, np.float64)
    x = t / sample_rate_hz
    for _ in range(4):
        over = x * sample_rate_hz > t
        if not over.any():
            break
        x[over] = np.nextafter(x[over], -np.inf)
    return x


@_njit
def _dc_block(x, state, rate):
    """y_t = x_t - m_t, m_t = m_{t-1} + rate (x_t - m_{t-1}), in place, sample by sample (the same in
    any block size; `audio.DCBlocker` is its vectorised twin for whole renders)."""
    m = state[0]
    for i in range(x.shape[0]):
        m += rate * (x[i] - m)
        x[i] = x[i] - m
    state[0] = m


class LiveSynth:
    """One stream of a model played from events (see the module docstring)."""

    def __init__(self, model: Any, options: SamplingOptions = SamplingOptions(), year: int | None = None,
                 bank_capacity: int | None = None) -> None:
        """model: a `Midi2Wave` with a causal context, or its `livemodel.LiveModel` snapshot."""
        from . import kernel
        from ..audio import DC_CUTOFF_HZ
        from ..model.stepping import ContextStepper
        from .livemodel import live_model

        data = model.data_config
        self.options = options.resolve(Config(data=data, model=model.model_config, sampling=model.sampling_defaults))
        if self.options.engine == "torch":
            raise LiveError("the live engine runs the numba kernel (--engine numba or auto)")
        self.data = data
        self.sr, self.spf, self.fr = data.sample_rate_hz, data.samples_per_frame, data.frame_rate_hz
        self.latency_samples = self.spf
        try:
            snapshot = live_model(model)
        except ValueError as e:
            raise LiveError(f"this model cannot play live: {e}; use the live model (--model live)") from None
        self.context = ContextStepper(snapshot.context, C.year_index(year) if data.use_year else None)
        bank_config = resonators.from_data_config(data)
        if bank_config is None:
            raise LiveError("this model cannot play live: the live engine runs models with the resonator bank")
        o = self.options
        if bank_capacity is None:  # 4096 oscillators per 16 partials a note (a dense pedalled passage)
            bank_capacity = 4096 * max(1, -(-max(bank_config.partials, bank_config.synthesis_partials) // 16))
        self.bank = resonators.LiveBank(bank_config, self.sr, capacity=bank_capacity,
                                        year=year if data.use_year else None, **bank_sampling(o, self.sr))
        self.packed = kernel.pack_weights(snapshot.stepping, o.precision, snapshot.tables)
        self.kernel = kernel.NumbaState(self.packed, 1)
        self.kernel.innovation_input = data.network_reads_innovation
        self.tail = max(int(math.ceil(C.RELEASE_SECONDS * self.sr)), self.bank.tail)
        # an undamped key's notes ring longer (`ResonatorConfig.undamped_tail_s`): the offline spans count them so
        self.undamped_extra = max(0, self.bank.undamped_tail - self.tail)
        self.dc_rate = 2.0 * math.pi * DC_CUTOFF_HZ / self.sr
        self.excitation_partials = data.excitation_partials
        L, G = self.context.shape
        # frame f at f % size: a block's frames (up to 1 s) and the one before it
        self.cond_frames = np.zeros((2 * (self.sr // self.spf) + 8, L, G), np.float32)
        self._zeros1 = np.zeros((1, 1), np.float32), np.zeros((1, 1), np.int64), np.zeros((1, 1, 1), np.float32)
        self.reset()
        # load every compiled function now (the kernel from numba's disk cache, the DC blocker), not in
        # the first audio callback that plays a note
        self.note_on(60, 64)
        self.render(3 * self.spf)
        self.reset()

    # ------------------------------------------------------------------------------- state

    def reset(self) -> None:
        """Silence at sample 0, no notes, pedals up, the random stream from the options' seed."""
        self.clock = 0  # the next input sample (events are placed from here)
        self.generated = -self.latency_samples  # the next piece sample to generate (output lags by L)
        self.next_frame = 0
        self.events: list[tuple[int, int, int, int, int]] = []  # (time, seq, kind, a, b)
        self.seq = 0
        self.notes: list[_Note] = []
        self.pedal_events: list[tuple[int, int, int]] = []  # (sample, controller, value)
        self.pedal = {cc: 0 for cc in C.PEDAL_CONTROLLERS}
        self.idle_from: int | None = 0  # silent (network not running) from this sample; None: sounding
        self.wake_onset = 0  # the onset that last woke the network (it runs from that onset's frame)
        self.rng = np.random.Generator(np.random.PCG64(int(self.options.seed)))
        self.dc_state = np.zeros(1)
        self.context.reset()
        self.bank.reset()
        self.kernel.reset()
        self.stats = LiveStats()
        # None: no limit. The audio callback sets one while it overruns its period (playback.py):
        # a new note then ends the oldest held ones, so fewer oscillators ring (each costs per sample).
        self.voice_limit: int | None = None
        self._notes_cache: tuple[Notes, PedalEvents] | None = None
        self._silence_cache: tuple[int, int] | None = None  # (wake_onset, `_silence_after`'s point) until an event
        self._prune_at = 0  # the next output sample at which the table is pruned

    def prepare(self) -> "LiveSynth":
        """Build now what a note would otherwise build the first time its key is struck (the bank's
        note table of every key: `LiveBank.prepare`), before an audio callback plays: a real-time
        stream's first notes then cost what later ones do. Kept over `reset`."""
        self.bank.prepare()
        return self

    @property
    def polyphony(self) -> int:
        """Notes sounding (held, sustained or in their release) now."""
        t = self.generated
        return sum(1 for n in self.notes if n.offset is None or n.offset + self._tail(n) > t)

    # ------------------------------------------------------------------------------ events

    def _queue(self, offset: int, kind: int, a: int, b: int) -> None:
        offset = int(offset)
        if offset < 0:
            self.stats.ignored["negative offset"] += 1
            offset = 0
        self.events.append((self.clock + offset, self.seq, kind, a, b))
        self.seq += 1

    def note_on(self, pitch: int, velocity: int, offset: int = 0) -> None:
        """A key struck `offset` samples into the next block (velocity 0: a note-off)."""
        if not C.MIN_MIDI_PITCH <= pitch <= C.MAX_MIDI_PITCH:
            self.stats.ignored["key outside the piano"] += 1
            return
        velocity = int(velocity)  # a float in (0, 1) is 0 (a note-off), not a note the bank refuses
        if velocity <= 0:
            self.note_off(pitch, offset)
            return
        self._queue(offset, 0, int(pitch), min(velocity, C.MAX_MIDI_VELOCITY))

    def note_off(self, pitch: int, offset: int = 0) -> None:
        if not C.MIN_MIDI_PITCH <= pitch <= C.MAX_MIDI_PITCH:
            self.stats.ignored["key outside the piano"] += 1
            return
        self._queue(offset, 1, int(pitch), 0)

    def control_change(self, controller: int, value: int, offset: int = 0) -> None:
        """Pedals (64 sustain, 66 sostenuto, 67 soft) and all-notes-off (120, 123); others are ignored."""
        if controller in C.PEDAL_CONTROLLERS:
            self._queue(offset, 2, int(controller), int(min(max(value, 0), 127)))
        elif controller in (120, 123):
            self._queue(offset, 3, 0, 0)
        else:
            self.stats.ignored[f"controller {controller}"] += 1

    def midi_message(self, data: bytes | bytearray | list[int], offset: int = 0) -> bool:
        """A raw MIDI message (any channel). Returns False (and counts it) when it is ignored. System
        real-time messages (timing clock, start / stop, active sensing, which keyboards send all the
        time) are counted apart (`stats.realtime`), not as ignored; a system reset is all-notes-off."""
        try:
            msg = bytes(data)
        except (TypeError, ValueError):
            self.stats.ignored["malformed"] += 1
            return False
        if not msg or msg[0] < 0x80:
            self.stats.ignored["no status byte"] += 1
            return False
        if msg[0] >= 0xF8 and len(msg) == 1:  # system real-time: a keyboard's clock and active sensing
            self.stats.realtime += 1
            if msg[0] == 0xFF:  # system reset: every note off, as a panic button does
                self._queue(offset, 3, 0, 0)
            return True
        kind = msg[0] & 0xF0
        if kind in (0x80, 0x90, 0xB0):
            if len(msg) != 3 or msg[1] >= 0x80 or msg[2] >= 0x80:
                self.stats.ignored["malformed"] += 1
                return False
            before = self.stats.ignored_total
            if kind == 0x90:
                self.note_on(msg[1], msg[2], offset)
            elif kind == 0x80:
                self.note_off(msg[1], offset)
            else:
                self.control_change(msg[1], msg[2], offset)
            return self.stats.ignored_total == before
        name = {0xA0: "key pressure", 0xC0: "program change", 0xD0: "channel pressure",
                0xE0: "pitch bend"}.get(kind, "system message")
        self.stats.ignored[name] += 1
        return False

    def _apply(self, event: tuple[int, int, int, int, int]) -> None:
        t, _, kind, a, b = event
        if kind == 0:
            self._strike(a, b, t)
        elif kind == 1:
            self._release_key(a, t)
        elif kind == 2:
            self._pedal(a, b, t)
        else:
            for n in self.notes:
                if n.offset is None:
                    self._end(n, t)
        self._notes_cache = None
        self._silence_cache = None

    def _tail(self, note: _Note) -> int:
        """Samples a released note rings: the tail, an undamped key's longer."""
        return self.tail + (self.undamped_extra if self.bank.config.undamped(note.pitch) else 0)

    def _end(self, note: _Note, t: int) -> None:
        note.offset = t
        note.key_down = False
        if note.rows is not None:
            self.bank.release_note(note.rows, t)

    def _strike(self, pitch: int, velocity: int, t: int) -> None:
        for n in self.notes:  # the same key struck again ends the note still sounding on it
            if n.pitch == pitch and n.offset is None:
                self._end(n, t)
            if n.pitch == pitch and n.offset == t and n.rows is not None:  # ended by this strike, or
                # released in its sample: no damper falls (`resonators.restruck_releases`, as offline)
                self.bank.restrike(n.rows)
        if self.voice_limit is not None:  # overload: the oldest notes still held give way
            held = [n for n in self.notes if n.offset is None]
            for n in held[:max(0, len(held) - self.voice_limit + 1)]:
                self._end(n, t)
                self.stats.stolen += 1
        rows = self.bank.add_note(pitch, velocity, t)
        if rows is None:
            self.stats.dropped += 1
            return
        self.notes.append(_Note(pitch, velocity, t, rows))
        self.stats.notes += 1

    def _release_key(self, pitch: int, t: int) -> None:
        for n in self.notes:
            if n.pitch == pitch and n.offset is None and n.key_down:
                n.key_down = False
                if not self._held_by_pedal(n):
                    self._end(n, t)
                return
        self.stats.ignored["note-off without a note"] += 1

    def _held_by_pedal(self, note: _Note) -> bool:
        return self.pedal[C.SUSTAIN_CC] >= self.data.sustain_threshold or note.sostenuto

    def _pedal(self, controller: int, value: int, t: int) -> None:
        threshold = self.data.sustain_threshold
        was_down = self.pedal[controller] >= threshold
        self.pedal[controller] = value
        self.pedal_events.append((t, controller, value))
        down = value >= threshold
        if controller == C.SOSTENUTO_CC and down and not was_down:
            for n in self.notes:
                n.sostenuto = n.offset is None and n.key_down
        elif controller == C.SOSTENUTO_CC and was_down and not down:
            for n in self.notes:
                n.sostenuto = False
        if was_down and not down and controller in (C.SUSTAIN_CC, C.SOSTENUTO_CC):
            for n in self.notes:
                if n.offset is None and not n.key_down and not self._held_by_pedal(n):
                    self._end(n, t)

    # ----------------------------------------------------------------------------- render

    def _piece(self) -> tuple[Notes, PedalEvents]:
        """The notes and pedals known now, as the offline builders take them (cached until an event)."""
        if self._notes_cache is None:
            sr = self.sr
            notes = self.notes
            released = np.array([n.offset is not None for n in notes], bool)
            offset_s = np.full(len(notes), _FAR_S)
            offset_s[released] = _seconds([n.offset for n in notes if n.offset is not None], sr)  # one call, not one a note
            self._notes_cache = (
                Notes(_seconds([n.onset for n in notes], sr), offset_s,
                      np.array([n.pitch for n in notes], np.int16), np.array([n.velocity for n in notes], np.int16)),
                # the pedals' rows hold their values until further notice: a last event far ahead
                # keeps `frame_rolls` from ending them with the notes (a piece's end, offline)
                PedalEvents(np.array([p[0] / sr for p in self.pedal_events] + [_FAR_S]),
                            np.array([p[1] for p in self.pedal_events] + [C.SUSTAIN_CC], np.int16),
                            np.array([p[2] for p in self.pedal_events] + [self.pedal[C.SUSTAIN_CC]], np.int16)))
        return self._notes_cache

    def _prune(self, t: int) -> None:
        """Forget notes and pedal events no builder reads any more (before sample t)."""
        horizon = t - self.tail - self.undamped_extra - int(_PRUNE_S * self.sr)  # past every tail that decides a silence
        keep = [n for n in self.notes if n.offset is None or n.offset > horizon]
        if len(keep) != len(self.notes):
            self.notes = keep
            self._notes_cache = None
        if len(self.pedal_events) > 64:  # keep each pedal's last event before the horizon, and the rest
            last: dict[int, tuple[int, int, int]] = {}
            rest = []
            for e in self.pedal_events:
                if e[0] <= horizon:
                    last[e[1]] = e
                else:
                    rest.append(e)
            kept = sorted(last.values()) + rest
            if len(kept) != len(self.pedal_events):  # unchanged: the builders' caches stand
                self.pedal_events = kept
                self._notes_cache = None

    def _frame(self, f: int) -> None:
        notes, pedals = self._piece()
        roll = frame_rolls(notes, pedals, self.data.conditioning, f, 1, self.fr)[:, 0]
        self.cond_frames[f % len(self.cond_frames)] = self.context.step(roll) + self.packed.b_dil

    def render(self, n_samples: int) -> np.ndarray:
        """The next `n_samples` of output (float32, in [-1, 1 - 2^-15]); the events queued for this
        block (offsets < n_samples) are applied, later ones wait for their block."""
        n = int(n_samples)
        if n <= 0:
            return np.zeros(0, np.float32)
        if n > self.sr:
            return np.concatenate([self.render(min(self.sr, n - i)) for i in range(0, n, self.sr)])
        self.advance(n)
        return self._generate_to(self.clock - self.latency_samples)

    def advance(self, n_samples: int) -> None:
        """Take in the next `n_samples` of input: the events queued for them are applied (later ones
        wait) and every frame they complete goes through the context stack; nothing is generated.
        `render(n)` is `advance(n)` and the output up to `clock - latency_samples`; `render_ready`
        generates further, up to the last complete frame. At most one second at a time (the
        conditioning frames' ring)."""
        n = int(n_samples)
        if not 0 <= n <= self.sr:
            raise ValueError(f"advance: {n} samples (0 .. {self.sr} at a time)")
        end = self.clock + n
        if end // self.spf - max(self.generated, 0) // self.spf >= len(self.cond_frames) - 2:
            raise ValueError(f"advance: {end - max(self.generated, 0)} samples ahead of the output "
                             f"(at most {(len(self.cond_frames) - 3) * self.spf}: generate in between)")
        self.events.sort()
        pending = self.events
        i = 0
        while self.spf * (self.next_frame + 1) <= end:  # every frame completed by this block
            boundary = self.spf * (self.next_frame + 1)
            while i < len(pending) and pending[i][0] < boundary:
                self._apply(pending[i])
                i += 1
            self._frame(self.next_frame)
            self.next_frame += 1
        while i < len(pending) and pending[i][0] < end:
            self._apply(pending[i])
            i += 1
        self.events = pending[i:]
        self.clock = end

    @property
    def ready_samples(self) -> int:
        """Output samples the events so far decide that are not yet generated: a piece sample
        depends only on the events before the end of its frame, so every sample up to the last
        complete frame is decided (up to `latency_samples` more than `render` has returned)."""
        return self.spf * self.next_frame - self.generated

    def render_ready(self) -> np.ndarray:
        """Every output sample the events so far decide (`ready_samples` of them), generated now:
        the same stream `render` returns, up to one frame sooner. A player that buffers its output
        by D samples more than `latency_samples` can so generate each block up to D + one frame
        before it is heard (`RateAdapter`'s `ahead_samples`); use one of `render` or
        `render_ready` per stream."""
        return self._generate_to(self.spf * self.next_frame)

    def skip_ready(self) -> int:
        """Overload: drop the decided samples (`ready_samples`) instead of generating them. The
        stream jumps to the last complete frame and is silent from there as after a rest: notes
        still sounding are cut, and the next onset starts the network and the bank from silence.
        Returns the samples dropped (the stream's silence in their place)."""
        b = self.spf * self.next_frame
        n = b - self.generated
        if n <= 0:
            return 0
        self.generated = b
        self.idle_from = max(b, 0, self.idle_from or 0)
        self._prune(b)
        return n

    def _generate_to(self, b: int) -> np.ndarray:
        """Output from the next piece sample to generate up to piece sample b (exclusive)."""
        out = np.zeros(max(0, b - self.generated), np.float32)
        if len(out):
            self._generate(out, self.generated, b)
            self.generated = b
            if b >= self._prune_at:
                self._prune(b)
                self._prune_at = b + int(_PRUNE_EVERY_S * self.sr)
        self.stats.blocks += 1
        self.stats.max_polyphony = max(self.stats.max_polyphony, self.polyphony)
        return out

    def _generate(self, out: np.ndarray, a: int, b: int) -> None:
        """Piece samples [a, b) into out (out[0] is piece sample a); zeros before 0 and while idle.

        Whether a sample is silent depends only on the notes begun by then (all known: the output
        lags the events), so any block size finds the same silences."""
        t = max(a, 0)
        while t < b:
            if self.idle_from is not None:  # silent until the frame of the next onset
                onsets = [n.onset for n in self.notes if n.onset >= self.idle_from]
                if not onsets:
                    return
                self.wake_onset = min(onsets)
                wake = max(self.idle_from, self.wake_onset // self.spf * self.spf)
                if wake >= b:
                    return
                t = max(t, wake)
                self.kernel.reset()
                self.bank.compact()
                self.bank.state.reset()
                self.dc_state[0] = 0.0
                self.idle_from = None
                continue
            silent = self._silence_after(t)
            if silent <= t:
                self.idle_from = t
                continue
            stop = min(b, silent)
            self._run(out[t - a:stop - a], t)
            t = stop

    def _silence_after(self, t: int) -> int:
        """The first sample >= t at which no note sounds (every note begun before it has ended and
        rung out its tail), counting only notes begun by then. Kept until the next event: for any later
        t up to that point the answer is the same (the spans that reach it reach it from t too), and
        a prune drops only notes whose tails ended long before."""
        cached = self._silence_cache
        if cached is not None and cached[0] == self.wake_onset and t <= cached[1]:
            return cached[1]
        spans = sorted((n.onset, n.offset + self._tail(n) if n.offset is not None else 1 << 62) for n in self.notes)
        point = max(t, self.wake_onset)  # woken at a frame's start: the onset that woke it is coming
        for onset, until in spans:
            if onset > point:
                break
            point = max(point, until)
        self._silence_cache = (self.wake_onset, point)
        return point

    def _run(self, out: np.ndarray, t0: int) -> None:
        """The network and bank for samples t0 .. t0 + len(out) - 1, one kernel call."""
        n = len(out)
        o = self.options
        notes, _ = self._piece()
        u = self.rng.random((1, n, 2)).astype(np.float32)
        f0, f1 = t0 // self.spf, (t0 + n - 1) // self.spf + 1
        cond = np.ascontiguousarray(self.cond_frames[np.arange(f0, f1) % len(self.cond_frames)][None])
        exc = (excitation_signal(notes, t0, n, self.sr, self.excitation_partials)[None]
               if self.excitation_partials > 0 else None)
        temps = temperature_track(notes.onset_s, t0, n, self.sr, o)
        pv, pk, params = self._zeros1
        y = np.zeros((1, n), np.float32)
        self.kernel.run(0, 1, t0, n, 0, False, 1.0 if temps is not None else o.temperature, cond, self.spf, f0,
                        exc, u, pv, pk, y, params, self.bank, temps[None] if temps is not None else None, o.min_p)
        x = y[0].astype(np.float64)
        _dc_block(x, self.dc_state, self.dc_rate)
        np.clip(x, -1.0, (C.PCM_SCALE - 1) / C.PCM_SCALE, out=x)
        out[:] = x


# --------------------------------------------------------------------------------- files


# kinds in the order events at one sample are applied (the offline sustain rule's order)
_ORDER = {"pedal": 0, "off": 1, "on": 2}  # a key released and struck again at one sample: the old note ends


def file_events(midi: Any, sample_rate_hz: int) -> list[tuple[int, str, int, int]]:
    """A MIDI file (a path, or the (Notes, PedalEvents) `read_midi` read from one) as the live
    engine's events: (sample, "on" | "off" | "pedal", a, b) sorted by time (pedal changes, then
    releases, then onsets at one sample), raw notes (the engine applies the pedals itself). Raises
    MidiError."""
    notes, pedals = midi if isinstance(midi, tuple) else read_midi(midi)
    sr = sample_rate_hz
    events = [(int(math.floor(t * sr + 0.5)), "on", int(p), int(v))
              for t, p, v in zip(notes.onset_s, notes.pitch, notes.velocity)]
    events += [(int(math.floor(t * sr + 0.5)), "off", int(p), 0) for t, p in zip(notes.offset_s, notes.pitch)]
    events += [(int(math.floor(t * sr + 0.5)), "pedal", int(c), int(v))
               for t, c, v in zip(pedals.time_s, pedals.controller, pedals.value)]
    events.sort(key=lambda e: (e[0], _ORDER[e[1]]))
    return events


def event_bytes(event: tuple[int, str, int, int]) -> bytes:
    """A `file_events` event as the raw MIDI message a port would carry (channel 1)."""
    _, kind, a, b = event
    return bytes([0x90, a, b]) if kind == "on" else bytes([0x80, a, 0]) if kind == "off" else bytes([0xB0, a, b])


def _send(synth: LiveSynth, event: tuple[int, str, int, int], offset: int) -> None:
    synth.midi_message(event_bytes(event), offset)


def render_events(synth: LiveSynth, events: list[tuple[int, str, int, int]], n_samples: int,
                  block_samples: int | list[int] = 16000) -> Iterator[np.ndarray]:
    """Feed `events` (`file_events`) to a fresh `synth` block by block (`block_samples`: one size,
    or sizes used in turn) and yield its output blocks, `n_samples` in all (the output lags the
    events by `synth.latency_samples`)."""
    synth.reset()
    sizes = [block_samples] if isinstance(block_samples, int) else list(block_samples)
    done = k = j = 0
    while done < n_samples:
        n = min(int(sizes[k % len(sizes)]), n_samples - done)
        k += 1
        while j < len(events) and events[j][0] < done + n:
            _send(synth, events[j], events[j][0] - done)
            j += 1
        yield synth.render(n)
        done += n


def render_file_live(model: Any, path: Any, options: SamplingOptions = SamplingOptions(), year: int | None = None,
                     end_s: float | None = None, block_samples: int | list[int] = 16000) -> np.ndarray:
    """The offline render of a MIDI file through the live engine (what `midi2wave live` plays for
    the same events): float32 audio from time 0 to `end_s` (default: the last note's end + 1 s),
    the engine's latency taken out."""

    synth = LiveSynth(model, options, year)
    sr = synth.sr
    events = file_events(path, sr)
    if end_s is None:
        end_s = (max((e[0] for e in events), default=0) / sr) + C.RELEASE_SECONDS
    n = int(round(end_s * sr))
    L = synth.latency_samples
    audio = np.concatenate(list(render_events(synth, events, n + L, block_samples)))
    return audio[L:]


# --------------------------------------------------------------------------------- rates


# The resampler's prototype: a Kaiser-windowed sinc about this many samples of the lower rate long,
# cut at this fraction of the lower rate's Nyquist frequency: half a millisecond of delay at any rate
# above the model's (1 ms at 8 kHz), and a top flatter than soxr's stream gave (docs/live.md, "Rates").
RESAMPLER_TAPS = 16
RESAMPLER_CUTOFF = 0.95
RESAMPLER_KAISER_BETA = 6.0
# Rates whose ratio to the model's reduces to more phases than this are refused (the phase table
# would take more than ~4 MB): every common device rate needs 441 or fewer.
RESAMPLER_MAX_PHASES = 1 << 15


class StreamResampler:
    """Model-rate samples to a device's rate, a block at a time, through one linear-phase FIR with a
    whole number of frames of delay; the output does not depend on how the input is cut into blocks.

    With up / down = device rate / model rate in lowest terms, output frame j is
    sum_t taps[phase(j), t] * x[base(j) - t] with j * down = base * up + phase: the prototype h
    (a Kaiser-windowed sinc at `cutoff` of the lower Nyquist frequency, about `taps_per_phase`
    samples of the lower rate long, on the grid of the model rate x up) read at every up-th point. h is
    centred on `delay_frames` x down, so the output is the input `delay_frames` device frames
    late (24 at 48 kHz, 23 at 44.1 kHz), and each phase sums to about 1 (unity gain at DC).
    An output frame is produced as soon as its last input sample is in: after n inputs there are
    `frames_after(n)` = ceil(n x up / down).

    State (`reset`): the last taps - 1 inputs, the count of inputs and of outputs so far."""

    def __init__(self, from_hz: int, to_hz: int, taps_per_phase: int = RESAMPLER_TAPS,
                 cutoff: float = RESAMPLER_CUTOFF, kaiser_beta: float = RESAMPLER_KAISER_BETA) -> None:
        g = math.gcd(int(from_hz), int(to_hz))
        self.up, self.down = int(to_hz) // g, int(from_hz) // g
        if self.up > RESAMPLER_MAX_PHASES:
            raise LiveError(f"{to_hz} Hz is {self.up}/{self.down} of {from_hz} Hz: a ratio this fine is not "
                            f"supported (at most {RESAMPLER_MAX_PHASES} phases)")
        width = max(self.up, self.down)  # the prototype's samples per period of the lower rate's cut-off
        self.delay_frames = -(-(width * taps_per_phase // 2) // self.down)
        centre = self.delay_frames * self.down
        n = np.arange(2 * centre + 1, dtype=np.float64) - centre
        h = np.sinc(cutoff * n / width) * np.kaiser(len(n), kaiser_beta)
        h *= self.up / h.sum()
        self.taps = -(-len(h) // self.up)
        padded = np.zeros(self.taps * self.up)
        padded[:len(h)] = h
        self.phases = np.ascontiguousarray(padded.reshape(self.taps, self.up).T)  # [up, taps]: h[phase + t * up]
        self.reset()

    def reset(self) -> None:
        self.history = np.zeros(self.taps - 1)
        self.n_in = 0
        self.n_out = 0

    def frames_after(self, n_in: int) -> int:
        """Output frames produced once `n_in` input samples are in."""
        return -(-int(n_in) * self.up // self.down)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The output frames that the input `x` (the stream's next samples) completes: float32."""
        buf = np.concatenate([self.history, np.asarray(x, np.float64)])  # buf[k] is input n_in - (taps - 1) + k
        self.n_in += len(x)
        j = np.arange(self.n_out, self.frames_after(self.n_in), dtype=np.int64)
        self.n_out += len(j)
        self.history = buf[len(buf) - (self.taps - 1):]
        if not len(j):
            return np.zeros(0, np.float32)
        base, phase = np.divmod(j * self.down, self.up)
        first = base - (self.n_in - len(x)) + self.taps - 1  # where base(j) is in buf
        reads = buf[first[:, None] - np.arange(self.taps)[None, :]]  # [m, taps]: x[base], x[base - 1], ...
        return (self.phases[phase] * reads).sum(axis=1).astype(np.float32)


class SampleRing:
    """An output stream of float32 samples, written at one end and read at the other by absolute
    positions (`written`, `read`): one writer and one reader, which may be two threads (each
    counter is moved by one side only). The reader keeps time: `read_into` always moves on by a
    whole block, silence in place of samples not yet written, and the writer then drops those
    samples when they come (`dropped`)."""

    def __init__(self, capacity: int, prefill: int = 0) -> None:
        self.buffer = np.zeros(int(capacity), np.float32)
        self.written = int(prefill)  # the stream starts with `prefill` zeros
        self.read = 0
        self.dropped = 0

    @property
    def available(self) -> int:
        return self.written - self.read

    def write(self, x: np.ndarray) -> None:
        skip = min(len(x), max(0, self.read - self.written))  # the reader went on without them
        if skip:
            x = x[skip:]
            self.dropped += skip
            self.written += skip
        cap = len(self.buffer)
        if len(x) > cap - max(0, self.written - self.read):
            raise RuntimeError(f"SampleRing: {len(x)} samples do not fit ({self.written - self.read} of {cap} unread)")
        i = self.written % cap
        k = min(len(x), cap - i)
        self.buffer[i:i + k] = x[:k]
        self.buffer[:len(x) - k] = x[k:]
        self.written += len(x)

    def read_into(self, out: np.ndarray, keep_time: bool = True) -> int:
        """Fill `out` with the next len(out) samples; returns how many were there (the rest is 0).
        `keep_time` False: move on only past those (a gap, and the samples still to come follow it)."""
        n = len(out)
        got = min(n, max(0, self.written - self.read))
        cap = len(self.buffer)
        i = self.read % cap
        k = min(got, cap - i)
        out[:k] = self.buffer[i:i + k]
        out[k:got] = self.buffer[:got - k]
        out[got:] = 0.0
        self.read += n if keep_time else got
        return got


class RateAdapter:
    """The engine's output at a device's rate, `frames` at a time, with a fixed latency.

    `process(events, frames) -> float32 [frames]`: `events` are (device frame offset in this block,
    raw MIDI bytes). `produce` takes them in and returns the device-rate samples they make ready;
    `process` writes those into `ring` (a `SampleRing` started with `prefill` zero frames, the
    fewest with which it never runs dry for any block size) and reads the block. Another rate
    than the model's goes through a `StreamResampler`. Device frames map to model samples exactly,
    in integers: frame E is model sample floor(E x down / up).

    `ahead_samples` D > 0 (model samples): the output is buffered D samples more, and each period
    generates everything its events decide (`LiveSynth.render_ready`), so a sample is generated up
    to D + one frame before it is heard: time for a render thread (playback.py) to absorb the
    machine's stalls. The stream is the same, D x ratio frames later (rounded to the nearest).

    `latency_frames`: device frames from an event at a frame the engine's clock hits exactly (a
    multiple of `up`) to the output frame where its first sample is centred (rounded when that is
    not a whole frame: 44.1 kHz)."""

    def __init__(self, synth: LiveSynth, device_rate_hz: int, ahead_samples: int = 0) -> None:
        self.synth = synth
        self.device_rate = int(device_rate_hz)
        self.ahead_samples = int(ahead_samples)
        if not 0 <= self.ahead_samples <= synth.sr:
            raise LiveError(f"ahead: {self.ahead_samples} samples (0 .. {synth.sr})")
        if self.device_rate <= 0:
            raise LiveError(f"a device rate of {self.device_rate} Hz")
        sr = synth.sr
        self.device_frames = 0
        self.resampler = StreamResampler(sr, self.device_rate) if self.device_rate != sr else None
        self.up, self.down = (self.resampler.up, self.resampler.down) if self.resampler else (1, 1)
        delay = self.resampler.delay_frames if self.resampler else 0
        # the most device frames a block's end can be ahead of what the engine's clock then lets out
        pad = max(e - self._frames_out(e * self.down // self.up) for e in range(self.up))
        self.prefill = pad + self._frames_rounded(self.ahead_samples)
        self.ring = SampleRing(max(1 << 16, 8 * self.prefill), self.prefill)
        self.latency_frames = self._frames_rounded(synth.latency_samples) + delay + self.prefill

    def _frames_rounded(self, n_samples: int) -> int:
        """`n_samples` model samples in device frames, rounded to the nearest (halves up)."""
        return (int(n_samples) * self.up + self.down // 2) // self.down

    def _frames_out(self, n_samples: int) -> int:
        """Device frames out of the resampler once `n_samples` model samples are in."""
        return self.resampler.frames_after(n_samples) if self.resampler else int(n_samples)

    def resample(self, x: np.ndarray) -> np.ndarray:
        """The next model-rate samples at the device rate (the stream's filter state carries on)."""
        return self.resampler(x) if self.resampler else x

    def periods_to_spare(self, period: int) -> int:
        """With `ahead_samples`, for blocks of `period` frames: the fewest whole periods between the
        block whose events a block's samples need last and the block that plays it (0: a block
        needs its own period's events, so a render thread would have less time than a render in
        the callback; 2 at 16 kHz with period 64 and 4 ms ahead). Counted, not rendered: a block's
        render yields every sample up to the last complete frame."""
        if not self.ahead_samples:
            return 0
        P, spf, L = int(period), self.synth.spf, self.synth.latency_samples

        def written(j: int) -> int:  # device frames in the ring once block j is rendered
            clock = (j + 1) * P * self.down // self.up
            stream = clock // spf * spf + L  # the stream starts at piece sample -L
            return self.prefill + self._frames_out(stream)

        spare, j = 1 << 30, 0
        first = 4 + -(-(self.prefill + self._frames_rounded(L)) // P)  # past the start (its blocks are silence)
        # the blocks' alignment with the engine's frames repeats after this many blocks (capped: a
        # ratio that fine is only an approximation of a device's rate anyway)
        repeat = self.up * spf // math.gcd(P * self.down, self.up * spf)
        for c in range(first, first + min(repeat, 1 << 14) + 8):
            while written(j) < (c + 1) * P:
                j += 1
            spare = min(spare, c - j)
        return max(spare, 0)

    def produce(self, events: list[tuple[int, bytes]], frames: int, skip: bool = False) -> np.ndarray:
        """Take in one block of `frames` device frames and its events; the device-rate samples that
        this makes ready (the next part of the output stream, any length). `skip` (with
        `ahead_samples`; overload): the decided samples are dropped, not generated
        (`LiveSynth.skip_ready`), and come as silence."""
        synth = self.synth
        start = self.device_frames
        end = start + int(frames)
        self.device_frames = end  # the block's time passes even if its render fails
        for offset, data in events:
            at = (start + offset) * self.down // self.up
            synth.midi_message(data, at - synth.clock)
        target = end * self.down // self.up
        parts = []
        while synth.clock < target:
            n = min(synth.sr, target - synth.clock)
            if self.ahead_samples:
                synth.advance(n)
                parts.append(np.zeros(synth.skip_ready(), np.float32) if skip else synth.render_ready())
            else:
                parts.append(synth.render(n))
        y = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return self.resample(y) if len(y) else y

    def process(self, events: list[tuple[int, bytes]], frames: int) -> np.ndarray:
        frames = int(frames)
        if self.resampler is None and not self.ahead_samples:
            return self.produce(events, frames)  # exactly `frames` samples: no ring needed
        out = np.empty(frames, np.float32)
        step = len(self.ring.buffer) // 4  # a long block in parts, each within the ring
        for a in range(0, frames, step):
            b = min(frames, a + step)
            part = [(o - a, d) for o, d in events if a <= o < b or (o < 0 and a == 0) or (o >= frames and b == frames)]
            self.ring.write(self.produce(part, b - a))
            self.ring.read_into(out[a:b])
        return out
