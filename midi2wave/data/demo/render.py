"""The FluidSynth instrument of the demo data: one persistent FluidSynth (pyfluidsynth) with the
MuseScore General piano (velocity layers, sustain pedal), driven event by event (notes, CC64, CC66)
from `midi_events` with the rendering in between, so the audio follows the written MIDI to within
one FluidSynth block (64 samples, 1.45 ms). FluidSynth has no una corda, so notes struck while
CC67 >= 64 are rendered at `UNA_CORDA_VELOCITY_SCALE` of their velocity. FluidSynth's own reverb and
chorus are off (their state outlives a reset, so one piece's tail would leak into the next); the
year's room is added in numpy (rooms.py).

The render is bit-exact across runs and processes: the synth is warmed up once (every key at every
velocity) and fully reset between pieces, and every piece starts on a block boundary. Without the
warm-up a piece would render slightly differently the first time its samples are used in a process,
which `tests/test_demo.py` guards."""

from __future__ import annotations

import io
import os
import wave
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ... import constants as C
from .performance import (
    AUDIO_SAMPLE_RATE_HZ, NOTE_OFF_EVENT, NOTE_ON_EVENT, DemoDataError, Performance, midi_events,
    tick_to_sample,
)
from .rooms import apply_room, to_pcm16

SOUNDFONT_ENV: str = "MIDI2WAVE_SOUNDFONT"
DEFAULT_SOUNDFONTS: tuple[str, ...] = (
    "/usr/share/sounds/sf3/MuseScore_General.sf3",  # Debian musescore-general-soundfont-small
    "/usr/share/sounds/sf2/MuseScore_General.sf2",
    "/usr/share/sounds/sf3/default-GM.sf3",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
)
FLUID_BLOCK: int = 64  # FluidSynth renders in blocks of this many samples; events apply per block
FLUID_GAIN: float = 0.2  # FluidSynth's own gain; the output level is OUTPUT_GAIN (rooms.py), applied in float
UNA_CORDA_VELOCITY_SCALE: float = 0.78


