"""Corpus rendering (`midi2wave synthesize FOLDER | --list FILE -o DIR`, render/corpus.py): the mirrored
tree, shards that give one run's files bit for bit, resume after a re-run, a truncated output or a
SIGKILL, the manifest, and per-piece failures. The bundled model renders 0.4 s per piece."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from midi2wave import constants as C
from midi2wave.audio import pcm16_wav_problem, save_wav
from midi2wave.cli import main
from midi2wave.data.prepare import shard_items
from midi2wave.midi import Notes, PedalEvents, write_midi
from midi2wave.render import corpus
from midi2wave.render import synthesize as S

ROOT = Path(__file__).resolve().parents[1]
SR = C.SAMPLE_RATE_HZ
END_S = 0.4  # every render: 0.4 s of audio
FLAGS = ["--end", str(END_S), "--threads", "1", "-q"]

# name -> (pitch, velocity) of a two-note piece: every piece sounds different
PIECES = {"a.mid": (60, 80), "sub/b.MIDI": (64, 90), "sub/deeper/c.mid": (67, 70), "sub/deeper/d.midi": (72, 100),
          "other/e.mid": (55, 60)}
BAD = "sub/bad.mid"


def _write_piece(path: Path, pitch: int, velocity: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    notes = Notes(np.array([0.02, 0.1]), np.array([0.25, 0.3]), np.array([pitch, pitch + 4], np.int16),
                  np.array([velocity, velocity - 20], np.int16))
    return write_midi(notes, PedalEvents(np.zeros(0), np.zeros(0, np.int16), np.zeros(0, np.int16)), path)


def _make_corpus(folder: Path) -> Path:
    for name, (pitch, velocity) in PIECES.items():
        _write_piece(folder / name, pitch, velocity)
    (folder / BAD).write_bytes(b"MThd but not really a MIDI file")
    (folder / "notes.txt").write_text("not a MIDI file, not in the corpus")
    _write_piece(folder / ".hidden" / "f.mid", 50, 50)  # hidden: not in the corpus
    return folder


def _wav(name: str) -> str:
    return str(Path(name).with_suffix(".wav").as_posix())


def _outputs(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.wav"))}


def _manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["synthesize", *map(str, argv)])
    return rc, err.getvalue()


def _spawn(*argv) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "midi2wave", "synthesize", *map(str, argv)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(corpus folder, output folder, exit status, stderr) of one run over the whole corpus."""
    base = tmp_path_factory.mktemp("corpus")
    src = _make_corpus(base / "midi")
    out = base / "out"
    rc, err = _run(src, "-o", out, *FLAGS)
    return src, out, rc, err


def test_a_folder_renders_its_tree_and_reports_the_corrupt_file(reference, tmp_path):
    src, out, rc, err = reference
    assert rc == 1
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("midi2wave: error: ")]
    assert len(errors) == 1 and BAD in errors[0] and "Traceback" not in err
    assert "5 rendered" in lines[-1] and "0 skipped" in lines[-1] and "1 failed" in lines[-1]
    outputs = _outputs(out)
    assert sorted(outputs) == sorted(_wav(n) for n in PIECES)
    assert len(set(outputs.values())) == len(PIECES)  # five different pieces
    for name in outputs:
        info = sf.info(str(out / name))
        assert info.frames == round(END_S * SR) and info.subtype == "PCM_16" and info.samplerate == SR
        assert pcm16_wav_problem(out / name, SR, round(END_S * SR)) is None
    assert not list(out.rglob("*.tmp"))

    records = {r["input"]: r for r in _manifest(out / "manifest.jsonl")}
    assert sorted(records) == sorted([*PIECES, BAD])
    assert records[BAD]["status"] == "failed" and BAD in records[BAD]["error"] and "\n" not in records[BAD]["error"]
    for name in PIECES:
        r = records[name]
        assert r["status"] == "rendered" and r["output"] == _wav(name) and r["audio_seconds"] == END_S
        assert r["wall_seconds"] > 0 and r["real_time_factor"] == pytest.approx(r["wall_seconds"] / END_S, rel=0.01)

    # a piece of a corpus is the file `synthesize FILE` renders: its seed is --seed, as for one file
    single = tmp_path / "single.wav"
    assert _run(src / "sub/deeper/c.mid", "-o", single, *FLAGS)[0] == 0
    assert single.read_bytes() == outputs["sub/deeper/c.wav"]


def test_two_shards_in_parallel_give_the_files_of_one_run(reference, tmp_path):
    src, ref_out, _, _ = reference
    out = tmp_path / "out"
    runs = [_spawn(src, "-o", out, "--shard", f"{i}/2", *FLAGS) for i in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in runs]
    for p in runs:
        p.stdout.close()
        p.stderr.close()
    shards = [_manifest(out / f"manifest.shard-{i}-of-2.jsonl") for i in range(2)]
    names = [{r["input"] for r in lines} for lines in shards]
    assert not names[0] & names[1] and names[0] | names[1] == {*PIECES, BAD}
    assert all(r["shard"] == f"{i}/2" for i, lines in enumerate(shards) for r in lines)
    for (rc, err), mine in zip(results, names):  # the shard with the corrupt file fails, the other not
        assert rc == (1 if BAD in mine else 0), err
        assert "Traceback" not in err
    assert _outputs(out) == _outputs(ref_out)
    assert not (out / "manifest.jsonl").exists()


