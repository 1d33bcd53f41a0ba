"""Does a model follow the MIDI, and does it sound like a piano? Teacher-forced NLL, conditioning
gain, transcription F1 and realism.

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
- **Realism** (with the generations; `realism.py` defines the measures): gap noise (dB where no
  note sounds, relative to where notes sound), tonal purity (energy share near the sounding notes'
  partials) and log-mel distance to the real audio, of the generation and of the real audio (the
  ceiling), beside a render of the same notes by a second instrument (`--other-instrument`, the
  scale of the distance) and another excerpt's real audio (chance); `realism_scores`.

Excerpts (`--excerpts` of `--excerpt-seconds`) are a fixed function of the seed: pieces of the split
in a seeded order, cycled, each excerpt at a seeded whole-frame start whose window holds at least one
note onset where the piece allows. With `--midi FILE...` each file gives one excerpt starting at the
frame of its first onset; the ground truth is a FluidSynth render of the file (the demo renderer) and
there is no teacher-forced NLL (no recording to score).
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .. import plots
from . import realism, report
from ..config import Config, SamplingOptions
from ..errors import EvaluationError
from .scores import (OTHER_INSTRUMENTS, check_other_instrument, fmt_value, level_db, mask_spans, other_instrument_renders,
                               realism_label, realism_scores, realism_table, render_excerpt_notes)
from .excerpts import CONDITIONS, Excerpt, donor_indices, excerpt_batches, midi_excerpts, store_excerpts
from ..midi import Notes

logger = logging.getLogger(__name__)

__all__ = [
    "EvaluateOptions",
    "EvaluationError",
    "Excerpt",
    "ONSET_TOLERANCE_S",
    "OTHER_INSTRUMENTS",
    "conditioning_gain",
    "donor_indices",
    "evaluate_checkpoint",
    "evaluate_model",
    "excerpt_batches",
    "format_table",
    "midi_excerpts",
    "note_f1",
    "render_excerpt_notes",
    "store_excerpts",
    "teacher_forced_nll",
    "transcription_f1",
]

RESULT_FORMAT = "midi2wave-evaluation"
RESULT_VERSION = 1
ONSET_TOLERANCE_S = 0.05  # mir_eval's default onset tolerance (Onsets and Frames, MAESTRO papers)
PITCH_TOLERANCE_CENTS = 50.0
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class EvaluateOptions:
    """Every setting of an evaluation that is not the model: what to evaluate on, which
    measurements, and how to sample the generations. Validated once, here; problems are named as
    `midi2wave evaluate`'s flags (EvaluationError; ConfigError from `sampling`)."""

    # What to evaluate on: a dataset store (+ its split), or MIDI files (one excerpt each, FluidSynth
    # renders as ground truth, no teacher-forced NLL). Exactly one of the two.
    store: Path | None = None
    split: str = "test"
    midi_files: tuple[Path, ...] = ()
    n_excerpts: int = 8  # from a store (a MIDI file gives one excerpt)
    excerpt_seconds: float = 4.0
    # Generations start this long before each excerpt, from the MIDI there, and the lead-in is cut
    # off before scoring: notes struck before the excerpt ring into it as in a whole-piece render.
    lead_in_seconds: float = 2.0
    seed: int = 0  # which excerpts (the generations' seed is `sampling.seed`; the CLI's --seed sets both)
    batch_size: int = 4  # excerpts per teacher-forced batch
    # Teacher-forced NLL and conditioning gain (stores only). Off: the results' "nll" and
    # "conditioning_gain" are null; it is most of the time of a store evaluation.
    nll: bool = True
    # Free-running generation, then transcription F1 and realism of the generations
    transcription: bool = True
    onset_tolerance_s: float = ONSET_TOLERANCE_S
    other_instrument: str = "musescore"  # a name in OTHER_INSTRUMENTS, or "none"
    # How the generations are sampled; settings left None take the model's own (`Config.sampling`,
    # resolved by `evaluate_model`). chunk_seconds: 0 one stream per excerpt, else chunks as
    # `synthesize --chunk-seconds` makes them (no automatic chunking here: None is refused).
    sampling: SamplingOptions = field(default_factory=lambda: SamplingOptions(chunk_seconds=0.0))
    # Outputs besides the results: one PNG per excerpt in `plots_dir`, a listening page; both need
    # the generations. Existing files are refused unless `force`.
    plots_dir: Path | None = None
    report_options: report.ReportOptions | None = None
    force: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "midi_files", tuple(Path(p) for p in self.midi_files or ()))
        for name in ("store", "plots_dir"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        if self.store is None and not self.midi_files:
            raise EvaluationError("give --data STORE (a store made by `midi2wave prepare`) or --midi FILES")
        if self.store is not None and self.midi_files:
            raise EvaluationError("give --data or --midi, not both")
        if self.split not in SPLITS:
            raise EvaluationError(f"--split {self.split}: not one of {', '.join(SPLITS)}")
        if self.n_excerpts < 1:
            raise EvaluationError(f"--excerpts {self.n_excerpts}: must be >= 1")
        if not self.excerpt_seconds > 0:
            raise EvaluationError(f"--excerpt-seconds {self.excerpt_seconds:g}: must be > 0")
        if not 0 <= self.lead_in_seconds <= 60:
            raise EvaluationError(f"--lead-in-seconds {self.lead_in_seconds:g}: must be in [0, 60]")
        if self.batch_size < 1:
            raise EvaluationError(f"batch_size {self.batch_size}: must be >= 1")
        if not self.onset_tolerance_s > 0:
            raise EvaluationError(f"onset_tolerance_s {self.onset_tolerance_s:g}: must be > 0")
        check_other_instrument(self.other_instrument)
        if self.sampling.chunk_seconds is None:
            raise EvaluationError("--chunk-seconds: give a length (0: one stream per excerpt)")
        if not self.transcription:
            if self.plots_dir is not None:
                raise EvaluationError("--plots needs the generations: drop --no-transcription")
            if self.report_options is not None:
                raise EvaluationError("--report needs the generations: drop --no-transcription")
            if not self.nll:
                raise EvaluationError("nothing to evaluate: --no-nll and --no-transcription")



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


def _generate_excerpts(model: torch.nn.Module, config: Config, excerpts: Sequence[Excerpt],
                       sampling: SamplingOptions = SamplingOptions(chunk_seconds=0.0),
                       progress: bool = False) -> list[np.ndarray]:
    """Free-running generation (float32 [n_samples] each) from each excerpt's own MIDI and year,
    all excerpts as one batch (one stream per excerpt, starting from silence, at the excerpt or
    `Excerpt.lead_in_samples` before it: the lead-in is generated and cut off), rendered as a
    render renders a span (`render.rows.render_batch`), seeded by `sampling.seed`; `sampling`
    settings left None take the model's own (`config.sampling`).

    sampling.chunk_seconds > 0: each excerpt is cut into chunks as `midi2wave synthesize
    --chunk-seconds` does (warm-up overlap, crossfade), every chunk of every excerpt one stream of
    the batch."""
    from ..render.rows import ModelInputs, render_batch

    if not excerpts:
        return []
    options = sampling.resolve(config)  # resolved already when evaluate_model calls: unchanged
    lead = excerpts[0].lead_in_samples
    if any(e.lead_in_samples != lead for e in excerpts):
        raise ValueError("the excerpts' generation lead-ins differ in length")
    n = lead + excerpts[0].audio.shape[0]
    if lead > 0:  # generation starts `lead` samples before each excerpt, from the MIDI there
        first = excerpts[0].lead_in
        inputs = ModelInputs(
            torch.from_numpy(np.stack([e.lead_in.rolls for e in excerpts])),
            torch.from_numpy(np.stack([e.lead_in.excitation for e in excerpts])) if first.excitation is not None
            else None,
            torch.tensor([e.year for e in excerpts], dtype=torch.int64), 0, n,
            [e.lead_in.schedule for e in excerpts] if first.schedule is not None else None)
        onsets = [e.lead_in_onsets_s for e in excerpts]
    else:
        batch, = excerpt_batches(excerpts, len(excerpts), "true", targets=False)
        schedules = None
        if excerpts[0].schedule is not None:  # generation starts at the window: shift the warm-up away
            schedules = [e.schedule.shifted(-len(e.warmup_audio)) for e in excerpts]
        inputs = ModelInputs(batch["conditioning"], batch.get("excitation"), batch["year"], 0, n, schedules)
        onsets = [e.notes.onset_s for e in excerpts]
    return [audio[lead:] for audio in render_batch(model, inputs, onsets, options, progress=progress)]


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


def evaluate_model(model: torch.nn.Module, config: Config, options: EvaluateOptions, *,
                   progress: bool = False, log: Any = None) -> dict[str, Any]:
    """Every measurement of `options` on one model; returns the JSON-able results dict (see
    `format_table`).

    On a store (`options.store` + `split`): teacher-forced NLL and conditioning gain on
    `store_excerpts` (unless `options.nll` is off), and (when `options.transcription`)
    transcription F1 of free-running generations of the same excerpts; on MIDI files
    (`options.midi_files`): transcription F1 only, on `midi_excerpts` (FluidSynth renders as
    ground truth). With transcription, also the realism measures of the generation, the real audio
    and a render by `options.other_instrument` (`realism_scores`), and the optional PNGs
    (`plots_dir`: piano roll above the spectrograms of ground truth and generation) and listening
    page (`report_options`, `report.write_report`). Sampling settings left None take the model's
    own (`config.sampling`). `log`: a callable taking progress lines (or None).
    """
    say = log if log is not None else (lambda _msg: None)
    store, midi_files, force = options.store, options.midi_files, options.force
    excerpt_seconds, seed, transcription = options.excerpt_seconds, options.seed, options.transcription
    sampling = options.sampling.resolve(config)  # once, here: the model's own where the options say None
    margin = model.context_margin_frames
    t_start = time.perf_counter()
    if store is not None:
        excerpts = store_excerpts(store, options.split, config.data, margin, options.n_excerpts, excerpt_seconds, seed,
                                  lead_in_seconds=options.lead_in_seconds)
    else:
        excerpts = midi_excerpts(midi_files, config.data, margin, excerpt_seconds, render=transcription,
                                 lead_in_seconds=options.lead_in_seconds)
    donors = donor_indices(excerpts)
    timings: dict[str, float] = {"select_excerpts": time.perf_counter() - t_start}
    if options.plots_dir is not None and not force:  # refuse existing PNGs before the costly part
        for path in (options.plots_dir / _plot_name(i, e) for i, e in enumerate(excerpts)):
            if path.exists():
                raise EvaluationError(f"{path}: already exists (use --force to overwrite)")
    if options.report_options is not None:  # refuse an existing report before the costly part
        report.check_folder(options.report_options.folder, options.report_options.force)
    chunk_seconds, sustain_temperature = float(sampling.chunk_seconds), sampling.sustain_temperature
    results: dict[str, Any] = {
        "format": RESULT_FORMAT,
        "version": RESULT_VERSION,
        "settings": {
            "data": str(store) if store is not None else None,
            "split": options.split if store is not None else None,
            "midi": [str(p) for p in midi_files] if midi_files else None,
            "excerpts": len(excerpts),
            "excerpt_seconds": float(excerpt_seconds),
            "lead_in_seconds": float(options.lead_in_seconds),
            "seed": int(seed),
            "batch_size": int(options.batch_size),
            "conditioning_swapped": "frame-rate rolls, audio-rate excitation and resonator bank (if any) of "
                                    "another excerpt (another piece where possible); year and audio kept",
            "conditioning_zeroed": "frame-rate rolls and excitation all zero, no resonators; year and audio kept",
            "nll": bool(options.nll),
            "transcription": bool(transcription),
            "transcriber": "basic-pitch 0.4.0 ICASSP-2022 model (ONNX, onnxruntime CPU), default thresholds",
            "onset_tolerance_s": float(options.onset_tolerance_s),
            "pitch_tolerance_cents": PITCH_TOLERANCE_CENTS,
            "offsets": "ignored",
            "temperature": float(sampling.temperature),
            "sustain_temperature": float(sustain_temperature) or None,
            "attack_seconds": float(sampling.attack_seconds) if sustain_temperature else None,
            "sustain_innovation": float(sampling.sustain_innovation) if config.data.resonators.enabled else None,
            "release_innovation": float(sampling.release_innovation) if config.data.resonators.enabled else None,
            "partial_levels": float(sampling.partial_levels) if config.data.resonators.levels_db else None,
            "attack_lowpass_hz": float(sampling.attack_lowpass_hz) if config.data.resonators.enabled else None,
            "attack_lowpass_key_tracking": (float(sampling.attack_lowpass_key_tracking)
                                            if config.data.resonators.enabled else None),
            "attack_lowpass_velocity_tracking": (float(sampling.attack_lowpass_velocity_tracking)
                                                 if config.data.resonators.enabled else None),
            "sustain_highpass_hz": float(sampling.sustain_highpass_hz) if config.data.resonators.enabled else None,
            "sustain_limit": float(sampling.sustain_limit) if config.data.resonators.enabled else None,
            "sustain_noise_decay_db_per_s": (float(sampling.sustain_noise_decay_db_per_s)
                                             if config.data.resonators.enabled else None),
            "min_p": float(sampling.min_p),
            "room_years": list(config.data.resonators.room_years) or None,
            "chunk_seconds": chunk_seconds,
            "overlap_seconds": float(sampling.overlap_seconds) if chunk_seconds > 0 else None,
            "realism": {
                "gap_noise": "20 log10(RMS where no sustained note sounds within "
                             f"{realism.DEFAULT.release_margin_seconds:g} s after its offset / RMS elsewhere); "
                             f"median over excerpts with >= {realism.DEFAULT.min_gap_seconds:g} s of gap",
                "tonal_purity": f"energy share within +-{realism.DEFAULT.purity_cents:g} cents (>= "
                                f"+-{realism.DEFAULT.purity_min_bins:g} bins) of the sounding notes' harmonics, "
                                f"STFT {realism.DEFAULT.purity_n_fft}/{realism.DEFAULT.purity_hop}; mean",
                "log_mel_distance": f"mean |ln mel| difference, {realism.DEFAULT.n_mels} mels, STFT "
                                    f"{realism.DEFAULT.mel_n_fft}/{realism.DEFAULT.mel_hop}, equal RMS; mean",
                "other_instrument": options.other_instrument,
            },
        },
        "config": config.to_dict(),
        "excerpts": [dict(e.describe(), donor=donors[i] if len(excerpts) > 1 else None)
                     for i, e in enumerate(excerpts)],
        "nll": None,
        "conditioning_gain": None,
        "transcription": None,
        "realism": None,
        "timing_seconds": timings,
    }

    if store is not None and options.nll:
        say(f"teacher-forced NLL of {len(excerpts)} excerpts x 3 conditionings ...")
        t0 = time.perf_counter()
        gain = _gain_on_excerpts(model, excerpts, options.batch_size, donors)
        timings["teacher_forced"] = time.perf_counter() - t0
        per = gain.pop("per_excerpt")
        results["nll"] = {"bits_per_sample": gain["nll_true"], "per_excerpt": [p["nll_true"] for p in per]}
        results["conditioning_gain"] = {**gain, "per_excerpt": per}

    generated: list[np.ndarray] | None = None
    generated_notes: list[Notes] | None = None
    if transcription:
        from .transcribe import require_basic_pitch

        require_basic_pitch()  # fail before the costly generation when basic-pitch is missing
        say(f"generating {len(excerpts)} excerpts of {excerpt_seconds:g} s ...")
        t0 = time.perf_counter()
        generated = _generate_excerpts(model, config, excerpts, sampling=sampling, progress=progress)
        timings["generate"] = time.perf_counter() - t0
        timings["generated_audio_seconds"] = sum(len(g) for g in generated) / excerpts[0].sample_rate_hz
        say("transcribing with basic-pitch ...")
        t0 = time.perf_counter()
        scores, generated_notes = _transcription_scores(excerpts, generated, donors, options.onset_tolerance_s)
        timings["transcribe"] = time.perf_counter() - t0
        results["transcription"] = scores
        say("realism: gap noise, tonal purity, log-mel distance ...")
        t0 = time.perf_counter()
        other_renders = other_instrument_renders(excerpts, options.other_instrument, say)
        results["realism"] = realism_scores(excerpts, generated, donors, options.other_instrument, say, other_renders)
        timings["realism"] = time.perf_counter() - t0

    if options.plots_dir is not None:
        t0 = time.perf_counter()
        results["plots"] = _write_plots(options.plots_dir, excerpts, generated, generated_notes, force=force,
                                        realism_rows=results["realism"]["per_excerpt"] if results["realism"] else None)
        timings["plots"] = time.perf_counter() - t0
    if options.report_options is not None and generated is not None:
        t0 = time.perf_counter()
        page = report.write_report(options.report_options, results, _report_excerpts(
            excerpts, generated, donors, generated_notes,
            {options.other_instrument: other_renders[0]} if other_renders[0] is not None else None))
        results["report"] = str(page)
        timings["report"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    return results


def _report_excerpts(excerpts: Sequence[Excerpt], generated: Sequence[np.ndarray], donors: Sequence[int],
                     generated_notes: Sequence[Notes] | None,
                     other_renders: dict[str, list[np.ndarray]] | None = None) -> list[report.ReportExcerpt]:
    """The page's clips of each excerpt: its generation, its real audio (ceiling), with two or more
    excerpts the generation from its donor's MIDI (floor, as scored by transcription F1), and the
    second instrument's render of its notes (the realism scale) where there is one."""
    out = []
    for i, e in enumerate(excerpts):
        clips = {"generated": generated[i], "real": e.audio}
        if len(excerpts) > 1:
            clips["floor"] = generated[donors[i]]
        for name, audio in (other_renders or {}).items():
            clips[name] = audio[i]
        out.append(report.ReportExcerpt(
            title=f"{e.source} from {e.start_s:.2f} s", identity=dict(e.describe(), donor=donors[i] if len(excerpts) > 1 else None),
            notes=e.notes, clips=clips, sample_rate_hz=e.sample_rate_hz, seconds=e.seconds,
            transcribed=generated_notes[i] if generated_notes is not None else None))
    return out


# ----------------------------------------------------------------------------------------- plots


def _plot_name(i: int, excerpt: Excerpt) -> str:
    stem = Path(excerpt.source).stem if excerpt.source.lower().endswith((".mid", ".midi")) else excerpt.source
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:60]
    return f"excerpt_{i:02d}_{safe}_{excerpt.start_s:.2f}s.png"


def _excerpt_figure(excerpt: Excerpt, generated: np.ndarray | None, generated_notes: Notes | None = None,
                    title: str | None = None, realism_row: dict[str, Any] | None = None):
    """Figure: the reference notes (bars; onsets transcribed from the generation as red dots) above the
    spectrograms of the ground truth and of the generation, on the excerpt's time axis (seconds).
    Where the excerpt knows its sounding notes, the gaps (no note within the realism release
    margin) are shaded on every panel, and a last panel shows the level (20 ms RMS, dBFS) of the
    ground truth and the generation, labelled with their realism measures (`realism_row`, one
    excerpt's entry of `realism_scores`' per_excerpt)."""
    sr = excerpt.sample_rate_hz
    panels = [("ground truth", excerpt.audio)] + ([("generated", generated)] if generated is not None else [])
    gaps = levels = None
    if excerpt.sounding is not None:
        gaps = mask_spans(realism.gap_mask(excerpt.sounding, len(excerpt.audio), sr), sr)
        row = realism_row or {}
        levels = [(realism_label(label, row.get(key)), *level_db(audio, sr))
                  for (label, audio), key in zip(panels, ("ground_truth", "generated"))]
    return plots.excerpt_figure(excerpt.notes, panels, sr, excerpt.seconds, generated_notes,
                                title or f"{excerpt.source} from {excerpt.start_s:.2f} s", offset_s=excerpt.start_s,
                                gap_spans=gaps, levels=levels,
                                gap_label=f"gap: no note within {realism.DEFAULT.release_margin_seconds:g} s "
                                          "of its offset")


def _write_plots(folder: Path, excerpts: Sequence[Excerpt], generated: Sequence[np.ndarray] | None,
                 generated_notes: Sequence[Notes] | None = None, force: bool = False,
                 realism_rows: Sequence[dict[str, Any]] | None = None) -> list[str]:
    """One PNG per excerpt in `folder` (created); existing files are refused unless `force`."""
    from ..files import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / _plot_name(i, e) for i, e in enumerate(excerpts)]
    if not force:
        for path in paths:
            if path.exists():
                raise EvaluationError(f"{path}: already exists (use --force to overwrite)")
    for i, (excerpt, path) in enumerate(zip(excerpts, paths)):
        fig = _excerpt_figure(excerpt, generated[i] if generated is not None else None,
                              generated_notes[i] if generated_notes is not None else None,
                              realism_row=realism_rows[i] if realism_rows is not None else None)
        with atomic_path(path, force=force) as tmp:
            fig.savefig(tmp, format="png")
    return [str(p) for p in paths]


