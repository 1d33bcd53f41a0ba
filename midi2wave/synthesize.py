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
shared with `evaluate`). Chunks are generated in rounds of `chunks.STREAMS_PER_CORE` streams per
thread and a single stream window by window (`STREAM_WINDOW_SECONDS`) through one
`GenerationCache`, so memory beyond the output itself stays flat in the piece's length.
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

import math
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from . import constants as C
from .chunks import STREAMS_PER_CORE, ChunkPlan, auto_chunk_seconds, sounding_spans
from .config import SamplingOptions
from .errors import InputError, Midi2WaveError
from .inputs import window_inputs

__all__ = [
    "RELEASE_SECONDS",
    "ModelInputs",
    "read_piece",
    "default_end_seconds",
    "model_inputs",
    "midi_model_inputs",
    "temperature_track",
    "render_notes",
    "render_midi",
    "synthesize_files",
]

RELEASE_SECONDS = 1.0  # rendered after the last note ends, for its release and the room


# ----------------------------------------------------------------------------------- inputs


def read_piece(midi_path: str | os.PathLike, sustain_threshold: int = C.PEDAL_ON_THRESHOLD):
    """(notes with the sustain rule applied, pedal events) of a MIDI file. Raises MidiError."""
    from .midi import apply_sustain, read_midi

    notes, pedals = read_midi(midi_path)
    return apply_sustain(notes, pedals, sustain_threshold), pedals


def default_end_seconds(notes) -> float:
    """Where a render ends by default: the last (sustained) note's end plus `RELEASE_SECONDS`."""
    return float(notes.end_s) + RELEASE_SECONDS


@dataclass
class ModelInputs:
    """What the model is conditioned on for a batch of streams (rows) of equal length.

    rolls: [B, C, n_samples / spf + 2 * margin] or None; excitation: [B, n_samples] or None;
    year: [B] long or None; start_sample: the first sample of row 0 (piece time, frame aligned).
    """

    rolls: torch.Tensor | None
    excitation: torch.Tensor | None
    year: torch.Tensor | None
    start_sample: int
    n_samples: int
    resonators: list | None = None  # one resonators.Schedule per row (models with the bank)


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


def temperature_track(onsets_s: np.ndarray, start_sample: int, n_samples: int, sample_rate_hz: int,
                      options: SamplingOptions) -> np.ndarray | None:
    """Per-sample temperatures (float32 [n_samples]) of samples start_sample .. start_sample +
    n_samples - 1 of a piece whose note onsets are `onsets_s` (piece seconds): `options.temperature`
    within `options.attack_seconds` after an onset, `options.sustain_temperature` elsewhere. None
    when the sustain temperature is off (0) or equal to the temperature. Settings left None take the
    built-in defaults."""
    options = options.for_model(None)
    if options.sustain_temperature <= 0 or options.sustain_temperature == options.temperature:
        return None
    track = np.full(n_samples, options.sustain_temperature, np.float32)
    attack = int(round(options.attack_seconds * sample_rate_hz))
    first = np.ceil(np.asarray(onsets_s, np.float64) * sample_rate_hz).astype(np.int64) - start_sample
    for a in first[(first + attack > 0) & (first < n_samples)]:
        track[max(0, a):max(0, a + attack)] = options.temperature
    return track


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
    """tqdm bar over generated samples (all streams), with samples/s and the real-time factor of the output."""

    def __init__(self, total: int, output_seconds: float, label: str, enabled: bool) -> None:
        self.total, self.output_seconds = total, output_seconds
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
        self.total = total
        if self.bar is not None:
            self.bar.total = total

    def _refresh(self) -> None:
        if self.bar is None:
            return
        done = sum(self.done.values())
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.n = done
        rtf = elapsed / max(done / self.total * self.output_seconds, 1e-9)
        self.bar.set_postfix_str(f"{done / elapsed / 1e3:.1f} k samples/s, real-time factor {rtf:.2f}",
                                 refresh=False)
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


STREAM_WINDOW_SECONDS = 10.0  # one-stream renders run window by window through one GenerationCache


