"""Render MIDI files to audio with a trained model: the library API behind `midi2wave synthesize`.

Pipeline: MIDI -> notes with the sustain rule applied -> the model's own conditioning from its
config (`data.conditioning` rows via `midi.frame_rolls`, with `model.context_margin_frames` extra
frames on each side, zero beyond the piece; the excitation when `data.excitation_partials` > 0;
the year index) -> autoregressive generation (`generate.generate`) -> float32 audio at the model's
rate -> 16-bit WAV (atomic).

Window: `start_s` .. `end_s` (default: the last sounding note's end + `RELEASE_SECONDS`). The output
has exactly `round(end_s * sr) - round(start_s * sr)` samples. Generation starts at the frame
boundary at or before `start_s` (frames are 1/frame_rate s); the < 1 frame before it is generated
and cut. The conditioning always sees the piece around the window (its margins are real MIDI).

Long pieces: `options.chunk_seconds` None (the default) chunks the piece across all cores once it
is long enough to gain (`chunks.auto_chunk_seconds`), 0 keeps one stream, C > 0 cuts chunks of C
seconds; each chunk has `options.overlap_seconds` of warm-up and crossfade before it (`chunks.py`,
shared with `evaluate`, as are the temperatures and the bank's shares: `rows.py`). Chunks are generated in rounds of `chunks.STREAMS_PER_CORE` streams per
thread, a single stream span by span; either way window by window (`STREAM_WINDOW_SECONDS`)
through one `GenerationCache` per group of rows, each window's inputs (rolls, excitation,
uniforms, temperatures) built on a helper thread while the previous window generates, so the
kernel threads do not wait for them. The output streams (`stream_notes` -> `Rendering`, pieces in
order): a round's rows are joined as they come (`chunks.StreamingJoin`) and handed on once final,
and `synthesize_files` writes them to the WAV as they come (`audio.wav_writer`), so memory stays
flat in the piece's length (`render_notes` collects the pieces into one array). Samples beyond the
16-bit range (an equal-power crossfade of correlated chunks can exceed full scale) are clipped
one by one; the output is never rescaled.
Silence costs next to nothing: the piece is cut at long silent spans (`chunks.sounding_spans`: no
sustained note sounding, every release tail - `RELEASE_SECONDS`, or the resonator bank's when
longer - over, longer than the receptive field + `chunks.MIN_SILENCE_SECONDS`); only the sounding
spans are generated, each from a silent stream one receptive field before its first note, and the
output between them is exact zeros.

Priming (`prime_audio`, float samples at the model's rate whose first sample is at `start_s`): the
first `prime_seconds` are teacher-forced (fed to the model instead of sampled), so the output
starts with them exactly (rounded to the 16-bit PCM grid); generation then runs free. The (< 1
frame of) samples before `start_s` are fed as silence. With chunks, only the first chunk is primed,
and the prime must end before the second chunk fades in (the engines prime every row of a batch
alike, so the first chunk runs as its own call, concurrently with the batch of the others).
`midi2wave synthesize --prime AUDIO` reads AUDIO on the MIDI's timeline (AUDIO's time 0 is the
MIDI's time 0, as for MAESTRO's recordings): the prime is AUDIO from `--start` on.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
from collections import deque
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from .. import constants as C
from ..audio import DCBlocker
from .chunks import STREAMS_PER_CORE, ChunkPlan, StreamingJoin, auto_chunk_seconds, sounding_spans
from ..config import Config, SamplingOptions
from ..errors import InputError, Midi2WaveError
from ..files import checked_outputs, report_error as _error
from ..conditioning.inputs import window_inputs
from .rows import ModelInputs, row_temperatures, sampled_schedules, temperature_track

logger = logging.getLogger(__name__)

__all__ = [
    "RELEASE_SECONDS",
    "ModelInputs",
    "read_piece",
    "default_end_seconds",
    "model_inputs",
    "midi_model_inputs",
    "temperature_track",
    "render_notes",
    "stream_notes",
    "Rendering",
    "render_midi",
    "synthesize_files",
]

RELEASE_SECONDS = C.RELEASE_SECONDS


# ----------------------------------------------------------------------------------- inputs


def read_piece(midi_path: str | os.PathLike, sustain_threshold: int = C.PEDAL_ON_THRESHOLD):
    """(notes with the sustain rule applied, pedal events) of a MIDI file. Raises MidiError."""
    from ..midi import apply_sustain, read_midi

    notes, pedals = read_midi(midi_path)
    return apply_sustain(notes, pedals, sustain_threshold), pedals


def default_end_seconds(notes) -> float:
    """Where a render ends by default: the last (sustained) note's end plus `RELEASE_SECONDS`."""
    return float(notes.end_s) + RELEASE_SECONDS


