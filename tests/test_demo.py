"""midi2wave.data.demo: the synthetic MAESTRO-v3-layout dataset (`midi2wave make-demo-data`)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("music21")
pytest.importorskip("mido")
fluidsynth = pytest.importorskip("fluidsynth")

from midi2wave import constants as C  # noqa: E402
from midi2wave.data import demo as D  # noqa: E402
from midi2wave.data.demo import build as demo_build  # noqa: E402

try:
    D.find_soundfont()
except D.DemoDataError as e:  # pragma: no cover - depends on the machine
    pytest.skip(f"no soundfont: {e}", allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]
REAL_CSV = REPO.parent / "shared" / "maestro-metadata" / "maestro-v3.0.0.csv"
NAME = re.compile(r"^(\d{4})/((?:MIDI-Unprocessed|MIDI-UNPROCESSED|ORIG-MIDI)_[A-Za-z0-9_.-]+)\.midi$")


# ------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """Keep the music21 score cache inside the test's temporary folder."""
    old = os.environ.get(D.CACHE_ENV)
    path = tmp_path_factory.mktemp("score-cache")
    os.environ[D.CACHE_ENV] = str(path)
    yield path
    if old is None:
        os.environ.pop(D.CACHE_ENV, None)
    else:
        os.environ[D.CACHE_ENV] = old


@pytest.fixture(scope="module")
def demo(tmp_path_factory, cache_dir):
    """A 1-minute dataset, seed 0 (built once for the module, with a cold score cache)."""
    root = tmp_path_factory.mktemp("demo") / "maestro"
    summary = D.make_demo_dataset(root, minutes=1.0, seed=0, progress=False)
    return root, summary


def read_csv(root: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(root / D.METADATA_CSV, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, [dict(zip(header, row)) for row in reader]


def read_wav(path: Path) -> tuple[int, int, int, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), data


def midi_notes(path: Path) -> tuple[list[tuple[float, float, int, int]], list[tuple[float, int, int]]]:
    """(notes (onset, offset, pitch, velocity), controller events (time, cc, value)) in seconds."""
    import mido

    mid = mido.MidiFile(str(path))
    notes, cc, sounding = [], [], {}
    t = 0.0
    for msg in mido.merge_tracks(mid.tracks):
        t += mido.tick2second(msg.time, mid.ticks_per_beat, D.MIDI_TEMPO_US_PER_BEAT)
        if msg.type == "note_on" and msg.velocity > 0:
            sounding[msg.note] = (t, msg.velocity)
        elif msg.type in ("note_on", "note_off"):
            on, v = sounding.pop(msg.note)
            notes.append((on, t, msg.note, v))
        elif msg.type == "control_change":
            cc.append((t, msg.control, msg.value))
    return notes, cc


def files_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(x, dtype=np.float64)))))


def single_note(pitch: int, velocity: int, hold_s: float = 0.2, pedal_s: float | None = None,
                soft: bool = False, tail_s: float = 2.5) -> D.Performance:
    cc = []
    if pedal_s is not None:
        cc += [(0.05, 64, 127), (0.3 + pedal_s, 64, 0)]
    if soft:
        cc += [(0.05, 67, 127)]
    cc.sort()
    cca = np.array(cc, dtype=np.float64).reshape(-1, 3)
    return D.Performance(
        onset_s=np.array([0.3]), offset_s=np.array([0.3 + hold_s]), pitch=np.array([pitch]),
        velocity=np.array([velocity]), cc_time_s=cca[:, 0], cc_controller=cca[:, 1].astype(np.int64),
        cc_value=cca[:, 2].astype(np.int64), tail_s=tail_s)


@pytest.fixture(scope="module")
def renderer():
    return D.shared_renderer(str(D.find_soundfont()))


# --------------------------------------------------------------------------------------- layout