def wav_bytes(pcm: np.ndarray, sample_rate: int) -> bytes:
    """A WAV file (16-bit PCM) of int16 `pcm` [n, channels]."""
    pcm = np.ascontiguousarray(pcm, dtype="<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def find_soundfont(soundfont: str | os.PathLike | None = None) -> Path:
    """The soundfont to use: `soundfont`, else $MIDI2WAVE_SOUNDFONT, else the first of
    DEFAULT_SOUNDFONTS that exists."""
    if soundfont is not None:
        candidates = [str(soundfont)]
    elif os.environ.get(SOUNDFONT_ENV):
        candidates = [os.environ[SOUNDFONT_ENV]]
    else:
        candidates = list(DEFAULT_SOUNDFONTS)
    for c in candidates:
        if Path(c).is_file():
            return Path(c)
    raise DemoDataError(
        f"{candidates[0]}: soundfont not found (Debian: apt-get install fluidsynth "
        f"musescore-general-soundfont-small; or set {SOUNDFONT_ENV} to a .sf2/.sf3 with a piano)"
    )


def import_fluidsynth() -> Any:
    try:
        import fluidsynth  # pyfluidsynth
    except (ImportError, OSError) as e:
        raise DemoDataError(
            f"make-demo-data needs pyfluidsynth and the FluidSynth library ({e}); "
            "pip install 'midi2wave[demo]' and apt-get install fluidsynth"
        ) from None
    if not hasattr(fluidsynth, "Synth"):
        raise DemoDataError(f"{getattr(fluidsynth, '__file__', 'fluidsynth')}: not pyfluidsynth "
                            "(another package named fluidsynth is installed)")
    return fluidsynth


class PianoRenderer:
    """One FluidSynth synth with the soundfont's grand piano, reused for every piece.

    `render(perf, year)` -> int16 [n_samples, 2] at 44.1 kHz: the MIDI events of `perf` (exactly as
    `midi_bytes` writes them) played event by event, a release tail, then the year's room."""

    def __init__(self, soundfont: str | os.PathLike | None = None, sample_rate_hz: int = AUDIO_SAMPLE_RATE_HZ):
        from ctypes import c_int, c_void_p

        fluidsynth = import_fluidsynth()
        self.soundfont = find_soundfont(soundfont)
        self.sample_rate_hz = int(sample_rate_hz)
        settings = {
            "synth.reverb.active": 0, "synth.chorus.active": 0,  # the room is added in numpy
            "synth.polyphony": 1024, "synth.cpu-cores": 1,
            "synth.dynamic-sample-loading": 1,  # decode only the piano's samples (seconds saved)
        }
        self._synth = fluidsynth.Synth(gain=FLUID_GAIN, samplerate=float(self.sample_rate_hz), channels=16, **settings)
        self._sfid = self._synth.sfload(str(self.soundfont))
        if self._sfid < 0:
            raise DemoDataError(f"{self.soundfont}: FluidSynth cannot load this soundfont")
        self._write_float = fluidsynth.cfunc(
            "fluid_synth_write_float", c_int, ("synth", c_void_p, 1), ("len", c_int, 1),
            ("lout", c_void_p, 1), ("loff", c_int, 1), ("lincr", c_int, 1),
            ("rout", c_void_p, 1), ("roff", c_int, 1), ("rincr", c_int, 1),
        )
        if self._write_float is None:
            raise DemoDataError("the FluidSynth library lacks fluid_synth_write_float")
        self._lib = fluidsynth
        self._reset()
        # FluidSynth renders the first block of a fresh synth, and a sample the first time it is
        # played, a little differently from later times. Play every key at every velocity once,
        # so every piece meets the same state whatever was rendered before it.
        block = np.zeros((FLUID_BLOCK, 2), dtype=np.float32)
        for v in range(1, C.MAX_MIDI_VELOCITY + 1):
            for key in range(C.MIN_MIDI_PITCH, C.MAX_MIDI_PITCH + 1):
                self._synth.noteon(0, key, v)
            self._render_block(block)
            self._reset()

    def _render_block(self, out: np.ndarray) -> None:
        """Fill `out` (float32 [n, 2], C-contiguous) with the next n samples."""
        if len(out):
            ptr = out.ctypes.data
            self._write_float(self._synth.synth, len(out), ptr, 0, 2, ptr + 4, 0, 2)

    def _reset(self) -> None:
        """Silence everything and reset the controllers. The order matters: killing the voices,
        rendering a block, then resetting the pedals (resetting first releases sustained voices,
        which then keep sounding)."""
        fs = self._synth
        for key in range(128):
            fs.noteoff(0, key)
        fs.all_sounds_off(0)
        scratch = np.zeros((FLUID_BLOCK * 4, 2), dtype=np.float32)
        self._render_block(scratch)
        for cc in C.PEDAL_CONTROLLERS:
            fs.cc(0, cc, 0)
        fs.cc(0, 121, 0)  # reset all controllers
        fs.program_select(0, self._sfid, 0, 0)
        fs.all_sounds_off(0)
        self._render_block(scratch)

    def render_dry(self, perf: Performance) -> np.ndarray:
        """The synth's own output, float32 [n_samples, 2], before the room and the output gain."""
        events = midi_events(perf)
        n = perf.n_samples
        total = -(-n // FLUID_BLOCK) * FLUID_BLOCK  # whole blocks, so the next piece starts aligned
        out = np.zeros((total, 2), dtype=np.float32)
        fs = self._synth
        cur = 0
        soft = 0
        try:
            for tick, kind, a, b in events.tolist():
                s = tick_to_sample(tick)
                if s > cur:
                    self._render_block(out[cur:s])
                    cur = s
                if kind == NOTE_ON_EVENT:
                    v = b if soft < C.PEDAL_ON_THRESHOLD else max(1, int(round(b * UNA_CORDA_VELOCITY_SCALE)))
                    fs.noteon(0, a, v)
                elif kind == NOTE_OFF_EVENT:
                    fs.noteoff(0, a)
                elif a == C.SOFT_CC:
                    soft = b  # FluidSynth ignores CC67: una corda is a softer stroke (above)
                else:
                    fs.cc(0, a, b)
            self._render_block(out[cur:])
        finally:
            self._reset()
        return out[:n]

    def render(self, perf: Performance, year: int | None = None) -> np.ndarray:
        """int16 [n_samples, 2]: the performance in the room of `year` (None: no room)."""
        return to_pcm16(apply_room(self.render_dry(perf), year, self.sample_rate_hz))

    def close(self) -> None:
        if getattr(self, "_synth", None) is not None:
            self._synth.delete()
            self._synth = None


@lru_cache(maxsize=1)
def shared_renderer(soundfont: str) -> PianoRenderer:
    """One `PianoRenderer` of `soundfont` for the process (building one warms the synth up)."""
    return PianoRenderer(soundfont)