def model_inputs(model: Any, notes, pedals, start_samples: Sequence[int], n_samples: int,
                 year: int | None = None, device: torch.device | str | None = None) -> ModelInputs:
    """The model's conditioning for rows starting at `start_samples` (each a multiple of the
    model's samples per frame), `n_samples` long each, from sustained `notes` and `pedals`
    (`inputs.window_inputs` per row, stacked)."""
    data = model.data_config
    device = torch.device(device) if device is not None else next(model.parameters()).device
    rows = [window_inputs(data, notes, pedals, int(s), int(n_samples), model.context_margin_frames, year)
            for s in start_samples]
    rolls = torch.from_numpy(np.stack([r.rolls for r in rows])).to(device) if data.conditioning else None
    exc = (torch.from_numpy(np.stack([r.excitation for r in rows])).to(device)
           if rows[0].excitation is not None else None)
    years = (torch.tensor([r.year for r in rows], dtype=torch.long, device=device) if data.use_year else None)
    schedules = [r.schedule for r in rows] if rows[0].schedule is not None else None
    return ModelInputs(rolls, exc, years, int(start_samples[0]), int(n_samples), schedules)


def _window(data, notes, start_s: float, end_s: float | None, where: str) -> tuple[int, int]:
    """(first sample, end sample) of the output on the piece's timeline."""
    sr = data.sample_rate_hz
    if not math.isfinite(start_s) or start_s < 0:
        raise InputError(f"{where}: --start must be >= 0 seconds, got {start_s}")
    if end_s is None:
        end_s = default_end_seconds(notes)
        if end_s <= start_s:
            raise InputError(f"{where}: nothing to render: --start {start_s:g} s is after the piece "
                             f"(it ends at {end_s:.2f} s with the release)")
    elif not math.isfinite(end_s) or end_s <= start_s:
        raise InputError(f"{where}: --end ({end_s:g} s) must be after --start ({start_s:g} s)")
    s0, s1 = int(round(start_s * sr)), int(round(end_s * sr))
    if s1 <= s0:
        raise InputError(f"{where}: the window {start_s:g}..{end_s:g} s is shorter than one sample")
    return s0, s1


def midi_model_inputs(model: Any, midi_path: str | os.PathLike, start_s: float = 0.0, end_s: float | None = None,
                      year: int | None = None) -> ModelInputs:
    """One stream's conditioning for a MIDI file, from the frame at or before `start_s` to the frame
    boundary at or after `end_s` (default: the notes' end + release)."""
    data = model.data_config
    notes, pedals = read_piece(midi_path, data.sustain_threshold)
    s0, s1 = _window(data, notes, start_s, end_s, str(midi_path))
    spf = data.samples_per_frame
    g0, g1 = s0 // spf * spf, -(-s1 // spf) * spf
    return model_inputs(model, notes, pedals, [g0], g1 - g0, year)


# ---------------------------------------------------------------------------------- progress


