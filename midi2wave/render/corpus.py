"""Corpus rendering: `midi2wave synthesize FOLDER` or `--list FILE` with `-o DIR` (docs/rendering.md).

A corpus is every MIDI file under a folder (recursively; `*.mid` and `*.midi` in any case, hidden
files and folders left out) or every path in a list file (one per line, relative to the list file's
folder; blank lines and lines starting with `#` ignored). Each piece is named by its path relative to that
root, and its WAV mirrors it under the output folder (`a/b/x.mid` -> `DIR/a/b/x.wav`).

Shards: `shard=(i, n)` renders the pieces whose index in the sorted corpus is `i` mod `n`
(`data.prepare.shard_items`, as `prepare --shard`), so shards on several machines cover the corpus
once. A piece's output depends on the piece, the model and the sampling options only (every piece
is rendered from `options.seed`, as a single `synthesize FILE` would), never on the shard, so any
split gives the same files as one run, bit for bit. (The automatic chunking of long pieces follows
the number of threads; shards on machines with different core counts need the same `--threads` or
an explicit `--chunk-seconds` for that.)

Resume: an output that exists and is a complete WAV of the expected length
(`audio.pcm16_wav_problem`) is skipped; an incomplete or corrupt one is rendered again. Outputs are
written under a temporary name and renamed (`audio.wav_writer`), so a killed run leaves only
temporaries, which the next run deletes for the pieces it renders (those of other pieces may belong
to a shard at work in the same folder).

Manifest: one JSON line per piece and run, appended as each piece ends (`manifest.jsonl`, or
`manifest.shard-I-of-N.jsonl` for a shard, so shards writing into one folder never share a file;
each line is one `write` to a file opened for appending). Later lines supersede earlier ones.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from ..config import SamplingOptions
from ..errors import InputError, Midi2WaveError
from ..files import make_output_folder

logger = logging.getLogger(__name__)

__all__ = ["MIDI_SUFFIXES", "CorpusPiece", "find_corpus", "manifest_path", "synthesize_corpus"]

MIDI_SUFFIXES = (".mid", ".midi")  # matched case-insensitively


@dataclass(frozen=True)
class CorpusPiece:
    """A MIDI file of a corpus: its path and its name relative to the corpus root (POSIX, which the
    output mirrors and the manifest records)."""

    path: Path
    name: str

    def output(self, out_dir: Path) -> Path:
        return out_dir / PurePosixPath(self.name).with_suffix(".wav")


def find_corpus(folder: Path | None = None, list_file: Path | None = None) -> list[CorpusPiece]:
    """The corpus of `folder` (its MIDI files, recursively) or of `list_file`, sorted by name.
    Raises InputError for a missing folder or list, a list entry outside the list's folder, or an
    empty corpus. Listed files that are missing fail one by one when rendered."""
    if (folder is None) == (list_file is None):
        raise ValueError("give a folder or a list file")
    pieces = _scan(folder) if folder is not None else _read_list(list_file)
    if not pieces:
        where = f"{folder}: no MIDI files (*.mid, *.midi) in the folder or below" if folder is not None \
            else f"{list_file}: lists no MIDI files"
        raise InputError(where)
    return sorted(pieces, key=lambda p: p.name)


def _scan(folder: Path) -> list[CorpusPiece]:
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(MIDI_SUFFIXES):
                path = Path(root) / name
                found.append(CorpusPiece(path, path.relative_to(folder).as_posix()))
    return found


def _read_list(list_file: Path) -> list[CorpusPiece]:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{list_file}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{list_file}: cannot read the list ({e})") from None
    root = list_file.parent
    seen: dict[str, CorpusPiece] = {}
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        name = os.path.normpath(os.path.relpath(entry, root) if os.path.isabs(entry) else entry)
        if name == "." or name == ".." or name.startswith(".." + os.sep):
            raise InputError(f"{list_file}:{number}: {entry} is not below the list's folder {root} (outputs mirror "
                             f"the paths relative to it: put the list in the corpus's top folder)")
        name = PurePosixPath(Path(name)).as_posix()
        seen.setdefault(name, CorpusPiece(root / name, name))
    return list(seen.values())


def manifest_path(out_dir: Path, shard: tuple[int, int] | None) -> Path:
    """Where a run's manifest lines go by default: one file per shard."""
    return out_dir / ("manifest.jsonl" if shard is None else f"manifest.shard-{shard[0]}-of-{shard[1]}.jsonl")


