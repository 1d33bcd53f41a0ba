"""Atomic file writing: the one place outputs are written under a temporary name and renamed.

Every output of the package (WAVs, checkpoints, store pieces and manifest, reports) goes through
`atomic_path` (for writers that need a path: soundfile, np.save, matplotlib; a streaming writer keeps
the temporary file open through the body and writes it piece by piece, e.g. `audio.wav_writer` for
long renders) or `atomic_write_bytes` (for bytes already in memory), so a crash or Ctrl-C never leaves a half-written file under the final
name, and an existing output is never replaced unless asked (`force`). Folders of outputs (a
listening page, a report) are filled under a temporary name and renamed the same way (`atomic_folder`).

Temporary names are `.<final name>.<pid>-<hex>.tmp` in the same folder (so the rename is atomic on
one filesystem); `TEMP_NAME` matches them, for cleaners of interrupted runs (data/prepare.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Iterator

from .errors import OutputExistsError

__all__ = ["TEMP_NAME", "atomic_folder", "atomic_path", "atomic_write_bytes", "check_folder", "temp_name"]

# `.<final>.<pid>-<hex>.tmp`, as made by `temp_name`
TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.\d+-[0-9a-f]+\.tmp$")


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
