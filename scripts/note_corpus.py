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
60 / 90 / 120 in the 2004 and 2018 rooms): the velocities play Salamander velocity layers that none
of the sheet's velocities play (other recordings of the same keys), each velocity taken as the
sampler plays it in its room (a room's regulation bends velocities: the sheet's 90 plays as 88,
layer 11, in both of its rooms), and the rooms are five of the eight other demo years (2013 would
bend 68 into the sheet's layer 8; five rooms gave the fit some 40,000 partial rows). A pair
already there is kept (an interrupted run resumes) when its MIDI holds the notes asked for and
its `notes.json` names the same instrument and room, else rendered again; the MIDI is written
last, so a WAV without it is never kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from midi2wave import constants as C
from midi2wave.data import demo
from midi2wave.data.instruments import INSTRUMENTS, render_notes
from midi2wave.data.salamander import SALAMANDER_VELOCITIES, SAMPLE_KEYS, played_velocity
from midi2wave.errors import Midi2WaveError
from midi2wave.evaluation.notesheet import NoteSheet
from midi2wave.evaluation.notesheet_run import NoteSheetOptions
from midi2wave.files import atomic_path
from midi2wave.midi import read_midi, write_midi

SHEET = NoteSheet()
SHEET_YEARS: tuple[int, ...] = NoteSheetOptions(out=Path(".")).years
DEFAULT_YEARS: tuple[int, ...] = tuple(y for y in (2006, 2009, 2011, 2015, 2017) if y in demo.ROOMS)
# nine velocities that play Salamander layers the sheet's velocities do not, in every default room
DEFAULT_VELOCITIES: tuple[int, ...] = (20, 40, 50, 68, 76, 92, 100, 108, 124)


def salamander_layer(velocity: int, year: int | None = None) -> int:
    """The Salamander V3 velocity layer (1..16) that a key struck at `velocity` plays in `year`'s
    room (`salamander.played_velocity`; None: as struck)."""
    if not 1 <= velocity <= 127:
        raise ValueError(f"velocity {velocity} is outside 1..127")
    played = played_velocity(velocity, year)
    for layer, (lo, hi) in enumerate(SALAMANDER_VELOCITIES, start=1):
        if lo <= played <= hi:
            return layer
    raise AssertionError("the layers cover 1..127")


def sheet_layers() -> set[int]:
    """The layers the note sheet's velocities play in its rooms."""
    return {salamander_layer(v, y) for v in SHEET.velocities for y in SHEET_YEARS}


def _holds(midi: Path, notes, made_by: dict) -> bool:
    """Whether `midi` reads back as `notes` (pitches, velocities, onsets and releases to a tick) and the pair's
    `notes.json` beside it says it was rendered as `made_by` (instrument, year)."""
    try:
        got, _ = read_midi(midi)
        if json.loads(midi.with_suffix(".json").read_text()) != made_by:
            return False
    except Exception:  # noqa: BLE001 -- unreadable or missing: render again
        return False
    return (len(got) == len(notes) and np.array_equal(got.pitch, notes.pitch)
            and np.array_equal(got.velocity, notes.velocity) and np.allclose(got.onset_s, notes.onset_s, atol=2e-3)
            and np.allclose(got.offset_s, notes.offset_s, atol=2e-3))


def write_corpus(out: Path, years, velocities, pitches, instrument: str = "salamander", force: bool = False,
                 log=print, hold_seconds: float = SHEET.hold_seconds, spacing_seconds: float = SHEET.spacing_seconds
                 ) -> list[Path]:
    """Render the corpus (see the module docstring; each note held `hold_seconds`, `spacing_seconds`
    from onset to onset); returns the WAVs written or kept."""
    sheet = NoteSheet(pitches=tuple(pitches), velocities=tuple(velocities), hold_seconds=hold_seconds,
                      spacing_seconds=spacing_seconds)
    notes, pedals = sheet.notes()
    written = []
    for year in years:
        folder = out / str(year)
        folder.mkdir(parents=True, exist_ok=True)
        wav, midi, made = folder / "notes.wav", folder / "notes.midi", folder / "notes.json"
        made_by = {"instrument": instrument, "year": int(year)}
        if wav.exists() and midi.exists() and not force and _holds(midi, notes, made_by):
            log(f"{wav}: kept")
            written.append(wav)
            continue
        midi.unlink(missing_ok=True)  # the MIDI marks a finished pair: gone until the WAV is
        audio = render_notes(notes, pedals, instrument, C.SAMPLE_RATE_HZ, year)
        with atomic_path(wav, force=True) as tmp:  # float: the render as the sampler made it, without
            # the 16-bit rounding of audio.save_wav (which writes 16-bit PCM only)
            sf.write(tmp, np.asarray(audio, np.float32), C.SAMPLE_RATE_HZ, subtype="FLOAT", format="WAV")
        with atomic_path(made, force=True) as tmp:
            tmp.write_text(json.dumps(made_by) + "\n")
        with atomic_path(midi, force=True) as tmp:
            write_midi(notes, pedals, tmp)
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
    ap.add_argument("--hold-seconds", type=float, default=SHEET.hold_seconds,
                    help=f"how long each note is held (default {SHEET.hold_seconds:g}; the aftersound's fit, "
                         f"fit_aftersound.py: 5)")
    ap.add_argument("--spacing-seconds", type=float, default=SHEET.spacing_seconds,
                    help=f"from onset to onset (default {SHEET.spacing_seconds:g}; at least the hold and 0.4 s more)")
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
    if not 0.3 < args.hold_seconds < args.spacing_seconds - 0.4:
        ap.error(f"--hold-seconds {args.hold_seconds:g} must exceed 0.3 and leave 0.4 s before the next onset "
                 f"(--spacing-seconds {args.spacing_seconds:g})")
    if not args.allow_sheet_overlap:
        taken = sheet_layers()
        if overlap := sorted({v for v in args.velocities for y in args.years if salamander_layer(v, y) in taken}):
            ap.error(f"velocities {overlap} play the note sheet's Salamander layers ({', '.join(map(str, sorted(taken)))}, "
                     f"its velocities {', '.join(map(str, SHEET.velocities))} in its rooms) in some of the years; "
                     f"--allow-sheet-overlap to render them anyway")
        if overlap := [y for y in args.years if y in SHEET_YEARS]:
            ap.error(f"years {overlap} are the note sheet's rooms; --allow-sheet-overlap to render them anyway")
    try:
        write_corpus(args.out, args.years, args.velocities, args.pitches, args.instrument, args.force,
                     log=lambda m: print(m, file=sys.stderr), hold_seconds=args.hold_seconds,
                     spacing_seconds=args.spacing_seconds)
    except (Midi2WaveError, RuntimeError, OSError) as e:  # missing samples, sfizz, the disk: one line
        print(f"note_corpus: {args.out}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