class _Manifest:
    """The JSONL manifest, one line appended (a single `write`, O_APPEND) per piece."""

    def __init__(self, path: Path, shard: tuple[int, int] | None, seed: int) -> None:
        self.path, self.shard, self.seed = path, shard, seed
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise Midi2WaveError(f"{path}: cannot open the manifest ({e.strerror or e})") from None

    def add(self, piece: CorpusPiece, status: str, *, output: str | None, audio_seconds: float | None,
            wall_seconds: float, error: str | None = None) -> None:
        rtf = wall_seconds / audio_seconds if status == "rendered" and audio_seconds else None
        record = {"input": piece.name, "output": output, "status": status, "error": error,
                  "audio_seconds": None if audio_seconds is None else round(audio_seconds, 6),
                  "wall_seconds": round(wall_seconds, 3), "real_time_factor": None if rtf is None else round(rtf, 4),
                  "seed": self.seed, "shard": None if self.shard is None else f"{self.shard[0]}/{self.shard[1]}",
                  "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.write(self.fd, (json.dumps(record) + "\n").encode("utf-8"))

    def close(self) -> None:
        os.close(self.fd)


def _collisions(pieces: Sequence[CorpusPiece]) -> dict[str, str]:
    """{name: the earlier piece's name} for pieces whose output another piece's already takes
    (`x.mid` beside `x.midi`), over the whole corpus, so every shard decides alike."""
    first: dict[str, str] = {}
    clash = {}
    for piece in pieces:
        key = str(PurePosixPath(piece.name).with_suffix(".wav"))
        if key in first:
            clash[piece.name] = first[key]
        else:
            first[key] = piece.name
    return clash


def _check_out_dir(out_dir: Path) -> None:
    make_output_folder(out_dir, "a corpus needs -o FOLDER")
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise Midi2WaveError(f"{out_dir}: the output folder is not writable")


def synthesize_corpus(pieces: Sequence[CorpusPiece], options: SamplingOptions, out_dir: Path, *,
                      shard: tuple[int, int] | None = None, manifest: Path | None = None,
                      checkpoint: Path | None = None, start_s: float = 0.0, end_s: float | None = None,
                      year: int | None = None, prime: Path | None = None, prime_seconds: float = 1.0,
                      device: str = "cpu", force: bool = False, quiet: bool = False) -> int:
    """Render shard `shard` of the corpus `pieces` (`find_corpus`) into `out_dir`, mirroring their
    names, resuming (module doc): complete outputs are skipped unless `force`. Each piece's outcome
    is one manifest line (`manifest`, default `manifest_path`); a failed piece is one line on stderr
    and the rest go on. Prints a summary line. Returns 0, or 1 if any piece failed."""
    from .. import constants as C
    from ..audio import pcm16_wav_problem, wav_writer
    from ..checkpoint import load_model
    from ..data.prepare import shard_items
    from .synthesize import (
        _error,
        _load_prime,
        _unmap_freed_buffers,
        _window,
        read_piece,
        stream_notes,
    )

    if prime_seconds <= 0 and prime is not None:
        raise Midi2WaveError(f"--prime-seconds must be > 0, got {prime_seconds}")
    out_dir = Path(out_dir)
    from ..devices import check_device

    check_device(device)  # before the output folder is made
    clash = _collisions(pieces)
    mine = shard_items(list(pieces), shard)
    _check_out_dir(out_dir)
    manifest = Path(manifest) if manifest is not None else manifest_path(out_dir, shard)

    _unmap_freed_buffers()
    model, config = load_model(checkpoint, device=device)
    options = options.resolve(config)
    data = model.data_config
    sr = data.sample_rate_hz
    if year is not None and year not in C.MAESTRO_YEARS:
        logger.warning("midi2wave: note: --year %s is not a MAESTRO year %s; rendering as an unknown year",
                       year, list(C.MAESTRO_YEARS))
    prime_audio = _load_prime(prime, sr, start_s) if prime is not None else None

    counts = {"rendered": 0, "skipped": 0, "failed": 0}
    audio_total = wall_total = 0.0
    log = _Manifest(manifest, shard, int(options.seed))
    try:
        for k, piece in enumerate(mine, 1):
            dst = piece.output(out_dir)
            rel = dst.relative_to(out_dir).as_posix()
            t0 = time.perf_counter()
            try:
                if piece.name in clash:
                    raise InputError(f"{piece.path}: its output {dst} is also the output of {clash[piece.name]}")
                notes, pedals = read_piece(piece.path, data.sustain_threshold)
                s0, s1 = _window(data, notes, start_s, end_s, str(piece.path))
                if dst.exists() and not force:
                    problem = pcm16_wav_problem(dst, sr, s1 - s0)
                    if problem is None:
                        counts["skipped"] += 1
                        log.add(piece, "skipped", output=rel, audio_seconds=(s1 - s0) / sr,
                                wall_seconds=time.perf_counter() - t0)
                        continue
                    logger.warning("midi2wave: note: %s: incomplete (%s); rendering it again", dst, problem)
                dst.parent.mkdir(parents=True, exist_ok=True)
                rendering = stream_notes(model, notes, pedals, options, start_s=start_s, end_s=end_s, year=year,
                                         prime_audio=prime_audio, prime_seconds=prime_seconds, progress=not quiet,
                                         label=f"[{k}/{len(mine)}] {piece.name}", where=str(piece.path))
                with wav_writer(dst, sr, force=True) as wav:  # replaces only an incomplete output (or --force)
                    for chunk in rendering:
                        wav.write(chunk)
            except (Midi2WaveError, OSError) as e:  # OSError: the output could not be written (disk, permissions)
                counts["failed"] += 1
                message = " ".join(str(e).split())
                _error(message)
                log.add(piece, "failed", output=None, audio_seconds=None, wall_seconds=time.perf_counter() - t0,
                        error=message)
                continue
            seconds = time.perf_counter() - t0
            audio = rendering.n_samples / sr
            counts["rendered"] += 1
            audio_total, wall_total = audio_total + audio, wall_total + seconds
            log.add(piece, "rendered", output=rel, audio_seconds=audio, wall_seconds=seconds)
            if not quiet:
                logger.info("wrote %s (%.2f s of audio in %.1f s, real-time factor %.2f)", dst, audio, seconds,
                            seconds / max(audio, 1e-9))
    finally:
        log.close()
    which = f"shard {shard[0]}/{shard[1]}: {len(mine)} of {len(pieces)} pieces" if shard is not None \
        else f"{len(pieces)} pieces"
    rate = f", real-time factor {wall_total / audio_total:.2f}" if audio_total > 0 else ""
    summary = (f"midi2wave: {which}: {counts['rendered']} rendered ({audio_total:.1f} s of audio in {wall_total:.1f} s"
               f"{rate}), {counts['skipped']} skipped (complete), {counts['failed']} failed; manifest {manifest}")
    (logger.warning if counts["failed"] else logger.info)(summary)  # failures stay visible under -q
    return 1 if counts["failed"] else 0