def test_csv_is_maestro_v3(demo):
    root, summary = demo
    header, rows = read_csv(root)
    assert tuple(header) == D.COLUMNS
    if REAL_CSV.is_file():
        with open(REAL_CSV, encoding="utf-8", newline="") as f:
            assert next(csv.reader(f)) == header
    text = (root / D.METADATA_CSV).read_bytes()
    assert b"\r" not in text and text.endswith(b"\n")
    assert len(rows) == summary.n_pieces >= 3
    assert [(r["canonical_composer"], r["canonical_title"]) for r in rows] == sorted(
        (r["canonical_composer"], r["canonical_title"]) for r in rows)
    years_used = set()
    for r in rows:
        assert r["canonical_composer"] and r["canonical_title"]
        assert r["split"] in ("train", "validation", "test")
        m = NAME.match(r["midi_filename"])
        assert m, r["midi_filename"]
        assert int(m.group(1)) == int(r["year"]) and int(r["year"]) in C.MAESTRO_YEARS
        assert r["audio_filename"] == r["midi_filename"][: -len(".midi")] + ".wav"
        assert float(r["duration"]) > 0
        years_used.add(int(r["year"]))
    assert len(years_used) >= 3
    assert len({r["midi_filename"] for r in rows}) == len(rows)
    # nothing but year folders and the metadata; every file listed, every listed file there
    listed = {r[c] for r in rows for c in ("midi_filename", "audio_filename")}
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert on_disk == listed | {D.METADATA_CSV, D.METADATA_JSON}
    assert {p.name for p in root.iterdir() if p.is_dir()} == {str(y) for y in years_used}


def test_json_is_column_oriented_copy_of_csv(demo):
    root, _ = demo
    _, rows = read_csv(root)
    text = (root / D.METADATA_JSON).read_text(encoding="utf-8")
    data = json.loads(text)
    assert list(data) == list(D.COLUMNS)
    assert text == json.dumps(data, indent=4, ensure_ascii=False)  # the real file's formatting
    for col in D.COLUMNS:
        assert list(data[col]) == [str(i) for i in range(len(rows))]
    for i, r in enumerate(rows):
        j = {c: data[c][str(i)] for c in D.COLUMNS}
        assert isinstance(j["year"], int) and isinstance(j["duration"], float)
        assert {c: str(v) for c, v in j.items()} == r  # same values, same text (duration included)


def test_maestro_reader_reads_it(demo):
    maestro = pytest.importorskip("midi2wave.data.maestro")
    root, _ = demo
    from_json = maestro.read_metadata(root / D.METADATA_JSON)
    from_csv = maestro.read_metadata(root / D.METADATA_CSV)
    assert from_json == from_csv and len(from_json) >= 3
    assert maestro.find_metadata(root) == root / D.METADATA_JSON


def test_audio_is_44k_stereo_int16_of_the_listed_duration(demo):
    root, _ = demo
    _, rows = read_csv(root)
    for r in rows:
        sr, ch, width, pcm = read_wav(root / r["audio_filename"])
        assert (sr, ch, width) == (44100, 2, 2)
        duration = len(pcm) / sr
        assert float(r["duration"]) == pytest.approx(duration, abs=1e-8)
        notes, cc = midi_notes(root / r["midi_filename"])
        last = max([n[1] for n in notes] + [c[0] for c in cc])
        assert duration - 3.0 < last < duration - 1.0  # a release tail after the last event
        assert np.abs(pcm).max() > 300  # not silent
        assert np.mean(np.abs(pcm.astype(np.int32)) >= 32767) < 1e-5  # (almost) no clipping
        assert not np.array_equal(pcm[:, 0], pcm[:, 1])  # real stereo


def test_midi_is_one_piano_track_like_maestro(demo):
    import mido

    root, _ = demo
    _, rows = read_csv(root)
    for r in rows:
        mid = mido.MidiFile(str(root / r["midi_filename"]))
        assert mid.type == 1 and mid.ticks_per_beat == 384 and len(mid.tracks) == 2
        assert {m.type for m in mid.tracks[0]} <= {"set_tempo", "time_signature", "end_of_track"}
        kinds = {m.type for m in mid.tracks[1] if not m.is_meta}
        assert kinds <= {"program_change", "note_on", "control_change"}  # note-offs are note-on vel 0
        assert all(m.channel == 0 for m in mid.tracks[1] if not m.is_meta)
        notes, cc = midi_notes(root / r["midi_filename"])
        assert notes
        assert all(C.MIN_MIDI_PITCH <= p <= C.MAX_MIDI_PITCH and 1 <= v <= 127 for _, _, p, v in notes)
        assert all(off > on for on, off, _, _ in notes)
        assert {c for _, c, _ in cc} <= set(C.PEDAL_CONTROLLERS)


