"""Figures: a piano roll above the spectrogram of audio on the same time axis (matplotlib, Agg).

`roll_and_spectrogram_figure` builds the figure (reusable, e.g. one row per excerpt in evaluation);
`save_roll_and_spectrogram` writes it as a PNG atomically (refusing to overwrite unless `force`).
The roll comes from `Notes` (drawn as velocity-shaded bars at their exact times) or from a
frame-rate array `[88, F]` (keys MIDI 21..108, as `midi.frame_rolls` returns).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from . import constants as C

__all__ = ["roll_and_spectrogram_figure", "save_roll_and_spectrogram", "log_spectrogram"]

N_FFT = 1024
HOP = 128
FLOOR_DB = -90.0


def log_spectrogram(audio: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """[n_fft // 2 + 1, frames] magnitude in dB (Hann window, centred frames, 0 dB = full-scale sine)."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    x = np.pad(x, (n_fft // 2, n_fft // 2))
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    n_frames = 1 + (len(x) - n_fft) // hop
    frames = np.lib.stride_tricks.as_strided(x, shape=(n_frames, n_fft), strides=(x.strides[0] * hop, x.strides[0]))
    window = np.hanning(n_fft).astype(np.float32)
    mag = np.abs(np.fft.rfft(frames * window, axis=1)).T / (window.sum() / 2)
    return 20.0 * np.log10(np.maximum(mag, 10 ** (FLOOR_DB / 20)))


def roll_and_spectrogram_figure(audio: np.ndarray, sample_rate_hz: int, notes: Any = None,
                                roll: np.ndarray | None = None, frame_rate_hz: float = C.FRAME_RATE_HZ,
                                start_s: float = 0.0, title: str | None = None, max_hz: float | None = None):
    """A matplotlib Figure: the notes (or `roll`) above the audio's spectrogram.

    audio: float [n] at `sample_rate_hz`, whose first sample is at `start_s` seconds (the time axis
    shows piece time). notes: a `midi.Notes` (piece time), or roll: [88, F] frame-rate array whose
    first frame is at `start_s`. max_hz: top of the spectrogram (default Nyquist).
    """
    from matplotlib.figure import Figure

    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    duration = max(len(audio) / sample_rate_hz, 1e-3)
    end_s = start_s + duration
    fig = Figure(figsize=(12, 6.5), dpi=100, layout="constrained")
    ax_roll, ax_spec = fig.subplots(2, 1, sharex=True, height_ratios=(1, 1.3))

    ax_roll.set_facecolor("white")
    if notes is not None:
        import matplotlib.colors as mcolors
        from matplotlib.collections import PatchCollection
        from matplotlib.patches import Rectangle

        keep = (notes.onset_s < end_s) & (notes.offset_s > start_s)
        on, off = notes.onset_s[keep], notes.offset_s[keep]
        pitch, vel = notes.pitch[keep], notes.velocity[keep]
        cmap = mcolors.LinearSegmentedColormap.from_list("vel", ["#9ecae1", "#08306b"])
        rects = [Rectangle((a, p - 0.45), b - a, 0.9) for a, b, p in zip(on, off, pitch)]
        coll = PatchCollection(rects, facecolors=cmap(vel / C.MAX_MIDI_VELOCITY), edgecolors="none")
        ax_roll.add_collection(coll)
        lo, hi = (int(pitch.min()) - 2, int(pitch.max()) + 2) if len(pitch) else (C.MIN_MIDI_PITCH, C.MAX_MIDI_PITCH)
        ax_roll.set_ylim(lo - 0.5, hi + 0.5)
    elif roll is not None:
        roll = np.asarray(roll, dtype=np.float32)
        extent = (start_s, start_s + roll.shape[1] / frame_rate_hz, C.MIN_MIDI_PITCH - 0.5,
                  C.MIN_MIDI_PITCH + roll.shape[0] - 0.5)
        ax_roll.imshow(roll, origin="lower", aspect="auto", extent=extent, cmap="Blues", vmin=0, vmax=1,
                       interpolation="nearest")
        rows = np.flatnonzero(roll.max(axis=1) > 0)
        if len(rows):
            ax_roll.set_ylim(C.MIN_MIDI_PITCH + rows[0] - 2.5, C.MIN_MIDI_PITCH + rows[-1] + 2.5)
    ax_roll.set_ylabel("MIDI pitch")
    ax_roll.set_xlim(start_s, end_s)
    ax_roll.grid(True, axis="y", alpha=0.2)
    if title:
        ax_roll.set_title(title)

    spec = log_spectrogram(audio)
    nyquist = sample_rate_hz / 2
    top = min(max_hz or nyquist, nyquist)
    bins = int(round(top / nyquist * (spec.shape[0] - 1))) + 1
    image = ax_spec.imshow(spec[:bins], origin="lower", aspect="auto", cmap="magma",
                           extent=(start_s, start_s + spec.shape[1] * HOP / sample_rate_hz, 0, top),
                           vmin=max(FLOOR_DB, float(spec.max()) - 80.0), vmax=float(spec.max()))
    ax_spec.set_ylabel("frequency (Hz)")
    ax_spec.set_xlabel("time (s)")
    ax_spec.set_xlim(start_s, end_s)
    fig.colorbar(image, ax=ax_spec, label="dB", pad=0.01)
    return fig


def save_roll_and_spectrogram(path: str | os.PathLike, audio: np.ndarray, sample_rate_hz: int, notes: Any = None,
                              roll: np.ndarray | None = None, frame_rate_hz: float = C.FRAME_RATE_HZ,
                              start_s: float = 0.0, title: str | None = None, max_hz: float | None = None,
                              force: bool = False) -> Path:
    """Write the figure as a PNG, atomically; an existing file is refused unless `force`."""
    from .files import atomic_path

    path = Path(path)
    fig = roll_and_spectrogram_figure(audio, sample_rate_hz, notes=notes, roll=roll, frame_rate_hz=frame_rate_hz,
                                      start_s=start_s, title=title, max_hz=max_hz)
    with atomic_path(path, force=force) as tmp:
        fig.savefig(tmp, format="png")
    return path
