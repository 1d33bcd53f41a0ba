"""`midi2wave prepare`: turn MAESTRO (or a folder of MIDI + audio pairs) into a dataset store.

One pass per piece, in parallel worker processes: decode, mix to mono, resample (soxr HQ) and store
int16 `.npy`; read the MIDI and store its raw notes and pedal events `.npz`; then the piece record
`.json` (layout in data/store.py). Every file is written under a temporary name and renamed, and
the record comes last, so a killed run never leaves a half-written piece: re-running resumes where
it stopped, skipping pieces whose record exists and whose source files (size, mtime) and metadata
are unchanged. `manifest.json` is rebuilt at the end from all records in the store, sorted by id
with no timestamps, so identical inputs give byte-identical stores however the work was split.

A bad piece (unreadable audio, corrupt or empty MIDI, missing file, MIDI running past the end of
the audio) is one line on stderr; it is skipped and listed at the end and in `errors.json`, and
the rest of the batch goes on.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import constants as C
from ..audio import audio_info, decode_mono_int16
from ..errors import InputError
from ..files import TEMP_NAME, atomic_path
from .maestro import Piece, find_pieces
from .store import (MANIFEST, PIECE_SUFFIXES, PIECES_DIR, SOURCE_KEYS, piece_file_names, read_manifest, read_record,
                    save_notes, save_piece_audio, write_manifest, write_record)

logger = logging.getLogger(__name__)

__all__ = ["PrepareSummary", "prepare_dataset", "shard_items"]


@dataclass
class PrepareSummary:
    """What one `prepare_dataset` run did."""

    store: Path
    done: list[str] = field(default_factory=list)  # ids prepared by this run
    skipped_existing: list[str] = field(default_factory=list)  # ids already prepared and unchanged
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source path, "<path>: <problem>")
    audio_seconds: float = 0.0  # audio prepared by this run (at the store's rate)
    wall_seconds: float = 0.0
    pieces_in_store: int = 0  # records listed in manifest.json
    errors_file: Path | None = None  # errors.json (errors-shard-I-of-N.json for a shard)


class _PieceFailure(Exception):
    def __init__(self, path: Path | str, message: str):
        super().__init__(message)
        self.path = str(path)
        self.message = " ".join(message.split())  # always one line


# ------------------------------------------------------------------------------------------- API


def prepare_dataset(
    source: str | os.PathLike,
    out: str | os.PathLike,
    jobs: int | None = None,
    sample_rate_hz: int = C.SAMPLE_RATE_HZ,
    shard: tuple[int, int] | None = None,
    split_csv: str | os.PathLike | None = None,
    max_duration_mismatch_seconds: float = 5.0,
    progress: bool = True,
) -> PrepareSummary:
    """Prepare (or resume preparing) the store `out` from `source` (see module doc).

    `jobs`: worker processes (default: the usable cores). `shard=(i, n)`: only pieces whose index in
    id order is `i` mod `n` (run shards on several machines into one shared store; the manifest
    always lists every finished piece in the store). Raises InputError for a missing or empty
    source or an `out` that is not a store; problems with single pieces are in `.failed` instead.
    """
    t0 = time.perf_counter()
    if sample_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz must be > 0, got {sample_rate_hz}")
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    pieces = shard_items(find_pieces(source, split_csv=split_csv), shard)
    store = Path(out)
    _open_store(store, sample_rate_hz)
    pieces_dir = store / PIECES_DIR
    summary = PrepareSummary(store=store)

    todo: list[Piece] = []
    for piece in pieces:
        if piece.problem is not None:
            continue
        if _is_done(piece, pieces_dir, sample_rate_hz):
            summary.skipped_existing.append(piece.id)
        else:
            todo.append(piece)
    _remove_stale_temps(pieces_dir, {p.id for p in todo})

    def report(path: str, message: str) -> None:
        summary.failed.append((path, message))
        logger.error("midi2wave: failed: %s", message)

    for piece in pieces:
        if piece.problem is not None:
            audio_first = piece.problem.startswith(str(piece.audio_path))
            report(str(piece.audio_path if audio_first else piece.midi_path), piece.problem)

    n_jobs = min(jobs or _usable_cores(), max(1, len(todo)))
    estimates = {p.id: _estimated_seconds(p) for p in todo}
    bar = _progress_bar(progress and bool(todo), sum(estimates.values()), len(todo))
    started = time.perf_counter()
    finished = [0, 0]  # pieces of `todo` finished, of which failed

    def on_result(piece: Piece, result: tuple) -> None:
        finished[0] += 1
        finished[1] += result[0] != "done"
        if result[0] == "done":
            summary.done.append(piece.id)
            summary.audio_seconds += result[1]
        else:
            report(result[1], result[2])
        if bar is not None:
            bar.update(estimates[piece.id])
            elapsed = max(time.perf_counter() - started, 1e-9)
            bar.set_postfix_str(
                f"{finished[0]}/{len(todo)} pieces, {finished[0] / elapsed:.2f} pieces/s, "
                f"{summary.audio_seconds / 3600 / elapsed:.3f} audio-h/s "
                f"({summary.audio_seconds / elapsed:.0f}x real time), {finished[1]} failed",
                refresh=False)

    try:
        _run(todo, (pieces_dir, sample_rate_hz, max_duration_mismatch_seconds), n_jobs, on_result)
    finally:
        if bar is not None:
            bar.close()
    # Workers killed mid-write (a pool breaks as a whole when one of its processes dies) leave
    # temporaries; every piece of `todo` is now finished or failed, so its temporaries are stale.
    _remove_stale_temps(pieces_dir, {p.id for p in todo})

    summary.failed.sort()
    summary.done.sort()
    summary.pieces_in_store = _write_manifest(store, sample_rate_hz)
    summary.errors_file = _write_errors(store, shard, summary.failed)
    summary.wall_seconds = time.perf_counter() - t0
    if progress or summary.failed:
        _print_summary(summary)
    return summary


# ------------------------------------------------------------------------------------ the worker


def shard_items(items: list, shard: tuple[int, int] | None) -> list:
    """Shard `i` of `n` of `items` (in the order given, which must be the same for every shard: a
    sorted order): those whose index is `i` mod `n`. The shards are disjoint and cover `items`,
    and each is spread over the whole list. None: all of them. (`prepare --shard`, `synthesize
    --shard`.)"""
    if shard is None:
        return list(items)
    if not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard}")
    return [p for k, p in enumerate(items) if k % shard[1] == shard[0]]


def _prepare_piece(piece: Piece, pieces_dir: Path, sample_rate_hz: int, max_mismatch: float) -> tuple:
    """Runs in a worker. ("done", audio seconds) or ("failed", source path, one-line message)."""
    try:
        return ("done", _prepare_piece_or_raise(piece, pieces_dir, sample_rate_hz, max_mismatch))
    except _PieceFailure as e:
        return ("failed", e.path, e.message)
    except Exception as e:  # noqa: BLE001 - a bug or a library failure must not stop the batch
        text = " ".join(f"{type(e).__name__}: {e}".split())
        return ("failed", str(piece.audio_path), f"{piece.audio_path}: unexpected error ({text})")


def _prepare_piece_or_raise(piece: Piece, pieces_dir: Path, sample_rate_hz: int, max_mismatch: float) -> float:
    from ..midi import read_midi

    audio_stat = _stat(piece.audio_path)
    midi_stat = _stat(piece.midi_path)
    try:
        notes, pedals = read_midi(piece.midi_path)
    except InputError as e:
        raise _PieceFailure(piece.midi_path, str(e)) from None
    if len(notes.onset_s) == 0:
        raise _PieceFailure(piece.midi_path, f"{piece.midi_path}: no notes")
    try:
        audio, _ = decode_mono_int16(piece.audio_path, sample_rate_hz)
    except InputError as e:
        raise _PieceFailure(piece.audio_path, str(e)) from None
    duration = audio.shape[0] / sample_rate_hz
    midi_end = float(np.max(notes.offset_s))
    if midi_end > duration + max_mismatch:
        raise _PieceFailure(
            piece.midi_path,
            f"{piece.midi_path}: MIDI ends at {midi_end:.2f} s, {midi_end - duration:.2f} s after the end of "
            f"its audio {piece.audio_path} ({duration:.2f} s; limit {max_mismatch:g} s)")

    audio_name, notes_name, record_name = piece_file_names(piece.id)
    # The record marks the piece done: remove an outdated one before touching the data files.
    try:
        os.unlink(pieces_dir / record_name)
    except FileNotFoundError:
        pass
    with atomic_path(pieces_dir / audio_name, force=True) as tmp:
        save_piece_audio(tmp, audio)
    with atomic_path(pieces_dir / notes_name, force=True) as tmp:
        save_notes(tmp, notes, pedals)
    record = {
        "id": piece.id,
        "split": piece.split,
        "year": piece.year,
        "composer": piece.composer,
        "title": piece.title,
        "duration_seconds": duration,
        "n_samples": int(audio.shape[0]),
        "sample_rate_hz": sample_rate_hz,
        "audio": f"{PIECES_DIR}/{audio_name}",
        "notes": f"{PIECES_DIR}/{notes_name}",
        "source_audio": piece.source_audio,
        "source_midi": piece.source_midi,
        "source_audio_bytes": audio_stat.st_size,
        "source_audio_mtime_ns": audio_stat.st_mtime_ns,
        "source_midi_bytes": midi_stat.st_size,
        "source_midi_mtime_ns": midi_stat.st_mtime_ns,
    }
    write_record(pieces_dir / record_name, record)
    return duration


def _stat(path: Path) -> os.stat_result:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _PieceFailure(path, f"{path}: file not found") from None
    except OSError as e:
        raise _PieceFailure(path, f"{path}: cannot read ({e.strerror or e})") from None
    if not os.path.isfile(path):
        raise _PieceFailure(path, f"{path}: not a file")
    return st


# ----------------------------------------------------------------------------------- scheduling


def _run(todo: list[Piece], args: tuple, jobs: int, on_result: Callable[[Piece, tuple], None]) -> None:
    """Prepare `todo` on `jobs` processes (in this process when 1), calling `on_result` as pieces
    finish. If a worker dies (e.g. killed for memory) the pieces it may have held are retried one
    by one in a fresh process; only the one that kills its worker again fails."""
    if jobs == 1:
        for piece in todo:
            on_result(piece, _prepare_piece(piece, *args))
        return
    pending = deque(todo)
    suspects: list[Piece] = []
    context = _mp_context()
    while pending:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            inflight: dict[Any, Piece] = {}
            broken = False
            while (pending or inflight) and not broken:
                while pending and len(inflight) < 2 * jobs:  # bounded: a dead pool loses little
                    piece = pending.popleft()
                    inflight[pool.submit(_prepare_piece, piece, *args)] = piece
                finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in finished:
                    piece = inflight.pop(future)
                    try:
                        on_result(piece, future.result())
                    except BrokenProcessPool:
                        broken = True
                        suspects.append(piece)
            suspects.extend(inflight.values())
    for piece in suspects:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            try:
                result = pool.submit(_prepare_piece, piece, *args).result()
            except BrokenProcessPool:
                result = ("failed", str(piece.audio_path),
                          f"{piece.audio_path}: the worker process died preparing it (out of memory?)")
        on_result(piece, result)


def _mp_context() -> Any:
    # fork starts workers in milliseconds and they inherit the imported modules; workers use only
    # numpy/soundfile/soxr/mido, and the pool is started before any thread of ours (no tqdm monitor).
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return None


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _estimated_seconds(piece: Piece) -> float:
    """Audio length for the progress bar: the metadata's, else the file header's."""
    if piece.duration_seconds is not None:
        return max(piece.duration_seconds, 0.0)
    try:
        rate, _, frames = audio_info(piece.audio_path)
        return frames / rate
    except InputError:
        return 0.0


# ---------------------------------------------------------------------------------------- store


def _open_store(store: Path, sample_rate_hz: int) -> None:
    if store.exists() and not store.is_dir():
        raise InputError(f"{store}: exists and is not a folder")
    if store.is_dir() and any(store.iterdir()):
        if not (store / MANIFEST).exists() and not (store / PIECES_DIR).is_dir():
            raise InputError(f"{store}: folder is not empty and is not a dataset store (no {MANIFEST} or {PIECES_DIR}/)")
        if (store / MANIFEST).exists():
            manifest = read_manifest(store, check_version=False)
            if manifest.get("sample_rate_hz") != sample_rate_hz:
                raise InputError(f"{store}: the store holds {manifest.get('sample_rate_hz')} Hz audio, "
                                 f"not {sample_rate_hz} Hz (prepare into another folder)")
    (store / PIECES_DIR).mkdir(parents=True, exist_ok=True)


def _is_done(piece: Piece, pieces_dir: Path, sample_rate_hz: int) -> bool:
    record = read_record(pieces_dir / piece_file_names(piece.id)[2])
    if record is None:
        return False
    if record.get("sample_rate_hz") != sample_rate_hz:
        raise InputError(f"{pieces_dir / (piece.id + '.json')}: piece stored at {record.get('sample_rate_hz')} Hz, "
                         f"not {sample_rate_hz} Hz (prepare into another folder)")
    try:
        audio_stat, midi_stat = os.stat(piece.audio_path), os.stat(piece.midi_path)
    except OSError:
        return False
    current = {
        "split": piece.split, "year": piece.year, "composer": piece.composer, "title": piece.title,
        "source_audio": piece.source_audio, "source_midi": piece.source_midi,
        "source_audio_bytes": audio_stat.st_size, "source_audio_mtime_ns": audio_stat.st_mtime_ns,
        "source_midi_bytes": midi_stat.st_size, "source_midi_mtime_ns": midi_stat.st_mtime_ns,
    }
    if any(record.get(k) != current[k] for k in SOURCE_KEYS):
        return False
    return (pieces_dir.parent / str(record.get("audio"))).is_file() and \
        (pieces_dir.parent / str(record.get("notes"))).is_file()


def _remove_stale_temps(pieces_dir: Path, ids: set[str]) -> None:
    """Delete temporary files a killed run left for the pieces about to be (re)done. Temporaries of
    other pieces are left alone: they may belong to another shard writing into the same store."""
    finals = {f"{i}{suffix}" for i in ids for suffix in PIECE_SUFFIXES}
    for entry in os.scandir(pieces_dir):
        m = TEMP_NAME.match(entry.name)
        if m and m.group("final") in finals:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass


def _write_manifest(store: Path, sample_rate_hz: int) -> int:
    records = []
    for entry in os.scandir(store / PIECES_DIR):
        if entry.name.endswith(".json") and not entry.name.startswith("."):
            record = read_record(Path(entry.path))
            if record is None or "id" not in record:
                logger.warning("midi2wave: warning: %s: unreadable piece record, left out of the manifest", entry.path)
                continue
            if record.get("sample_rate_hz") != sample_rate_hz:
                raise InputError(f"{entry.path}: piece stored at {record.get('sample_rate_hz')} Hz, "
                                 f"not {sample_rate_hz} Hz (the store mixes rates)")
            records.append(record)
    write_manifest(store, sample_rate_hz, records)
    return len(records)


def _write_errors(store: Path, shard: tuple[int, int] | None, failed: list[tuple[str, str]]) -> Path:
    """errors.json (errors-shard-I-of-N.json for a shard): the failures of the last run."""
    name = "errors.json" if shard is None else f"errors-shard-{shard[0]}-of-{shard[1]}.json"
    body = {"failed": [{"path": path, "message": message} for path, message in sorted(failed)]}
    with atomic_path(store / name, force=True) as tmp:
        tmp.write_text(_dumps(body), encoding="utf-8")
    return store / name


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -------------------------------------------------------------------------------------- output


def _progress_bar(enabled: bool, total_seconds: float, n_pieces: int) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    class _Bar(tqdm):  # no monitor thread: worker pools may be (re)started by fork while it runs
        monitor_interval = 0

    return _Bar(total=total_seconds, unit="audio-s", file=sys.stderr, dynamic_ncols=True, smoothing=0.1,
                desc="prepare", bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]",
                postfix=f"0/{n_pieces} pieces")


def _print_summary(summary: PrepareSummary) -> None:
    hours = summary.audio_seconds / 3600
    speed = f" ({summary.audio_seconds / max(summary.wall_seconds, 1e-9):.0f}x real time)" if summary.done else ""
    line = (f"midi2wave: prepared {len(summary.done)} pieces ({hours:.2f} h of audio) in {summary.wall_seconds:.1f} s{speed}; "
            f"{len(summary.skipped_existing)} already done; {len(summary.failed)} failed; "
            f"{summary.pieces_in_store} pieces in {summary.store / MANIFEST}")
    logger.info("%s", line)
    if summary.failed:
        logger.error("midi2wave: %d pieces failed (listed in %s):", len(summary.failed), summary.errors_file)
        for _, message in summary.failed:
            logger.error("  %s", message)
