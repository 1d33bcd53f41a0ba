"""Does a model follow the MIDI? Teacher-forced NLL, conditioning gain and transcription F1.

A WaveNet vocoder can reach a good teacher-forced loss while ignoring its conditioning (posterior
collapse: the past audio predicts the next sample well), and then free-running generation ignores
the MIDI. Two measurements expose that:

- **Conditioning gain** (teacher-forced, cheap): the NLL of the true audio with the conditioning of a
  *different* excerpt (another piece where the split has several, else another time of the same
  piece), and with *zeroed* conditioning, minus the NLL with the true conditioning, in bits/sample.
  What is swapped or zeroed is everything rendered from the MIDI — the frame-rate rolls and the
  audio-rate excitation (when the model has one); the recording year is kept. Positive gain: the
  model draws on the MIDI; about 0: it ignores it.
- **Transcription F1** (free-running, costly): excerpts generated from their MIDI, transcribed with
  basic-pitch (`transcribe.py`) and scored with mir_eval's onset note precision/recall/F1 (50 ms
  onset tolerance, 50 cents pitch tolerance, offsets ignored) against the MIDI notes whose onsets lie
  in the excerpt. Reported beside the same score of the ground-truth audio (the transcriber's
  ceiling), of the generation from *another* excerpt's MIDI scored against this excerpt's notes
  (the floor a model that ignores the MIDI would get; the other excerpt's own generation is reused,
  so the floor costs no extra generation), and of the other excerpt's ground truth (chance level of
  the transcriber on unrelated piano music). F1s are pooled over excerpts (matches, estimated and
  reference notes summed), with per-excerpt values in the JSON.

Excerpts (`--excerpts` of `--excerpt-seconds`) are a fixed function of the seed: pieces of the split
in a seeded order, cycled, each excerpt at a seeded whole-frame start whose window holds at least one
note onset where the piece allows. With `--midi FILE...` each file gives one excerpt starting at the
frame of its first onset; the ground truth is a FluidSynth render of the file (the demo renderer) and
there is no teacher-forced NLL (no recording to score).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from . import constants as C
from .config import Config, DataConfig
from .errors import Midi2WaveError
from .data.dataset import load_store_notes
from .midi import Notes, apply_sustain, excitation_signal, frame_rolls

__all__ = [
    "EvaluationError",
    "Excerpt",
    "ONSET_TOLERANCE_S",
    "conditioning_gain",
    "donor_indices",
    "evaluate_from_cli",
    "evaluate_model",
    "excerpt_batches",
    "format_table",
    "midi_excerpts",
    "note_f1",
    "store_excerpts",
    "teacher_forced_nll",
    "transcription_f1",
]

RESULT_FORMAT = "midi2wave-evaluation"
RESULT_VERSION = 1
ONSET_TOLERANCE_S = 0.05  # mir_eval's default onset tolerance (Onsets and Frames, MAESTRO papers)
PITCH_TOLERANCE_CENTS = 50.0
_ONSET_TRIES = 32  # start draws per excerpt looking for a window with a note onset
CONDITIONS = ("true", "swapped", "zeroed")


class EvaluationError(Midi2WaveError):
    """Evaluation cannot run (no data, bad options, outputs that exist)."""


# ------------------------------------------------------------------------------------ excerpts


@dataclass
class Excerpt:
    """One scored window: ground-truth audio, the model inputs rendered from its MIDI, and the
    reference notes (onsets inside the window, times relative to its start, offsets clipped to it)."""

    source: str  # piece id, or MIDI path
    start_frame: int
    n_frames: int
    audio: np.ndarray  # float32 [n_frames * samples_per_frame] ground truth (or FluidSynth render)
    conditioning: np.ndarray  # float32 [C, n_frames + 2 * margin_frames]
    year: int  # year index
    notes: Notes
    excitation: np.ndarray | None = None  # float32 [n_samples] when the config has an excitation
    # Models with the resonator bank: the oscillators of the window, times relative to
    # `warmup_audio`'s first sample (the analysis warm-up just before the window), and that audio.
    schedule: Any = None
    warmup_audio: np.ndarray | None = None
    samples_per_frame: int = C.SAMPLES_PER_FRAME
    frame_rate_hz: int = C.FRAME_RATE_HZ
    extra: dict = field(default_factory=dict)

    @property
    def start_s(self) -> float:
        return self.start_frame / self.frame_rate_hz

    @property
    def seconds(self) -> float:
        return self.n_frames / self.frame_rate_hz

    @property
    def sample_rate_hz(self) -> int:
        return self.samples_per_frame * self.frame_rate_hz

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "start_s": round(self.start_s, 6), "seconds": self.seconds,
                "start_frame": self.start_frame, "n_frames": self.n_frames, "year_index": self.year,
                "reference_notes": len(self.notes), **self.extra}


def _reference_notes(notes: Notes, start_s: float, end_s: float) -> Notes:
    """Notes with onsets in [start_s, end_s), shifted to the window, offsets clipped to its end."""
    inside = notes.take((notes.onset_s >= start_s) & (notes.onset_s < end_s))
    onset = inside.onset_s - start_s
    offset = np.maximum(np.minimum(inside.offset_s, end_s) - start_s, onset + 1e-3)
    return Notes(onset, offset, inside.pitch, inside.velocity)


def _has_onset(notes: Notes, start_s: float, end_s: float) -> bool:
    return bool(np.any((notes.onset_s >= start_s) & (notes.onset_s < end_s)))


def _excerpt_config(data_config: DataConfig, excerpt_seconds: float) -> DataConfig:
    import dataclasses

    if not excerpt_seconds > 0:
        raise EvaluationError(f"--excerpt-seconds = {excerpt_seconds}: must be > 0")
    return dataclasses.replace(data_config, segment_seconds=float(excerpt_seconds))


def store_excerpts(store: str | os.PathLike, split: str, data_config: DataConfig, margin_frames: int,
                   n_excerpts: int = 8, excerpt_seconds: float = 4.0, seed: int = 0) -> list[Excerpt]:
    """A fixed, seeded set of `n_excerpts` distinct windows of `excerpt_seconds` from one split.

    Pieces are taken in a seeded order and cycled (so excerpts spread over pieces); each excerpt's
    start is a seeded whole frame such that the window lies inside the audio and, where the piece
    allows within a few draws, holds at least one note onset. Raises InputError for a missing store
    or an empty split, EvaluationError when the split has fewer distinct windows than asked for.
    """
    from .data.dataset import SegmentDataset

    cfg = _excerpt_config(data_config, excerpt_seconds)
    dataset = SegmentDataset(store, split, cfg, margin_frames=margin_frames, seed=seed)
    rng = np.random.default_rng([seed, 0x6576616C])  # "eval"
    order = rng.permutation(len(dataset.pieces))
    max_start = [int(m) for m in dataset._max_start_frame]
    capacity = sum(m + 1 for m in max_start)
    if n_excerpts > capacity:
        raise EvaluationError(f"{store}: split {split!r} has only {capacity} distinct windows of "
                              f"{cfg.segment_frames / cfg.frame_rate_hz:g} s, asked for {n_excerpts}")
    notes_cache: dict[int, Notes] = {}
    taken: set[tuple[int, int]] = set()
    excerpts: list[Excerpt] = []
    k = 0
    while len(excerpts) < n_excerpts:
        piece = int(order[k % len(order)])
        k += 1
        if piece not in notes_cache:
            notes_cache[piece] = _store_notes(Path(store), dataset.pieces[piece])
        notes = notes_cache[piece]
        free = [s for s in range(max_start[piece] + 1) if (piece, s) not in taken] \
            if max_start[piece] < 4 * _ONSET_TRIES else None
        if free is not None and not free:
            continue
        start = None
        for _ in range(_ONSET_TRIES):
            s = int(rng.choice(free)) if free is not None else int(rng.integers(0, max_start[piece] + 1))
            if (piece, s) in taken:
                continue
            if start is None:
                start = s  # fallback when no window with an onset turns up
            if _has_onset(notes, s / cfg.frame_rate_hz, (s + cfg.segment_frames) / cfg.frame_rate_hz):
                start = s
                break
        if start is None:
            continue
        taken.add((piece, start))
        item = dataset.example(piece, start)
        start_s = start / cfg.frame_rate_hz
        schedule, warmup = _bank_window(cfg, dataset._notes(piece)[0], dataset._audio(piece), start, 1.0 / C.PCM_SCALE)
        excerpts.append(Excerpt(
            source=str(dataset.pieces[piece]["id"]), start_frame=start, n_frames=cfg.segment_frames,
            audio=item["audio"].numpy(), conditioning=item["conditioning"].numpy(), year=int(item["year"]),
            notes=_reference_notes(notes, start_s, start_s + cfg.segment_frames / cfg.frame_rate_hz),
            excitation=item["excitation"].numpy() if "excitation" in item else None,
            samples_per_frame=cfg.samples_per_frame, frame_rate_hz=cfg.frame_rate_hz,
            schedule=schedule, warmup_audio=warmup, extra={"piece_index": piece}))
    return excerpts


def _bank_window(cfg: DataConfig, sustained: Notes, audio: Any, start_frame: int, scale: float):
    """(schedule, warm-up audio) of a window for models with the resonator bank, else (None, None).
    `audio`: the whole piece (any array sliceable by sample), times `scale` gives [-1, 1)."""
    from . import resonators

    bank = resonators.from_data_config(cfg)
    if bank is None:
        return None, None
    w = bank.warmup_samples(cfg.sample_rate_hz)
    s0 = start_frame * cfg.samples_per_frame
    warmup = resonators.warmup_window(audio, s0, 0, w, scale).astype(np.float32)
    return resonators.schedule(sustained, s0 - w, w + cfg.segment_samples, cfg.sample_rate_hz, bank), warmup


def _store_notes(store: Path, record: dict) -> Notes:
    notes, _ = load_store_notes(store / record["notes"])
    return notes


def midi_excerpts(paths: Sequence[str | os.PathLike], data_config: DataConfig, margin_frames: int,
                  excerpt_seconds: float = 4.0, render: bool = True, year: int = C.UNKNOWN_YEAR_INDEX
                  ) -> list[Excerpt]:
    """One excerpt per MIDI file: `excerpt_seconds` from the frame of its first onset (past the end
    of a shorter file the rolls are zero and the audio silent, so all excerpts have one length).
    The ground-truth audio is a FluidSynth render of the whole file, sliced to the window
    (`render=False`: silence). Raises MidiError for unreadable files."""
    from .midi import read_midi

    cfg = _excerpt_config(data_config, excerpt_seconds)
    spf, fr = cfg.samples_per_frame, cfg.frame_rate_hz
    excerpts = []
    for path in paths:
        raw, pedals = read_midi(path)
        sustained = apply_sustain(raw, pedals, cfg.sustain_threshold)
        start = int(math.floor(float(raw.onset_s.min()) * fr + 1e-6))
        n_frames = cfg.segment_frames
        n = n_frames * spf
        if render:
            full = _render_midi_file(path, cfg.sample_rate_hz)
            audio = np.zeros(n, np.float32)
            piece = full[start * spf: start * spf + n]
            audio[: len(piece)] = piece
        else:
            audio = np.zeros(n, np.float32)
        conditioning = frame_rolls(sustained, pedals, cfg.conditioning, start - margin_frames,
                                   n_frames + 2 * margin_frames, fr)
        excitation = (excitation_signal(sustained, start * spf, n, cfg.sample_rate_hz, cfg.excitation_partials)
                      if cfg.excitation_partials > 0 else None)
        start_s = start / fr
        schedule, warmup = _bank_window(cfg, sustained, full if render else np.zeros(start * spf, np.float32),
                                        start, 1.0)
        excerpts.append(Excerpt(
            source=str(path), start_frame=start, n_frames=n_frames, audio=audio, conditioning=conditioning,
            year=int(year), notes=_reference_notes(raw, start_s, start_s + n_frames / fr), excitation=excitation,
            samples_per_frame=spf, frame_rate_hz=fr, schedule=schedule, warmup_audio=warmup))
    return excerpts


_RENDERER: Any = None


def _render_midi_file(path: str | os.PathLike, sample_rate_hz: int) -> np.ndarray:
    """float32 mono render of a MIDI file at `sample_rate_hz` by the demo data's FluidSynth piano
    (`data.demo.PianoRenderer`, no room: dry, at the demo's fixed output gain), resampled with soxr.
    Raises demo.DemoDataError when FluidSynth or the soundfont is missing."""
    global _RENDERER
    from .audio import resample, to_mono
    from .data import demo
    from .midi import read_midi

    notes, pedals = read_midi(path)
    perf = demo.Performance(onset_s=notes.onset_s, offset_s=notes.offset_s, pitch=notes.pitch.astype(np.int64),
                            velocity=notes.velocity.astype(np.int64), cc_time_s=pedals.time_s,
                            cc_controller=pedals.controller.astype(np.int64),
                            cc_value=pedals.value.astype(np.int64), title=str(path), tail_s=1.0)
    if _RENDERER is None:
        _RENDERER = demo.PianoRenderer()
    stereo = _RENDERER.render(perf, year=None)  # int16 [n, 2] at the demo rate
    mono = to_mono(stereo.T)
    return resample(mono, demo.AUDIO_SAMPLE_RATE_HZ, sample_rate_hz)


def donor_indices(excerpts: Sequence[Excerpt]) -> list[int]:
    """For each excerpt i, another excerpt j != i whose MIDI stands in for i's: the next one in the
    list from a different source where there is one, else the next one (another time of the same
    piece). A single excerpt has no donor (returns [0], i.e. itself; callers report no gain)."""
    n = len(excerpts)
    donors = []
    for i in range(n):
        donor = (i + 1) % n
        for k in range(1, n):
            j = (i + k) % n
            if excerpts[j].source != excerpts[i].source:
                donor = j
                break
        donors.append(donor)
    return donors


# --------------------------------------------------------------------------------- teacher-forced


def excerpt_batches(excerpts: Sequence[Excerpt], batch_size: int = 4, condition: str = "true",
                    donors: Sequence[int] | None = None, targets: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Model-input batches {audio, conditioning, year[, excitation]} of the excerpts, in order.

    condition: "true" (each excerpt's own MIDI), "swapped" (the rolls and excitation of excerpt
    `donors[i]`, which must have the same length), or "zeroed" (rolls and excitation all zero).
    The audio and the year are always the excerpt's own. For models with the resonator bank the
    batch also has `target`, the innovation under that condition's notes (unless `targets` is False).
    """
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
    if condition == "swapped":
        if donors is None:
            donors = donor_indices(excerpts)
        if len(donors) != len(excerpts):
            raise ValueError("donors must give one index per excerpt")
    for lo in range(0, len(excerpts), batch_size):
        chunk = list(range(lo, min(lo + batch_size, len(excerpts))))
        audio = torch.from_numpy(np.stack([excerpts[i].audio for i in chunk]).astype(np.float32))
        if condition == "swapped":
            sources = [excerpts[donors[i]] for i in chunk]
        else:
            sources = [excerpts[i] for i in chunk]
        conditioning = torch.from_numpy(np.stack([s.conditioning for s in sources]).astype(np.float32))
        has_excitation = excerpts[chunk[0]].excitation is not None
        excitation = (torch.from_numpy(np.stack([s.excitation for s in sources]).astype(np.float32))
                      if has_excitation else None)
        if condition == "zeroed":
            conditioning = torch.zeros_like(conditioning)
            excitation = torch.zeros_like(excitation) if excitation is not None else None
        batch = {"audio": audio, "conditioning": conditioning,
                 "year": torch.tensor([excerpts[i].year for i in chunk], dtype=torch.int64)}
        if excitation is not None:
            batch["excitation"] = excitation
        if targets and excerpts[chunk[0]].schedule is not None:
            pairs = [_innovation(excerpts[i], sources[k].schedule if condition != "zeroed" else None)
                     for k, i in enumerate(chunk)]
            batch["target"] = torch.from_numpy(np.stack([u for u, _ in pairs]))
            if excerpts[chunk[0]].schedule.gain_floor is not None:
                batch["log2_gain"] = torch.tensor([lg for _, lg in pairs], dtype=torch.float64)
        yield batch


def _innovation(excerpt: Excerpt, schedule: Any) -> tuple[np.ndarray, float]:
    """The excerpt's teacher-forced target under `schedule` (None: no oscillators, the excerpt's own
    gain floor), float32 [n], and the mean log2 of the innovation gain over the window (0 without a
    gain): the target is innovation / gain, so bits of the innovation = bits of the target + that."""
    from . import resonators

    w = len(excerpt.warmup_audio)
    x = np.concatenate([excerpt.warmup_audio, excerpt.audio]).astype(np.float64)
    if schedule is None:
        schedule = resonators.Schedule.empty(excerpt.schedule.gain_floor)
    u, _ = resonators.analyze(x, schedule)
    log2_gain = 0.0
    if schedule.gain_floor is not None:
        log2_gain = float(np.mean(np.log2(resonators.gain_track(schedule, len(x))[w:])))
    return np.clip(u[w:], -1.0, 1.0 - 1.0 / C.PCM_SCALE).astype(np.float32), log2_gain


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@torch.no_grad()
def _bits_per_example(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]]
                      ) -> tuple[list[float], list[int]]:
    """Per-example mean NLL in bits/sample and sample counts, over all batches (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    device = _model_device(model)
    bits, counts = [], []
    try:
        for batch in batches:
            audio = batch["audio"].to(device)
            # with the resonator bank the model's distribution is over the innovation
            target = batch["target"].to(device) if batch.get("target") is not None else audio
            params = model(target if model.data_config.network_reads_innovation else audio, batch["conditioning"].to(device),
                           batch["year"].to(device) if batch.get("year") is not None else None,
                           batch["excitation"].to(device) if batch.get("excitation") is not None else None)
            nats = -model.log_prob(params, target).double()  # [B, T]
            per = nats.mean(dim=1) / math.log(2.0)
            if batch.get("log2_gain") is not None:  # bits of the innovation g * u, not of u
                per = per + batch["log2_gain"].to(per.device)
            bits.extend(per.tolist())
            counts.extend([audio.shape[1]] * audio.shape[0])
    finally:
        model.train(was_training)
    return bits, counts


def teacher_forced_nll(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> float:
    """Teacher-forced negative log-likelihood in bits per sample over all samples of all batches.

    Each batch is a dict of `audio` [B, T], `conditioning` [B, C, T/spf + 2*margin], `year` [B] and
    optionally `excitation` [B, T] (as `SegmentDataset` or `excerpt_batches` give). Runs in eval mode
    under torch.no_grad on the model's device. For one batch this equals
    `model.bits_per_sample(model(audio, conditioning, year, excitation), audio)`.
    """
    bits, counts = _bits_per_example(model, batches)
    if not counts:
        raise ValueError("no batches to score")
    return float(np.dot(bits, counts) / np.sum(counts))


def _gain_on_excerpts(model: torch.nn.Module, excerpts: Sequence[Excerpt], batch_size: int,
                      donors: Sequence[int] | None = None) -> dict[str, Any]:
    donors = list(donor_indices(excerpts) if donors is None else donors)
    per: dict[str, list[float]] = {}
    for condition in CONDITIONS:
        if condition == "swapped" and len(excerpts) < 2:
            continue
        per[condition], _ = _bits_per_example(model, excerpt_batches(excerpts, batch_size, condition, donors))
    result: dict[str, Any] = {
        "nll_true": float(np.mean(per["true"])),
        "nll_swapped": float(np.mean(per["swapped"])) if "swapped" in per else None,
        "nll_zeroed": float(np.mean(per["zeroed"])),
    }
    result["gain_swapped"] = (result["nll_swapped"] - result["nll_true"]) if "swapped" in per else None
    result["gain_zeroed"] = result["nll_zeroed"] - result["nll_true"]
    result["per_excerpt"] = [
        {"nll_true": per["true"][i],
         "nll_swapped": per["swapped"][i] if "swapped" in per else None,
         "nll_zeroed": per["zeroed"][i],
         "donor": donors[i] if "swapped" in per else None}
        for i in range(len(excerpts))
    ]
    return result


def conditioning_gain(model: torch.nn.Module, config: Config, store: str | os.PathLike | None = None,
                      split: str = "test", n_excerpts: int = 8, excerpt_seconds: float = 4.0, seed: int = 0,
                      batch_size: int = 4, excerpts: Sequence[Excerpt] | None = None) -> dict[str, Any]:
    """How much the model's teacher-forced NLL depends on the MIDI, in bits/sample.

    Returns {nll_true, nll_swapped, nll_zeroed, gain_swapped = nll_swapped - nll_true,
    gain_zeroed = nll_zeroed - nll_true, per_excerpt: [...]}: "swapped" uses the rolls and
    excitation of another excerpt (`donor_indices`), "zeroed" all-zero rolls and excitation; the
    year and the audio stay the excerpt's own. Positive gains: the model draws on the MIDI. The
    excerpts are `store_excerpts(store, split, config.data, ...)` unless given. With one excerpt
    there is no swap (nll_swapped and gain_swapped are None).
    """
    if excerpts is None:
        if store is None:
            raise EvaluationError("conditioning_gain needs a store or excerpts")
        excerpts = store_excerpts(store, split, config.data, model.context_margin_frames, n_excerpts,
                                  excerpt_seconds, seed)
    return _gain_on_excerpts(model, excerpts, batch_size)


# ---------------------------------------------------------------------------------- note scores


def _intervals(notes: Notes) -> np.ndarray:
    onset = np.maximum(notes.onset_s, 0.0)
    return np.stack([onset, np.maximum(notes.offset_s, onset + 1e-3)], axis=1) if len(notes) else np.zeros((0, 2))


def note_f1(reference: Notes, estimate: Notes, onset_tolerance: float = ONSET_TOLERANCE_S) -> dict[str, Any]:
    """mir_eval onset note scores (offsets ignored, pitch within 50 cents, onsets within
    `onset_tolerance` s; each note matched at most once): {precision, recall, f1, n_reference,
    n_estimated, n_matched}. Precision (recall) is 0 when there are no estimated (reference) notes,
    as in mir_eval."""
    import mir_eval

    n_ref, n_est = len(reference), len(estimate)
    matched = 0
    if n_ref and n_est:
        matching = mir_eval.transcription.match_notes(
            _intervals(reference), mir_eval.util.midi_to_hz(reference.pitch.astype(np.float64)),
            _intervals(estimate), mir_eval.util.midi_to_hz(estimate.pitch.astype(np.float64)),
            onset_tolerance=onset_tolerance, pitch_tolerance=PITCH_TOLERANCE_CENTS, offset_ratio=None)
        matched = len(matching)
    return _scores(matched, n_ref, n_est)


def _scores(matched: int, n_ref: int, n_est: int) -> dict[str, Any]:
    precision = matched / n_est if n_est else 0.0
    recall = matched / n_ref if n_ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "n_reference": int(n_ref),
            "n_estimated": int(n_est), "n_matched": int(matched)}


def pooled_scores(scores: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Micro-average of `note_f1` results: matches, reference and estimated notes summed; also the
    mean of the per-excerpt F1s (`mean_f1`)."""
    out = _scores(sum(s["n_matched"] for s in scores), sum(s["n_reference"] for s in scores),
                  sum(s["n_estimated"] for s in scores))
    out["mean_f1"] = float(np.mean([s["f1"] for s in scores])) if scores else None
    out["excerpts"] = len(scores)
    return out


