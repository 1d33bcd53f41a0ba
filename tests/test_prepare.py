"""midi2wave.data.prepare and `midi2wave prepare`: the dataset store of docs/DESIGN.md, resuming,
bad inputs, shards and the CLI."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import soxr

from midi2wave.data import prepare as P
from midi2wave.data import store as S
from midi2wave.data.maestro import find_pieces
from midi2wave.errors import InputError
from midi2wave.midi import read_midi

REPO = Path(__file__).resolve().parents[1]
RECORD_KEYS = {"id", "split", "year", "composer", "title", "duration_seconds", "n_samples", "sample_rate_hz",
               "audio", "notes", "source_audio", "source_midi", "source_audio_bytes", "source_audio_mtime_ns",
               "source_midi_bytes", "source_midi_mtime_ns"}
NPZ_KEYS = {"onset_s", "offset_s", "pitch", "velocity", "pedal_time_s", "pedal_controller", "pedal_value"}


# ------------------------------------------------------------------------------------- test data


def write_midi(path: Path, seconds: float = 1.5, n_notes: int = 6, pedal: bool = True, seed: int = 0) -> None:
    """A piano MIDI whose notes end by `seconds` (no notes when n_notes == 0), with sustain pedal."""
    rng = np.random.default_rng(seed)
    pm = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    for k in range(n_notes):
        start = k * seconds / (n_notes + 1)
        piano.notes.append(pretty_midi.Note(velocity=int(rng.integers(20, 120)), pitch=int(rng.integers(40, 90)),
                                            start=start, end=min(start + 0.4, seconds)))
    if pedal:
        for t, v in ((0.1, 100), (0.6, 70), (0.9, 0)):
            piano.control_changes.append(pretty_midi.ControlChange(64, v, t))
        piano.control_changes.append(pretty_midi.ControlChange(67, 127, 0.2))
    pm.instruments.append(piano)
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.write(str(path))


def write_audio(path: Path, seconds: float = 2.0, rate: int = 44100, channels: int = 2, seed: int = 0) -> None:
    """16-bit PCM (WAV or FLAC by extension) of decaying sines and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = np.stack([0.3 * np.sin(2 * np.pi * (220 + 110 * c + 5 * seed) * t) * np.exp(-t) for c in range(channels)], 1)
    x += rng.normal(0, 0.01, x.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.astype(np.float32), rate, subtype="PCM_16")


def write_metadata(root: Path, rows: list[dict]) -> None:
    with open(root / "maestro-v3.0.0.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["canonical_composer", "canonical_title", "split", "year",
                                               "midi_filename", "audio_filename", "duration"])
        writer.writeheader()
        writer.writerows(rows)


def make_source(root: Path, n: int = 4, seconds: float = 2.0) -> list[dict]:
    """A MAESTRO-layout source: n pieces of 44.1 kHz stereo WAV + MIDI and maestro-v3.0.0.csv."""
    rows = []
    for i in range(n):
        year = 2017 if i < n // 2 else 2018  # ids sort in row order
        stem = f"{year}/MIDI-Unprocessed_piece_{i}_wav--{i + 1}"
        write_midi(root / f"{stem}.midi", seconds=seconds - 0.5, seed=i)
        write_audio(root / f"{stem}.wav", seconds=seconds + 0.1 * i, seed=i)
        rows.append({"canonical_composer": f"Composer {i}", "canonical_title": f"Title {i}",
                     "split": ("train", "validation", "test", "train")[i % 4], "year": year,
                     "midi_filename": f"{stem}.midi", "audio_filename": f"{stem}.wav", "duration": seconds})
    write_metadata(root, rows)
    return rows


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (hidden ones included) -> its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "midi2wave.cli", "prepare", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("source")
    make_source(root)
    return root


@pytest.fixture(scope="module")
def reference_store(source, tmp_path_factory) -> Path:
    """An uninterrupted jobs=1 run over `source` (do not modify)."""
    store = tmp_path_factory.mktemp("reference") / "store"
    summary = P.prepare_dataset(source, store, jobs=1, progress=False)
    assert len(summary.done) == 4 and not summary.failed
    return store


# ----------------------------------------------------------------------------------------- store


