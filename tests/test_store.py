"""midi2wave.data.store: the store format's one owner (manifest, records, notes and audio files)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from midi2wave.data import store as S
from midi2wave.errors import InputError
from midi2wave.midi import Notes, PedalEvents


def _notes() -> tuple[Notes, PedalEvents]:
    notes = Notes(np.array([0.0, 0.25]), np.array([0.5, 1.0]), np.array([60, 64]), np.array([90, 40]))
    pedals = PedalEvents(np.array([0.1, 0.7]), np.array([64, 64]), np.array([100, 0]))
    return notes, pedals


def test_notes_round_trip_with_the_store_dtypes(tmp_path):
    notes, pedals = _notes()
    path = tmp_path / "a.notes.npz"
    S.save_notes(path, notes, pedals)
    with np.load(path) as arrays:
        assert {k: arrays[k].dtype for k in arrays.files} == {k: np.dtype(t) for k, t in S.NOTES_KEYS.items()}
    back, back_pedals = S.load_store_notes(path)
    for a, b in ((back, notes), (back_pedals, pedals)):
        for field in a.__dataclass_fields__:
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    first = path.read_bytes()
    S.save_notes(path, notes, pedals)
    assert path.read_bytes() == first  # no time stamps: the same notes give the same bytes
    with pytest.raises(InputError, match="missing"):
        S.load_store_notes(tmp_path / "b.notes.npz")
    (tmp_path / "c.notes.npz").write_bytes(b"half a zip")
    with pytest.raises(InputError, match="c.notes.npz: not a readable notes file"):
        S.load_store_notes(tmp_path / "c.notes.npz")


def test_manifest_is_sorted_and_independent_of_record_order(tmp_path):
    records = [{"id": i, "split": "train", "n_samples": 10, "audio": f"pieces/{i}.npy", "notes": f"pieces/{i}.notes.npz"}
               for i in ("b", "a", "c")]
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    S.write_manifest(tmp_path / "one", 16000, records)
    S.write_manifest(tmp_path / "two", 16000, reversed(records))
    assert (tmp_path / "one" / S.MANIFEST).read_bytes() == (tmp_path / "two" / S.MANIFEST).read_bytes()
    manifest = S.read_manifest(tmp_path / "one")
    assert (manifest["format"], manifest["version"]) == (S.STORE_FORMAT, S.STORE_VERSION)
    assert [r["id"] for r in S.load_store_manifest(tmp_path / "one")] == ["a", "b", "c"]
    path = tmp_path / "one" / S.MANIFEST
    path.write_text(json.dumps({**manifest, "version": S.STORE_VERSION + 1}))
    with pytest.raises(InputError, match="store format version"):
        S.read_manifest(tmp_path / "one")
    assert S.read_manifest(tmp_path / "one", check_version=False)["version"] == S.STORE_VERSION + 1
    path.write_text(json.dumps({**manifest, "pieces": [{"id": "a"}]}))
    with pytest.raises(InputError, match="piece 'a' lacks split, n_samples, audio, notes"):
        S.read_manifest(tmp_path / "one")


def test_records_and_piece_files(tmp_path):
    assert S.piece_file_names("x") == ("x.npy", "x.notes.npz", "x.json")
    S.write_record(tmp_path / "x.json", {"split": "train", "id": "x"})
    assert S.read_record(tmp_path / "x.json") == {"id": "x", "split": "train"}
    assert S.read_record(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert S.read_record(tmp_path / "bad.json") is None
    audio = np.arange(-5, 5, dtype=np.int16)
    S.save_piece_audio(tmp_path / "x.npy", audio)
    np.testing.assert_array_equal(S.load_piece_audio(tmp_path / "x.npy", 10), audio)
    with pytest.raises(InputError, match=r"x.npy: expected int16 \[11\] audio, found int16 \[10\]"):
        S.load_piece_audio(tmp_path / "x.npy", 11)
    with pytest.raises(ValueError, match="expected int16"):
        S.save_piece_audio(tmp_path / "y.npy", audio.astype(np.float32))
