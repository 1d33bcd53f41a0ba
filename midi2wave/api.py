"""`midi2wave.render`: MIDI in, audio out, in one call (the library behind `midi2wave synthesize`).

    import midi2wave
    audio, sample_rate_hz = midi2wave.render("piece.mid")                       # the bundled model
    audio, sr = midi2wave.render("piece.mid", "run/checkpoints/last.pt",
                                 midi2wave.SamplingOptions(temperature=0.9, seed=1), end_s=10.0)
    audio, sr = midi2wave.render((notes, pedals))                               # from midi.read_midi

Models loaded from a path are kept (per path and device) for later calls, so rendering many
pieces loads the checkpoint once.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import SamplingOptions
from .errors import InputError



@functools.lru_cache(maxsize=2)
def _cached_model(path: str | None, device: str) -> Any:
    from .checkpoint import load_model

    model, _ = load_model(path, device=device)  # the model carries its config's sampling defaults
    return model.eval()


def render(midi: Any, checkpoint: Any = None, options: SamplingOptions = SamplingOptions(), *,
           start_s: float = 0.0, end_s: float | None = None, year: int | None = None, device: str = "cpu",
           progress: bool = False) -> tuple[np.ndarray, int]:
    """Render a piece; returns (audio float32 [n] in [-1, 1), sample_rate_hz).

    midi: a MIDI file path, or (notes, pedals) as `midi.read_midi` returns them (the sustain rule is
    applied here, as for a file). checkpoint: None (the bundled model), a checkpoint or released
    model path, or a loaded `Midi2Wave`. options: every sampling setting (temperature, seed,
    engine, precision, chunking, threads); settings left None take the model's own defaults
    (`Config.sampling`, which a model from `load_model` carries), so a path and the model loaded
    from it render alike. start_s / end_s: the window (default: the whole piece and its release);
    year: the recording year to imitate (None: unknown).
    Raises MidiError / InputError (bad file, window or input), ConfigError (a setting the model
    cannot honour) and CheckpointError.
    """
    from .midi import apply_sustain
    from .render.synthesize import read_piece, render_notes

    if isinstance(checkpoint, torch.nn.Module):
        model = checkpoint
    else:
        key = None if checkpoint is None else str(Path(checkpoint).resolve())
        model = _cached_model(key, str(device))
    threshold = model.data_config.sustain_threshold
    if isinstance(midi, (str, os.PathLike)):
        notes, pedals = read_piece(midi, threshold)
        label = where = str(midi)
    elif isinstance(midi, tuple) and len(midi) == 2:
        raw, pedals = midi
        notes, label, where = apply_sustain(raw, pedals, threshold), "render", "notes"
    else:
        raise InputError(f"render: midi must be a path or (notes, pedals), got {type(midi).__name__}")
    audio = render_notes(model, notes, pedals, options, start_s=start_s, end_s=end_s, year=year,
                         progress=progress, label=Path(label).name, where=where)
    return audio, int(model.data_config.sample_rate_hz)


__all__ = ["render"]
