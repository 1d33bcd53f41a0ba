"""Figures: piano rolls above spectrograms of audio on the same time axis (matplotlib, Agg).

`roll_and_spectrogram_figure` builds the figure of one piece of audio (`synthesize --plot`);
`excerpt_figure` stacks the spectrograms of several renderings of one excerpt (ground truth,
generation, ...) under its notes in one figure (`evaluate --plots`); `excerpt_strips` draws the same
panels as separate figures with identical axes geometry, so that stacked on a page (`evaluate
--report`) their time axes line up. All draw with `draw_notes` and `draw_spectrogram`; the
spectrograms of one excerpt share one colour scale (`shared_range_db`), so that a quieter or
noisier rendering looks quieter or noisier. `save_roll_and_spectrogram` and `save_figure` write
PNGs atomically (refusing to overwrite unless `force`). The roll comes from `Notes` (drawn as
velocity-shaded bars at their exact times) or from a frame-rate array `[88, F]` (keys MIDI 21..108,
as `midi.frame_rolls` returns).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import constants as C

__all__ = ["roll_and_spectrogram_figure", "save_roll_and_spectrogram", "log_spectrogram", "shared_range_db",
           "draw_notes", "draw_spectrogram", "excerpt_figure", "excerpt_strips", "save_figure"]

N_FFT = 1024
HOP = 128
FLOOR_DB = -90.0
RANGE_DB = 80.0  # colour range below the loudest bin
TRANSCRIBED_COLOR = "#d62728"


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


def shared_range_db(spectrograms: Sequence[np.ndarray]) -> tuple[float, float]:
    """(vmin, vmax) in dB for drawing several `log_spectrogram`s on one colour scale: the loudest
    bin of any of them, and `RANGE_DB` below it (not below FLOOR_DB)."""
    vmax = max(float(s.max()) for s in spectrograms) if len(spectrograms) else 0.0
    return max(FLOOR_DB, vmax - RANGE_DB), vmax


def draw_notes(ax: Any, notes: Any, start_s: float, end_s: float, transcribed: Any = None) -> None:
    """Notes (a `midi.Notes`, times on the axis's time base) overlapping [start_s, end_s) as
    velocity-shaded bars on `ax`; `transcribed` (Notes): their onsets as red dots. Sets the pitch range."""
    import matplotlib.colors as mcolors
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    ax.set_facecolor("white")
    keep = (notes.onset_s < end_s) & (notes.offset_s > start_s)
    on, off, pitch, vel = notes.onset_s[keep], notes.offset_s[keep], notes.pitch[keep], notes.velocity[keep]
    cmap = mcolors.LinearSegmentedColormap.from_list("vel", ["#9ecae1", "#08306b"])
    rects = [Rectangle((a, p - 0.45), b - a, 0.9) for a, b, p in zip(on, off, pitch)]
    ax.add_collection(PatchCollection(rects, facecolors=cmap(vel / C.MAX_MIDI_VELOCITY), edgecolors="none"))
    pitches = [int(p) for p in pitch]
    if transcribed is not None and len(transcribed):
        ax.plot(transcribed.onset_s, transcribed.pitch, "o", ms=3.5, color=TRANSCRIBED_COLOR,
                label="onsets transcribed from the generation")
        ax.legend(loc="upper right", fontsize=8)
        pitches += [int(p) for p in transcribed.pitch]
    lo, hi = (min(pitches) - 2, max(pitches) + 2) if pitches else (C.MIN_MIDI_PITCH, C.MAX_MIDI_PITCH)
    ax.set_ylim(lo - 0.5, hi + 0.5)
    ax.set_xlim(start_s, end_s)
    ax.set_ylabel("MIDI pitch")
    ax.grid(True, axis="y", alpha=0.2)


def draw_spectrogram(ax: Any, audio: np.ndarray, sample_rate_hz: int, start_s: float = 0.0,
                     vmin: float | None = None, vmax: float | None = None, max_hz: float | None = None,
                     spectrogram: np.ndarray | None = None) -> Any:
    """The audio's `log_spectrogram` on `ax` (time from `start_s`, frequency up to `max_hz`, default
    Nyquist), on the colour scale [vmin, vmax] dB (default: its own `shared_range_db`); returns the image."""
    spec = log_spectrogram(audio) if spectrogram is None else spectrogram
    own_min, own_max = shared_range_db([spec])
    nyquist = sample_rate_hz / 2
    top = min(max_hz or nyquist, nyquist)
    bins = int(round(top / nyquist * (spec.shape[0] - 1))) + 1
    image = ax.imshow(spec[:bins], origin="lower", aspect="auto", cmap="magma",
                      extent=(start_s, start_s + spec.shape[1] * HOP / sample_rate_hz, 0, top),
                      vmin=own_min if vmin is None else vmin, vmax=own_max if vmax is None else vmax)
    ax.set_ylabel("frequency (Hz)")
    return image


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
        draw_notes(ax_roll, notes, start_s, end_s)
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

    image = draw_spectrogram(ax_spec, audio, sample_rate_hz, start_s, max_hz=max_hz)
    ax_spec.set_xlabel("time (s)")
    ax_spec.set_xlim(start_s, end_s)
    fig.colorbar(image, ax=ax_spec, label="dB", pad=0.01)
    return fig


def excerpt_figure(notes: Any, panels: Sequence[tuple[str, np.ndarray]], sample_rate_hz: int, duration_s: float,
                   transcribed: Any = None, title: str | None = None, offset_s: float = 0.0,
                   gap_spans: Sequence[tuple[float, float]] | None = None,
                   levels: Sequence[tuple[str, np.ndarray, np.ndarray]] | None = None, gap_label: str = "gap"):
    """One Figure: the excerpt's notes (times relative to its start; `transcribed` onsets as red
    dots) above the spectrogram of each (label, audio [n]) panel, all on the excerpt's time axis and
    one shared colour scale. `offset_s`: where the excerpt starts in its piece (for the axis label).
    `gap_spans` (start, end) seconds are shaded on every panel (where nothing should sound);
    `levels` (label, times [m], level dBFS [m]) add a last panel of level curves, one per audio."""
    from matplotlib.figure import Figure

    n_rows = 1 + len(panels) + (levels is not None)
    fig = Figure(figsize=(12, 3 + 2.6 * (n_rows - 1)), dpi=100, layout="constrained")
    axes = fig.subplots(n_rows, 1, sharex=True, height_ratios=(1,) + (1.2,) * (n_rows - 1), squeeze=False)[:, 0]
    draw_notes(axes[0], notes, 0.0, duration_s, transcribed)
    if title:
        axes[0].set_title(title)
    specs = [log_spectrogram(audio) for _, audio in panels]
    vmin, vmax = shared_range_db(specs)
    for (label, audio), spec, ax in zip(panels, specs, axes[1:]):
        image = draw_spectrogram(ax, audio, sample_rate_hz, 0.0, vmin, vmax, spectrogram=spec)
        ax.set_ylabel(f"{label}\nfrequency (Hz)")
        ax.set_xlim(0, duration_s)
        fig.colorbar(image, ax=ax, label="dB", pad=0.01)
    if levels is not None:
        ax = axes[-1]
        for (label, t, level), color in zip(levels, ("black", "#d62728", "#1f77b4", "#2ca02c")):
            ax.plot(t, level, color=color, lw=1.0, label=label)
        ax.set_ylim(-100, 0)
        ax.set_ylabel("level (dBFS,\n20 ms RMS)")
        ax.grid(True, alpha=0.3)
        if gap_spans is not None and not gap_spans:
            ax.text(0.01, 0.04, "no gap in this excerpt", transform=ax.transAxes, fontsize=8)
    for k, (a, b) in enumerate(gap_spans or ()):
        for target in axes:
            target.axvspan(a, b, facecolor="#17becf", alpha=0.18, edgecolor="#17becf", lw=1.5,
                           label=gap_label if target is axes[-1] and k == 0 else None)
    if levels is not None:
        axes[-1].legend(loc="lower right", fontsize=8)
    axes[-1].set_xlabel(f"time in the excerpt (s); excerpt starts at {offset_s:.2f} s")
    return fig


# strips: fixed axes rectangles (figure fractions), so that strips stacked on a page line up in time
_STRIP_WIDTH_IN = 10.0
_STRIP_AXES_LEFT, _STRIP_AXES_WIDTH = 0.075, 0.83
_STRIP_COLORBAR_LEFT, _STRIP_COLORBAR_WIDTH = 0.915, 0.012


def excerpt_strips(notes: Any, panels: Sequence[tuple[str, np.ndarray]], sample_rate_hz: int, duration_s: float,
                   transcribed: Any = None, max_hz: float | None = None) -> list:
    """The panels of `excerpt_figure` as separate Figures: [notes strip, one spectrogram strip per
    (label, audio) panel]. Every strip has the same width and the same horizontal axes position
    (time 0..duration_s), and the spectrograms share one colour scale, so that the images stacked
    in a page column line up in time and compare in level. Only the last strip has a time label."""
    from matplotlib.figure import Figure

    figures = []
    fig = Figure(figsize=(_STRIP_WIDTH_IN, 1.9), dpi=80)
    ax = fig.add_axes((_STRIP_AXES_LEFT, 0.12, _STRIP_AXES_WIDTH, 0.83))
    draw_notes(ax, notes, 0.0, duration_s, transcribed)
    figures.append(fig)
    specs = [log_spectrogram(audio) for _, audio in panels]
    vmin, vmax = shared_range_db(specs)
    for k, ((label, audio), spec) in enumerate(zip(panels, specs)):
        last = k == len(panels) - 1
        fig = Figure(figsize=(_STRIP_WIDTH_IN, 1.9 + (0.3 if last else 0.0)), dpi=80)
        bottom = 0.3 if last else 0.12
        ax = fig.add_axes((_STRIP_AXES_LEFT, bottom, _STRIP_AXES_WIDTH, 0.95 - bottom))
        image = draw_spectrogram(ax, audio, sample_rate_hz, 0.0, vmin, vmax, max_hz=max_hz, spectrogram=spec)
        ax.set_xlim(0, duration_s)
        ax.text(0.005, 0.96, label, transform=ax.transAxes, va="top", color="white", fontsize=9)
        if last:
            ax.set_xlabel("time in the excerpt (s)")
        cax = fig.add_axes((_STRIP_COLORBAR_LEFT, bottom, _STRIP_COLORBAR_WIDTH, 0.95 - bottom))
        fig.colorbar(image, cax=cax, label="dB")
        figures.append(fig)
    return figures


def save_figure(path: str | os.PathLike, fig: Any, force: bool = False) -> Path:
    """Write a Figure as a PNG, atomically; an existing file is refused unless `force`."""
    from .files import atomic_path

    path = Path(path)
    with atomic_path(path, force=force) as tmp:
        fig.savefig(tmp, format="png")
    return path


def save_roll_and_spectrogram(path: str | os.PathLike, audio: np.ndarray, sample_rate_hz: int, notes: Any = None,
                              roll: np.ndarray | None = None, frame_rate_hz: float = C.FRAME_RATE_HZ,
                              start_s: float = 0.0, title: str | None = None, max_hz: float | None = None,
                              force: bool = False) -> Path:
    """Write the figure as a PNG, atomically; an existing file is refused unless `force`."""
    fig = roll_and_spectrogram_figure(audio, sample_rate_hz, notes=notes, roll=roll, frame_rate_hz=frame_rate_hz,
                                      start_s=start_s, title=title, max_hz=max_hz)
    return save_figure(path, fig, force=force)
