"""The pieces of a source dataset: MAESTRO (metadata v1/v2 list JSON, v3 column JSON, or CSV) or a
generic folder tree of `name.mid|midi` + `name.wav|flac` pairs.

`find_pieces(source, split_csv=None)` returns `Piece` records (absolute paths, sorted by id). A
piece whose files are not both present is still returned, with `problem` set, so that `prepare`
reports it in its list of failures instead of dropping it silently.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from ..errors import InputError

__all__ = [
    "AUDIO_EXTENSIONS",
    "MIDI_EXTENSIONS",
    "SPLITS",
    "MetadataRow",
    "Piece",
    "find_metadata",
    "find_pieces",
    "hash_split",
    "piece_id",
    "read_metadata",
    "read_split_csv",
]

SPLITS: tuple[str, ...] = ("train", "validation", "test")
MIDI_EXTENSIONS: tuple[str, ...] = (".mid", ".midi")
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac")  # preferred first when both exist

_REQUIRED_COLUMNS = ("split", "year", "midi_filename", "audio_filename")
_METADATA_NAME = re.compile(r"^maestro-v(\d+(?:\.\d+)*)\.(json|csv)$")
_MAX_ID_LENGTH = 160


@dataclass(frozen=True)
class MetadataRow:
    """One performance as the MAESTRO metadata lists it (paths relative to the dataset root)."""

    split: str
    year: int | None
    composer: str
    title: str
    midi_filename: str
    audio_filename: str
    duration: float | None


@dataclass(frozen=True)
class Piece:
    """One MIDI + audio pair to prepare."""

    id: str  # filesystem-safe, derived from the audio path relative to the root
    split: str  # train | validation | test
    year: int | None  # None: unknown
    composer: str
    title: str
    midi_path: Path  # absolute
    audio_path: Path  # absolute
    source_midi: str  # as given: POSIX path relative to the source root (the metadata's own text)
    source_audio: str
    duration_seconds: float | None  # from the metadata, None if unknown
    problem: str | None = None  # "<path>: <problem>" when the pair is incomplete


# ------------------------------------------------------------------------------------------- ids


def piece_id(relative_audio_path: str) -> str:
    """Filesystem-safe id from a relative audio path: folders joined by `__`, extension dropped,
    characters other than `[A-Za-z0-9._-]` replaced. When that mapping is lossy (changed
    characters, `__` already in a name, a leading dot or a very long name) a short hash of the
    path is appended, so distinct paths always get distinct ids."""
    posix = PurePosixPath(relative_audio_path.replace("\\", "/"))
    parts = [p for p in posix.with_suffix("").parts if p not in ("", ".", "/")]
    if not parts:
        raise ValueError(f"empty audio path {relative_audio_path!r}")
    safe = [re.sub(r"[^A-Za-z0-9._-]", "_", p) for p in parts]
    lossy = any(s != p or "__" in p or p.startswith(".") for s, p in zip(safe, parts))
    safe = [("_" + s[1:]) if s.startswith(".") else s for s in safe]
    ident = "__".join(safe)
    if lossy or len(ident) > _MAX_ID_LENGTH:
        digest = hashlib.sha1(posix.as_posix().encode("utf-8")).hexdigest()[:8]
        ident = f"{ident[:_MAX_ID_LENGTH]}-{digest}"
    return ident


def hash_split(name: str) -> str:
    """Deterministic ~80/10/10 train/validation/test split from a file name (stable across runs,
    machines and folder moves)."""
    bucket = int.from_bytes(hashlib.sha1(name.encode("utf-8")).digest()[:4], "big") % 10
    return "train" if bucket < 8 else ("validation" if bucket == 8 else "test")


# -------------------------------------------------------------------------------------- metadata


def find_metadata(root: str | os.PathLike) -> Path | None:
    """The MAESTRO metadata file in `root` (`maestro-v*.json` or `.csv`): JSON preferred, then the
    highest version. None if there is none."""
    root = Path(root)
    candidates = []
    for entry in root.iterdir():
        m = _METADATA_NAME.match(entry.name)
        if m and entry.is_file():
            version = tuple(int(v) for v in m.group(1).split("."))
            candidates.append((m.group(2) == "json", version, entry.name, entry))
    if not candidates:
        return None
    return max(candidates)[3]


def read_metadata(path: str | os.PathLike) -> list[MetadataRow]:
    """Parse MAESTRO metadata: v1/v2 JSON (list of records), v3 JSON (column-oriented) or CSV.
    Rows in file order. Raises InputError naming the file on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
        records = _json_records(path, data)
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        _check_columns(path, reader.fieldnames or [])
        records = list(reader)
    else:
        raise InputError(f"{path}: unknown metadata format (expected .json or .csv)")
    return [_row(path, i, rec) for i, rec in enumerate(records)]