class _Progress:
    """tqdm bar over the output's samples, with samples/s and the real-time factor of the output. The
    work behind them (`set_total`: every stream's generated samples, chunk overlaps and padding
    included) is counted as it is done and shown as its share of the output, so the bar ends at the
    output's length (it read "288k/288k" for 221k samples written)."""

    def __init__(self, total: int, output_seconds: float, label: str, enabled: bool) -> None:
        self.output_samples, self.total, self.output_seconds = total, total, output_seconds
        self.t0 = time.perf_counter()
        self.done: dict[int, int] = {}
        self.lock = threading.Lock()
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="sample", unit_scale=True, leave=False,
                            dynamic_ncols=True, file=sys.stderr,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} samples "
                                       "[{elapsed}<{remaining}{postfix}]")

    def callback(self, key: int, streams: int) -> Callable[[int, int], None]:
        def update(done: int, total: int) -> None:
            with self.lock:
                self.done[key] = done * streams
                self._refresh()
        return update

    def set_total(self, total: int) -> None:
        """The samples the streams will generate in all (the bar still counts the output's)."""
        self.total = max(int(total), 1)

    def _refresh(self) -> None:
        if self.bar is None:
            return
        share = min(sum(self.done.values()) / self.total, 1.0)
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.n = int(round(share * self.output_samples))
        rtf = elapsed / max(share * self.output_seconds, 1e-9)
        self.bar.set_postfix_str(f"{share * self.output_samples / elapsed / 1e3:.1f} k samples/s, "
                                 f"real-time factor {rtf:.2f}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------------------------ render


def _set_threads(threads: int) -> int:
    """torch and numba CPU threads (0: all available cores). Returns the count used."""
    from .generate import available_cores

    n = threads if threads > 0 else available_cores()
    torch.set_num_threads(n)
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # pragma: no cover - numba is a dependency
        pass
    return n


STREAM_WINDOW_SECONDS = 10.0  # every render runs window by window (inputs built per window, one ahead)
FIRST_WINDOW_SECONDS = 1.0  # a row's first window is short: its inputs are built before the kernel starts


def _spans(model: Any, notes, g0: int, n_gen: int, primed: bool) -> list[tuple[int, int]]:
    """The sounding spans of the generation window (see `chunks.sounding_spans`): a note rings for
    `RELEASE_SECONDS` (and the resonator bank's release tail) after its sustained offset, an undamped
    key's longer (`ResonatorConfig.undamped_tail_s`); a span
    starts a receptive field (whole frames) early. A primed render starts its first span at 0."""
    from ..conditioning import resonators

    data = model.data_config
    spf = data.samples_per_frame
    tail = RELEASE_SECONDS
    bank = resonators.from_data_config(data)
    offsets_s = notes.offset_s
    if bank is not None:
        tail = max(tail, bank.room_tail_s)
        if bank.undamped_from_pitch > 0:  # an undamped key's notes ring longer (the live engine counts them so)
            offsets_s = offsets_s + np.where(bank.undamped(notes.pitch), max(0.0, bank.undamped_tail_s - tail), 0.0)
    lead = -(-model.model_config.receptive_field_samples // spf) * spf
    spans = sounding_spans(notes.onset_s, offsets_s, g0, n_gen, data.sample_rate_hz, spf, tail, lead)
    if primed:
        spans = [(0, spans[0][0] + spans[0][1])] + spans[1:] if spans else [(0, n_gen)]
    return spans


class Rendering:
    """A render, produced piece by piece: iterating yields the output's float32 samples in order, in
    consecutive pieces (each clipped per sample to the 16-bit range, see `stream_notes`), whose
    lengths sum to `n_samples`. It can be iterated once."""

    def __init__(self, n_samples: int, sample_rate_hz: int, pieces: Iterator[np.ndarray]) -> None:
        self.n_samples, self.sample_rate_hz = int(n_samples), int(sample_rate_hz)
        self._pieces = pieces

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._pieces

    def collect(self) -> np.ndarray:
        """The whole output as one float32 array [n_samples]."""
        out = np.empty(self.n_samples, np.float32)
        at = 0
        for piece in self:
            out[at:at + len(piece)] = piece
            at += len(piece)
        if at != self.n_samples:  # pragma: no cover - an internal error
            raise RuntimeError(f"the render produced {at} samples, not {self.n_samples}")
        return out


def render_notes(model: Any, notes, pedals, options: SamplingOptions = SamplingOptions(), *, start_s: float = 0.0,
                 end_s: float | None = None, year: int | None = None, prime_audio: np.ndarray | None = None,
                 prime_seconds: float = 1.0, progress: bool = True, label: str = "synthesize",
                 where: str = "render") -> np.ndarray:
    """Render sustained `notes` and `pedals` (see `render_midi`). Returns float32 audio [n]
    (`stream_notes(...).collect()`). Sampling settings left None in `options` take the model's own
    (`Midi2Wave.sampling_defaults`: its config's, for a model from `checkpoint.load_model`)."""
    return stream_notes(model, notes, pedals, options, start_s=start_s, end_s=end_s, year=year,
                        prime_audio=prime_audio, prime_seconds=prime_seconds, progress=progress, label=label,
                        where=where).collect()


def stream_notes(model: Any, notes, pedals, options: SamplingOptions = SamplingOptions(), *, start_s: float = 0.0,
                 end_s: float | None = None, year: int | None = None, prime_audio: np.ndarray | None = None,
                 prime_seconds: float = 1.0, progress: bool = True, label: str = "synthesize",
                 where: str = "render") -> Rendering:
    """`render_notes` piece by piece, for outputs longer than memory should hold: the window, prime
    and chunking are checked here (InputError), generation runs as the returned `Rendering` is
    iterated. Memory stays flat in the piece's length: a round of chunks (or a window of one
    stream) is generated, joined and handed on at a time; silences come as zero blocks.

    Clipping: a sample beyond the 16-bit range (an equal-power crossfade of correlated chunks can
    exceed full scale) is clipped to [-1, 1 - 2^-15] on its own, never the output scaled.

    Sampling settings left None take the model's own (`Midi2Wave.sampling_defaults`), resolved here
    once (`SamplingOptions.resolve`; options resolved already pass unchanged)."""
    data = model.data_config
    options = options.resolve(Config(data=data, model=model.model_config, sampling=model.sampling_defaults))
    sr, spf = data.sample_rate_hz, data.samples_per_frame
    s0, s1 = _window(data, notes, start_s, end_s, where)
    g0 = s0 // spf * spf  # generation starts at a frame boundary
    head = s0 - g0
    n_gen = -(-s1 // spf) * spf - g0
    threads = _set_threads(options.threads)

    prime = None
    if prime_audio is not None:
        p = np.asarray(prime_audio, dtype=np.float32).reshape(-1)[: max(0, int(round(prime_seconds * sr)))]
        p = np.clip(p, -1.0, (C.PCM_SCALE - 1) / C.PCM_SCALE)
        if len(p):
            p = np.round(p * C.PCM_SCALE) / C.PCM_SCALE  # on the PCM grid, as every sample the model sees
            prime = np.concatenate([np.zeros(head, np.float32), p.astype(np.float32)])[:n_gen]

    spans = _spans(model, notes, g0, n_gen, prime is not None)
    chunk_seconds = options.chunk_seconds
    if chunk_seconds is None:
        chunk_seconds = auto_chunk_seconds(sum(n for _, n in spans) / sr, threads, options.overlap_seconds,
                                           spf / sr)
        if chunk_seconds > 0 and prime is not None:  # the prime must end before the second chunk fades in
            chunk_seconds = max(chunk_seconds, len(prime) / sr)
    plans = [ChunkPlan.make(n, chunk_seconds, options.overlap_seconds, sr, spf) for _, n in spans]
    if prime is not None and plans and plans[0].rows > 1 and len(prime) > plans[0].fade_in_start:
        fade = plans[0].fade_in_start
        raise InputError(f"{where}: the prime ({(len(prime) - head) / sr:g} s) must fit in the first chunk "
                         f"before the next one fades in ({(fade - head) / sr:g} s): shorten --prime-seconds "
                         f"or lengthen --chunk-seconds")
    job = _Job(model, notes, pedals, options, year, prime, threads, g0, spans, plans, chunk_seconds > 0)
    return Rendering(s1 - s0, sr, _output(job, label, progress, n_gen, head, s1 - s0))


ZERO_BLOCK_SAMPLES = 1 << 18  # silence between sounding spans is handed on in blocks of this many samples
PREFETCH_WINDOWS = True  # build the next window's inputs on a helper thread while this one generates


@dataclass
class _Job:
    """Everything a render generates: the sounding spans (offsets in the generation window starting
    at piece sample g0) and their chunk plans; `chunked`: rows of all spans batched in rounds, else
    one stream per span."""

    model: Any
    notes: Any
    pedals: Any
    options: SamplingOptions
    year: int | None
    prime: np.ndarray | None
    threads: int
    g0: int
    spans: list
    plans: list
    chunked: bool


def _output(job: _Job, label: str, progress: bool, n_gen: int, head: int, n_out: int) -> Iterator[np.ndarray]:
    """The output's pieces: generated samples (in order, on the generation window) with the gaps
    between spans as exact zeros, the < 1 frame before the window's start cut, clipped per sample.
    Each generated span passes through a DC blocker of its own (`audio.DCBlocker`, which takes
    over without a step), the first from the prime's end when there is one (the prime is output
    as given)."""
    top = (C.PCM_SCALE - 1) / C.PCM_SCALE
    sr = job.model.data_config.sample_rate_hz
    primed = len(job.prime) if job.prime is not None else 0

    def cut(at: int, x: np.ndarray) -> Iterator[np.ndarray]:
        lo, hi = max(at, head), min(at + len(x), head + n_out)
        if hi > lo:
            yield np.clip(x[lo - at:hi - at], -1.0, top).astype(np.float32, copy=False)

    def zeros(a: int, b: int) -> Iterator[np.ndarray]:
        for z in range(a, b, ZERO_BLOCK_SAMPLES):
            yield from cut(z, np.zeros(min(ZERO_BLOCK_SAMPLES, b - z), np.float32))

    at = 0
    dc_blocker = DCBlocker(sr)
    if job.spans:
        total = sum(n for _, n in job.spans)
        bar = _Progress(total, total / job.model.data_config.sample_rate_hz, label, progress)
        try:
            for offset, x in _generated(job, bar):
                if offset > at:  # silence before this span: a new span, a new blocker
                    yield from zeros(at, offset)
                    dc_blocker = DCBlocker(sr)
                keep = min(len(x), max(0, primed - offset))
                yield from cut(offset, np.concatenate([x[:keep], dc_blocker(x[keep:])]) if keep else dc_blocker(x))
                at = offset + len(x)
        finally:
            bar.close()
    yield from zeros(at, n_gen)


def _for_round(schedule: Any, primed: bool) -> Any:
    """A row's schedule: the analysis's partials only for the primed row (`Schedule.for_analysis`)."""
    return schedule.for_analysis() if primed else schedule


@dataclass
class _Round:
    """Rows generated together, `length` samples each: (span, chunk) pairs and the piece sample where
    each starts; `primed`: row 0 is the first span's first chunk, teacher-forced by the prime."""

    rows: list
    starts: list
    length: int
    primed: bool


def _rounds(job: _Job) -> list[_Round]:
    """Chunked: all spans' rows, in piece order, in rounds of `STREAMS_PER_CORE` x threads rows of
    one length. One stream: a round of one row per span."""
    spans, plans = job.spans, job.plans
    if not job.chunked:
        return [_Round([(i, 0)], [job.g0 + spans[i][0]], spans[i][1], job.prime is not None and i == 0)
                for i in range(len(spans))]
    longest = max(n for _, n in spans)
    length = max(p.length for p in plans)  # single-row spans generate this long too (the rest is dropped)
    length = min(length, longest) if all(p.rows == 1 for p in plans) else length
    rows = [(i, j) for i, p in enumerate(plans) for j in range(p.rows)]
    per_round = max(1, STREAMS_PER_CORE * job.threads)
    return [_Round(rows[r:r + per_round], [job.g0 + spans[i][0] + plans[i].starts[j] for i, j in rows[r:r + per_round]],
                   length, job.prime is not None and r == 0) for r in range(0, len(rows), per_round)]


def _generated(job: _Job, bar: "_Progress") -> Iterator[tuple[int, np.ndarray]]:
    """(offset in the generation window, float32 samples) of every span, in order: one stream per
    span handed on window by window; a chunked round's rows collected ([rows, length], bounded by
    `STREAMS_PER_CORE` x threads x the chunk length), joined row by row (`chunks.StreamingJoin`)
    and handed on as soon as final."""
    rounds = _rounds(job)
    bar.set_total(sum(len(r.rows) * r.length for r in rounds))
    joins: dict[int, StreamingJoin] = {}
    handed = [0] * len(job.spans)  # how much of each span was handed on
    for rnd, windows in _RoundWindows(job, rounds, bar):
        if not job.chunked:  # one row, the span itself
            offset = job.spans[rnd.rows[0][0]][0]
            for w0, audio in windows:
                yield offset + w0, audio[0]
            continue
        rows = np.empty((len(rnd.rows), rnd.length), np.float32)
        for w0, audio in windows:
            rows[:, w0:w0 + audio.shape[1]] = audio
        for (i, _), row in zip(rnd.rows, rows):
            final = joins.setdefault(i, StreamingJoin(job.plans[i], job.options.crossfade)).add(row)
            if len(final):
                yield job.spans[i][0] + handed[i], final
                handed[i] += len(final)


def _window_spans(length: int, sr: int, spf: int) -> list[tuple[int, int]]:
    """(start, length) of the windows a row of `length` samples is generated in: a short first one
    (`FIRST_WINDOW_SECONDS`: the only one whose inputs the kernel threads wait for), then
    `STREAM_WINDOW_SECONDS` each; whole frames."""
    first = max(1, int(round(FIRST_WINDOW_SECONDS * sr / spf))) * spf
    window = max(1, int(round(STREAM_WINDOW_SECONDS * sr / spf))) * spf
    edges = [0] + list(range(min(first, length), length, window)) + [length]
    return [(a, b - a) for a, b in zip(edges[:-1], edges[1:]) if b > a]


@dataclass
class _WindowInputs:
    """What one window of a round needs besides the model: conditioning, uniforms [B, w, 2],
    temperatures, and at the round's first window the rows' resonator schedules."""

    inputs: ModelInputs
    uniforms: torch.Tensor
    temperature: Any
    schedules: list | None


class _RoundWindows:
    """Iterating yields (round, its windows) for every round, in order; a round's windows are (w0,
    audio [B, w] float32) as generated, `STREAM_WINDOW_SECONDS` at a time through one
    `GenerationCache` per group of rows (the primed first chunk is its own group: the engines prime
    every row of a call alike). The next window's inputs are built on a helper thread while one
    generates, so the kernel threads do not wait for them. Iterate once, each round's windows
    before the next round."""

    def __init__(self, job: _Job, rounds: list[_Round], bar: "_Progress") -> None:
        from ..conditioning import resonators

        self.job, self.rounds, self.bar = job, rounds, bar
        data = job.model.data_config
        self.sr, self.spf = data.sample_rate_hz, data.samples_per_frame
        self.bank = resonators.from_data_config(data)
        self.seeds = torch.Generator().manual_seed(int(job.options.seed))
        # every window of every round, in order: the helper thread builds their inputs in this order
        self.windows = [(k, w0, w) for k, rnd in enumerate(rounds) for w0, w in _window_spans(rnd.length, self.sr,
                                                                                               self.spf)]
        self.next_window = 0  # the next window in `windows` whose inputs to build
        self.pending: deque = deque()  # futures of built inputs, in window order
        self.round_uniforms: dict[int, torch.Tensor] = {}  # chunked: the current round's rows' uniforms
        self.caches: dict[int, Any] = {}  # GenerationCache by its number of rows
        self.helper: ThreadPoolExecutor | None = None  # builds inputs (set while iterating)
        self.side: ThreadPoolExecutor | None = None  # runs a round's two groups side by side

    def __iter__(self) -> Iterator[tuple[_Round, Iterator[tuple[int, np.ndarray]]]]:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="midi2wave-inputs") as helper, \
                ThreadPoolExecutor(max_workers=2, thread_name_prefix="midi2wave-render") as side:
            self.helper, self.side = helper, side
            self._build_next()
            try:
                for k, rnd in enumerate(self.rounds):
                    yield rnd, self._round(k, rnd)
            finally:
                for f in self.pending:
                    f.cancel()
                for cache in self.caches.values():
                    cache.close()

    def _build_next(self) -> None:
        """Submit the next window's inputs to the helper thread, if any is left."""
        if self.next_window < len(self.windows):
            self.pending.append(self.helper.submit(self._build, *self.windows[self.next_window]))
            self.next_window += 1

    def _build(self, k: int, w0: int, w: int) -> _WindowInputs:
        """Window (k, w0, w)'s inputs; runs on the helper thread, one window after another in order
        (the random draws too)."""
        from ..conditioning import resonators

        job, rnd, options = self.job, self.rounds[k], self.job.options
        if job.chunked:  # each row's uniforms drawn whole at its round's start
            if w0 == 0:
                self.round_uniforms.clear()
                self.round_uniforms[k] = torch.cat([torch.rand(1, rnd.length, 2, generator=self.seeds)
                                                    for _ in rnd.rows])
            uniforms = self.round_uniforms[k][:, w0:w0 + w]
        else:
            uniforms = torch.rand(1, w, 2, generator=self.seeds)
        # a primed row is teacher-forced as the analysis tracked the training audio: without the
        # synthesis-only partials (the network would read their share of the prime's innovation)
        schedules = (sampled_schedules([_for_round(resonators.schedule(job.notes, s, rnd.length, self.sr, self.bank),
                                                   rnd.primed and i == 0)
                                        for i, s in enumerate(rnd.starts)], options, self.bank, self.sr,
                                       [job.year if job.model.data_config.use_year else None] * len(rnd.starts))
                     if self.bank is not None and w0 == 0 else None)
        starts = [s + w0 for s in rnd.starts]
        return _WindowInputs(model_inputs(job.model, job.notes, job.pedals, starts, w, job.year), uniforms,
                             row_temperatures([job.notes.onset_s] * len(starts), starts, w, self.sr, options),
                             schedules)

    def _cache(self, rows: int) -> Any:
        from .generate import GenerationCache

        if rows not in self.caches:
            options = self.job.options
            self.caches[rows] = GenerationCache(self.job.model, rows, engine=options.engine,
                                                precision=options.precision)
        return self.caches[rows]

    def _groups(self, rnd: _Round) -> list[tuple[slice, bool, int]]:
        """(rows, primed, threads) of each engine call of a round."""
        b = len(rnd.rows)
        if rnd.primed and b > 1:  # the primed chunk beside the batch of the others, threads split
            return [(slice(0, 1), True, 1), (slice(1, b), False, max(1, self.job.threads - 1))]
        return [(slice(0, b), rnd.primed, self.job.threads)]

    def _run(self, k: int, rnd: _Round, w0: int, w: int, got: _WindowInputs, sel: slice, primed: bool,
             threads: int, cache: Any) -> torch.Tensor:
        """One group's samples of one window."""
        from .generate import generate

        job = self.job
        inputs = got.inputs
        temperature = got.temperature[sel] if isinstance(got.temperature, torch.Tensor) else got.temperature
        prime = None
        if primed and w0 < len(job.prime):
            prime = torch.from_numpy(job.prime[w0:w0 + w])[None]
        rows = len(range(*sel.indices(len(rnd.rows))))
        done = self.bar.callback((k, w0, sel.start), rows)
        return generate(job.model, w, conditioning=inputs.rolls[sel] if inputs.rolls is not None else None,
                        year=inputs.year[sel] if inputs.year is not None else None,
                        excitation=inputs.excitation[sel] if inputs.excitation is not None else None,
                        uniforms=got.uniforms[sel], temperature=temperature, min_p=job.options.min_p, prime=prime,
                        engine=job.options.engine, threads=threads, cache=cache,
                        progress=lambda d, t: done(d, t))

    def _round(self, k: int, rnd: _Round) -> Iterator[tuple[int, np.ndarray]]:
        """Round k's windows, (w0, audio [B, w] float32) each, in order."""
        groups = [(sel, primed, n, self._cache(len(range(*sel.indices(len(rnd.rows))))))
                  for sel, primed, n in self._groups(rnd)]
        for w0, w in _window_spans(rnd.length, self.sr, self.spf):
            got = self.pending.popleft().result()
            self._build_next()  # the next window's inputs, built while this one runs
            if w0 == 0:
                for sel, _, _, cache in groups:
                    cache.reset()
                    if got.schedules is not None:
                        cache.set_resonators(got.schedules[sel])
            if len(groups) == 1:
                audio = [self._run(k, rnd, w0, w, got, *groups[0])]
            else:
                calls = [self.side.submit(self._run, k, rnd, w0, w, got, *g) for g in groups]
                audio = [c.result() for c in calls]
            yield w0, torch.cat(audio, 0).detach().to("cpu", torch.float32).numpy()


def render_midi(model: Any, midi_path: str | os.PathLike, options: SamplingOptions = SamplingOptions(), *,
                start_s: float = 0.0, end_s: float | None = None, year: int | None = None,
                prime_audio: np.ndarray | None = None, prime_seconds: float = 1.0,
                progress: bool = True) -> np.ndarray:
    """Render a MIDI file with `model` (a `Midi2Wave`). Returns float32 audio at the model's sample
    rate, `round(end_s * sr) - round(start_s * sr)` samples long.

    end_s None: the last note's end (after the sustain rule) + `RELEASE_SECONDS`. options: every
    sampling setting (temperature, seed, engine, precision, chunking and crossfade, threads; see the
    module docstring). year: the recording year to imitate (None: unknown). prime_audio: samples at
    the model's rate from `start_s` on; its first `prime_seconds` are teacher-forced.
    Raises MidiError / InputError for a bad file or window.
    """
    notes, pedals = read_piece(midi_path, model.data_config.sustain_threshold)
    return render_notes(model, notes, pedals, options, start_s=start_s, end_s=end_s, year=year,
                        prime_audio=prime_audio, prime_seconds=prime_seconds, progress=progress,
                        label=Path(midi_path).name, where=str(midi_path))


# --------------------------------------------------------------------------------------- CLI


def _load_prime(path: Path, sample_rate_hz: int, start_s: float) -> np.ndarray:
    """The prime audio file, mono at the model's rate, from `start_s` on (MIDI timeline)."""
    from ..audio import load_audio, resample, to_mono

    audio, rate = load_audio(path)
    mono = resample(to_mono(audio), rate, sample_rate_hz)
    s0 = int(round(start_s * sample_rate_hz))
    if s0 >= len(mono):
        raise InputError(f"{path}: the prime audio ends at {len(mono) / sample_rate_hz:.2f} s, "
                         f"before --start {start_s:g} s (it is read on the MIDI's timeline)")
    return mono[s0:]


def _unmap_freed_buffers() -> None:
    """A render allocates and frees buffers of megabytes once per window (a window's inputs, a round's
    rows). glibc raises its mmap threshold to the size of every such buffer freed, so later ones come
    from the heap, which fragments and grows with the number of windows (measured with the stubbed
    kernel: peak RSS +70 MB at 60 min against 16 min, flat with a fixed threshold). Fixing the threshold
    at glibc's initial 128 KiB keeps each big buffer in its own mapping, returned when freed. For the
    `synthesize` command's process; nothing off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def synthesize_files(inputs: Sequence[Path], options: SamplingOptions, *, out: Path | None = None,
                     checkpoint: Path | None = None, start_s: float = 0.0, end_s: float | None = None,
                     year: int | None = None, prime: Path | None = None, prime_seconds: float = 1.0,
                     plot: bool = False, device: str = "cpu", force: bool = False, quiet: bool = False) -> int:
    """`midi2wave synthesize`: render each MIDI file in `inputs` to a WAV (`out`: a file for one
    input, a folder, or None: INPUT.wav beside each). Every output is checked (a writable folder,
    not taken unless `force`) before the model loads or anything is generated. Returns 0 if every
    input was rendered, 1 if some failed (each reported in one line); problems that concern every
    input raise."""
    from ..audio import wav_writer
    from ..checkpoint import load_model
    from ..devices import check_device

    device = check_device(device)  # a missing GPU is one line, before any work
    if prime_seconds <= 0 and prime is not None:
        raise Midi2WaveError(f"--prime-seconds must be > 0, got {prime_seconds}")
    todo, failed = checked_outputs(inputs, out, force, plot)
    if not todo:
        return 1

    _unmap_freed_buffers()
    model, config = load_model(checkpoint, device=device)
    options = options.resolve(config)  # the model's own sampling defaults where no flag says; checked once
    sr = model.data_config.sample_rate_hz
    if year is not None and year not in C.MAESTRO_YEARS:
        logger.warning("midi2wave: note: --year %s is not a MAESTRO year %s; rendering as an unknown year",
                       year, list(C.MAESTRO_YEARS))
    prime_audio = _load_prime(prime, sr, start_s) if prime is not None else None
    for src, dst in todo:
        try:
            notes, pedals = read_piece(src, model.data_config.sustain_threshold)
            t0 = time.perf_counter()
            rendering = stream_notes(model, notes, pedals, options, start_s=start_s, end_s=end_s, year=year,
                                     prime_audio=prime_audio, prime_seconds=prime_seconds, progress=not quiet,
                                     label=src.name, where=str(src))
            kept: list[np.ndarray] = []  # the whole output only for --plot
            with wav_writer(dst, sr, force=force) as wav:  # written as generated: memory flat in the length
                for piece in rendering:
                    wav.write(piece)
                    if plot:
                        kept.append(piece)
            seconds = time.perf_counter() - t0
            extra = ""
            if plot:
                from ..plots import save_roll_and_spectrogram

                png = save_roll_and_spectrogram(dst.with_suffix(".png"), np.concatenate(kept), sr, notes=notes,
                                                start_s=round(start_s * sr) / sr, title=src.name, force=force)
                extra = f" and {png}"
            if not quiet:
                dur = rendering.n_samples / sr
                logger.info("wrote %s%s (%.2f s of audio in %.1f s, real-time factor %.2f)",
                            dst, extra, dur, seconds, seconds / max(dur, 1e-9))
        except Midi2WaveError as e:
            _error(str(e))
            failed += 1
    return 1 if failed else 0
