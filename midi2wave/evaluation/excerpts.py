"""Evaluation excerpts: fixed, seeded windows of a store's split (or of MIDI files) with their model
inputs (`inputs.window_inputs`), reference notes and sounding notes; model-input batches under the
true, another excerpt's ("swapped") or no ("zeroed") MIDI, with teacher-forced targets."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .. import constants as C
from . import realism
from ..conditioning import resonators
from ..config import DataConfig
from ..data.store import load_store_notes
from ..errors import EvaluationError
from ..conditioning.inputs import WindowInputs, window_inputs
from ..midi import Notes, apply_sustain

__all__ = ["CONDITIONS", "Excerpt", "donor_indices", "excerpt_batches", "excerpt_config", "innovation_target",
           "midi_excerpts", "render_midi_file", "sounding_notes", "store_excerpts"]

_ONSET_TRIES = 32  # start draws per excerpt looking for a window with a note onset
CONDITIONS = ("true", "swapped", "zeroed")

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
    # The sustained notes whose release reaches the window (onset before its end, offset + the
    # realism release margin after its start), times relative to its start, not clipped: what
    # sounds in the window, for the realism measures (gap mask, partial bands, second instrument).
    sounding: Notes | None = None
    # Generation's lead-in: the model inputs of the window that starts `lead_in_samples` before
    # the excerpt and ends with it, and the onsets (s, relative to that earlier start) of the notes
    # in it. Why: `synthesize` renders whole pieces, so a note struck before the excerpt rings into
    # it; a generation starting at the excerpt from silence would leave those notes unstruck.
    lead_in: WindowInputs | None = None
    lead_in_samples: int = 0
    lead_in_onsets_s: np.ndarray | None = None
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


def sounding_notes(sustained: Notes, start_s: float, end_s: float) -> Notes:
    """`Excerpt.sounding`: the sustained notes whose onset .. offset + release margin overlaps
    [start_s, end_s), shifted to the window (times unclipped)."""
    inside = sustained.window(start_s - realism.DEFAULT.release_margin_seconds, end_s)
    return Notes(inside.onset_s - start_s, inside.offset_s - start_s, inside.pitch, inside.velocity)


def _has_onset(notes: Notes, start_s: float, end_s: float) -> bool:
    return bool(np.any((notes.onset_s >= start_s) & (notes.onset_s < end_s)))


def _lead_in(excerpt: Excerpt, cfg: DataConfig, sustained: Notes, pedals, margin_frames: int, year: int | None,
             lead_in_seconds: float) -> Excerpt:
    """`excerpt` with its generation lead-in (`Excerpt.lead_in`) of `lead_in_seconds` (whole frames;
    before the piece's start the MIDI is silence)."""
    frames = int(round(lead_in_seconds * cfg.frame_rate_hz))
    if frames <= 0:
        return excerpt
    lead = frames * cfg.samples_per_frame
    s0 = excerpt.start_frame * cfg.samples_per_frame - lead
    excerpt.lead_in = window_inputs(cfg, sustained, pedals, s0, lead + len(excerpt.audio), margin_frames, year)
    excerpt.lead_in_samples = lead
    inside = (sustained.onset_s * cfg.sample_rate_hz >= s0) & (
        sustained.onset_s * cfg.sample_rate_hz < s0 + lead + len(excerpt.audio))
    excerpt.lead_in_onsets_s = sustained.onset_s[inside] - s0 / cfg.sample_rate_hz
    return excerpt


def excerpt_config(data_config: DataConfig, excerpt_seconds: float) -> DataConfig:
    import dataclasses

    if not excerpt_seconds > 0:
        raise EvaluationError(f"--excerpt-seconds = {excerpt_seconds}: must be > 0")
    return dataclasses.replace(data_config, segment_seconds=float(excerpt_seconds))


def store_excerpts(store: str | os.PathLike, split: str, data_config: DataConfig, margin_frames: int,
                   n_excerpts: int = 8, excerpt_seconds: float = 4.0, seed: int = 0,
                   lead_in_seconds: float = 0.0) -> list[Excerpt]:
    """A fixed, seeded set of `n_excerpts` distinct windows of `excerpt_seconds` from one split
    (with a generation lead-in of `lead_in_seconds`, `Excerpt.lead_in`, when > 0).

    Pieces are taken in a seeded order and cycled (so excerpts spread over pieces); each excerpt's
    start is a seeded whole frame such that the window lies inside the audio and, where the piece
    allows within a few draws, holds at least one note onset. Raises InputError for a missing store
    or an empty split, EvaluationError when the split has fewer distinct windows than asked for.
    """
    from ..data.dataset import SegmentDataset

    cfg = excerpt_config(data_config, excerpt_seconds)
    dataset = SegmentDataset(store, split, cfg, margin_frames=margin_frames, seed=seed)
    rng = np.random.default_rng([seed, 0x6576616C])  # "eval"
    order = rng.permutation(len(dataset.pieces))
    max_start = [int(m) for m in dataset.max_start_frames]
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
        start_s = start / cfg.frame_rate_hz
        sustained, pedals = dataset.piece_notes(piece)
        audio = dataset.piece_audio(piece)
        s0 = start * cfg.samples_per_frame
        window = window_inputs(cfg, sustained, pedals, s0, cfg.segment_samples, margin_frames,
                               dataset.piece_years[piece], audio=audio, audio_scale=1.0 / C.PCM_SCALE)
        excerpts.append(_lead_in(Excerpt(
            source=str(dataset.pieces[piece]["id"]), start_frame=start, n_frames=cfg.segment_frames,
            audio=np.asarray(audio[s0:s0 + cfg.segment_samples], np.float32) / C.PCM_SCALE,
            conditioning=window.rolls, year=window.year,
            notes=_reference_notes(notes, start_s, start_s + cfg.segment_frames / cfg.frame_rate_hz),
            excitation=window.excitation, samples_per_frame=cfg.samples_per_frame, frame_rate_hz=cfg.frame_rate_hz,
            schedule=window.analysis_schedule, warmup_audio=window.warmup_audio, extra={"piece_index": piece},
            sounding=sounding_notes(sustained, start_s, start_s + cfg.segment_frames / cfg.frame_rate_hz)),
            cfg, sustained, pedals, margin_frames, dataset.piece_years[piece], lead_in_seconds))
    return excerpts


def _store_notes(store: Path, record: dict) -> Notes:
    notes, _ = load_store_notes(store / record["notes"])
    return notes


def midi_excerpts(paths: Sequence[str | os.PathLike], data_config: DataConfig, margin_frames: int,
                  excerpt_seconds: float = 4.0, render: bool = True, year: int = C.UNKNOWN_YEAR_INDEX,
                  lead_in_seconds: float = 0.0) -> list[Excerpt]:
    """One excerpt per MIDI file: `excerpt_seconds` from the frame of its first onset (past the end
    of a shorter file the rolls are zero and the audio silent, so all excerpts have one length).
    The ground-truth audio is a FluidSynth render of the whole file, sliced to the window
    (`render=False`: silence). Raises MidiError for unreadable files."""
    from ..midi import read_midi

    cfg = excerpt_config(data_config, excerpt_seconds)
    spf, fr = cfg.samples_per_frame, cfg.frame_rate_hz
    excerpts = []
    for path in paths:
        raw, pedals = read_midi(path)
        sustained = apply_sustain(raw, pedals, cfg.sustain_threshold)
        start = int(math.floor(float(raw.onset_s.min()) * fr + 1e-6))
        n_frames = cfg.segment_frames
        n = n_frames * spf
        if render:
            full = render_midi_file(path, cfg.sample_rate_hz)
            audio = np.zeros(n, np.float32)
            piece = full[start * spf: start * spf + n]
            audio[: len(piece)] = piece
        else:
            audio = np.zeros(n, np.float32)
        window = window_inputs(cfg, sustained, pedals, start * spf, n, margin_frames,
                               audio=full if render else np.zeros(start * spf + n, np.float32))
        start_s = start / fr
        excerpts.append(_lead_in(Excerpt(
            source=str(path), start_frame=start, n_frames=n_frames, audio=audio, conditioning=window.rolls,
            year=int(year), notes=_reference_notes(raw, start_s, start_s + n_frames / fr),
            excitation=window.excitation, samples_per_frame=spf, frame_rate_hz=fr,
            schedule=window.analysis_schedule, warmup_audio=window.warmup_audio,
            sounding=sounding_notes(sustained, start_s, start_s + n_frames / fr)),
            cfg, sustained, pedals, margin_frames, None, lead_in_seconds))
    return excerpts


def render_midi_file(path: str | os.PathLike, sample_rate_hz: int) -> np.ndarray:
    """float32 mono render of a MIDI file at `sample_rate_hz` by the demo data's FluidSynth piano
    (MuseScore General, no room: dry, at the demo's fixed output gain; `data.instruments`).
    Raises demo.DemoDataError when FluidSynth or the soundfont is missing."""
    from ..data import instruments
    from ..midi import read_midi

    notes, pedals = read_midi(path)
    return instruments.render_notes(notes, pedals, "musescore", sample_rate_hz, tail_seconds=1.0)


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
            batch["target"] = torch.from_numpy(np.stack([
                innovation_target(excerpts[i], sources[k].schedule if condition != "zeroed" else None)
                for k, i in enumerate(chunk)]))
        yield batch


def innovation_target(excerpt: Excerpt, schedule: Any) -> np.ndarray:
    """The excerpt's teacher-forced target under `schedule` (None: no oscillators and, with the
    innovation gain, the floor everywhere), float32 [n]: the innovation over the gain, clipped to
    [-1, 1). With the gain, other MIDI changes the target's scale as well as its content: the
    conditioning gain then says how much worse the real audio fits the model under other MIDI (the
    loudness the MIDI allows included), not a likelihood ratio of the same samples; a change of
    variables (bits + log2 gain) does not rescue that, because under the wrong MIDI most of the
    target is clipped."""
    w = len(excerpt.warmup_audio)
    x = np.concatenate([excerpt.warmup_audio, excerpt.audio]).astype(np.float64)
    if schedule is None:
        schedule = resonators.Schedule.empty(excerpt.schedule.gain_floor)
    u, _ = resonators.analyze(x, schedule)
    return np.clip(u[w:], -1.0, 1.0 - 1.0 / C.PCM_SCALE).astype(np.float32)