def test_pedal_is_continuous_and_used(demo):
    root, _ = demo
    _, rows = read_csv(root)
    values = []
    for r in rows:
        _, cc = midi_notes(root / r["midi_filename"])
        values += [v for _, c, v in cc if c == C.SUSTAIN_CC]
    values = np.array(values)
    assert len(values) > 50
    assert len(np.unique(values)) > 20  # ramps, not on/off switches
    assert (values >= 64).any() and (values < 64).any()


def test_generated_material_covers_all_keys_and_velocities(demo):
    root, _ = demo
    _, rows = read_csv(root)
    generated = [r for r in rows if r["canonical_composer"] == D.GENERATED_COMPOSER]
    corpus = [r for r in rows if r["canonical_composer"] != D.GENERATED_COMPOSER]
    assert generated and corpus
    pitches, velocities = set(), set()
    for r in generated:
        notes, _ = midi_notes(root / r["midi_filename"])
        pitches |= {n[2] for n in notes}
        velocities |= {n[3] for n in notes}
    assert pitches == set(range(21, 109))
    assert velocities == set(range(1, 128))


def test_splits_by_composition_and_all_nonempty(demo):
    root, summary = demo
    _, rows = read_csv(root)
    assert {r["split"] for r in rows} == {"train", "validation", "test"}
    split_of = {}
    for r in rows:
        key = (r["canonical_composer"], r["canonical_title"])
        assert split_of.setdefault(key, r["split"]) == r["split"]
    assert summary.seconds_by_split["train"] > summary.seconds_by_split["validation"]


def test_assign_splits_keeps_works_together_and_balances():
    rng = np.random.default_rng(0)
    durations = {f"work{i}": float(d) for i, d in enumerate(rng.uniform(20, 200, size=60))}
    split_of = D.assign_splits(durations, np.random.default_rng(1), forced={"work7": "train"})
    assert set(split_of) == set(durations) and split_of["work7"] == "train"
    total = sum(durations.values())
    for s, frac in D.SPLIT_FRACTIONS.items():
        share = sum(d for k, d in durations.items() if split_of[k] == s) / total
        assert abs(share - frac) < 0.03, (s, share)
    # three works: one per split
    assert sorted(D.assign_splits({"a": 30.0, "b": 10.0, "c": 10.0}, np.random.default_rng(0)).values()) == [
        "test", "train", "validation"]


def test_excerpts_of_one_work_share_a_split(tmp_path, monkeypatch, cache_dir):
    """Several excerpts of the same works, through the whole build: one split per work."""
    picker = D.CorpusPicker(np.random.default_rng(3))
    picker.works = {"piano": tuple(w for w in D.catalog_works()["piano"] if w.key in ("mozart/k545", "bach/bwv846"))}
    perfs = [D.generated_study(8.0, seed=3, number=1)] + [picker.excerpt(8.0, i, seed=3) for i in range(7)]
    titles = [p.title for p in perfs]
    assert len(set(titles)) == 3  # the study, K. 545 and BWV 846, excerpted several times each
    monkeypatch.setattr(demo_build, "plan_pieces", lambda total_s, seed, progress=None: perfs)
    D.make_demo_dataset(tmp_path / "d", minutes=1.0, seed=3, progress=False)
    _, rows = read_csv(tmp_path / "d")
    assert len(rows) == len(perfs)
    split_of = {}
    for r in rows:
        assert split_of.setdefault(r["canonical_title"], r["split"]) == r["split"]
    assert len(set(split_of.values())) == 3


# ---------------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_files(demo, tmp_path):
    root, _ = demo
    again = tmp_path / "again"
    D.make_demo_dataset(again, minutes=1.0, seed=0, progress=False)  # warm score cache this time
    assert files_digest(again) == files_digest(root)


def test_different_seed_gives_different_music():
    a = D.plan_pieces(60.0, seed=0)
    b = D.plan_pieces(60.0, seed=1)
    assert [D.midi_bytes(p) for p in a] != [D.midi_bytes(p) for p in b]
    assert [D.midi_bytes(p) for p in a] == [D.midi_bytes(p) for p in D.plan_pieces(60.0, seed=0)]
    assert D.midi_bytes(a[1]) != D.midi_bytes(b[1])


