"""midi2wave.files: the one atomic writer (temp name beside the target, one rename)."""

import logging
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from midi2wave.audio import wav_writer
from midi2wave.errors import OutputExistsError
from midi2wave.files import (
    STALE_TEMP_SECONDS,
    TEMP_NAME,
    atomic_path,
    atomic_write_bytes,
    remove_stale_temps,
    temp_name,
)


def test_temp_names_are_hidden_beside_the_target_and_recognised(tmp_path):
    tmp = temp_name(tmp_path / "a.notes.npz")
    assert tmp.parent == tmp_path and tmp.name.startswith(".a.notes.npz.") and tmp.name.endswith(".tmp")
    assert TEMP_NAME.match(tmp.name).group("final") == "a.notes.npz"
    assert TEMP_NAME.match("a.notes.npz") is None
    assert temp_name(tmp_path / "x") != temp_name(tmp_path / "x")  # fresh each time


def test_atomic_write_bytes_replaces_by_default_and_refuses_without_force(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    with pytest.raises(OutputExistsError, match="f.bin: already exists"):
        atomic_write_bytes(path, b"three", force=False)
    assert path.read_bytes() == b"two" and os.listdir(tmp_path) == ["f.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_path(path, force=True) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


def _temp(folder, final: str, pid: int, age_s: float = 0.0):
    path = folder / f".{final}.{pid}-0123abcd.tmp"
    path.write_bytes(b"half")
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
    assert TEMP_NAME.match(path.name).group("pid") == str(pid)
    return path


def test_stale_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path, caplog):
    dead, live = _dead_pid(), os.getpid()
    old = 2 * STALE_TEMP_SECONDS
    mine_dead = _temp(tmp_path, "out.wav", dead)
    other_dead_young = _temp(tmp_path, "other.wav", dead)
    other_dead_old = _temp(tmp_path, "other.png", dead, age_s=old)
    live_same = _temp(tmp_path, "out.wav", live, age_s=old)
    live_other = _temp(tmp_path, "x.wav", live, age_s=old)
    (tmp_path / "out.wav.tmp").write_bytes(b"not ours")  # not a temporary name
    with caplog.at_level(logging.INFO, logger="midi2wave"):
        removed = remove_stale_temps(tmp_path, "out.wav")
    assert sorted(removed) == sorted([mine_dead, other_dead_old])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (other_dead_young, live_same, live_other, tmp_path / "out.wav.tmp"))
    assert f"removed 2 temporary file(s) left by killed runs in {tmp_path}: " in caplog.text
    assert remove_stale_temps(tmp_path / "missing") == []


def test_the_wav_writer_clears_what_a_killed_render_left(tmp_path):
    left = _temp(tmp_path, "out.wav", _dead_pid())
    with wav_writer(tmp_path / "out.wav", 16000) as wav:
        wav.write(np.zeros(100, np.float32))
    assert not left.exists() and sorted(os.listdir(tmp_path)) == ["out.wav"]
def test_atomic_folder_fills_a_temporary_folder_and_renames_it(tmp_path):
    from midi2wave.files import atomic_folder

    out = tmp_path / "page"
    with atomic_folder(out) as tmp:
        assert tmp.parent == tmp_path and TEMP_NAME.match(tmp.name).group("final") == "page"
        (tmp / "index.html").write_text("one")
        assert not out.exists()  # nothing under the final name until the body is done
    assert (out / "index.html").read_text() == "one" and os.listdir(tmp_path) == ["page"]
    with pytest.raises(OutputExistsError, match="page: already exists and is not empty"):
        with atomic_folder(out):
            pass
    with atomic_folder(out, force=True) as tmp:
        (tmp / "new.txt").write_text("two")
    assert os.listdir(out) == ["new.txt"] and os.listdir(tmp_path) == ["page"]  # replaced, nothing aside


def test_a_failed_atomic_folder_leaves_the_old_folder_and_no_temporary(tmp_path):
    from midi2wave.files import atomic_folder

    out = tmp_path / "page"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_folder(out, force=True) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("crash")
    assert os.listdir(out) == ["keep.txt"] and os.listdir(tmp_path) == ["page"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="file: exists and is not a folder"):
        with atomic_folder(tmp_path / "file", force=True):
            pass
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_folder(empty) as tmp:  # an existing empty folder is taken without force
        (tmp / "a").write_text("a")
    assert os.listdir(empty) == ["a"]
