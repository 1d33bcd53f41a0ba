"""`midi2wave synthesize IN.mid --instrument salamander|musescore [--year Y]`: play MIDI on the demo
data's sampled pianos (the training instrument) instead of a model, with synthesize's outputs,
errors and progress lines. Users compare a model with its source this way; the note sheet
(`evaluate --note-sheet`) uses the same renderer (`data.instruments.render_notes`).

The audio is the instrument's render at the demo data's fixed output gain, in `year`'s room (None:
dry), mono at the models' rate (16 kHz), from time 0 to the last event plus a second, cut to
`[start_s, end_s)`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

from .. import constants as C
from ..errors import InputError, Midi2WaveError
from ..files import checked_outputs, report_error as _error

logger = logging.getLogger(__name__)

__all__ = ["synthesize_with_instrument"]


def synthesize_with_instrument(inputs: Sequence[Path], instrument: str, *, out: Path | None = None,
                               start_s: float = 0.0, end_s: float | None = None, year: int | None = None,
                               force: bool = False, quiet: bool = False) -> int:
    """Render each MIDI file on `instrument` to a 16-bit WAV (outputs named as `synthesize` names
    them). Returns 0 if every input was rendered, 1 if some failed (each reported in one line)."""
    from ..audio import save_wav
    from ..data import demo
    from ..data.instruments import INSTRUMENTS, render_notes
    from ..midi import read_midi

    if instrument not in INSTRUMENTS:
        raise InputError(f"--instrument {instrument!r}: must be one of {', '.join(INSTRUMENTS)}")
    if year is not None and year not in demo.ROOMS:
        raise InputError(f"--year {year}: the instrument's rooms are the years {', '.join(map(str, demo.ROOMS))}")
    if start_s < 0 or (end_s is not None and end_s <= start_s):
        raise InputError(f"--start {start_s} / --end {end_s}: need 0 <= start < end")
    todo, failed = checked_outputs(inputs, out, force)
    sr = C.SAMPLE_RATE_HZ
    for src, dst in todo:
        try:
            notes, pedals = read_midi(src)
            t0 = time.perf_counter()
            audio = render_notes(notes, pedals, instrument, sample_rate_hz=sr, year=year)
            a = int(round(start_s * sr))
            b = len(audio) if end_s is None else int(round(end_s * sr))
            if a >= len(audio):
                raise InputError(f"{src}: --start {start_s} is past the piece's end ({len(audio) / sr:.2f} s)")
            audio = audio[a:b]
            save_wav(dst, audio, sr, force=force)
            seconds = time.perf_counter() - t0
            if not quiet:
                logger.info("wrote %s (%.2f s of audio on %s%s in %.1f s)", dst, len(audio) / sr, instrument,
                            f", room {year}" if year is not None else ", dry", seconds)
        except Midi2WaveError as e:
            _error(str(e))
            failed += 1
        except (demo.DemoDataError, OSError, RuntimeError) as e:  # the instrument, or the disk, failed
            _error(f"{src}: {' '.join(str(e).split())}")
            failed += 1
    return 1 if failed else 0