# ----------------------------------------------------------------------------------------- table


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
            f"{'  true MIDI':<38}{fmt_value(gain['nll_true']):>8}{'':>9}",
            f"{'  MIDI of another excerpt':<38}{fmt_value(gain['nll_swapped']):>8}{fmt_value(gain['gain_swapped'], '+.3f'):>9}",
            f"{'  zeroed MIDI':<38}{fmt_value(gain['nll_zeroed']):>8}{fmt_value(gain['gain_zeroed'], '+.3f'):>9}",
        ]
    elif s.get("midi"):
        lines += ["", "teacher-forced NLL and conditioning gain: not computed for --midi (no recording)"]
    elif s.get("nll") is False:
        lines += ["", "teacher-forced NLL and conditioning gain: skipped (--no-nll)"]
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
                lines.append(f"{'  ' + label:<38}{fmt_value(r['precision']):>8}{fmt_value(r['recall']):>8}"
                             f"{fmt_value(r['f1']):>8}{r['n_estimated']:>8}")
        if "generated_other_midi" not in tr:
            lines.append("  (no floor: it needs at least two excerpts)")
        lines.append(f"{'  reference notes':<38}{'':>24}{tr['ground_truth']['n_reference']:>8}")
    elif results["settings"].get("transcription") is False:
        lines += ["", "transcription F1: skipped (--no-transcription)"]
    lines += realism_table(results.get("realism"))
    t = results.get("timing_seconds", {})
    if t:
        lines += ["", "time: " + ", ".join(f"{k} {v:.1f}s" for k, v in t.items() if k != "generated_audio_seconds")]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- CLI


