"""Atomic file writing: the one place outputs are written under a temporary name and renamed.

Every output of the package (WAVs, checkpoints, store pieces and manifest, reports) goes through
`atomic_path` (for writers that need a path: soundfile, np.save, matplotlib; a streaming writer keeps
the temporary file open through the body and writes it piece by piece, e.g. `audio.wav_writer` for
long renders) or `atomic_write_bytes` (for bytes already in memory), so a crash or Ctrl-C never leaves a half-written file under the final
name, and an existing output is never replaced unless asked (`force`). Folders of outputs (a
listening page, a report) are filled under a temporary name and renamed the same way (`atomic_folder`).

Temporary names are `.<final name>.<pid>-<hex>.tmp` in the same folder (so the rename is atomic on
one filesystem); `TEMP_NAME` matches them, for cleaners of interrupted runs (data/prepare.py,
`remove_stale_temps`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import time
import shutil
from pathlib import Path
from typing import Iterator, Sequence

from .errors import CheckpointError, Midi2WaveError, OutputExistsError

ASSETS_DIR = Path(__file__).resolve().parent / "assets"  # the bundled model (checkpoint.bundled_model_path)
LIVE_ASSETS_DIR = ASSETS_DIR / "live"  # the bundled live model (a causal context; `midi2wave live`, `play`)
SAFETENSORS_NAME = "model.safetensors"  # an exported model's weights (checkpoint.py)

__all__ = ["ASSETS_DIR", "LIVE_ASSETS_DIR", "SAFETENSORS_NAME", "find_checkpoint", "step_checkpoints", "checked_outputs",
           "report_error", "STALE_TEMP_SECONDS", "TEMP_NAME", "atomic_folder", "atomic_path", "atomic_write_bytes", "check_folder",
           "remove_stale_temps", "temp_name"]

logger = logging.getLogger(__name__)

# `.<final>.<pid>-<hex>.tmp`, as made by `temp_name`
TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.(?P<pid>\d+)-[0-9a-f]+\.tmp$")


def temp_name(path: str | os.PathLike) -> Path:
    """A fresh hidden name beside `path`: `.<name>.<pid>-<hex>.tmp` (same folder, so rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _exists_error(path: Path) -> OutputExistsError:
    return OutputExistsError(f"{path}: already exists (use --force to overwrite)")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on success it becomes `path` in one rename.

    Nothing is left at `path` or beside it if the body raises. Without `force` an existing `path`
    is never replaced (OutputExistsError), even if it appears while writing.
    """
    path = Path(path)
    if not force and path.exists():
        raise _exists_error(path)
    tmp = temp_name(path)
    try:
        yield tmp
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if path exists: no clobbering race
            except FileExistsError:
                raise _exists_error(path) from None
            except OSError:  # filesystem without hard links
                if path.exists():
                    raise _exists_error(path) from None
                os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, force: bool = True, sync: bool = True) -> Path:
    """Write `data` to `path` atomically (see `atomic_path`); returns the path.

    `force` (default True: checkpoints and run files are rewritten in place) replaces an existing
    file; `sync` flushes the data to disk before the rename, so a power cut leaves the old file or
    the new one, never an empty one.
    """
    path = Path(path)
    with atomic_path(path, force=force) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
    return path


# A temporary of a process that is not alive here is removed once unmodified this long even when it is
# not the output about to be written: it may belong to a live writer on another machine that shares
# the folder, and live writers touch their file far more often (a render writes every window).
STALE_TEMP_SECONDS = 600.0


def _alive_here(pid: int) -> bool:
    """Whether process `pid` exists on this machine (another user's counts; so does a reused pid)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: checks only
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: another user's; a pid too large: not ours to judge
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike, final: str | None = None,
                       min_age_s: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove the temporaries (`TEMP_NAME`) in `folder` that processes no longer alive left behind
    (a run killed by SIGKILL or a power cut cannot remove its own): those of the output `final` (a
    file name) at once, the others once unmodified for `min_age_s`. Never the temporary of a live
    process. Logs what it removed and where; returns the removed paths. Only on POSIX (elsewhere
    there is no harmless check whether a process lives); a folder that cannot be listed is left alone."""
    if os.name != "posix":
        return []
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    now = time.time()
    for entry in entries:
        m = TEMP_NAME.match(entry.name)
        if m is None or _alive_here(int(m.group("pid"))):
            continue
        try:
            if m.group("final") != final and now - entry.stat(follow_symlinks=False).st_mtime < min_age_s:
                continue
            os.unlink(entry.path)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
        removed.append(Path(entry.path))
    if removed:
        logger.info("midi2wave: removed %d temporary file(s) left by killed runs in %s: %s", len(removed), folder,
                    ", ".join(p.name for p in removed))
    return removed
def make_output_folder(folder: str | os.PathLike, when_a_file: str) -> Path:
    """Create an output folder (and its parents) before any work; one-line Midi2WaveError when a file
    stands there (`when_a_file` says what the command needed) or it cannot be made."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise Midi2WaveError(f"{folder}: is a file; {when_a_file}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Midi2WaveError(f"{folder}: cannot create the output folder ({e.strerror or e})") from None
    return folder


def check_folder(folder: str | os.PathLike, force: bool = False) -> None:
    """Refuse an output folder that exists and is not empty, unless `force` (OutputExistsError), and
    a path that exists and is not a folder. For checks before costly work, and `atomic_folder`'s."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"{folder}: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise OutputExistsError(f"{folder}: already exists and is not empty (use --force to overwrite)")


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `folder` (`temp_name`) to fill; on success it becomes `folder`
    (an existing empty one, or with `force` any existing one, is replaced: renamed aside, then
    removed). Nothing is left behind if the body raises. `check_folder` refuses the folder before and
    after the body (something may appear meanwhile); its parent folder must exist."""
    folder = Path(folder)
    check_folder(folder, force)
    tmp, old = temp_name(folder), temp_name(folder)
    tmp.mkdir()
    try:
        yield tmp
        check_folder(folder, force)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report_error(message: str) -> None:
    """One line `midi2wave: error: ...` on the log, for a batch job that goes on with the rest."""
    logger.error("midi2wave: error: %s", message)


def _output_paths(inputs: Sequence[Path], out: Path | None) -> list[Path]:
    """Where each input's WAV goes: -o FILE (one input), -o FOLDER (several, or an existing folder),
    or INPUT.wav beside each input."""
    if out is None:
        return [p.with_suffix(".wav") for p in inputs]
    if len(inputs) == 1 and not out.is_dir():
        return [out]
    make_output_folder(out, "with several inputs -o must be a folder")
    return [out / (p.stem + ".wav") for p in inputs]


def checked_outputs(inputs: Sequence[Path], out: Path | None, force: bool, plot: bool = False
                    ) -> tuple[list[tuple[Path, Path]], int]:
    """(the (input, output) pairs that can be rendered, how many cannot): each input must exist, and
    its output (and its PNG with `plot`) must be nobody else's, not taken unless `force`, in a
    writable folder; each refusal is reported in one line. Checked before any model loads."""
    inputs = [Path(p) for p in inputs]
    outputs = _output_paths(inputs, out)
    failed = 0
    todo: list[tuple[Path, Path]] = []
    seen: dict[Path, Path] = {}
    for src, dst in zip(inputs, outputs):
        key = dst.resolve()
        if key in seen:
            report_error(f"{src}: its output {dst} is also the output of {seen[key]} (rename one, or use -o FOLDER)")
            failed += 1
            continue
        seen[key] = src
        if not force:
            taken = [p for p in ([dst] + ([dst.with_suffix(".png")] if plot else [])) if p.exists()]
            if taken:
                report_error(f"{taken[0]}: already exists (use --force to overwrite)")
                failed += 1
                continue
        if not src.exists():
            report_error(f"{src}: no such file")
            failed += 1
            continue
        folder = dst.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            problem = "is not writable" if folder.is_dir() else "does not exist"
            report_error(f"{dst}: folder {folder} {problem}")
            failed += 1
            continue
        todo.append((src, dst))
    return todo, failed


def step_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """The step_*.pt files of a folder, oldest (lowest step) first; numeric order, so step_1000000
    comes after step_999999."""

    def step_of(p: Path) -> int:
        try:
            return int(p.stem.split("_", 1)[1])
        except (IndexError, ValueError):
            return -1

    return sorted((p for p in Path(folder).glob("step_*.pt") if step_of(p) >= 0), key=step_of)


def find_checkpoint(path: str | os.PathLike) -> Path:
    """A file to load for `path`: the file itself, or in a folder (a run, its checkpoints/ folder,
    or an exported model) last.pt, the newest step_*.pt, or model.safetensors."""
    path = Path(path)
    if not path.is_dir():
        return path
    for folder in (path, path / "checkpoints"):
        if (folder / "last.pt").is_file():
            return folder / "last.pt"
        steps = step_checkpoints(folder)
        if steps:
            return steps[-1]
        if (folder / SAFETENSORS_NAME).is_file():
            return folder / SAFETENSORS_NAME
    raise CheckpointError(f"{path}: folder holds no checkpoint (last.pt, step_*.pt or {SAFETENSORS_NAME})")
