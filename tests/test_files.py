"""midi2wave.files: the one atomic writer (temp name beside the target, one rename)."""

import os

import pytest

from midi2wave.errors import OutputExistsError
from midi2wave.files import TEMP_NAME, atomic_path, atomic_write_bytes, temp_name


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