def test_store_layout_and_contents(source, reference_store):
    store = reference_store
    manifest = json.loads((store / "manifest.json").read_text())
    assert list(manifest) == ["format", "version", "sample_rate_hz", "pieces"]
    assert (manifest["format"], manifest["version"], manifest["sample_rate_hz"]) == ("midi2wave-store", 1, 16000)
    ids = [r["id"] for r in manifest["pieces"]]
    assert ids == sorted(ids) == [p.id for p in find_pieces(source)]
    assert set(S.RECORD_KEYS) == RECORD_KEYS and set(S.NOTES_KEYS) == NPZ_KEYS  # the store module says the same
    for i, record in enumerate(manifest["pieces"]):
        assert set(record) == RECORD_KEYS
        assert json.loads((store / "pieces" / f"{record['id']}.json").read_text()) == record
        assert record["audio"] == f"pieces/{record['id']}.npy" and record["notes"] == f"pieces/{record['id']}.notes.npz"
        year = 2017 if i < 2 else 2018
        stem = f"{year}/MIDI-Unprocessed_piece_{i}_wav--{i + 1}"
        assert record["source_audio"] == f"{stem}.wav" and record["source_midi"] == f"{stem}.midi"
        assert record["split"] == ("train", "validation", "test", "train")[i]
        assert (record["year"], record["composer"], record["title"]) == (year, f"Composer {i}", f"Title {i}")
        st = os.stat(source / record["source_audio"])
        assert (record["source_audio_bytes"], record["source_audio_mtime_ns"]) == (st.st_size, st.st_mtime_ns)
        st = os.stat(source / record["source_midi"])
        assert (record["source_midi_bytes"], record["source_midi_mtime_ns"]) == (st.st_size, st.st_mtime_ns)

        # audio: int16 mono at 16 kHz, memory-mappable, equal to a direct decode + soxr HQ resample
        audio = np.load(store / record["audio"], mmap_mode="r")
        assert isinstance(audio, np.memmap) and audio.dtype == np.int16 and audio.ndim == 1
        data, rate = sf.read(source / record["source_audio"], dtype="float64")
        assert rate == 44100 and data.shape[1] == 2
        expected = np.clip(np.rint(soxr.resample(data.mean(axis=1), rate, 16000, quality="HQ") * 32768), -32768, 32767)
        assert len(audio) == len(expected) == record["n_samples"]
        assert np.abs(audio.astype(np.int64) - expected).max() <= 1
        assert record["duration_seconds"] == pytest.approx(record["n_samples"] / 16000)
        assert record["duration_seconds"] == pytest.approx(2.0 + 0.1 * i, abs=1e-3)

        # notes: the raw notes and pedal events of read_midi
        notes, pedals = read_midi(source / record["source_midi"])
        with np.load(store / record["notes"]) as npz:
            assert set(npz.files) == NPZ_KEYS
            for key, value in (("onset_s", notes.onset_s), ("offset_s", notes.offset_s), ("pitch", notes.pitch),
                               ("velocity", notes.velocity), ("pedal_time_s", pedals.time_s),
                               ("pedal_controller", pedals.controller), ("pedal_value", pedals.value)):
                np.testing.assert_array_equal(npz[key], value)
                assert npz[key].dtype == value.dtype
            assert len(npz["onset_s"]) == 6 and set(npz["pedal_controller"].tolist()) == {64, 67}
        with zipfile.ZipFile(store / record["notes"]) as zf:  # reproducible: no time stamps
            assert {info.date_time for info in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert json.loads((store / "errors.json").read_text()) == {"failed": []}
    assert sorted(tree(store)) == sorted(["manifest.json", "errors.json"] + [
        f"pieces/{i}{ext}" for i in ids for ext in (".npy", ".notes.npz", ".json")])


def test_rerun_skips_everything_then_redoes_a_changed_source(source, reference_store, tmp_path):
    store = tmp_path / "store"
    P.prepare_dataset(source, store, jobs=1, progress=False)
    before = tree(store)
    mtimes = {p: p.stat().st_mtime_ns for p in (store / "pieces").iterdir()}
    summary = P.prepare_dataset(source, store, jobs=1, progress=False)
    assert summary.done == [] and summary.failed == [] and len(summary.skipped_existing) == 4
    assert tree(store) == before == tree(reference_store)
    assert {p: p.stat().st_mtime_ns for p in (store / "pieces").iterdir()} == mtimes  # nothing rewritten

    changed = find_pieces(source)[2]
    old = os.stat(changed.audio_path)
    try:
        os.utime(changed.audio_path, ns=(old.st_atime_ns, old.st_mtime_ns + 10**9))
        summary = P.prepare_dataset(source, store, jobs=1, progress=False)
        assert summary.done == [changed.id] and len(summary.skipped_existing) == 3
        record = json.loads((store / "pieces" / f"{changed.id}.json").read_text())
        assert record["source_audio_mtime_ns"] == old.st_mtime_ns + 10**9
    finally:
        os.utime(changed.audio_path, ns=(old.st_atime_ns, old.st_mtime_ns))


def test_parallel_run_equals_serial_run(source, reference_store, tmp_path):
    summary = P.prepare_dataset(source, tmp_path / "store", jobs=2, progress=False)
    assert len(summary.done) == 4
    assert tree(tmp_path / "store") == tree(reference_store)


_DIE_DURING_SECOND_PIECE = textwrap.dedent("""
    import os, signal, sys
    from midi2wave.data import prepare as P
    real_save_notes, calls = P.save_notes, []

    def save_notes_then_die(path, notes, pedals):
        calls.append(path)
        if len(calls) == 2:  # second piece: its .npy is in place, its notes half written, no record yet
            with open(path, "wb") as f:
                f.write(b"half a zip")
            os.kill(os.getpid(), signal.SIGKILL)
        real_save_notes(path, notes, pedals)

    P.save_notes = save_notes_then_die
    P.prepare_dataset(sys.argv[1], sys.argv[2], jobs=1, progress=False)
""")


def test_killed_run_resumes_to_a_byte_identical_store(source, reference_store, tmp_path):
    store = tmp_path / "store"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", _DIE_DURING_SECOND_PIECE, str(source), str(store)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ids = [p.id for p in find_pieces(source)]
    left = sorted(tree(store))
    assert "manifest.json" not in left
    assert f"pieces/{ids[0]}.json" in left and f"pieces/{ids[1]}.json" not in left  # piece 2 not done...
    assert f"pieces/{ids[1]}.npy" in left  # ...though its audio is in place
    assert any(name.startswith(f"pieces/.{ids[1]}.notes.npz.") and name.endswith(".tmp") for name in left)

    summary = P.prepare_dataset(source, store, jobs=1, progress=False)
    assert summary.skipped_existing == [ids[0]] and summary.done == ids[1:] and not summary.failed
    assert tree(store) == tree(reference_store)  # every file, temporaries gone


@pytest.mark.slow
def test_cli_killed_with_sigkill_then_resumed(tmp_path, reference_store):
    """A real external SIGKILL of a parallel CLI run as soon as its first piece is done."""
    source = tmp_path / "source"
    make_source(source, n=8, seconds=30.0)
    reference = tmp_path / "reference"
    assert run_cli(str(source), str(reference), "--jobs", "1", "-q").returncode == 0
    store = tmp_path / "store"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "midi2wave.cli", "prepare", str(source), str(store), "--jobs", "2",
                             "-q"], cwd=REPO, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (store / "pieces").is_dir() or not list((store / "pieces").glob("*.json")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.001)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (store / "manifest.json").exists(), "the run finished before it was killed"
    assert run_cli(str(source), str(store), "--jobs", "2", "-q").returncode == 0
    assert tree(store) == tree(reference)