def _json_records(path: Path, data: Any) -> list[dict[str, Any]]:
    if isinstance(data, list):  # v1, v2: [{"split": ..., ...}, ...]
        if not all(isinstance(r, dict) for r in data):
            raise InputError(f"{path}: expected a list of records (objects)")
        missing = sorted({c for c in _REQUIRED_COLUMNS for r in data if c not in r})
        if missing:
            raise InputError(f"{path}: records lack field(s) {', '.join(missing)}")
        return data
    if isinstance(data, dict):  # v3: {"split": {"0": "train", ...}, ...}
        _check_columns(path, list(data))
        if not all(isinstance(col, dict) for col in data.values()):
            raise InputError(f"{path}: expected column-oriented JSON ({{column: {{row: value}}}})")
        try:
            keys = sorted({k for col in data.values() for k in col}, key=int)
        except ValueError:
            raise InputError(f"{path}: row keys must be integers") from None
        for name in _REQUIRED_COLUMNS:
            absent = [k for k in keys if k not in data[name]]
            if absent:
                raise InputError(f"{path}: column {name} has no value for row {absent[0]}")
        return [{name: col.get(k) for name, col in data.items()} for k in keys]
    raise InputError(f"{path}: expected a JSON list of records or an object of columns")


def _check_columns(path: Path, columns: Iterable[str]) -> None:
    missing = [c for c in _REQUIRED_COLUMNS if c not in set(columns)]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(columns) or 'none'})")


def _row(path: Path, index: int, rec: dict[str, Any]) -> MetadataRow:
    where = f"{path}: row {index}"
    split = rec["split"]
    if split not in SPLITS:
        raise InputError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
    for name in ("midi_filename", "audio_filename"):
        if not isinstance(rec[name], str) or not rec[name].strip():
            raise InputError(f"{where}: {name} is empty")
    try:
        year = None if rec["year"] in (None, "") else int(rec["year"])
    except (TypeError, ValueError):
        raise InputError(f"{where}: year {rec['year']!r} is not an integer") from None
    duration = rec.get("duration")
    try:
        duration = None if duration in (None, "") else float(duration)
    except (TypeError, ValueError):
        raise InputError(f"{where}: duration {duration!r} is not a number") from None
    return MetadataRow(
        split=split,
        year=year,
        composer=str(rec.get("canonical_composer") or ""),
        title=str(rec.get("canonical_title") or ""),
        midi_filename=rec["midi_filename"],
        audio_filename=rec["audio_filename"],
        duration=duration,
    )


# ------------------------------------------------------------------------------------- split CSV


