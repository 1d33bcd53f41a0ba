"""midi2wave.data.maestro: MAESTRO metadata (v1/v2/v3 JSON, CSV) and generic MIDI + audio folders."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest

from midi2wave.data import maestro as M
from midi2wave.errors import InputError

# The real MAESTRO v3 metadata lives in shared/ beside the repository (CI: a clone with ../shared).
METADATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "maestro-metadata"
V3_CSV = METADATA_DIR / "maestro-v3.0.0.csv"
V3_JSON = METADATA_DIR / "maestro-v3.0.0.json"
needs_real_metadata = pytest.mark.skipif(
    not (V3_CSV.is_file() and V3_JSON.is_file()),
    reason=f"real MAESTRO v3 metadata not found at {METADATA_DIR} (expected shared/ beside the repository)")

SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


# ---------------------------------------------------------------------------------- real metadata


@needs_real_metadata
@pytest.mark.parametrize("path", [V3_CSV, V3_JSON], ids=["csv", "json"])
def test_real_v3_metadata(path):
    rows = M.read_metadata(path)
    assert len(rows) == 1276
    assert collections.Counter(r.split for r in rows) == {"train": 962, "validation": 137, "test": 177}
    assert abs(sum(r.duration for r in rows) / 3600 - 198.65) < 0.01
    assert {r.year for r in rows} == {2004, 2006, 2008, 2009, 2011, 2013, 2014, 2015, 2017, 2018}
    first = rows[0]
    assert first.composer == "Alban Berg" and first.title == "Sonata Op. 1" and first.year == 2018
    assert first.audio_filename == "2018/MIDI-Unprocessed_Chamber3_MID--AUDIO_10_R3_2018_wav--1.wav"
    assert first.midi_filename == "2018/MIDI-Unprocessed_Chamber3_MID--AUDIO_10_R3_2018_wav--1.midi"
    assert first.duration == pytest.approx(698.661160312)


@needs_real_metadata
def test_real_v3_csv_and_json_agree():
    csv_rows, json_rows = M.read_metadata(V3_CSV), M.read_metadata(V3_JSON)
    assert len(csv_rows) == len(json_rows) == 1276
    requoted = 0
    for a, b in zip(csv_rows, json_rows):
        # The published files differ only in quoting 7 titles: CSV '"Erlkoenig"', JSON 'Erlkoenig'.
        if a.title != b.title:
            assert a.title == f'"{b.title}"'
            requoted += 1
        assert (a.split, a.year, a.composer, a.midi_filename, a.audio_filename) == \
            (b.split, b.year, b.composer, b.midi_filename, b.audio_filename)
        assert a.duration == pytest.approx(b.duration, abs=1e-6)
    assert requoted == 7


@needs_real_metadata
def test_find_pieces_on_real_metadata_prefers_json():
    assert M.find_metadata(METADATA_DIR) == V3_JSON
    pieces = M.find_pieces(METADATA_DIR)
    assert len(pieces) == 1276
    ids = [p.id for p in pieces]
    assert ids == sorted(ids) and len(set(ids)) == 1276
    assert all(SAFE_ID.match(i) for i in ids)
    p = next(p for p in pieces if p.source_audio == "2018/MIDI-Unprocessed_Chamber3_MID--AUDIO_10_R3_2018_wav--1.wav")
    assert p.id == "2018__MIDI-Unprocessed_Chamber3_MID--AUDIO_10_R3_2018_wav--1"
    assert p.audio_path == METADATA_DIR.absolute() / p.source_audio and p.audio_path.is_absolute()
    assert p.midi_path == METADATA_DIR.absolute() / p.source_midi
    assert (p.split, p.year, p.composer, p.title, p.problem) == ("train", 2018, "Alban Berg", "Sonata Op. 1", None)
    # the metadata file itself is accepted as the source
    assert [q.id for q in M.find_pieces(V3_CSV)] == ids


# ---------------------------------------------------------------------------- v1/v2 and errors


def _record(i, split="train", **extra):
    rec = {"canonical_composer": f"Composer {i}", "canonical_title": f"Title {i}", "split": split,
           "year": 2004 + i, "midi_filename": f"{2004 + i}/piece{i}.midi",
           "audio_filename": f"{2004 + i}/piece{i}.wav", "duration": 10.5 + i}
    rec.update(extra)
    return rec


def test_v1_v2_list_of_records_json(tmp_path):
    records = [_record(0), _record(1, "validation"), _record(2, "test")]
    (tmp_path / "maestro-v2.0.0.json").write_text(json.dumps(records))
    rows = M.read_metadata(tmp_path / "maestro-v2.0.0.json")
    assert [r.split for r in rows] == ["train", "validation", "test"]
    assert rows[1] == M.MetadataRow("validation", 2005, "Composer 1", "Title 1", "2005/piece1.midi",
                                    "2005/piece1.wav", 11.5)
    pieces = M.find_pieces(tmp_path)
    assert [p.id for p in pieces] == ["2004__piece0", "2005__piece1", "2006__piece2"]
    assert pieces[2].audio_path == tmp_path / "2006/piece2.wav" and pieces[2].year == 2006


def test_v3_column_json_equals_list_json(tmp_path):
    records = [_record(0), _record(1, "test")]
    columns = {k: {str(i): r[k] for i, r in enumerate(records)} for k in records[0]}
    (tmp_path / "a.json").write_text(json.dumps(records))
    (tmp_path / "b.json").write_text(json.dumps(columns))
    assert M.read_metadata(tmp_path / "a.json") == M.read_metadata(tmp_path / "b.json")


def test_find_metadata_prefers_json_then_newest(tmp_path):
    for name in ("maestro-v1.0.0.json", "maestro-v2.0.0.json", "maestro-v3.0.0.csv", "maestro-v10.txt"):
        (tmp_path / name).write_text("[]")
    assert M.find_metadata(tmp_path).name == "maestro-v2.0.0.json"
    (tmp_path / "maestro-v2.0.0.json").unlink()
    (tmp_path / "maestro-v1.0.0.json").unlink()
    assert M.find_metadata(tmp_path).name == "maestro-v3.0.0.csv"
    (tmp_path / "maestro-v3.0.0.csv").unlink()
    assert M.find_metadata(tmp_path) is None


def test_metadata_errors_name_the_file(tmp_path):
    path = tmp_path / "maestro-v3.0.0.csv"
    path.write_text("canonical_composer,canonical_title,split,year,midi_filename,duration\nA,B,train,2004,x.midi,1\n")
    with pytest.raises(InputError, match=r"maestro-v3\.0\.0\.csv: missing column\(s\) audio_filename"):
        M.find_pieces(tmp_path)
    path.write_text("split,year,midi_filename,audio_filename\ntrain,2004,a.midi,a.wav\nvalid,2004,b.midi,b.wav\n")
    with pytest.raises(InputError, match=r"maestro-v3\.0\.0\.csv: row 1: split 'valid' is not one of train, validation, test"):
        M.find_pieces(tmp_path)
    path.write_text("split,year,midi_filename,audio_filename\ntrain,nineteen,a.midi,a.wav\n")
    with pytest.raises(InputError, match="year 'nineteen' is not an integer"):
        M.read_metadata(path)
    bad_json = tmp_path / "maestro-v2.0.0.json"
    bad_json.write_text(json.dumps([{"split": "train", "midi_filename": "a.midi", "audio_filename": "a.wav"}]))
    with pytest.raises(InputError, match=r"maestro-v2\.0\.0\.json: records lack field\(s\) year"):
        M.find_pieces(tmp_path)  # JSON preferred over the CSV
    bad_json.write_text("{not json")
    with pytest.raises(InputError, match=r"maestro-v2\.0\.0\.json: not valid JSON"):
        M.find_pieces(tmp_path)


def test_source_errors(tmp_path):
    with pytest.raises(InputError, match="source not found"):
        M.find_pieces(tmp_path / "nowhere")
    (tmp_path / "readme.txt").write_text("hi")
    (tmp_path / "lonely.wav").write_bytes(b"")  # not a pair... but reported as a piece with a problem
    pieces = M.find_pieces(tmp_path)
    assert len(pieces) == 1 and "no MIDI beside it" in pieces[0].problem
    (tmp_path / "lonely.wav").unlink()
    with pytest.raises(InputError, match="no MAESTRO metadata .* and no MIDI \\+ audio pairs"):
        M.find_pieces(tmp_path)


# -------------------------------------------------------------------------------- generic folder


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_generic_folder_pairs(tmp_path):
    _touch(tmp_path, "a.mid", "a.wav", "sub/b.midi", "sub/b.flac", "sub/deeper/c.MID", "sub/deeper/c.WAV",
           "both.mid", "both.flac", "both.wav", "orphan.mid", "notes.txt", ".hidden.mid", ".hidden.wav",
           ".git/x.mid", ".git/x.wav")
    pieces = {p.source_audio: p for p in M.find_pieces(tmp_path)}
    assert sorted(pieces) == ["a.wav", "both.wav", "orphan.wav", "sub/b.flac", "sub/deeper/c.WAV"]
    b = pieces["sub/b.flac"]
    assert b.id == "sub__b" and b.source_midi == "sub/b.midi" and b.midi_path == tmp_path / "sub/b.midi"
    assert b.year is None and b.title == "b" and b.problem is None and b.duration_seconds is None
    assert pieces["both.wav"].source_midi == "both.mid"  # WAV preferred over FLAC
    assert pieces["orphan.wav"].problem == f"{tmp_path / 'orphan.mid'}: no audio beside it (orphan.wav|orphan.flac)"
    assert all(p.split == M.hash_split(Path(p.source_audio).stem) for p in pieces.values())


def test_hash_split_is_deterministic_80_10_10():
    names = [f"piece_{i:04d}" for i in range(3000)]
    splits = [M.hash_split(n) for n in names]
    assert splits == [M.hash_split(n) for n in names]
    counts = collections.Counter(splits)
    assert set(counts) == {"train", "validation", "test"}
    assert 0.77 < counts["train"] / 3000 < 0.83
    assert 0.08 < counts["validation"] / 3000 < 0.12 and 0.08 < counts["test"] / 3000 < 0.12
    assert M.hash_split("piece_0000") == M.hash_split("piece_0000")


def test_generic_folder_with_split_csv(tmp_path):
    src = tmp_path / "src"
    _touch(src, "a.mid", "a.wav", "sub/b.mid", "sub/b.wav", "c.mid", "c.flac", "d.mid", "d.wav")
    split_csv = tmp_path / "splits.csv"
    split_csv.write_text("name,split\na,test\nsub/b.wav,validation\nc.mid,test\n")
    pieces = {p.id: p for p in M.find_pieces(src, split_csv=split_csv)}
    assert pieces["a"].split == "test" and pieces["sub__b"].split == "validation" and pieces["c"].split == "test"
    assert pieces["d"].split == M.hash_split("d")  # not listed: the hash split
    split_csv.write_text("name,split\na,dev\n")
    with pytest.raises(InputError, match=r"splits\.csv: line 2: split 'dev' is not one of train, validation, test"):
        M.find_pieces(src, split_csv=split_csv)
    split_csv.write_text("file,fold\na,test\n")
    with pytest.raises(InputError, match="needs columns name,split"):
        M.find_pieces(src, split_csv=split_csv)
    with pytest.raises(InputError, match="cannot read split CSV"):
        M.find_pieces(src, split_csv=tmp_path / "missing.csv")


def test_piece_ids_are_safe_and_distinct():
    assert M.piece_id("2018/MIDI-Unprocessed_x_wav--1.wav") == "2018__MIDI-Unprocessed_x_wav--1"
    tricky = ["a b/c.wav", "a_b/c.wav", "a/b__c.wav", "a__b/c.wav", "a/b/c.wav", "../x.wav", ".x.wav",
              "é/ü.flac", "x" * 300 + ".wav", "x" * 300 + "y.wav", "a:b.wav", "a_b.wav"]
    ids = [M.piece_id(t) for t in tricky]
    assert len(set(ids)) == len(ids)
    assert all(SAFE_ID.match(i) and len(i) < 200 for i in ids), ids
    assert ids == [M.piece_id(t) for t in tricky]
