"""Render a corpus of isolated notes with a training instrument, for `fit_partials.py --level-corpus`.

    python scripts/note_corpus.py OUT [--years 2006 2009 2011 2015 2017] [--velocities 20 40 ...]
    python scripts/fit_partials.py STORE -c configs/default.json --level-corpus OUT ...

Why: the level table (`data.resonators.levels_db`) sets each partial of every key at every
velocity, but a store of performances holds few notes that sound alone long enough to be measured:
the 54-minute Salamander demo store has 3423 such partial rows at MIDI 66-71, 28 at 96-101 and none
above, so the table's treble was extrapolated, 7-17 dB off on the note sheet (docs/evaluation.md).
The instrument that rendered the store can play every key alone.

What: for each year's room, one MIDI file and its WAV (`OUT/<year>/notes.midi`, `notes.wav`, 16 kHz
mono, the demo data's output gain, as `midi2wave synthesize --instrument` plays it): every pitch
at every velocity, held 0.8 s, 2 s apart (`evaluation.notesheet.NoteSheet`'s layout). The defaults
keep it apart from the note sheet that judges the table (`evaluate --note-sheet`: velocities 30 /
60 / 90 / 120 in the 2004 and 2018 rooms): the velocities lie in Salamander velocity layers that
none of the sheet's velocities play (other recordings of the same keys), the rooms are the other
demo years. Existing files are kept (an interrupted run resumes) unless --force.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from midi2wave import constants as C
from midi2wave.data import demo
from midi2wave.data.instruments import INSTRUMENTS, render_notes
from midi2wave.data.salamander import SALAMANDER_VELOCITIES, SAMPLE_KEYS
from midi2wave.evaluation.notesheet import NoteSheet
from midi2wave.evaluation.notesheet_run import NoteSheetOptions
from midi2wave.files import atomic_path
from midi2wave.midi import write_midi

SHEET = NoteSheet()
SHEET_YEARS: tuple[int, ...] = NoteSheetOptions(out=Path(".")).years
DEFAULT_YEARS: tuple[int, ...] = tuple(y for y in (2006, 2009, 2011, 2015, 2017) if y in demo.ROOMS)
# one velocity in each of nine Salamander layers that the sheet's velocities do not play
DEFAULT_VELOCITIES: tuple[int, ...] = (20, 40, 50, 68, 76, 84, 100, 108, 124)


def salamander_layer(velocity: int) -> int:
    """The Salamander V3 velocity layer (1..16) that plays `velocity`."""
    for layer, (lo, hi) in enumerate(SALAMANDER_VELOCITIES, start=1):
        if lo <= velocity <= hi:
            return layer
    raise ValueError(f"velocity {velocity} is outside 1..127")


def write_corpus(out: Path, years, velocities, pitches, instrument: str = "salamander", force: bool = False,
                 log=print) -> list[Path]:
    """Render the corpus (see the module docstring); returns the WAVs written or kept."""
    sheet = NoteSheet(pitches=tuple(pitches), velocities=tuple(velocities))
    notes, pedals = sheet.notes()
    written = []
    for year in years:
        folder = out / str(year)
        folder.mkdir(parents=True, exist_ok=True)
        wav, midi = folder / "notes.wav", folder / "notes.midi"
        if wav.exists() and midi.exists() and not force:
            log(f"{wav}: kept")
            written.append(wav)
            continue
        audio = render_notes(notes, pedals, instrument, C.SAMPLE_RATE_HZ, year)
        with atomic_path(midi, force=True) as tmp:
            write_midi(notes, pedals, tmp)
        with atomic_path(wav, force=True) as tmp:
            sf.write(tmp, np.asarray(audio, np.float32), C.SAMPLE_RATE_HZ, subtype="FLOAT", format="WAV")
        log(f"{wav}: {len(notes)} notes, {len(audio) / C.SAMPLE_RATE_HZ:.0f} s")
        written.append(wav)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="the corpus folder (one subfolder per year)")
    ap.add_argument("--years", type=int, nargs="+", default=list(DEFAULT_YEARS),
                    help=f"rooms to render in (default: {' '.join(map(str, DEFAULT_YEARS))})")
    ap.add_argument("--velocities", type=int, nargs="+", default=list(DEFAULT_VELOCITIES))
    ap.add_argument("--pitches", type=int, nargs="+", default=list(SAMPLE_KEYS),
                    help="MIDI pitches (default: Salamander's sampled keys, A0 to C8 every 3 semitones)")
    ap.add_argument("--instrument", default="salamander", choices=INSTRUMENTS)
    ap.add_argument("--allow-sheet-overlap", action="store_true",
                    help="allow velocities in the note sheet's Salamander layers and its years' rooms")
    ap.add_argument("--force", action="store_true", help="render again over existing files")
    args = ap.parse_args(argv)
    if bad := [y for y in args.years if y not in demo.ROOMS]:
        ap.error(f"years {bad}: the demo rooms are {', '.join(map(str, demo.ROOMS))}")
    if bad := [v for v in args.velocities if not 1 <= v <= 127]:
        ap.error(f"velocities {bad}: must lie in 1..127")
    if bad := [p for p in args.pitches if not C.MIN_MIDI_PITCH <= p <= C.MAX_MIDI_PITCH]:
        ap.error(f"pitches {bad}: must lie in {C.MIN_MIDI_PITCH}..{C.MAX_MIDI_PITCH}")
    if not args.allow_sheet_overlap:
        sheet_layers = {salamander_layer(v) for v in SHEET.velocities}
        if overlap := [v for v in args.velocities if salamander_layer(v) in sheet_layers]:
            ap.error(f"velocities {overlap} play the note sheet's Salamander layers (its velocities "
                     f"{', '.join(map(str, SHEET.velocities))}); --allow-sheet-overlap to render them anyway")
        if overlap := [y for y in args.years if y in SHEET_YEARS]:
            ap.error(f"years {overlap} are the note sheet's rooms; --allow-sheet-overlap to render them anyway")
    try:
        write_corpus(args.out, args.years, args.velocities, args.pitches, args.instrument, args.force,
                     log=lambda m: print(m, file=sys.stderr))
    except (demo.DemoDataError, OSError) as e:
        print(f"note_corpus: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