# ------------------------------------------------------------------------------------ bad inputs


def make_bad_source(root: Path) -> dict[str, Path]:
    """Two good pieces and one of each kind of bad input; returns {kind: the file to blame}."""
    rows = []

    def add(stem: str, midi: bool = True, audio: bool = True, **kw) -> None:
        if midi:
            write_midi(root / f"{stem}.midi", seconds=kw.get("midi_seconds", 1.5), n_notes=kw.get("n_notes", 6))
        if audio:
            write_audio(root / f"{stem}.wav", seconds=2.0)
        rows.append({"canonical_composer": "C", "canonical_title": stem, "split": "train", "year": 2018,
                     "midi_filename": f"{stem}.midi", "audio_filename": f"{stem}.wav", "duration": 2.0})

    add("2018/good_a")
    add("2018/good_b")
    add("2018/unreadable_audio", audio=False)
    (root / "2018/unreadable_audio.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 50)
    add("2018/corrupt_midi", midi=False)
    (root / "2018/corrupt_midi.midi").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\xff\xff")
    add("2018/missing_audio", audio=False)
    add("2018/too_long_midi", midi_seconds=12.0)  # its last note ends 7 s after its 2 s of audio
    add("2018/no_notes", n_notes=0)
    write_metadata(root, rows)
    return {
        "unreadable_audio": root / "2018/unreadable_audio.wav",
        "corrupt_midi": root / "2018/corrupt_midi.midi",
        "missing_audio": root / "2018/missing_audio.wav",
        "too_long_midi": root / "2018/too_long_midi.midi",
        "no_notes": root / "2018/no_notes.midi",
    }


def test_bad_inputs_fail_alone_with_one_line_each(tmp_path, caplog):
    blame = make_bad_source(tmp_path / "source")
    store = tmp_path / "store"
    summary = P.prepare_dataset(tmp_path / "source", store, jobs=2, progress=False)
    assert summary.done == ["2018__good_a", "2018__good_b"]
    by_path = dict(summary.failed)
    assert sorted(by_path) == sorted(str(p) for p in blame.values())
    assert "cannot decode audio" in by_path[str(blame["unreadable_audio"])]
    assert "corrupt" in by_path[str(blame["corrupt_midi"])] or "not a MIDI" in by_path[str(blame["corrupt_midi"])]
    assert "not found" in by_path[str(blame["missing_audio"])]
    assert "MIDI ends at" in by_path[str(blame["too_long_midi"])] and "after the end of its audio" in by_path[str(blame["too_long_midi"])]
    assert "no notes" in by_path[str(blame["no_notes"])]
    for path, message in summary.failed:
        assert message.startswith(f"{path}: ") and "\n" not in message
    logged = caplog.messages
    for path, message in summary.failed:
        assert f"midi2wave: failed: {message}" in logged  # as it happens
        assert f"  {message}" in logged  # and in the summary at the end
    manifest = json.loads((store / "manifest.json").read_text())
    assert [r["id"] for r in manifest["pieces"]] == ["2018__good_a", "2018__good_b"]
    errors = json.loads((store / "errors.json").read_text())
    assert errors == {"failed": [{"path": p, "message": m} for p, m in sorted(summary.failed)]}
    assert not [n for n in tree(store) if "too_long" in n or "no_notes" in n or n.endswith(".tmp")]

    # a looser limit lets the long MIDI through; the errors file lists the last run's failures only
    summary = P.prepare_dataset(tmp_path / "source", store, jobs=1, progress=False, max_duration_mismatch_seconds=8.0)
    assert summary.done == ["2018__too_long_midi"] and len(summary.skipped_existing) == 2
    assert len(json.loads((store / "errors.json").read_text())["failed"]) == 4


_VICTIM: list[str] = []  # the piece id whose worker dies (module level: fork workers see it)
_real_prepare_piece = P._prepare_piece


def _dies_on_victim(piece, *args):
    if piece.id in _VICTIM:
        os._exit(3)  # like the kernel's OOM killer: no exception, the process is just gone
    return _real_prepare_piece(piece, *args)


def test_a_worker_that_dies_fails_only_its_piece(source, reference_store, tmp_path, monkeypatch):
    victim = find_pieces(source)[1]
    monkeypatch.setattr(P, "_prepare_piece", _dies_on_victim)
    monkeypatch.setattr(sys.modules[__name__], "_VICTIM", [victim.id])
    summary = P.prepare_dataset(source, tmp_path / "store", jobs=2, progress=False)
    assert len(summary.done) == 3 and victim.id not in summary.done
    assert summary.failed == [(str(victim.audio_path),
                               f"{victim.audio_path}: the worker process died preparing it (out of memory?)")]
    reference = tree(reference_store)
    assert {k: v for k, v in tree(tmp_path / "store").items() if k.startswith("pieces/")} == \
        {k: v for k, v in reference.items() if k.startswith("pieces/") and victim.id not in k}


def test_cli_exit_status_and_messages(tmp_path):
    blame = make_bad_source(tmp_path / "bad")
    proc = run_cli(str(tmp_path / "bad"), str(tmp_path / "store"), "--jobs", "2")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    failed_lines = [line for line in proc.stderr.splitlines() if line.startswith("midi2wave: failed: ")]
    assert len(failed_lines) == 5
    for path in blame.values():
        assert sum(line.startswith(f"midi2wave: failed: {path}: ") for line in failed_lines) == 1
    assert "prepared 2 pieces" in proc.stderr and "5 failed" in proc.stderr

    make_source(tmp_path / "good", n=2)
    proc = run_cli(str(tmp_path / "good"), str(tmp_path / "good_store"), "-q")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    proc = run_cli(str(tmp_path / "good"), str(tmp_path / "good_store"))  # resumed: all skipped, still 0
    assert proc.returncode == 0 and "0 failed" in proc.stderr and "2 already done" in proc.stderr

    proc = run_cli(str(tmp_path / "nowhere"), str(tmp_path / "store2"))
    assert proc.returncode == 2 and proc.stderr == f"midi2wave: error: {tmp_path / 'nowhere'}: source not found\n"
    assert not (tmp_path / "store2").exists()


# ---------------------------------------------------------------------------- shards and sources


def test_shards_split_the_work_and_share_one_store(source, reference_store, tmp_path):
    store = tmp_path / "store"
    ids = [p.id for p in find_pieces(source)]
    first = P.prepare_dataset(source, store, jobs=1, shard=(0, 2), progress=False)
    assert first.done == ids[0::2]
    manifest = json.loads((store / "manifest.json").read_text())
    assert [r["id"] for r in manifest["pieces"]] == ids[0::2]
    proc = run_cli(str(source), str(store), "--shard", "1/2", "-q")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((store / "manifest.json").read_text())
    assert [r["id"] for r in manifest["pieces"]] == ids  # every finished piece in the store
    files = tree(store)
    assert json.loads(files.pop("errors-shard-0-of-2.json")) == json.loads(files.pop("errors-shard-1-of-2.json")) \
        == {"failed": []}
    reference = tree(reference_store)
    reference.pop("errors.json")
    assert files == reference
    again = P.prepare_dataset(source, store, jobs=1, shard=(1, 2), progress=False)
    assert again.done == [] and again.skipped_existing == ids[1::2]


def test_generic_folder_with_split_csv(tmp_path):
    src = tmp_path / "src"
    for i, (stem, ext) in enumerate((("a", ".wav"), ("sub/b", ".flac"), ("sub/c", ".wav"))):
        write_midi(src / f"{stem}.mid", seed=i)
        write_audio(src / f"{stem}{ext}", rate=48000, channels=1 + i % 2, seed=i)
    (tmp_path / "splits.csv").write_text("name,split\na,test\nsub/b,validation\nc,train\n")
    summary = P.prepare_dataset(src, tmp_path / "store", jobs=1, split_csv=tmp_path / "splits.csv", progress=False)
    assert summary.done == ["a", "sub__b", "sub__c"] and not summary.failed
    records = {r["id"]: r for r in json.loads((tmp_path / "store/manifest.json").read_text())["pieces"]}
    assert {k: r["split"] for k, r in records.items()} == {"a": "test", "sub__b": "validation", "sub__c": "train"}
    assert records["sub__b"]["source_audio"] == "sub/b.flac" and records["sub__b"]["year"] is None
    assert all(r["n_samples"] == 32000 for r in records.values())


def test_store_and_source_guards(source, reference_store, tmp_path):
    with pytest.raises(InputError, match="source not found"):
        P.prepare_dataset(tmp_path / "nowhere", tmp_path / "out", progress=False)
    (tmp_path / "empty_source").mkdir()
    with pytest.raises(InputError, match="no MAESTRO metadata"):
        P.prepare_dataset(tmp_path / "empty_source", tmp_path / "out", progress=False)
    (tmp_path / "not_a_store").mkdir()
    (tmp_path / "not_a_store" / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty and is not a dataset store"):
        P.prepare_dataset(source, tmp_path / "not_a_store", progress=False)
    with pytest.raises(InputError, match="holds 16000 Hz audio, not 22050 Hz"):
        P.prepare_dataset(source, reference_store, sample_rate_hz=22050, progress=False)
    assert not (tmp_path / "out").exists()
