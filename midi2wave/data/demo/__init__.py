"""A small synthetic stand-in for MAESTRO v3, in its exact layout (`midi2wave make-demo-data`).

The real MAESTRO (~100 GB) is out of reach here, so this package writes a dataset that a MAESTRO
reader cannot tell from the real thing::

    OUT/maestro-v3.0.0.csv    canonical_composer, canonical_title, split, year, midi_filename,
                              audio_filename, duration  (sorted by composer, title; LF line ends)
    OUT/maestro-v3.0.0.json   the same rows, column-oriented {"col": {"0": v, ...}}, 4-space indent
    OUT/<YEAR>/MIDI-Unprocessed_..._wav--N.midi   one piano track (type 1, 384 ticks per beat,
                              120 bpm), note-offs as note-on velocity 0, CC64 continuous, some CC67
    OUT/<YEAR>/MIDI-Unprocessed_..._wav--N.wav    44.1 kHz stereo 16-bit PCM

Its modules, one concern each:

- `performance`: `Performance` (notes and pedal events in seconds), the `Builder` of humanised notes
  and continuous pedal curves, and the MIDI form (`midi_events`, `tick_to_sample`, `midi_bytes`)
  from which both the MIDI file and the audio are made;
- `rooms`: each year's recording room (`ROOMS`, `apply_room`) and the fixed output gain;
- `render`: the FluidSynth instrument (`PianoRenderer`, `find_soundfont`);
- `corpus`: humanised excerpts of music21's corpus (~20-90 s; shorter for tiny datasets): solo
  piano, songs and chamber music with piano, string quartets, Bach chorales and Monteverdi
  madrigals, all played on one piano;
- `studies`: generated studies (composer `GENERATED_COMPOSER`) covering what the corpus does not:
  every key at every velocity, scales, arpeggios, chords, repeated notes, ramps, pedalled decays;
- `build`: `make_demo_dataset`, which plans the pieces, deals works to splits and years to pieces,
  renders them and writes the MAESTRO v3 layout.

Audio: made by a pluggable instrument (`make_demo_dataset(renderer=...)`; the CLI's default is the
Salamander grand played by sfizz, `salamander.py`, which shares the events, rooms and output gain
here), else FluidSynth (`render`). The audio is made from the very events written to the MIDI file
(times quantised to its 1/768 s ticks). Each year gets its own deterministic room, so the year
conditioning has something to learn. There is no normalisation: one fixed gain (`OUTPUT_GAIN`) for
everything, so velocity stays audible; samples are clipped to int16 (it rarely happens).

Splits are by composition (every excerpt of a work, all movements of a quartet, go to one split),
about 80/10/10 by duration, each split non-empty. Years are dealt round-robin from a shuffled list.

Determinism: for a seed (and the same library versions and soundfont) every file is byte-identical
from run to run: MIDI and metadata are computed with numpy's seeded generators, the FluidSynth
render is bit-exact across runs and processes (see `render`), and the room is plain numpy.
"""

from __future__ import annotations

from .build import (
    COLUMNS, GENERATED_SHARE, METADATA_CSV, METADATA_JSON, MIN_MINUTES, SPLIT_FRACTIONS, SPLITS, DemoSummary,
    assign_splits, make_demo_dataset, plan_pieces,
)
from .corpus import CACHE_ENV, CorpusPicker, catalog_works, corpus_excerpt
from .performance import (
    AUDIO_CHANNELS, AUDIO_SAMPLE_RATE_HZ, CC_EVENT, GENERATED_COMPOSER, MIDI_TEMPO_US_PER_BEAT, MIDI_TICKS_PER_BEAT,
    NOTE_OFF_EVENT, NOTE_ON_EVENT, TICKS_PER_SECOND, DemoDataError, Performance, midi_bytes, midi_events,
    tick_to_sample, write_midi,
)
from .render import (
    DEFAULT_SOUNDFONTS, FLUID_BLOCK, FLUID_GAIN, SOUNDFONT_ENV, UNA_CORDA_VELOCITY_SCALE, PianoRenderer,
    find_soundfont, import_fluidsynth, shared_renderer,
)
from .rooms import OUTPUT_GAIN, PCM_MAX, ROOMS, Room, apply_room, to_pcm16
from .studies import generated_study

__all__ = [
    "AUDIO_CHANNELS",
    "AUDIO_SAMPLE_RATE_HZ",
    "CACHE_ENV",
    "CC_EVENT",
    "COLUMNS",
    "DEFAULT_SOUNDFONTS",
    "DemoDataError",
    "DemoSummary",
    "FLUID_BLOCK",
    "FLUID_GAIN",
    "GENERATED_COMPOSER",
    "GENERATED_SHARE",
    "METADATA_CSV",
    "METADATA_JSON",
    "MIDI_TEMPO_US_PER_BEAT",
    "MIDI_TICKS_PER_BEAT",
    "MIN_MINUTES",
    "NOTE_OFF_EVENT",
    "NOTE_ON_EVENT",
    "OUTPUT_GAIN",
    "PCM_MAX",
    "Performance",
    "PianoRenderer",
    "ROOMS",
    "Room",
    "SOUNDFONT_ENV",
    "SPLITS",
    "SPLIT_FRACTIONS",
    "TICKS_PER_SECOND",
    "UNA_CORDA_VELOCITY_SCALE",
    "CorpusPicker",
    "apply_room",
    "assign_splits",
    "catalog_works",
    "corpus_excerpt",
    "find_soundfont",
    "generated_study",
    "import_fluidsynth",
    "make_demo_dataset",
    "midi_bytes",
    "midi_events",
    "plan_pieces",
    "shared_renderer",
    "tick_to_sample",
    "to_pcm16",
    "write_midi",
]
