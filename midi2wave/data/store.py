"""The dataset store format: its names, the manifest, piece records and the notes/audio files.

`midi2wave prepare` (data/prepare.py) writes stores, `SegmentDataset` (data/dataset.py), `info`,
`train` and `evaluate` read them; this module is the one place that knows the layout, so a format
change happens here and bumps `STORE_VERSION`. Layout (also in the data package's docstring)::

    STORE/manifest.json          {"format": STORE_FORMAT, "version": STORE_VERSION, "sample_rate_hz": ...,
                                  "pieces": [record, ...]}   sorted by id, no timestamps
    STORE/pieces/<id>.npy        int16 mono audio [n_samples]
    STORE/pieces/<id>.notes.npz  raw notes and pedal events (`NOTES_KEYS`)
    STORE/pieces/<id>.json       the piece's record; written last (its presence marks the piece done)

Record paths (`audio`, `notes`) are relative to STORE. Every reader meets a bad store with
`InputError("<path>: <problem>")`; every writer goes through `files.atomic_path`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..errors import InputError
from ..files import atomic_path
from ..midi import Notes, PedalEvents, notes_from_arrays

__all__ = [
    "STORE_FORMAT", "STORE_VERSION", "MANIFEST", "PIECES_DIR", "PIECE_SUFFIXES", "NOTES_KEYS", "RECORD_KEYS",
    "REQUIRED_KEYS", "SOURCE_KEYS", "piece_file_names", "read_manifest", "load_store_manifest", "write_manifest",
    "read_record", "write_record", "save_notes", "load_store_notes", "save_piece_audio", "load_piece_audio",
]

STORE_FORMAT = "midi2wave-store"
STORE_VERSION = 1
MANIFEST = "manifest.json"
PIECES_DIR = "pieces"
# (audio, notes, record) file name suffixes after the piece id, inside PIECES_DIR
PIECE_SUFFIXES = (".npy", ".notes.npz", ".json")

# `.notes.npz` members: name -> dtype
NOTES_KEYS = {
    "onset_s": np.float64, "offset_s": np.float64, "pitch": np.int16, "velocity": np.int16,
    "pedal_time_s": np.float64, "pedal_controller": np.int16, "pedal_value": np.int16,
}
# Every key of a piece record, as `prepare` writes it.
RECORD_KEYS = ("id", "split", "year", "composer", "title", "duration_seconds", "n_samples", "sample_rate_hz",
               "audio", "notes", "source_audio", "source_midi", "source_audio_bytes", "source_audio_mtime_ns",
               "source_midi_bytes", "source_midi_mtime_ns")
# The keys a reader needs (a manifest whose records lack one is refused).
REQUIRED_KEYS = ("id", "split", "n_samples", "audio", "notes")
# The keys that must equal the source's current state for `prepare` to count a piece as done.
SOURCE_KEYS = ("split", "year", "composer", "title", "source_audio", "source_midi",
               "source_audio_bytes", "source_audio_mtime_ns", "source_midi_bytes", "source_midi_mtime_ns")

_INCOMPLETE = "missing (the store is incomplete; re-run `midi2wave prepare`)"


def piece_file_names(piece_id: str) -> tuple[str, str, str]:
    """(audio, notes, record) file names of a piece inside `PIECES_DIR`."""
    return tuple(f"{piece_id}{suffix}" for suffix in PIECE_SUFFIXES)


# -------------------------------------------------------------------------------------- manifest


def read_manifest(store: str | os.PathLike, check_version: bool = True) -> dict[str, Any]:
    """The parsed manifest.json of a store, its records checked for `REQUIRED_KEYS`.

    Raises `InputError("<path>: <problem>")` for a missing store or manifest, invalid JSON, another
    format, another version (unless not `check_version`: `prepare` rewrites the manifest anyway),
    or bad records.
    """
    store = Path(store)
    if not store.exists():
        raise InputError(f"{store}: no such dataset store (make one with `midi2wave prepare`)")
    if not store.is_dir():
        raise InputError(f"{store}: not a dataset store (expected a folder made by `midi2wave prepare`)")
    path = store / MANIFEST
    if not path.is_file():
        raise InputError(f"{store}: no {MANIFEST} (not a dataset store, or `midi2wave prepare` did not finish)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
        raise InputError(f"{path}: not a midi2wave dataset store manifest")
    if check_version and manifest.get("version") != STORE_VERSION:
        raise InputError(f"{path}: store format version {manifest.get('version')!r}, "
                         f"this midi2wave reads version {STORE_VERSION} (re-run `midi2wave prepare`)")
    pieces = manifest.get("pieces")
    if not isinstance(pieces, list):
        raise InputError(f"{path}: 'pieces' must be a list")
    for i, record in enumerate(pieces):
        if not isinstance(record, dict):
            raise InputError(f"{path}: piece {i} is not an object")
        missing = [k for k in REQUIRED_KEYS if k not in record]
        if missing:
            raise InputError(f"{path}: piece {record.get('id', i)!r} lacks {', '.join(missing)}")
    return manifest


def load_store_manifest(store: str | os.PathLike) -> list[dict[str, Any]]:
    """The piece records of a store's manifest.json, in manifest (id) order (errors as `read_manifest`)."""
    return list(read_manifest(store)["pieces"])