def transcription_f1(reference_notes: Notes, audio: np.ndarray, sample_rate: int,
                     onset_tolerance: float = ONSET_TOLERANCE_S) -> dict[str, Any]:
    """Transcribe `audio` (mono float [n]) with basic-pitch and score it against `reference_notes`
    (times relative to the audio's start) with `note_f1`. Raises transcribe.TranscriptionUnavailable
    when basic-pitch is not installed."""
    from .transcribe import transcribe

    return note_f1(reference_notes, transcribe(np.asarray(audio, np.float32), int(sample_rate)), onset_tolerance)


# ------------------------------------------------------------------------------------ generation


def _chunk_rows(model: torch.nn.Module, batch: dict[str, torch.Tensor], schedules: list | None, starts: list[int],
                length: int) -> tuple[dict[str, torch.Tensor], list | None]:
    """The inputs of every chunk of every excerpt as rows (excerpt-major): rolls sliced with the
    context margins (zero beyond the excerpt's rolls), excitation sliced, schedules shifted."""
    spf, margin = model.samples_per_frame, model.context_margin_frames
    n_frames = length // spf
    rolls = batch["conditioning"]
    B, Cc, F = rolls.shape
    padded = torch.nn.functional.pad(rolls, (0, max(0, (starts[-1] + length) // spf + 2 * margin - F)))
    rows: dict[str, list] = {"conditioning": [], "year": [], "excitation": []}
    out_sched = [] if schedules is not None else None
    for b in range(B):
        for s in starts:
            f = s // spf
            rows["conditioning"].append(padded[b, :, f:f + n_frames + 2 * margin])
            rows["year"].append(batch["year"][b])
            if "excitation" in batch:
                exc = batch["excitation"][b, s:s + length]
                rows["excitation"].append(torch.nn.functional.pad(exc, (0, length - exc.shape[0])))
            if schedules is not None:
                out_sched.append(schedules[b].shifted(-s))
    out = {"conditioning": torch.stack(rows["conditioning"]), "year": torch.stack(rows["year"])}
    if rows["excitation"]:
        out["excitation"] = torch.stack(rows["excitation"])
    return out, out_sched


def _generate_excerpts(model: torch.nn.Module, config: Config, excerpts: Sequence[Excerpt],
                       temperature: float = 1.0, seed: int = 0, engine: str = "auto",
                       progress: bool = False, chunk_seconds: float = 0.0,
                       overlap_seconds: float = 0.5, sustain_temperature: float = 0.0,
                       attack_seconds: float = 0.05) -> list[np.ndarray]:
    """Free-running generation (float32 [n_samples] each) from each excerpt's own MIDI and year,
    all excerpts as one batch (one stream per excerpt, starting from silence), seeded.

    chunk_seconds > 0: each excerpt is cut into chunks as `midi2wave synthesize --chunk-seconds`
    does (warm-up overlap, crossfade), every chunk of every excerpt one stream of the batch."""
    from .generate import generate
    from .chunks import ChunkPlan

    if not excerpts:
        return []
    device = _model_device(model)
    batch, = excerpt_batches(excerpts, len(excerpts), "true", targets=False)
    n = excerpts[0].audio.shape[0]
    schedules = None
    if excerpts[0].schedule is not None:  # generation starts at the window: shift the warm-up away
        schedules = [e.schedule.shifted(-len(e.warmup_audio)) for e in excerpts]
    plan = ChunkPlan.make(n, chunk_seconds, overlap_seconds, config.data.sample_rate_hz, model.samples_per_frame)
    starts, length = list(plan.starts), plan.length
    if chunk_seconds > 0:
        batch, schedules = _chunk_rows(model, batch, schedules, starts, length)
    from .config import SamplingOptions
    from .synthesize import temperature_track

    options = SamplingOptions(temperature=temperature, sustain_temperature=sustain_temperature,
                              attack_seconds=attack_seconds)
    tracks = [temperature_track(e.notes.onset_s, s, length, e.sample_rate_hz, options)
              for e in excerpts for s in starts]
    temperatures: Any = torch.from_numpy(np.stack(tracks)) if tracks[0] is not None else temperature
    bar = None
    callback = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=length, unit="sample", unit_scale=True, desc=f"generate {batch['year'].shape[0]} x",
                   leave=False, file=sys.stderr)

        def callback(done: int, total: int) -> None:
            bar.update(done - bar.n)
    try:
        audio = generate(model, length, conditioning=batch["conditioning"].to(device), year=batch["year"].to(device),
                         excitation=batch["excitation"].to(device) if "excitation" in batch else None,
                         seed=seed, temperature=temperatures, engine=engine, progress=callback,
                         resonators=schedules)
    finally:
        if bar is not None:
            bar.close()
    audio = audio.float().cpu().numpy()
    K = plan.rows
    return [plan.join(audio[i * K:(i + 1) * K]) for i in range(len(excerpts))]


# ------------------------------------------------------------------------------------ evaluation


def _transcribe_all(items: Sequence[np.ndarray], sample_rate_hz: int) -> list[Notes]:
    from .transcribe import transcribe

    return [transcribe(np.asarray(a, np.float32), sample_rate_hz) for a in items]


def _transcription_scores(excerpts: Sequence[Excerpt], generated: Sequence[np.ndarray], donors: Sequence[int],
                          onset_tolerance: float) -> tuple[dict[str, Any], list[Notes]]:
    """Scores of the ground truth, the generation, and their shuffled-MIDI counterparts; and the
    notes transcribed from the generations."""
    sr = excerpts[0].sample_rate_hz
    t0 = time.perf_counter()
    truth_notes = _transcribe_all([e.audio for e in excerpts], sr)
    generated_notes = _transcribe_all(generated, sr)
    seconds = time.perf_counter() - t0
    kinds: dict[str, list[dict[str, Any]]] = {"ground_truth": [], "generated": []}
    shuffled = len(excerpts) >= 2
    if shuffled:
        kinds["generated_other_midi"] = []
        kinds["ground_truth_other_midi"] = []
    for i, e in enumerate(excerpts):
        kinds["ground_truth"].append(note_f1(e.notes, truth_notes[i], onset_tolerance))
        kinds["generated"].append(note_f1(e.notes, generated_notes[i], onset_tolerance))
        if shuffled:
            j = donors[i]
            kinds["generated_other_midi"].append(note_f1(e.notes, generated_notes[j], onset_tolerance))
            kinds["ground_truth_other_midi"].append(note_f1(e.notes, truth_notes[j], onset_tolerance))
    result: dict[str, Any] = {name: pooled_scores(scores) for name, scores in kinds.items()}
    result["per_excerpt"] = [{name: kinds[name][i] for name in kinds} for i in range(len(excerpts))]
    result["transcribe_seconds"] = seconds
    result["transcribed_audio_seconds"] = 2 * sum(len(a) for a in generated) / sr
    return result, generated_notes


def evaluate_model(model: torch.nn.Module, config: Config, *, store: str | os.PathLike | None = None,
                   split: str = "test", midi_files: Sequence[str | os.PathLike] | None = None,
                   n_excerpts: int = 8, excerpt_seconds: float = 4.0, seed: int = 0, batch_size: int = 4,
                   transcription: bool = True, temperature: float = 1.0,
                   onset_tolerance: float = ONSET_TOLERANCE_S, plots_dir: str | os.PathLike | None = None,
                   force: bool = False, progress: bool = False, log: Any = None, chunk_seconds: float = 0.0,
                   overlap_seconds: float = 0.5, sustain_temperature: float = 0.0,
                   attack_seconds: float = 0.05) -> dict[str, Any]:
    """Every measurement on one model; returns the JSON-able results dict (see `format_table`).

    Either `store` (+ `split`): teacher-forced NLL and conditioning gain on `store_excerpts`, and
    (when `transcription`) transcription F1 of free-running generations of the same excerpts; or
    `midi_files`: transcription F1 only, on `midi_excerpts` (FluidSynth renders as ground truth).
    `plots_dir`: one PNG per excerpt (piano roll above the spectrograms of ground truth and
    generation; with transcription only). `log`: a callable taking progress lines (or None).
    """
    say = log if log is not None else (lambda _msg: None)
    if (store is None) == (midi_files is None or len(midi_files) == 0):
        raise EvaluationError("give a dataset store (--data) or MIDI files (--midi), not both or neither")
    margin = model.context_margin_frames
    t_start = time.perf_counter()
    if store is not None:
        excerpts = store_excerpts(store, split, config.data, margin, n_excerpts, excerpt_seconds, seed)
    else:
        excerpts = midi_excerpts(midi_files, config.data, margin, excerpt_seconds, render=transcription)
    donors = donor_indices(excerpts)
    timings: dict[str, float] = {"select_excerpts": time.perf_counter() - t_start}
    plot_paths = None
    if plots_dir is not None:  # refuse existing PNGs before the costly part
        plot_paths = [Path(plots_dir) / _plot_name(i, e) for i, e in enumerate(excerpts)]
        if not force:
            for path in plot_paths:
                if path.exists():
                    raise EvaluationError(f"{path}: already exists (use --force to overwrite)")
    results: dict[str, Any] = {
        "format": RESULT_FORMAT,
        "version": RESULT_VERSION,
        "settings": {
            "data": str(store) if store is not None else None,
            "split": split if store is not None else None,
            "midi": [str(p) for p in midi_files] if midi_files else None,
            "excerpts": len(excerpts),
            "excerpt_seconds": float(excerpt_seconds),
            "seed": int(seed),
            "batch_size": int(batch_size),
            "conditioning_swapped": "frame-rate rolls, audio-rate excitation and resonator bank (if any) of "
                                    "another excerpt (another piece where possible); year and audio kept",
            "conditioning_zeroed": "frame-rate rolls and excitation all zero, no resonators; year and audio kept",
            "transcription": bool(transcription),
            "transcriber": "basic-pitch 0.4.0 ICASSP-2022 model (ONNX, onnxruntime CPU), default thresholds",
            "onset_tolerance_s": float(onset_tolerance),
            "pitch_tolerance_cents": PITCH_TOLERANCE_CENTS,
            "offsets": "ignored",
            "temperature": float(temperature),
            "sustain_temperature": float(sustain_temperature) or None,
            "attack_seconds": float(attack_seconds) if sustain_temperature else None,
            "chunk_seconds": float(chunk_seconds),
            "overlap_seconds": float(overlap_seconds) if chunk_seconds > 0 else None,
        },
        "config": config.to_dict(),
        "excerpts": [dict(e.describe(), donor=donors[i] if len(excerpts) > 1 else None)
                     for i, e in enumerate(excerpts)],
        "nll": None,
        "conditioning_gain": None,
        "transcription": None,
        "timing_seconds": timings,
    }

    if store is not None:
        say(f"teacher-forced NLL of {len(excerpts)} excerpts x 3 conditionings ...")
        t0 = time.perf_counter()
        gain = _gain_on_excerpts(model, excerpts, batch_size, donors)
        timings["teacher_forced"] = time.perf_counter() - t0
        per = gain.pop("per_excerpt")
        results["nll"] = {"bits_per_sample": gain["nll_true"], "per_excerpt": [p["nll_true"] for p in per]}
        results["conditioning_gain"] = {**gain, "per_excerpt": per}

    if not temperature > 0:
        raise EvaluationError(f"temperature must be > 0, got {temperature}")
    if chunk_seconds < 0 or overlap_seconds < 0 or (chunk_seconds > 0 and overlap_seconds >= chunk_seconds):
        raise EvaluationError(f"need chunk_seconds >= 0 and 0 <= overlap_seconds < chunk_seconds, got "
                              f"{chunk_seconds:g} and {overlap_seconds:g}")
    generated: list[np.ndarray] | None = None
    generated_notes: list[Notes] | None = None
    if transcription:
        from .transcribe import _modules

        _modules()  # fail before the costly generation when basic-pitch is missing
        say(f"generating {len(excerpts)} excerpts of {excerpt_seconds:g} s ...")
        t0 = time.perf_counter()
        generated = _generate_excerpts(model, config, excerpts, temperature=temperature, seed=seed,
                                       progress=progress, chunk_seconds=chunk_seconds,
                                       overlap_seconds=overlap_seconds, sustain_temperature=sustain_temperature,
                                       attack_seconds=attack_seconds)
        timings["generate"] = time.perf_counter() - t0
        timings["generated_audio_seconds"] = sum(len(g) for g in generated) / excerpts[0].sample_rate_hz
        say("transcribing with basic-pitch ...")
        t0 = time.perf_counter()
        scores, generated_notes = _transcription_scores(excerpts, generated, donors, onset_tolerance)
        timings["transcribe"] = time.perf_counter() - t0
        results["transcription"] = scores

    if plots_dir is not None:
        t0 = time.perf_counter()
        results["plots"] = _write_plots(Path(plots_dir), excerpts, generated, generated_notes, force=force)
        timings["plots"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    return results


# ----------------------------------------------------------------------------------------- plots


def _plot_name(i: int, excerpt: Excerpt) -> str:
    stem = Path(excerpt.source).stem if excerpt.source.lower().endswith((".mid", ".midi")) else excerpt.source
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:60]
    return f"excerpt_{i:02d}_{safe}_{excerpt.start_s:.2f}s.png"


def _excerpt_figure(excerpt: Excerpt, generated: np.ndarray | None, generated_notes: Notes | None = None,
                    title: str | None = None):
    """Figure: the reference notes (bars; onsets transcribed from the generation as red dots) above the
    spectrograms of the ground truth and of the generation, on the excerpt's time axis (seconds)."""
    import matplotlib.colors as mcolors
    from matplotlib.collections import PatchCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from .plots import HOP, log_spectrogram

    sr = excerpt.sample_rate_hz
    duration = excerpt.seconds
    panels = [("ground truth", excerpt.audio)] + ([("generated", generated)] if generated is not None else [])
    fig = Figure(figsize=(12, 3 + 2.6 * len(panels)), dpi=100, layout="constrained")
    axes = fig.subplots(1 + len(panels), 1, sharex=True, height_ratios=(1,) + (1.2,) * len(panels))
    ax = axes[0]
    notes = excerpt.notes
    cmap = mcolors.LinearSegmentedColormap.from_list("vel", ["#9ecae1", "#08306b"])
    rects = [Rectangle((a, p - 0.45), b - a, 0.9) for a, b, p in zip(notes.onset_s, notes.offset_s, notes.pitch)]
    ax.add_collection(PatchCollection(rects, facecolors=cmap(notes.velocity / C.MAX_MIDI_VELOCITY),
                                      edgecolors="none"))
    pitches = [int(p) for p in notes.pitch]
    if generated_notes is not None and len(generated_notes):
        ax.plot(generated_notes.onset_s, generated_notes.pitch, "o", ms=3.5, color="#d62728",
                label="onsets transcribed from the generation")
        ax.legend(loc="upper right", fontsize=8)
        pitches += [int(p) for p in generated_notes.pitch]
    lo, hi = (min(pitches) - 2, max(pitches) + 2) if pitches else (C.MIN_MIDI_PITCH, C.MAX_MIDI_PITCH)
    ax.set_ylim(lo - 0.5, hi + 0.5)
    ax.set_xlim(0, duration)
    ax.set_ylabel("MIDI pitch")
    ax.grid(True, axis="y", alpha=0.2)
    ax.set_title(title or f"{excerpt.source} from {excerpt.start_s:.2f} s")
    specs = [log_spectrogram(audio) for _, audio in panels]
    vmax = max(float(s.max()) for s in specs)
    for (label, _), spec, ax in zip(panels, specs, axes[1:]):
        image = ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 80.0, vmax=vmax,
                          extent=(0, spec.shape[1] * HOP / sr, 0, sr / 2))
        ax.set_ylabel(f"{label}\nfrequency (Hz)")
        ax.set_xlim(0, duration)
        fig.colorbar(image, ax=ax, label="dB", pad=0.01)
    axes[-1].set_xlabel(f"time in the excerpt (s); excerpt starts at {excerpt.start_s:.2f} s")
    return fig


def _write_plots(folder: Path, excerpts: Sequence[Excerpt], generated: Sequence[np.ndarray] | None,
                 generated_notes: Sequence[Notes] | None = None, force: bool = False) -> list[str]:
    """One PNG per excerpt in `folder` (created); existing files are refused unless `force`."""
    from .audio import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / _plot_name(i, e) for i, e in enumerate(excerpts)]
    if not force:
        for path in paths:
            if path.exists():
                raise EvaluationError(f"{path}: already exists (use --force to overwrite)")
    for i, (excerpt, path) in enumerate(zip(excerpts, paths)):
        fig = _excerpt_figure(excerpt, generated[i] if generated is not None else None,
                              generated_notes[i] if generated_notes is not None else None)
        with atomic_path(path, force=force) as tmp:
            fig.savefig(tmp, format="png")
    return [str(p) for p in paths]