def test_a_rerun_renders_nothing(reference, tmp_path, monkeypatch):
    _, ref_out, _, _ = reference
    src = reference[0]
    out = tmp_path / "out"
    shutil.copytree(ref_out, out)

    def no_render(*args, **kwargs):
        raise AssertionError("a complete output was rendered again")

    monkeypatch.setattr(S, "stream_notes", no_render)
    rc, err = _run(src, "-o", out, *FLAGS)
    assert rc == 1 and "0 rendered" in err and "5 skipped" in err and "1 failed" in err
    rerun = _manifest(out / "manifest.jsonl")[len(PIECES) + 1:]
    assert sorted((r["input"], r["status"]) for r in rerun) == sorted(
        [(n, "skipped") for n in PIECES] + [(BAD, "failed")])
    assert _outputs(out) == _outputs(ref_out)


def test_incomplete_outputs_are_rendered_again(reference, tmp_path):
    src, ref_out, _, _ = reference
    out = tmp_path / "out"
    shutil.copytree(ref_out, out)
    (out / "manifest.jsonl").unlink()
    truncated, garbage, short = out / "a.wav", out / "sub/deeper/d.wav", out / "other/e.wav"
    truncated.write_bytes(truncated.read_bytes()[:5000])  # what a power cut can leave: soundfile reads it
    assert 0 < sf.info(str(truncated)).frames < round(END_S * SR)
    garbage.write_bytes(b"RIFF" + bytes(100))
    save_wav(short, np.zeros(100, np.float32), SR, force=True)  # complete, but not this render's length

    rc, err = _run(src, "-o", out, *FLAGS)
    assert rc == 1 and "3 rendered" in err and "2 skipped" in err
    assert sum("rendering it again" in line for line in err.splitlines()) == 3
    status = {r["input"]: r["status"] for r in _manifest(out / "manifest.jsonl")}
    assert status == {"a.mid": "rendered", "sub/deeper/d.midi": "rendered", "other/e.mid": "rendered",
                      "sub/b.MIDI": "skipped", "sub/deeper/c.mid": "skipped", BAD: "failed"}
    assert _outputs(out) == _outputs(ref_out)


def test_a_killed_run_resumes_and_finishes(reference, tmp_path):
    src, ref_out, _, _ = reference
    ref = _outputs(ref_out)
    # the corpus and 30 more copies of its pieces (same MIDI, same file): enough work to be killed in
    corpus_dir = tmp_path / "midi"
    shutil.copytree(src, corpus_dir)
    expected = dict(ref)
    for k in range(30):
        name = list(PIECES)[k % len(PIECES)]
        copy = corpus_dir / "more" / f"{k:02d}" / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / name, copy)
        expected[f"more/{k:02d}/{_wav(name)}"] = ref[_wav(name)]
    out = tmp_path / "out"
    manifest = out / "manifest.jsonl"
    run = _spawn(corpus_dir, "-o", out, *FLAGS)
    deadline = time.monotonic() + 240
    while not (manifest.exists() and '"rendered"' in manifest.read_text()):
        assert run.poll() is None and time.monotonic() < deadline, run.stderr.read()
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    assert run.wait(timeout=60) == -signal.SIGKILL
    run.stdout.close()
    run.stderr.close()
    before = [r["input"] for r in _manifest(manifest) if r["status"] == "rendered"]
    assert 1 <= len(before) < len(expected)  # killed in the middle
    # what a kill while writing leaves: a temporary beside an output not written yet
    pending = next(n for n in sorted(expected) if not (out / n).exists())
    (out / pending).parent.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid is alive nowhere (until reused)
    stale = out / Path(pending).parent / f".{Path(pending).name}.{dead.pid}-0badf00d.tmp"
    stale.write_bytes(b"RIFF half a file")

    rc, err = _run(corpus_dir, "-o", out, *FLAGS)
    assert rc == 1 and "Traceback" not in err  # the corrupt file, as before
    assert _outputs(out) == expected
    assert not list(out.rglob("*.tmp"))
    resumed = {r["input"]: r["status"] for r in _manifest(manifest)[len(_manifest(manifest)) - len(expected) - 1:]}
    assert all(resumed[n] == "skipped" for n in before)
    assert sum(s == "rendered" for s in resumed.values()) == len(expected) - len(before)


