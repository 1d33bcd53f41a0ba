"""Test helper: write tiny dataset stores (docs/DESIGN.md layout) from synthetic notes and audio.

The synthetic audio of a note is a positive, decaying tone that is nonzero at every sample from
`round(onset * sr)` up to `round(offset * sr)` (exclusive) of the *sustained* note and exactly zero
elsewhere, so tests can locate onsets and sounding frames in the audio itself.

    from store_fixture import make_store
    records = make_store(tmp_path / "store", {"train": 3, "validation": 1}, seconds=2.0)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from midi2wave import constants as C
from midi2wave.midi import Notes, PedalEvents, apply_sustain, notes_to_arrays, pitch_to_hz


@dataclass(frozen=True)
class FixturePiece:
    """One piece to store: raw notes and pedals (as `read_midi` gives) and int16 mono audio."""

    id: str
    split: str
    audio: np.ndarray
    notes: Notes
    pedals: PedalEvents = field(default_factory=PedalEvents.empty)
    year: int | None = 2018
    composer: str = "Test Composer"
    title: str = "Test Piece"


def render_audio(notes: Notes, n_samples: int, sample_rate_hz: int = C.SAMPLE_RATE_HZ) -> np.ndarray:
    """int16 [n_samples]: for each note, `vel/127 * 0.25 * (0.6 + 0.4 cos(2 pi f0 t)) * exp(-t / 1 s)`
    over samples round(onset*sr) .. round(offset*sr) - 1, summed; at least 1 LSB wherever a note sounds."""
    x = np.zeros(n_samples, np.float64)
    sounding = np.zeros(n_samples, bool)
    for onset, offset, pitch, velocity in zip(notes.onset_s, notes.offset_s, notes.pitch, notes.velocity):
        a, b = int(round(onset * sample_rate_hz)), min(int(round(offset * sample_rate_hz)), n_samples)
        if b <= a:
            continue
        t = np.arange(b - a) / sample_rate_hz
        x[a:b] += velocity / 127 * 0.25 * (0.6 + 0.4 * np.cos(2 * np.pi * pitch_to_hz(pitch) * t)) * np.exp(-t)
        sounding[a:b] = True
    pcm = np.clip(np.round(x * 32767), 0, 32767).astype(np.int16)
    pcm[sounding & (pcm == 0)] = 1
    return pcm


def synthetic_piece(id: str, split: str, notes: Notes, pedals: PedalEvents | None = None, seconds: float | None = None,
                    year: int | None = 2018, sample_rate_hz: int = C.SAMPLE_RATE_HZ,
                    sustain_threshold: int = C.PEDAL_ON_THRESHOLD) -> FixturePiece:
    """A piece whose audio renders the notes after the sustain rule (default length: last offset + 0.25 s)."""
    pedals = pedals if pedals is not None else PedalEvents.empty()
    sustained = apply_sustain(notes, pedals, sustain_threshold)
    if seconds is None:
        seconds = sustained.end_s + 0.25
    audio = render_audio(sustained, int(round(seconds * sample_rate_hz)), sample_rate_hz)
    return FixturePiece(id=id, split=split, audio=audio, notes=notes, pedals=pedals, year=year)


def random_notes(rng: np.random.Generator, seconds: float, notes_per_second: float = 6.0,
                 sample_rate_hz: int = C.SAMPLE_RATE_HZ) -> Notes:
    """Random (possibly overlapping) notes on whole samples inside [0.05 s, seconds - 0.3 s)."""
    n = max(1, int(seconds * notes_per_second))
    onset = rng.integers(int(0.05 * sample_rate_hz), int((seconds - 0.3) * sample_rate_hz), n)
    length = rng.integers(int(0.02 * sample_rate_hz), int(0.25 * sample_rate_hz), n)
    return Notes(onset / sample_rate_hz, (onset + length) / sample_rate_hz, rng.integers(21, 109, n),
                 rng.integers(1, 128, n))


def separated_notes(rng: np.random.Generator, seconds: float, sample_rate_hz: int = C.SAMPLE_RATE_HZ) -> Notes:
    """Non-overlapping notes on whole samples, each followed by at least 10 ms of silence."""
    onsets, offsets = [], []
    t = int(0.05 * sample_rate_hz)
    end = int((seconds - 0.05) * sample_rate_hz)
    while True:
        length = int(rng.integers(int(0.01 * sample_rate_hz), int(0.2 * sample_rate_hz)))
        if t + length >= end:
            break
        onsets.append(t)
        offsets.append(t + length)
        t += length + int(rng.integers(int(0.01 * sample_rate_hz), int(0.1 * sample_rate_hz)))
    n = len(onsets)
    return Notes(np.array(onsets) / sample_rate_hz, np.array(offsets) / sample_rate_hz, rng.integers(21, 109, n),
                 rng.integers(1, 128, n))


def random_pedals(rng: np.random.Generator, seconds: float) -> PedalEvents:
    """Sustain pressed and lifted a few times, plus some sostenuto / una corda values."""
    times = np.sort(rng.uniform(0, seconds, 8))
    values = np.array([100, 20] * 4)
    extra = rng.uniform(0, seconds, 4)
    return PedalEvents(np.concatenate([times, extra]), np.array([64] * 8 + [66, 66, 67, 67]),
                       np.concatenate([values, rng.integers(0, 128, 4)]))


def write_store(store: str | Path, pieces: Sequence[FixturePiece], sample_rate_hz: int = C.SAMPLE_RATE_HZ) -> list[dict]:
    """Write `store` (manifest.json + pieces/<id>.npy, .notes.npz, .json); returns the records by id."""
    store = Path(store)
    (store / "pieces").mkdir(parents=True, exist_ok=True)
    records = []
    for piece in sorted(pieces, key=lambda p: p.id):
        audio = np.asarray(piece.audio, np.int16)
        np.save(store / "pieces" / f"{piece.id}.npy", audio, allow_pickle=False)
        np.savez(store / "pieces" / f"{piece.id}.notes.npz", **notes_to_arrays(piece.notes, piece.pedals))
        record = {
            "id": piece.id, "split": piece.split, "year": piece.year, "composer": piece.composer,
            "title": piece.title, "duration_seconds": len(audio) / sample_rate_hz, "n_samples": int(len(audio)),
            "sample_rate_hz": sample_rate_hz, "audio": f"pieces/{piece.id}.npy",
            "notes": f"pieces/{piece.id}.notes.npz", "source_audio": f"{piece.id}.wav",
            "source_midi": f"{piece.id}.midi", "source_audio_bytes": 2 * len(audio), "source_audio_mtime_ns": 0,
            "source_midi_bytes": 0, "source_midi_mtime_ns": 0,
        }
        (store / "pieces" / f"{piece.id}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        records.append(record)
    manifest = {"format": "midi2wave-store", "version": 1, "sample_rate_hz": sample_rate_hz, "pieces": records}
    (store / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return records


def make_store(store: str | Path, splits: dict[str, int] | None = None, seconds: float = 2.0, seed: int = 0,
               pedals: bool = True, sample_rate_hz: int = C.SAMPLE_RATE_HZ) -> list[dict]:
    """A store of random pieces: `splits` maps split name -> number of pieces (default train 3,
    validation 1, test 1), each `seconds` long, years cycling through MAESTRO years."""
    splits = splits if splits is not None else {"train": 3, "validation": 1, "test": 1}
    rng = np.random.default_rng(seed)
    pieces = []
    for split, count in splits.items():
        for i in range(count):
            notes = random_notes(rng, seconds, sample_rate_hz=sample_rate_hz)
            pedal_events = random_pedals(rng, seconds) if pedals else PedalEvents.empty()
            year = C.MAESTRO_YEARS[len(pieces) % len(C.MAESTRO_YEARS)]
            pieces.append(synthetic_piece(f"{split}-{i:03d}", split, notes, pedal_events, seconds=seconds, year=year,
                                          sample_rate_hz=sample_rate_hz))
    return write_store(store, pieces, sample_rate_hz)