# ----------------------------------------------------------------------------------------- table


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def format_table(results: dict[str, Any]) -> str:
    """The results as a short human-readable table."""
    s = results["settings"]
    where = f"{s['data']} ({s['split']})" if s.get("data") else f"{len(s['midi'] or [])} MIDI file(s)"
    lines = [f"{s['excerpts']} excerpts x {s['excerpt_seconds']:g} s from {where}, seed {s['seed']}"]
    gain = results.get("conditioning_gain")
    if gain is not None:
        lines += [
            "",
            f"{'teacher-forced NLL (bits/sample)':<38}{'NLL':>8}{'gain':>9}",
            f"{'  true MIDI':<38}{_fmt(gain['nll_true']):>8}{'':>9}",
            f"{'  MIDI of another excerpt':<38}{_fmt(gain['nll_swapped']):>8}{_fmt(gain['gain_swapped'], '+.3f'):>9}",
            f"{'  zeroed MIDI':<38}{_fmt(gain['nll_zeroed']):>8}{_fmt(gain['gain_zeroed'], '+.3f'):>9}",
        ]
    elif s.get("midi"):
        lines += ["", "teacher-forced NLL and conditioning gain: not computed for --midi (no recording)"]
    tr = results.get("transcription")
    if tr is not None:
        tol = s["onset_tolerance_s"] * 1000
        lines += ["", f"{f'transcription onset F1 ({tol:g} ms)':<38}{'P':>8}{'R':>8}{'F1':>8}{'notes':>8}"]
        names = [("ground_truth", "ground truth (ceiling)"), ("generated", "generated (model)"),
                 ("generated_other_midi", "generated from other MIDI (floor)"),
                 ("ground_truth_other_midi", "ground truth of other MIDI (chance)")]
        for key, label in names:
            if key in tr:
                r = tr[key]
                lines.append(f"{'  ' + label:<38}{_fmt(r['precision']):>8}{_fmt(r['recall']):>8}"
                             f"{_fmt(r['f1']):>8}{r['n_estimated']:>8}")
        if "generated_other_midi" not in tr:
            lines.append("  (no floor: it needs at least two excerpts)")
        lines.append(f"{'  reference notes':<38}{'':>24}{tr['ground_truth']['n_reference']:>8}")
    elif results["settings"].get("transcription") is False:
        lines += ["", "transcription F1: skipped (--no-transcription)"]
    t = results.get("timing_seconds", {})
    if t:
        lines += ["", "time: " + ", ".join(f"{k} {v:.1f}s" for k, v in t.items() if k != "generated_audio_seconds")]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- CLI