def test_render_does_not_depend_on_what_came_before(renderer):
    piece = D.generated_study(6.0, seed=11, number=2)
    first = renderer.render(piece, 2009)
    # something loud that leaves the pedals down and a key held when it ends
    loud = single_note(40, 127, hold_s=1.0, pedal_s=5.0, soft=True, tail_s=0.1)
    loud.cc_time_s = loud.cc_time_s[loud.cc_value > 0]
    loud.cc_controller = loud.cc_controller[loud.cc_value > 0]
    loud.cc_value = loud.cc_value[loud.cc_value > 0]
    renderer.render_dry(loud)
    assert np.array_equal(renderer.render(piece, 2009), first)


# ------------------------------------------------------------------------- the audio follows MIDI


def test_louder_velocity_gives_louder_audio(renderer):
    for pitch in (36, 60, 84):
        levels = [rms(renderer.render(single_note(pitch, v), 2011)[: 44100 // 2 + 13230])
                  for v in (8, 24, 40, 56, 72, 88, 104, 120, 127)]
        assert all(b > a for a, b in zip(levels, levels[1:])), (pitch, levels)
        assert 20 * np.log10(levels[-1] / levels[0]) > 20  # no normalisation: >20 dB of dynamics


def test_louder_velocity_in_the_dataset(demo):
    """The full-range sweep strikes every key softly on the way up and loudly on the way down."""
    root, _ = demo
    _, rows = read_csv(root)
    r = next(r for r in rows if r["canonical_title"].startswith("Study No. 1"))
    notes, _ = midi_notes(root / r["midi_filename"])
    sr, _, _, pcm = read_wav(root / r["audio_filename"])
    x = pcm.astype(np.float64).mean(axis=1)
    louder = 0
    strikes: dict[int, list[tuple[int, float]]] = {}
    for on, _, p, v in notes:
        i = int(on * sr)
        strikes.setdefault(p, []).append((v, rms(x[i: i + int(0.04 * sr)])))
    for p, s in strikes.items():
        (v1, e1), (v2, e2) = sorted(s)[:1] + sorted(s)[-1:]
        louder += e2 > e1
    assert louder >= 0.9 * len(strikes)


def test_sustain_pedal_lengthens_the_decay(renderer):
    for pitch in (48, 72):
        dry = rms(renderer.render(single_note(pitch, 90, hold_s=0.15), 2008)[int(0.9 * 44100): int(2.5 * 44100)])
        wet = rms(renderer.render(single_note(pitch, 90, hold_s=0.15, pedal_s=3.0), 2008)[int(0.9 * 44100): int(2.5 * 44100)])
        assert wet > 10 * dry, (pitch, dry, wet)


def test_una_corda_is_softer(renderer):
    plain = rms(renderer.render(single_note(60, 100), 2014)[: 44100])
    soft = rms(renderer.render(single_note(60, 100, soft=True), 2014)[: 44100])
    assert soft < 0.9 * plain


def test_each_year_has_its_own_room():
    dry = np.zeros((44100, 2))
    dry[1000] = [0.5, 0.4]
    rooms = {y: D.apply_room(dry, y) for y in C.MAESTRO_YEARS}
    assert np.array_equal(D.apply_room(dry, 2004), rooms[2004])
    years = list(rooms)
    for i, a in enumerate(years):
        for b in years[i + 1:]:
            assert np.abs(rooms[a] - rooms[b]).max() > 1e-3, (a, b)
    # a reverb tail after the impulse, decaying
    tail = rooms[2004][1000 + 4410: 1000 + 8820]
    late = rooms[2004][1000 + 30000: 1000 + 34410]
    assert rms(tail) > 3 * rms(late) > 0


def test_corpus_excerpt_is_humanised(cache_dir):
    perf = D.corpus_excerpt("bach/bwv253.mxl", seconds=20.0, seed=0)
    assert perf.composer == "Johann Sebastian Bach" and perf.source == "corpus"
    assert 14.0 < perf.duration_s < 30.0
    assert perf.velocity.std() > 3.0
    ioi = np.diff(np.unique(np.round(perf.onset_s, 4)))
    assert np.unique(np.round(ioi, 3)).size > 10  # not a metronomic grid
    assert (perf.cc_controller == C.SUSTAIN_CC).sum() > 10


# ---------------------------------------------------------------------------------- the output


def test_refuses_a_nonempty_folder(tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(D.DemoDataError, match="not empty"):
        D.make_demo_dataset(out, minutes=1.0, progress=False)
    with pytest.raises(D.DemoDataError, match="notes.txt"):  # force replaces only a demo dataset
        D.make_demo_dataset(out, minutes=1.0, force=True, progress=False)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(D.DemoDataError, match="not a folder"):
        D.make_demo_dataset(tmp_path / "file", minutes=1.0, progress=False)
    from midi2wave.cli import main

    assert main(["make-demo-data", str(out), "--minutes", "1", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("midi2wave: error: ") and str(out) in err and "--force" in err


@pytest.mark.parametrize("kwargs", [{"minutes": 0.1}, {"minutes": float("nan")}, {"minutes": 1.0, "seed": -1}])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(D.DemoDataError):
        D.make_demo_dataset(tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()


def test_force_replaces_an_earlier_dataset(demo, tmp_path):
    root, _ = demo
    out = tmp_path / "replace"
    shutil.copytree(root, out)
    summary = D.make_demo_dataset(out, minutes=0.5, seed=5, force=True, progress=False)
    _, rows = read_csv(out)
    assert len(rows) == summary.n_pieces >= 3
    assert {r["split"] for r in rows} == {"train", "validation", "test"}
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert on_disk == {r[c] for r in rows for c in ("midi_filename", "audio_filename")} | {
        D.METADATA_CSV, D.METADATA_JSON}
    assert [p.name for p in tmp_path.iterdir()] == ["replace"]  # no temporary folders left


def test_example_midi_is_up_to_date(tmp_path):
    example = REPO / "examples" / "example.mid"
    assert example.is_file()
    subprocess.run([sys.executable, str(REPO / "examples" / "make_example.py"), str(tmp_path / "ex.mid")],
                   check=True, capture_output=True)
    assert (tmp_path / "ex.mid").read_bytes() == example.read_bytes()
    notes, cc = midi_notes(example)
    end = max(n[1] for n in notes)
    assert 10.0 <= end <= 15.0 and len(notes) > 50 and any(c == 64 for _, c, _ in cc)


def test_dense_midi_is_up_to_date_and_dense(tmp_path):
    """examples/dense.mid, the live benchmarks' dense piece, is what its script writes, and is dense:
    more than twice example.mid's notes per second, with the sustain pedal."""
    dense = REPO / "examples" / "dense.mid"
    subprocess.run([sys.executable, str(REPO / "examples" / "make_dense.py"), str(tmp_path / "d.mid")],
                   check=True, capture_output=True)
    assert (tmp_path / "d.mid").read_bytes() == dense.read_bytes()
    notes, cc = midi_notes(dense)
    end = max(n[1] for n in notes)
    assert 35.0 <= end <= 55.0 and len(notes) / end > 20.0 and any(c == 64 for _, c, _ in cc)


# ---------------------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_same_seed_identical_across_processes(tmp_path):
    code = "import sys; from midi2wave.data.demo import make_demo_dataset as m; m(sys.argv[1], minutes=2, seed=7, progress=False)"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], check=True, env=env, cwd=tmp_path)
    assert files_digest(tmp_path / "a") == files_digest(tmp_path / "b")


@pytest.mark.slow
def test_five_minutes_proportions(tmp_path, cache_dir):
    summary = D.make_demo_dataset(tmp_path / "d", minutes=5.0, seed=2, progress=False)
    total = summary.total_seconds
    assert 270 < total < 340
    assert summary.seconds_by_split["train"] / total > 0.55
    assert all(v > 0 for v in summary.seconds_by_split.values())
    durations = [r["duration"] for r in summary.rows]
    assert max(durations) < 95 and sum(d >= 19 for d in durations) >= len(durations) - 1
    generated = sum(r["duration"] for r in summary.rows if r["canonical_composer"] == D.GENERATED_COMPOSER)
    assert 0.15 < generated / total < 0.5