def _write_json(path: Path, results: dict[str, Any], force: bool) -> None:
    from ..files import atomic_path

    if not path.parent.is_dir():
        raise EvaluationError(f"{path}: folder {path.parent} does not exist")
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(json.dumps(results, indent=2, sort_keys=False, allow_nan=True) + "\n")


def evaluate_checkpoint(checkpoint: str | os.PathLike | None, options: EvaluateOptions, *,
                        json_path: str | os.PathLike | None = None, device: str | None = None,
                        quiet: bool = False) -> int:
    """`midi2wave evaluate`: load the checkpoint (None: the bundled model) on `device` (None: cuda
    if available), evaluate, print the table, write `json_path` (refused before any work if it
    exists, unless `options.force`) and the options' plots / report. Returns the exit status."""
    from ..checkpoint import load_model
    from ..devices import check_device, default_device

    device = check_device(device) if device is not None else default_device()  # before any work
    if json_path is not None and Path(json_path).exists() and not options.force:
        raise EvaluationError(f"{json_path}: already exists (use --force to overwrite)")
    log = None if quiet else (lambda msg: logger.info("midi2wave evaluate: %s", msg))
    model, config = load_model(checkpoint, device=device)
    results = evaluate_model(model, config, options, progress=not quiet, log=log)
    results["settings"]["checkpoint"] = str(checkpoint) if checkpoint else "bundled"
    results["settings"]["device"] = str(device)
    results["environment"] = {"python": platform.python_version(), "torch": torch.__version__,
                              "numpy": np.__version__}
    print(format_table(results))
    if json_path is not None:
        _write_json(Path(json_path), results, options.force)
        if not quiet:
            logger.info("wrote %s", json_path)
    return 0