def _write_json(path: Path, results: dict[str, Any], force: bool) -> None:
    from .audio import atomic_path

    if not path.parent.is_dir():
        raise EvaluationError(f"{path}: folder {path.parent} does not exist")
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(json.dumps(results, indent=2, sort_keys=False, allow_nan=True) + "\n")


def evaluate_from_cli(args: Any) -> int:
    """`midi2wave evaluate`: load the checkpoint, evaluate, print the table, write --json/--plots."""
    from .checkpoint import load_model

    store = getattr(args, "data", None)
    midi = getattr(args, "midi", None) or None
    if store is None and midi is None:
        raise EvaluationError("give --data STORE (a store made by `midi2wave prepare`) or --midi FILES")
    if store is not None and midi is not None:
        raise EvaluationError("give --data or --midi, not both")
    json_path = getattr(args, "json", None)
    force = bool(getattr(args, "force", False))
    if json_path is not None and Path(json_path).exists() and not force:
        raise EvaluationError(f"{json_path}: already exists (use --force to overwrite)")
    transcription = not getattr(args, "no_transcription", False)
    plots = getattr(args, "plots", None)
    if plots is not None and not transcription:
        raise EvaluationError("--plots needs the generations: drop --no-transcription")
    device = getattr(args, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu")
    quiet = bool(getattr(args, "quiet", False))
    log = None if quiet else (lambda msg: print(f"midi2wave evaluate: {msg}", file=sys.stderr, flush=True))

    model, config = load_model(getattr(args, "checkpoint", None), device=device)
    results = evaluate_model(
        model, config, store=store, split=getattr(args, "split", "test"), midi_files=midi,
        n_excerpts=int(getattr(args, "excerpts", 8)), excerpt_seconds=float(getattr(args, "excerpt_seconds", 4.0)),
        seed=int(getattr(args, "seed", 0)), batch_size=int(getattr(args, "batch_size", 4) or 4),
        transcription=transcription, temperature=float(getattr(args, "temperature", 1.0) or 1.0),
        plots_dir=plots, force=force, progress=not quiet, log=log,
        chunk_seconds=float(getattr(args, "chunk_seconds", 0.0) or 0.0),
        overlap_seconds=float(getattr(args, "overlap_seconds", 0.5)),
        sustain_temperature=float(getattr(args, "sustain_temperature", 0.0) or 0.0),
        attack_seconds=float(getattr(args, "attack_seconds", 0.05)))
    results["settings"]["checkpoint"] = str(args.checkpoint) if getattr(args, "checkpoint", None) else "bundled"
    results["settings"]["device"] = str(device)
    results["environment"] = {"python": platform.python_version(), "torch": torch.__version__,
                              "numpy": np.__version__}
    print(format_table(results))
    if json_path is not None:
        _write_json(Path(json_path), results, force)
        if not quiet:
            print(f"wrote {json_path}", file=sys.stderr)
    return 0
