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

Long pieces (`options.chunk_seconds` C > 0, `options.overlap_seconds` O): the window is cut into
chunks that all generate `C + O` seconds and start `C` apart; chunk i > 0 starts O before the end
of chunk i-1. The first `O - X` seconds of a chunk (X = `CROSSFADE_FRACTION` * O) are warm-up only
(generated, discarded), the next X seconds are crossfaded with the end of the previous chunk
(equal-power by default, or linear), and the rest is the chunk alone. All chunks are generated as
one batch, so the engines spread them over the cores. C and O are rounded to whole frames.

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

import argparse
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
from .config import Config, SamplingOptions
from .errors import InputError, Midi2WaveError
from .inputs import window_inputs

__all__ = [
    "RELEASE_SECONDS",
    "CROSSFADE_FRACTION",
    "ModelInputs",
    "read_piece",
    "default_end_seconds",
    "model_inputs",
    "midi_model_inputs",
    "plan_chunks",
    "crossfade_weights",
    "join_chunks",
    "render_notes",
    "render_midi",
    "synthesize_from_cli",
]

RELEASE_SECONDS = 1.0  # rendered after the last note ends, for its release and the room
CROSSFADE_FRACTION = 0.5  # of the overlap: the crossfade is its last half, the first half is warm-up only
CROSSFADES = ("equal_power", "linear")


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
    when the sustain temperature is off (0) or equal to the temperature."""
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


# ----------------------------------------------------------------------------------- chunks


def plan_chunks(n_samples: int, chunk_samples: int, overlap_samples: int) -> list[int]:
    """Start offsets of the chunks covering `n_samples`: every chunk is `chunk_samples +
    overlap_samples` long and they start `chunk_samples` apart, so chunk i+1 begins
    `overlap_samples` before chunk i ends. One chunk ([0]) when a single one covers everything."""
    if chunk_samples <= 0 or overlap_samples < 0:
        raise ValueError(f"need chunk_samples > 0 and overlap_samples >= 0, got {chunk_samples}, {overlap_samples}")
    if n_samples <= chunk_samples + overlap_samples:
        return [0]
    k = -(-(n_samples - overlap_samples) // chunk_samples)
    return [i * chunk_samples for i in range(k)]


def crossfade_weights(n: int, kind: str = "equal_power") -> tuple[np.ndarray, np.ndarray]:
    """(fade-out, fade-in) weights over n samples: equal power (cos/sin, squares sum to 1: keeps the
    power of uncorrelated signals) or linear (sum to 1: exact for identical signals)."""
    if kind not in CROSSFADES:
        raise ValueError(f"crossfade must be one of {CROSSFADES}, got {kind!r}")
    r = (np.arange(n, dtype=np.float64) + 0.5) / max(n, 1)
    if kind == "linear":
        return (1.0 - r).astype(np.float32), r.astype(np.float32)
    return np.cos(0.5 * np.pi * r).astype(np.float32), np.sin(0.5 * np.pi * r).astype(np.float32)


def join_chunks(chunks: np.ndarray, starts: Sequence[int], n_samples: int, overlap_samples: int,
                crossfade_samples: int, kind: str = "equal_power") -> np.ndarray:
    """Assemble chunks [K, Lc] generated at `starts` into [n_samples].

    Chunk i > 0 (starting at s_i, within `overlap_samples` of chunk i-1's end) contributes nothing
    during its warm-up `s_i .. s_i + overlap - crossfade`, is crossfaded with chunk i-1 over the
    next `crossfade_samples`, and stands alone from `s_i + overlap` on.
    """
    chunks = np.asarray(chunks, dtype=np.float32)
    K, Lc = chunks.shape
    if not 0 <= crossfade_samples <= overlap_samples:
        raise ValueError(f"crossfade ({crossfade_samples}) must be within the overlap ({overlap_samples})")
    out = np.zeros(n_samples, np.float32)
    fade_out, fade_in = crossfade_weights(crossfade_samples, kind)
    for i, s in enumerate(starts):
        if i == 0:
            a = s
        else:
            if s + overlap_samples > starts[i - 1] + Lc:
                raise ValueError(f"chunk {i} starts at {s}: its warm-up must overlap chunk {i - 1} "
                                 f"(which ends at {starts[i - 1] + Lc})")
            x0 = s + overlap_samples - crossfade_samples
            x1 = min(s + overlap_samples, n_samples)
            if x1 > x0:
                m = x1 - x0
                out[x0:x1] = fade_out[:m] * out[x0:x1] + fade_in[:m] * chunks[i, x0 - s:x1 - s]
            a = s + overlap_samples
        b = min(s + Lc, n_samples)
        if b > a:
            out[a:b] = chunks[i, a - s:b - s]
    return out


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


def render_notes(model: Any, config: Config | None, notes, pedals, start_s: float = 0.0, end_s: float | None = None,
                 options: SamplingOptions = SamplingOptions(), year: int | None = None,
                 prime_audio: np.ndarray | None = None, prime_seconds: float = 1.0, progress: bool = True,
                 crossfade: str = "equal_power", label: str = "synthesize", where: str = "render",
                 precision: str = "fp32") -> np.ndarray:
    """Render sustained `notes` and `pedals` (see `render_midi`). Returns float32 audio [n]."""
    from .generate import generate

    data = model.data_config
    if config is not None and config.data != data:
        raise ValueError("config.data differs from the model's data config")
    if crossfade not in CROSSFADES:
        raise ValueError(f"crossfade must be one of {CROSSFADES}, got {crossfade!r}")
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

    if options.chunk_seconds > 0:
        chunk = max(1, int(round(options.chunk_seconds * sr / spf))) * spf
        overlap = int(round(options.overlap_seconds * sr / spf)) * spf
        starts = plan_chunks(n_gen, chunk, overlap)
    else:
        chunk, overlap, starts = n_gen, 0, [0]
    length = n_gen if len(starts) == 1 else chunk + overlap
    if prime is not None and len(starts) > 1:
        own = chunk + overlap - int(round(overlap * CROSSFADE_FRACTION))  # where chunk 1 starts to fade in
        if len(prime) > own:
            raise InputError(f"{where}: the prime ({(len(prime) - head) / sr:g} s) must fit in the first chunk "
                             f"before the next one fades in ({(own - head) / sr:g} s): shorten --prime-seconds "
                             f"or lengthen --chunk-seconds")
    inputs = model_inputs(model, notes, pedals, [g0 + s for s in starts], length, year)
    K = len(starts)
    seeds = torch.Generator().manual_seed(int(options.seed))
    uniforms = torch.rand(K, length, 2, generator=seeds)
    temperature: Any = options.temperature
    tracks = [temperature_track(notes.onset_s, g0 + s, length, sr, options) for s in starts]
    if tracks[0] is not None:
        temperature = torch.from_numpy(np.stack(tracks))
    bar = _Progress(K * length, (s1 - s0) / sr, label, progress)

    def call(rows: slice, n_threads: int, key: int, primed: bool) -> torch.Tensor:
        k = len(range(*rows.indices(K)))
        return generate(
            model, length,
            conditioning=inputs.rolls[rows] if inputs.rolls is not None else None,
            year=inputs.year[rows] if inputs.year is not None else None,
            excitation=inputs.excitation[rows] if inputs.excitation is not None else None,
            uniforms=uniforms[rows],
            temperature=temperature[rows] if isinstance(temperature, torch.Tensor) else temperature,
            prime=torch.from_numpy(prime)[None] if primed else None,
            engine=options.engine, threads=n_threads, precision=precision, progress=bar.callback(key, k),
            resonators=inputs.resonators[rows] if inputs.resonators is not None else None,
        )

    try:
        if prime is None or K == 1:
            rows = call(slice(0, K), threads, 0, prime is not None)
        else:
            # The engines prime every row of a call alike: the primed first chunk runs as its own
            # call, beside the batch of the others (threads split between the two).
            with ThreadPoolExecutor(max_workers=2, thread_name_prefix="midi2wave-render") as pool:
                first = pool.submit(call, slice(0, 1), 1, 0, True)
                rest = pool.submit(call, slice(1, K), max(1, threads - 1), 1, False)
                rows = torch.cat([first.result(), rest.result()], 0)
    finally:
        bar.close()
    rows_np = rows.detach().to("cpu", torch.float32).numpy()
    if K == 1:
        audio = rows_np[0]
    else:
        crossfade_n = int(round(overlap * CROSSFADE_FRACTION))
        audio = join_chunks(rows_np, starts, n_gen, overlap, crossfade_n, crossfade)
        # an equal-power fade of correlated chunks can exceed full scale
        np.clip(audio, -1.0, (C.PCM_SCALE - 1) / C.PCM_SCALE, out=audio)
    return np.ascontiguousarray(audio[head:head + (s1 - s0)], dtype=np.float32)


def render_midi(model: Any, config: Config | None, midi_path: str | os.PathLike, start_s: float = 0.0,
                end_s: float | None = None, options: SamplingOptions = SamplingOptions(), year: int | None = None,
                prime_audio: np.ndarray | None = None, prime_seconds: float = 1.0, progress: bool = True,
                crossfade: str = "equal_power", precision: str = "fp32") -> np.ndarray:
    """Render a MIDI file with `model` (a `Midi2Wave`; `config` its Config or None). Returns float32
    audio at the model's sample rate, `round(end_s * sr) - round(start_s * sr)` samples long.

    end_s None: the last note's end (after the sustain rule) + `RELEASE_SECONDS`. options: temperature,
    seed, engine, chunking (see the module docstring), threads. year: the recording year to imitate
    (None: unknown). prime_audio: samples at the model's rate from `start_s` on; its first
    `prime_seconds` are teacher-forced. crossfade: "equal_power" or "linear" chunk joins.
    precision: the numba engine's weight storage ("fp32", "fp16", "int8"; see `generate`).
    Raises MidiError / InputError for a bad file or window.
    """
    notes, pedals = read_piece(midi_path, model.data_config.sustain_threshold)
    return render_notes(model, config, notes, pedals, start_s, end_s, options, year, prime_audio, prime_seconds,
                        progress, crossfade, label=Path(midi_path).name, where=str(midi_path),
                        precision=precision)


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


def synthesize_from_cli(args: argparse.Namespace) -> int:
    """`midi2wave synthesize`: exit 0 if every input was rendered, 1 if some failed (each reported
    in one line); problems that concern every input (checkpoint, options) raise (exit 2)."""
    from .audio import save_wav
    from .checkpoint import load_model

    from .config import ConfigError

    try:
        options = SamplingOptions(temperature=args.temperature, seed=args.seed, engine=args.engine,
                                  chunk_seconds=args.chunk_seconds, overlap_seconds=args.overlap_seconds,
                                  threads=max(0, args.threads),
                                  sustain_temperature=getattr(args, "sustain_temperature", 0.0) or 0.0,
                                  attack_seconds=getattr(args, "attack_seconds", 0.05))
    except ConfigError as e:  # name the option as the user typed it: sampling.chunk_seconds -> --chunk-seconds
        text = str(e)
        if text.startswith("sampling."):
            name, _, rest = text[len("sampling."):].partition(" = ")
            text = f"--{name.replace('_', '-')} {rest}"
        raise Midi2WaveError(text) from None
    if args.prime_seconds <= 0 and args.prime is not None:
        raise Midi2WaveError(f"--prime-seconds must be > 0, got {args.prime_seconds}")
    quiet = getattr(args, "quiet", False)
    inputs = [Path(p) for p in args.inputs]
    outputs = _output_paths(inputs, args.out)
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
        if not args.force:
            taken = [p for p in ([dst] + ([dst.with_suffix(".png")] if args.plot else [])) if p.exists()]
            if taken:
                _error(f"{taken[0]}: already exists (use --force to overwrite)")
                failed += 1
                continue
        if not src.exists():
            _error(f"{src}: no such file")
            failed += 1
            continue
        todo.append((src, dst))
    if not todo:
        return 1

    model, config = load_model(args.checkpoint, device=args.device)
    sr = model.data_config.sample_rate_hz
    if args.year is not None and args.year not in C.MAESTRO_YEARS:
        print(f"midi2wave: note: --year {args.year} is not a MAESTRO year {list(C.MAESTRO_YEARS)}; "
              f"rendering as an unknown year", file=sys.stderr)
    prime = _load_prime(args.prime, sr, args.start) if args.prime is not None else None
    for src, dst in todo:
        try:
            notes, pedals = read_piece(src, model.data_config.sustain_threshold)
            t0 = time.perf_counter()
            audio = render_notes(model, config, notes, pedals, args.start, args.end, options, args.year,
                                 prime, args.prime_seconds, not quiet, label=src.name, where=str(src))
            seconds = time.perf_counter() - t0
            save_wav(dst, audio, sr, force=args.force)
            extra = ""
            if args.plot:
                from .plots import save_roll_and_spectrogram

                png = save_roll_and_spectrogram(dst.with_suffix(".png"), audio, sr, notes=notes,
                                                start_s=round(args.start * sr) / sr, title=src.name,
                                                force=args.force)
                extra = f" and {png}"
            if not quiet:
                dur = len(audio) / sr
                print(f"wrote {dst}{extra} ({dur:.2f} s of audio in {seconds:.1f} s, "
                      f"real-time factor {seconds / max(dur, 1e-9):.2f})", file=sys.stderr)
        except Midi2WaveError as e:
            _error(str(e))
            failed += 1
    return 1 if failed else 0