def read_split_csv(path: str | os.PathLike) -> dict[str, str]:
    """`name,split` CSV -> {normalised name: split}. A name is a file name or a path relative to the
    source root, with or without its extension."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"{path}: cannot read split CSV ({e.strerror or e})") from None
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip() for c in reader.fieldnames or []]
    if "name" not in columns or "split" not in columns:
        raise InputError(f"{path}: split CSV needs columns name,split (has: {', '.join(columns) or 'none'})")
    reader.fieldnames = columns
    splits: dict[str, str] = {}
    for line, rec in enumerate(reader, start=2):
        name = _normalise_name((rec.get("name") or "").strip())
        split = (rec.get("split") or "").strip()
        if not name:
            raise InputError(f"{path}: line {line}: empty name")
        if split not in SPLITS:
            raise InputError(f"{path}: line {line}: split {split!r} is not one of {', '.join(SPLITS)}")
        if splits.get(name, split) != split:
            raise InputError(f"{path}: line {line}: {name!r} is listed in two splits")
        splits[name] = split
    return splits


def _normalise_name(name: str) -> str:
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    p = PurePosixPath(name)
    if p.suffix.lower() in MIDI_EXTENSIONS + AUDIO_EXTENSIONS:
        p = p.with_suffix("")
    return p.as_posix()


def _split_from_csv(splits: dict[str, str], relative_audio: str) -> str | None:
    stemmed = _normalise_name(relative_audio)
    return splits.get(stemmed) or splits.get(PurePosixPath(stemmed).name)


# ---------------------------------------------------------------------------------------- pieces


def find_pieces(source: str | os.PathLike, split_csv: str | os.PathLike | None = None) -> list[Piece]:
    """All pieces of `source`, sorted by id.

    `source` is a MAESTRO root (holding `maestro-v*.json|csv`), a MAESTRO metadata file, or a
    folder tree of MIDI + audio pairs. `split_csv` (columns `name,split`) overrides the split of the
    pieces it lists; the others keep the metadata's split (MAESTRO) or `hash_split` of their file
    name (generic folder). Raises InputError when the source is missing or holds nothing usable.
    """
    source = Path(source).absolute()
    if not source.exists():
        raise InputError(f"{source}: source not found")
    if source.is_file():
        if not _METADATA_NAME.match(source.name) and source.suffix.lower() not in (".json", ".csv"):
            raise InputError(f"{source}: expected a folder or a MAESTRO metadata .json/.csv file")
        root, metadata = source.parent, source
    else:
        root, metadata = source, find_metadata(source)
    overrides = read_split_csv(split_csv) if split_csv is not None else {}
    if metadata is not None:
        pieces = _maestro_pieces(root, metadata, overrides)
    else:
        pieces = _folder_pieces(root, overrides)
        if not pieces:
            raise InputError(
                f"{root}: no MAESTRO metadata (maestro-v*.json or .csv) and no MIDI + audio pairs "
                f"(name{'|'.join(MIDI_EXTENSIONS)} + name{'|'.join(AUDIO_EXTENSIONS)})")
    pieces.sort(key=lambda p: p.id)
    for a, b in zip(pieces, pieces[1:]):
        if a.id == b.id:
            raise InputError(f"{root}: two pieces map to the same id {a.id!r} ({a.source_audio}, {b.source_audio})")
    return pieces


def _maestro_pieces(root: Path, metadata: Path, overrides: dict[str, str]) -> list[Piece]:
    rows = read_metadata(metadata)
    if not rows:
        raise InputError(f"{metadata}: lists no performances")
    pieces = []
    for row in rows:
        pieces.append(Piece(
            id=piece_id(row.audio_filename),
            split=_split_from_csv(overrides, row.audio_filename) or row.split,
            year=row.year,
            composer=row.composer,
            title=row.title,
            midi_path=root / row.midi_filename,
            audio_path=root / row.audio_filename,
            source_midi=row.midi_filename,
            source_audio=row.audio_filename,
            duration_seconds=row.duration,
        ))
    return pieces


def _folder_pieces(root: Path, overrides: dict[str, str]) -> list[Piece]:
    """Pair files by (folder, stem). Hidden files and folders are ignored."""
    groups: dict[tuple[str, str], dict[str, list[str]]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel_folder = Path(folder).relative_to(root).as_posix()
        for name in files:
            if name.startswith("."):
                continue
            stem, ext = os.path.splitext(name)
            kind = "midi" if ext.lower() in MIDI_EXTENSIONS else "audio" if ext.lower() in AUDIO_EXTENSIONS else None
            if kind is None:
                continue
            rel = name if rel_folder == "." else f"{rel_folder}/{name}"
            groups.setdefault((rel_folder, stem), {"midi": [], "audio": []})[kind].append(rel)
    pieces = []
    for (_, stem), found in sorted(groups.items()):
        midi = sorted(found["midi"], key=_extension_rank)
        audio = sorted(found["audio"], key=_extension_rank)
        problem = None
        if not audio:
            base = midi[0].rsplit(".", 1)[0]
            audio = [base + AUDIO_EXTENSIONS[0]]
            problem = f"{root / midi[0]}: no audio beside it ({'|'.join(base.rsplit('/', 1)[-1] + e for e in AUDIO_EXTENSIONS)})"
        if not midi:
            base = audio[0].rsplit(".", 1)[0]
            midi = [base + MIDI_EXTENSIONS[0]]
            problem = f"{root / audio[0]}: no MIDI beside it ({'|'.join(base.rsplit('/', 1)[-1] + e for e in MIDI_EXTENSIONS)})"
        pieces.append(Piece(
            id=piece_id(audio[0]),
            split=_split_from_csv(overrides, audio[0]) or hash_split(stem),
            year=None,
            composer="",
            title=stem,
            midi_path=root / midi[0],
            audio_path=root / audio[0],
            source_midi=midi[0],
            source_audio=audio[0],
            duration_seconds=None,
            problem=problem,
        ))
    return pieces


def _extension_rank(rel: str) -> tuple[int, str]:
    ext = os.path.splitext(rel)[1].lower()
    order = MIDI_EXTENSIONS + AUDIO_EXTENSIONS
    return (order.index(ext) if ext in order else len(order), rel)
