"""Everything a model reads for one window of a piece: one builder for training examples, evaluation
excerpts and synthesis.

Why one owner: the rolls, the excitation, the year, the resonator bank's oscillators and the
teacher-forced target must be made the same way when a model is trained, scored and run, or the three
drift apart silently. `SegmentDataset.example`, `evaluate.store_excerpts` / `midi_excerpts` and
`synthesize.model_inputs` all call `window_inputs`.

A window is samples [start_sample, start_sample + n_samples) of a piece; `start_sample` is a whole
number of frames (the rolls' frame 0 is the window's first frame). Notes are the piece's notes with
the sustain pedal applied; times are the piece's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import constants as C
from . import resonators
from ..config import DataConfig
from ..midi import Notes, PedalEvents, excitation_signal, frame_rolls

__all__ = ["WindowInputs", "window_inputs"]


@dataclass
class WindowInputs:
    """The model inputs of one window.

    rolls: float32 [C, n_samples / samples_per_frame + 2 * margin_frames] (`data.conditioning` rows for
    frames start - margin .. end + margin; C may be 0); excitation: float32
    [n_samples] or None; year: the year index (0 when the config does not use the year).
    Models with the resonator bank: `schedule`, the oscillators with times relative to the window's
    first sample (what generation runs); with audio also `analysis_schedule` (times relative to the
    warm-up's first sample), `warmup_audio` (float32 [w], the audio just before the window, from which
    the analysis starts) and `target` (float32 [n_samples], what the network predicts: the
    innovation over the gain, analysed from silence `warmup_s` before the window: the analysis
    re-locks within the warm-up, and silence before the piece changes nothing).
    """

    rolls: np.ndarray
    excitation: np.ndarray | None
    year: int
    schedule: resonators.Schedule | None = None
    analysis_schedule: resonators.Schedule | None = None
    warmup_audio: np.ndarray | None = None
    target: np.ndarray | None = None


def window_inputs(data: DataConfig, notes: Notes, pedals: PedalEvents, start_sample: int, n_samples: int,
                  margin_frames: int = 0, year: int | None = None, audio: Any = None,
                  audio_scale: float = 1.0) -> WindowInputs:
    """The inputs of the window [start_sample, start_sample + n_samples) of a piece (`notes`
    sustained; `year` the recording year or None). `audio`: the whole piece (any array sliceable by
    sample, e.g. an int16 memory map; times `audio_scale` gives [-1, 1)), for the teacher-forced
    target of bank models; None for generation."""
    spf, fr, sr = data.samples_per_frame, data.frame_rate_hz, data.sample_rate_hz
    if start_sample % spf:
        raise ValueError(f"window start {start_sample} is not a multiple of {spf} samples (a frame)")
    n_frames = -(-int(n_samples) // spf)
    rolls = frame_rolls(notes, pedals, data.conditioning, start_sample // spf - margin_frames,
                        n_frames + 2 * margin_frames, fr)
    excitation = (excitation_signal(notes, start_sample, n_samples, sr, data.excitation_partials)
                  if data.excitation_partials > 0 else None)
    out = WindowInputs(rolls, excitation, C.year_index(year) if data.use_year else C.UNKNOWN_YEAR_INDEX)
    bank = resonators.from_data_config(data)
    if bank is None:
        return out
    out.schedule = resonators.schedule(notes, start_sample, n_samples, sr, bank)
    if audio is not None:
        w = bank.warmup_samples(sr)
        x = resonators.warmup_window(audio, start_sample, n_samples, w, audio_scale)
        out.analysis_schedule = resonators.schedule(notes, start_sample - w, w + n_samples, sr, bank)
        u, _ = resonators.analyze(x, out.analysis_schedule)
        out.warmup_audio = x[:w].astype(np.float32)
        out.target = np.clip(u[w:], -1.0, 1.0 - 1.0 / C.PCM_SCALE).astype(np.float32)
    return out