def _spans(model: Any, notes, g0: int, n_gen: int, primed: bool) -> list[tuple[int, int]]:
    """The sounding spans of the generation window (see `chunks.sounding_spans`): a note rings for
    `RELEASE_SECONDS` (and the resonator bank's release tail) after its sustained offset; a span
    starts a receptive field (whole frames) early. A primed render starts its first span at 0."""
    from . import resonators

    data = model.data_config
    spf = data.samples_per_frame
    tail = RELEASE_SECONDS
    bank = resonators.from_data_config(data)
    if bank is not None:
        tail = max(tail, bank.release_tail_s)
    lead = -(-model.model_config.receptive_field_samples // spf) * spf
    spans = sounding_spans(notes.onset_s, notes.offset_s, g0, n_gen, data.sample_rate_hz, spf, tail, lead)
    if primed:
        spans = [(0, spans[0][0] + spans[0][1])] + spans[1:] if spans else [(0, n_gen)]
    return spans


def render_notes(model: Any, notes, pedals, options: SamplingOptions = SamplingOptions(), *, start_s: float = 0.0,
                 end_s: float | None = None, year: int | None = None, prime_audio: np.ndarray | None = None,
                 prime_seconds: float = 1.0, progress: bool = True, label: str = "synthesize",
                 where: str = "render") -> np.ndarray:
    """Render sustained `notes` and `pedals` (see `render_midi`). Returns float32 audio [n].
    Sampling settings left None in `options` take the built-in defaults here; `synthesize_files` and
    `midi2wave.render` fill them from the model's own config (`Config.sampling`) first."""
    options = options.for_model(None)
    data = model.data_config
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
    out = np.zeros(n_gen, np.float32)
    if spans:
        total = sum(n for _, n in spans)
        bar = _Progress(total, total / sr, label, progress)
        try:
            if chunk_seconds > 0:
                _render_chunked(model, notes, pedals, options, chunk_seconds, g0, spans, out, year, prime, threads,
                                bar, where, head)
            else:
                _render_streams(model, notes, pedals, options, g0, spans, out, year, prime, threads, bar)
        finally:
            bar.close()
    # an equal-power fade of correlated chunks can exceed full scale
    np.clip(out, -1.0, (C.PCM_SCALE - 1) / C.PCM_SCALE, out=out)
    return np.ascontiguousarray(out[head:head + (s1 - s0)], dtype=np.float32)


def _temperatures(notes, starts: Sequence[int], length: int, sr: int, options: SamplingOptions) -> Any:
    tracks = [temperature_track(notes.onset_s, s, length, sr, options) for s in starts]
    return torch.from_numpy(np.stack(tracks)) if tracks[0] is not None else options.for_model(None).temperature


def _render_streams(model: Any, notes, pedals, options: SamplingOptions, g0: int, spans, out: np.ndarray,
                    year: int | None, prime: np.ndarray | None, threads: int, bar: "_Progress") -> None:
    """One stream per span, window by window through one `GenerationCache` (a piece in several
    calls equals the piece in one; only a window's inputs are held at a time)."""
    from . import resonators
    from .generate import GenerationCache, generate

    data = model.data_config
    sr, spf = data.sample_rate_hz, data.samples_per_frame
    window = max(1, int(round(STREAM_WINDOW_SECONDS * sr / spf))) * spf
    seeds = torch.Generator().manual_seed(int(options.seed))
    bank = resonators.from_data_config(data)
    for key, (offset, n) in enumerate(spans):
        start = g0 + offset
        cache = GenerationCache(model, 1, engine=options.engine, precision=options.precision)
        try:
            if bank is not None:
                cache.set_resonators([resonators.schedule(notes, start, n, sr, bank)])
            for w0 in range(0, n, window):
                w = min(window, n - w0)
                inputs = model_inputs(model, notes, pedals, [start + w0], w, year)
                pw = None
                if prime is not None and offset + w0 < len(prime):
                    pw = torch.from_numpy(prime[offset + w0:offset + w0 + w])[None]
                callback = bar.callback(key, 1)
                audio = generate(model, w, conditioning=inputs.rolls, year=inputs.year, excitation=inputs.excitation,
                                 uniforms=torch.rand(1, w, 2, generator=seeds),
                                 temperature=_temperatures(notes, [start + w0], w, sr, options), prime=pw,
                                 engine=options.engine, threads=threads, cache=cache,
                                 progress=lambda d, t, b=w0, cb=callback: cb(b + d, n))
                out[offset + w0:offset + w0 + w] = audio[0].detach().to("cpu", torch.float32).numpy()
        finally:
            cache.close()


def _render_chunked(model: Any, notes, pedals, options: SamplingOptions, chunk_seconds: float, g0: int, spans,
                    out: np.ndarray, year: int | None, prime: np.ndarray | None, threads: int, bar: "_Progress",
                    where: str, head: int) -> None:
    """Every span cut into chunks; all chunks (rows of equal length) generated in rounds of
    `STREAMS_PER_CORE` x threads streams and joined into `out` in order."""
    from .generate import generate

    data = model.data_config
    sr, spf = data.sample_rate_hz, data.samples_per_frame
    longest = max(n for _, n in spans)
    plans = [ChunkPlan.make(n, chunk_seconds, options.overlap_seconds, sr, spf) for _, n in spans]
    length = max(p.length for p in plans)  # single-row spans generate this long too (the rest is dropped)
    length = min(length, longest) if all(p.rows == 1 for p in plans) else length
    if prime is not None and plans[0].rows > 1 and len(prime) > plans[0].fade_in_start:
        fade = plans[0].fade_in_start
        raise InputError(f"{where}: the prime ({(len(prime) - head) / sr:g} s) must fit in the first chunk "
                         f"before the next one fades in ({(fade - head) / sr:g} s): shorten --prime-seconds "
                         f"or lengthen --chunk-seconds")
    rows = [(i, j) for i, p in enumerate(plans) for j in range(p.rows)]  # (span, chunk) in piece order
    per_round = max(1, STREAMS_PER_CORE * threads)
    seeds = torch.Generator().manual_seed(int(options.seed))
    bar.set_total(len(rows) * length)
    for r0 in range(0, len(rows), per_round):
        batch = rows[r0:r0 + per_round]
        starts = [g0 + spans[i][0] + plans[i].starts[j] for i, j in batch]
        inputs = model_inputs(model, notes, pedals, starts, length, year)
        uniforms = torch.cat([torch.rand(1, length, 2, generator=seeds) for _ in batch])
        temperature = _temperatures(notes, starts, length, sr, options)

        def call(sel: slice, n_threads: int, key: int, primed: bool) -> torch.Tensor:
            k = len(range(*sel.indices(len(batch))))
            return generate(
                model, length,
                conditioning=inputs.rolls[sel] if inputs.rolls is not None else None,
                year=inputs.year[sel] if inputs.year is not None else None,
                excitation=inputs.excitation[sel] if inputs.excitation is not None else None,
                uniforms=uniforms[sel],
                temperature=temperature[sel] if isinstance(temperature, torch.Tensor) else temperature,
                prime=torch.from_numpy(prime)[None] if primed else None,
                engine=options.engine, threads=n_threads, precision=options.precision,
                progress=bar.callback(key, k),
                resonators=inputs.resonators[sel] if inputs.resonators is not None else None,
            )

        key = 2 * r0
        if prime is None or r0 > 0 or len(batch) == 1:
            generated = call(slice(0, len(batch)), threads, key, prime is not None and r0 == 0)
        else:
            # The engines prime every row of a call alike: the primed first chunk runs as its own
            # call, beside the batch of the others (threads split between the two).
            with ThreadPoolExecutor(max_workers=2, thread_name_prefix="midi2wave-render") as pool:
                first = pool.submit(call, slice(0, 1), 1, key, True)
                rest = pool.submit(call, slice(1, len(batch)), max(1, threads - 1), key + 1, False)
                generated = torch.cat([first.result(), rest.result()], 0)
        generated_np = generated.detach().to("cpu", torch.float32).numpy()
        for (i, j), row in zip(batch, generated_np):
            offset, n = spans[i]
            plans[i].join_row(out[offset:offset + n], j, row, options.crossfade)


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


def _error(message: str) -> None:
    print(f"midi2wave: error: {message}", file=sys.stderr)


def _output_paths(inputs: Sequence[Path], out: Path | None) -> list[Path]:
    """Where each input's WAV goes: -o FILE (one input), -o FOLDER (several, or an existing folder),
    or INPUT.wav beside each input."""
    if out is None:
        return [p.with_suffix(".wav") for p in inputs]
    if len(inputs) == 1 and not out.is_dir():
        return [out]
    if out.exists() and not out.is_dir():
        raise Midi2WaveError(f"{out}: is a file; with several inputs -o must be a folder")
    out.mkdir(parents=True, exist_ok=True)
    return [out / (p.stem + ".wav") for p in inputs]


def _load_prime(path: Path, sample_rate_hz: int, start_s: float) -> np.ndarray:
    """The prime audio file, mono at the model's rate, from `start_s` on (MIDI timeline)."""
    from .audio import load_audio, resample, to_mono

    audio, rate = load_audio(path)
    mono = resample(to_mono(audio), rate, sample_rate_hz)
    s0 = int(round(start_s * sample_rate_hz))
    if s0 >= len(mono):
        raise InputError(f"{path}: the prime audio ends at {len(mono) / sample_rate_hz:.2f} s, "
                         f"before --start {start_s:g} s (it is read on the MIDI's timeline)")
    return mono[s0:]


def synthesize_files(inputs: Sequence[Path], options: SamplingOptions, *, out: Path | None = None,
                     checkpoint: Path | None = None, start_s: float = 0.0, end_s: float | None = None,
                     year: int | None = None, prime: Path | None = None, prime_seconds: float = 1.0,
                     plot: bool = False, device: str = "cpu", force: bool = False, quiet: bool = False) -> int:
    """`midi2wave synthesize`: render each MIDI file in `inputs` to a WAV (`out`: a file for one
    input, a folder, or None: INPUT.wav beside each). Every output is checked (a writable folder,
    not taken unless `force`) before the model loads or anything is generated. Returns 0 if every
    input was rendered, 1 if some failed (each reported in one line); problems that concern every
    input raise."""
    from .audio import save_wav
    from .checkpoint import load_model

    if prime_seconds <= 0 and prime is not None:
        raise Midi2WaveError(f"--prime-seconds must be > 0, got {prime_seconds}")
    inputs = [Path(p) for p in inputs]
    outputs = _output_paths(inputs, out)
    failed = 0
    todo: list[tuple[Path, Path]] = []
    seen: dict[Path, Path] = {}
    for src, dst in zip(inputs, outputs):
        key = dst.resolve()
        if key in seen:
            _error(f"{src}: its output {dst} is also the output of {seen[key]} (rename one, or use -o FOLDER)")
            failed += 1
            continue
        seen[key] = src
        if not force:
            taken = [p for p in ([dst] + ([dst.with_suffix(".png")] if plot else [])) if p.exists()]
            if taken:
                _error(f"{taken[0]}: already exists (use --force to overwrite)")
                failed += 1
                continue
        if not src.exists():
            _error(f"{src}: no such file")
            failed += 1
            continue
        folder = dst.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            problem = "is not writable" if folder.is_dir() else "does not exist"
            _error(f"{dst}: folder {folder} {problem}")
            failed += 1
            continue
        todo.append((src, dst))
    if not todo:
        return 1

    model, config = load_model(checkpoint, device=device)
    options = options.for_model(config.sampling)  # the model's own sampling defaults where no flag says
    sr = model.data_config.sample_rate_hz
    if year is not None and year not in C.MAESTRO_YEARS:
        print(f"midi2wave: note: --year {year} is not a MAESTRO year {list(C.MAESTRO_YEARS)}; "
              f"rendering as an unknown year", file=sys.stderr)
    prime_audio = _load_prime(prime, sr, start_s) if prime is not None else None
    for src, dst in todo:
        try:
            notes, pedals = read_piece(src, model.data_config.sustain_threshold)
            t0 = time.perf_counter()
            audio = render_notes(model, notes, pedals, options, start_s=start_s, end_s=end_s, year=year,
                                 prime_audio=prime_audio, prime_seconds=prime_seconds, progress=not quiet,
                                 label=src.name, where=str(src))
            seconds = time.perf_counter() - t0
            save_wav(dst, audio, sr, force=force)
            extra = ""
            if plot:
                from .plots import save_roll_and_spectrogram

                png = save_roll_and_spectrogram(dst.with_suffix(".png"), audio, sr, notes=notes,
                                                start_s=round(start_s * sr) / sr, title=src.name, force=force)
                extra = f" and {png}"
            if not quiet:
                dur = len(audio) / sr
                print(f"wrote {dst}{extra} ({dur:.2f} s of audio in {seconds:.1f} s, "
                      f"real-time factor {seconds / max(dur, 1e-9):.2f})", file=sys.stderr)
        except Midi2WaveError as e:
            _error(str(e))
            failed += 1
    return 1 if failed else 0