def write_manifest(store: str | os.PathLike, sample_rate_hz: int, records: Iterable[dict[str, Any]]) -> Path:
    """Write STORE/manifest.json from piece records: sorted by id, keys sorted, no timestamps, so
    the same records give the same bytes however the work was split."""
    path = Path(store) / MANIFEST
    pieces = sorted((dict(sorted(r.items())) for r in records), key=lambda r: r["id"])
    manifest = {"format": STORE_FORMAT, "version": STORE_VERSION, "sample_rate_hz": sample_rate_hz,
                "pieces": pieces}
    with atomic_path(path, force=True) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------- pieces


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """A piece record (`<id>.json`), or None when it is missing or unreadable (the piece is not done)."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_record(path: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write a piece record (keys sorted), atomically."""
    path = Path(path)
    with atomic_path(path, force=True) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def save_notes(path: str | os.PathLike, notes: Notes, pedals: PedalEvents) -> None:
    """Write raw notes and pedal events as a `.notes.npz` at `path` (an open file: given a path,
    np.savez would append '.npz'; its members carry no time stamp, so the bytes are reproducible).
    Not atomic by itself: callers write to a temporary name (`files.atomic_path`)."""
    values = {"onset_s": notes.onset_s, "offset_s": notes.offset_s, "pitch": notes.pitch,
              "velocity": notes.velocity, "pedal_time_s": pedals.time_s, "pedal_controller": pedals.controller,
              "pedal_value": pedals.value}
    with open(path, "wb") as f:
        np.savez(f, **{k: np.asarray(values[k], dtype=dtype) for k, dtype in NOTES_KEYS.items()})


def load_store_notes(path: str | os.PathLike) -> tuple[Notes, PedalEvents]:
    """A piece's raw notes and pedal events from its `.notes.npz` in a store (InputError if unreadable)."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return notes_from_arrays(arrays)
    except FileNotFoundError:
        raise InputError(f"{path}: {_INCOMPLETE}") from None
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{path}: not a readable notes file ({type(e).__name__}: {e})") from None


def save_piece_audio(path: str | os.PathLike, audio: np.ndarray) -> None:
    """Write a piece's int16 mono audio `[n_samples]` as `.npy` at `path` (an open file, as
    `save_notes`; callers write to a temporary name)."""
    audio = np.asarray(audio)
    if audio.dtype != np.int16 or audio.ndim != 1:
        raise ValueError(f"expected int16 [n] audio, got {audio.dtype} {list(audio.shape)}")
    with open(path, "wb") as f:
        np.save(f, audio, allow_pickle=False)


def load_piece_audio(path: str | os.PathLike, n_samples: int) -> np.ndarray:
    """A piece's int16 audio `[n_samples]`, memory-mapped (pages are read as they are touched, so a
    store larger than memory trains); InputError when missing or not `n_samples` int16 samples."""
    try:
        audio = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{path}: {_INCOMPLETE}") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable .npy audio file ({e})") from None
    if audio.dtype != np.int16 or audio.ndim != 1 or len(audio) != int(n_samples):
        raise InputError(f"{path}: expected int16 [{int(n_samples)}] audio, found {audio.dtype} {list(audio.shape)}")
    return audio