def test_a_list_file_renders_its_paths_and_reports_missing_ones(reference, tmp_path):
    src, ref_out, _, _ = reference
    listed = tmp_path / "midi"
    shutil.copytree(src, listed)
    (listed / "list.txt").write_text(
        f"# pieces to render\n\n  sub/deeper/c.mid  \n{listed / 'a.mid'}\nsub/./b.MIDI\nmissing/z.mid\na.mid\n")
    out = tmp_path / "out"
    rc, err = _run("--list", listed / "list.txt", "-o", out, *FLAGS)
    assert rc == 1
    errors = [line for line in err.splitlines() if line.startswith("midi2wave: error: ")]
    assert len(errors) == 1 and "missing/z.mid" in errors[0] and "no such file" in errors[0]
    ref = _outputs(ref_out)
    assert _outputs(out) == {n: ref[n] for n in ("a.wav", "sub/b.wav", "sub/deeper/c.wav")}
    assert [r["input"] for r in _manifest(out / "manifest.jsonl")] == [
        "a.mid", "missing/z.mid", "sub/b.MIDI", "sub/deeper/c.mid"]

    (listed / "outside.txt").write_text("../elsewhere/x.mid\n")
    rc, err = _run("--list", listed / "outside.txt", "-o", tmp_path / "out2", *FLAGS)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "outside.txt:1" in err
    assert not (tmp_path / "out2").exists()


def test_two_pieces_with_one_output_the_second_fails(tmp_path):
    src = tmp_path / "midi"
    _write_piece(src / "x.mid", 60, 80)
    _write_piece(src / "x.midi", 62, 80)  # both would be x.wav
    out = tmp_path / "out"
    rc, err = _run(src, "-o", out, "--shard", "1/2", *FLAGS)  # the shard of x.midi alone knows it too
    errors = [line for line in err.splitlines() if line.startswith("midi2wave: error: ")]
    assert rc == 1 and len(errors) == 1 and "x.midi" in errors[0] and "also the output of x.mid" in errors[0]
    assert not (out / "x.wav").exists()
    assert _run(src, "-o", out, "--shard", "0/2", *FLAGS)[0] == 0 and (out / "x.wav").exists()


@pytest.mark.parametrize("argv, says", [
    (["{src}"], "needs -o DIR"),
    (["{src}", "-o", "{tmp}/o", "--plot"], "--plot"),
    (["{src}", "{src}/a.mid", "-o", "{tmp}/o"], "one folder"),
    (["{src}/a.mid", "-o", "{tmp}/o.wav", "--shard", "0/2"], "--shard"),
    (["{tmp}/empty", "-o", "{tmp}/o"], "no MIDI files"),
    (["--list", "{tmp}/nothing.txt", "-o", "{tmp}/o"], "nothing.txt: no such file"),
    (["{src}", "-o", "{src}/a.mid"], "is a file"),
])
def test_bad_corpus_usage_is_one_line_before_any_work(reference, tmp_path, argv, says):
    src = reference[0]
    (tmp_path / "empty").mkdir()
    rc, err = _run(*[a.format(src=src, tmp=tmp_path) for a in argv], *FLAGS)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("midi2wave: error: ") and says in lines[0], err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.wav").exists()


def test_shards_are_disjoint_cover_the_items_and_follow_prepare():
    items = list(range(23))
    shards = [shard_items(items, (i, 4)) for i in range(4)]
    assert sorted(x for shard in shards for x in shard) == items and sum(map(len, shards)) == len(items)
    assert shards[1] == [1, 5, 9, 13, 17, 21]
    assert shard_items(items, None) == items
    with pytest.raises(ValueError):
        shard_items(items, (4, 4))


def test_find_corpus_sorts_by_name_and_finds_every_midi_suffix(reference):
    pieces = corpus.find_corpus(reference[0])
    assert [p.name for p in pieces] == sorted([*PIECES, BAD])
    assert all(p.path == reference[0] / p.name for p in pieces)


def test_pcm16_wav_problem_finds_incomplete_files(tmp_path):
    wav = save_wav(tmp_path / "x.wav", np.full(1000, 0.25, np.float32), SR)
    assert pcm16_wav_problem(wav, SR, 1000) is None and pcm16_wav_problem(wav, SR) is None
    assert "frames" in pcm16_wav_problem(wav, SR, 1001)
    assert "at 16000 Hz" in pcm16_wav_problem(wav, SR * 2, 1000)
    data = wav.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:-10])
    assert "truncated" in pcm16_wav_problem(cut, SR, 1000)
    fixed = tmp_path / "fixed.wav"  # RIFF size patched to the cut file: the data chunk still runs past its end
    fixed.write_bytes(data[:4] + (len(data) - 18).to_bytes(4, "little") + data[8:-10])
    assert "past the end" in pcm16_wav_problem(fixed, SR, 1000)
    (tmp_path / "empty.wav").write_bytes(b"")
    assert "not a RIFF" in pcm16_wav_problem(tmp_path / "empty.wav", SR, 1000)
    assert "unreadable" in pcm16_wav_problem(tmp_path / "none.wav", SR, 1000)
