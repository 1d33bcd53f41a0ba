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
