"""Evaluation metrics on hand-made cases with known answers, and `midi2wave evaluate` end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from midi2wave import constants as C
from midi2wave.config import Config, DataConfig, ModelConfig, TrainConfig
from midi2wave.evaluate import (
    conditioning_gain,
    donor_indices,
    excerpt_batches,
    note_f1,
    pooled_scores,
    store_excerpts,
    teacher_forced_nll,
)
from midi2wave.midi import Notes, PedalEvents, frame_rolls
from midi2wave.model import Midi2Wave
from store_fixture import FixturePiece, make_store, write_store
from conftest import tiny_data_config, tiny_model_config

TINY = tiny_model_config(n_stacks=1, layers_per_stack=4, n_mixtures=2)
TINY_DATA = tiny_data_config(segment_seconds=0.25, excitation_partials=2)


def _notes(rows) -> Notes:
    """rows: (onset_s, offset_s, pitch[, velocity])."""
    rows = [tuple(r) + (100,) * (4 - len(r)) for r in rows]
    on, off, pitch, vel = (np.array(c) for c in zip(*rows)) if rows else ([], [], [], [])
    return Notes(np.asarray(on, float), np.asarray(off, float), np.asarray(pitch, np.int16), np.asarray(vel, np.int16))


# ----------------------------------------------------------------------------------- note scores

REFERENCE = _notes([(0.10, 0.50, 60), (0.30, 0.60, 64), (0.80, 1.20, 67), (1.00, 1.40, 72)])


def test_note_f1_identical_notes_is_one():
    r = note_f1(REFERENCE, REFERENCE)
    assert (r["precision"], r["recall"], r["f1"]) == (1.0, 1.0, 1.0)
    assert (r["n_reference"], r["n_estimated"], r["n_matched"]) == (4, 4, 4)


def test_note_f1_ignores_offsets_and_tolerates_40ms_but_not_60ms():
    later = lambda dt: Notes(REFERENCE.onset_s + dt, REFERENCE.offset_s + 0.5, REFERENCE.pitch, REFERENCE.velocity)
    assert note_f1(REFERENCE, later(0.04))["f1"] == 1.0
    assert note_f1(REFERENCE, later(-0.04))["f1"] == 1.0
    shifted = note_f1(REFERENCE, later(0.06))
    assert (shifted["precision"], shifted["recall"], shifted["f1"], shifted["n_matched"]) == (0.0, 0.0, 0.0, 0)


def test_note_f1_wrong_pitch_does_not_match():
    up = Notes(REFERENCE.onset_s, REFERENCE.offset_s, REFERENCE.pitch + 1, REFERENCE.velocity)
    assert note_f1(REFERENCE, up)["f1"] == 0.0


def test_note_f1_half_the_notes_and_extra_notes():
    half = note_f1(REFERENCE, REFERENCE.take(slice(0, 2)))
    assert half["precision"] == 1.0 and half["recall"] == 0.5
    assert half["f1"] == pytest.approx(2 / 3)
    extra = _notes([(0.10, 0.5, 60), (0.3, 0.6, 64), (0.8, 1.2, 67), (1.0, 1.4, 72), (0.5, 0.7, 50), (0.9, 1.0, 90)])
    r = note_f1(REFERENCE, extra)
    assert r["precision"] == pytest.approx(4 / 6) and r["recall"] == 1.0 and r["f1"] == pytest.approx(0.8)


def test_note_f1_each_note_matches_once():
    double = _notes([(0.10, 0.5, 60), (0.11, 0.5, 60)])
    r = note_f1(_notes([(0.10, 0.5, 60)]), double)
    assert r["n_matched"] == 1 and r["precision"] == 0.5 and r["recall"] == 1.0


def test_note_f1_empty_sides_score_zero():
    assert note_f1(REFERENCE, Notes.empty())["f1"] == 0.0
    assert note_f1(Notes.empty(), REFERENCE)["f1"] == 0.0


def test_pooled_scores_sum_counts():
    a = note_f1(REFERENCE, REFERENCE)  # 4/4
    b = note_f1(REFERENCE, REFERENCE.take(slice(0, 1)))  # 1 of 4 found, precision 1
    pooled = pooled_scores([a, b])
    assert pooled["n_matched"] == 5 and pooled["n_reference"] == 8 and pooled["n_estimated"] == 5
    assert pooled["recall"] == pytest.approx(5 / 8) and pooled["precision"] == 1.0
    assert pooled["mean_f1"] == pytest.approx((1.0 + 0.4) / 2)


# ------------------------------------------------------------------------------------- excerpts


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "store"
    make_store(path, {"train": 1, "test": 3}, seconds=1.5, seed=3)
    return path


def test_store_excerpts_are_seeded_distinct_and_hold_onsets(store):
    a = store_excerpts(store, "test", TINY_DATA, margin_frames=5, n_excerpts=6, excerpt_seconds=0.25, seed=1)
    b = store_excerpts(store, "test", TINY_DATA, margin_frames=5, n_excerpts=6, excerpt_seconds=0.25, seed=1)
    c = store_excerpts(store, "test", TINY_DATA, margin_frames=5, n_excerpts=6, excerpt_seconds=0.25, seed=2)
    keys = [(e.source, e.start_frame) for e in a]
    assert keys == [(e.source, e.start_frame) for e in b]
    assert keys != [(e.source, e.start_frame) for e in c]
    assert len(set(keys)) == 6 and len({e.source for e in a}) == 3  # spread over the three test pieces
    for e in a:
        assert e.audio.shape == (e.n_frames * C.SAMPLES_PER_FRAME,) and e.n_frames == 62
        assert e.conditioning.shape == (TINY_DATA.conditioning_channels, 62 + 10)
        assert e.excitation.shape == e.audio.shape
        assert len(e.notes) >= 1
        assert np.all((e.notes.onset_s >= 0) & (e.notes.onset_s < e.seconds))
        # the reference onsets are where the fixture's audio starts sounding
        for onset in e.notes.onset_s:
            assert e.audio[int(round(onset * C.SAMPLE_RATE_HZ))] > 0


def test_donors_prefer_another_piece(store):
    ex = store_excerpts(store, "test", TINY_DATA, margin_frames=0, n_excerpts=4, excerpt_seconds=0.25, seed=0)
    donors = donor_indices(ex)
    assert all(d != i for i, d in enumerate(donors))
    assert all(ex[d].source != ex[i].source for i, d in enumerate(donors))


def test_excerpt_batches_swap_and_zero_only_the_midi(store):
    ex = store_excerpts(store, "test", TINY_DATA, margin_frames=2, n_excerpts=3, excerpt_seconds=0.25, seed=0)
    donors = donor_indices(ex)
    true, = excerpt_batches(ex, 8, "true")
    swapped, = excerpt_batches(ex, 8, "swapped", donors)
    zeroed, = excerpt_batches(ex, 8, "zeroed")
    for batch in (true, swapped, zeroed):
        torch.testing.assert_close(batch["audio"], true["audio"])
        torch.testing.assert_close(batch["year"], torch.tensor([e.year for e in ex]))
    for i, d in enumerate(donors):
        torch.testing.assert_close(swapped["conditioning"][i], torch.from_numpy(ex[d].conditioning))
        torch.testing.assert_close(swapped["excitation"][i], torch.from_numpy(ex[d].excitation))
    assert zeroed["conditioning"].abs().sum() == 0 and zeroed["excitation"].abs().sum() == 0
    assert true["conditioning"].abs().sum() > 0
    assert len(list(excerpt_batches(ex, 2, "true"))) == 2


# --------------------------------------------------------------------------------- teacher forcing


def _tiny_model(seed=0, model=TINY, data=TINY_DATA) -> Midi2Wave:
    torch.manual_seed(seed)
    return Midi2Wave(model, data).eval()


def test_teacher_forced_nll_equals_bits_per_sample(store):
    model = _tiny_model()
    ex = store_excerpts(store, "test", TINY_DATA, model.context_margin_frames, n_excerpts=3, excerpt_seconds=0.25)
    batch, = excerpt_batches(ex, 3)
    with torch.no_grad():
        expected = model.bits_per_sample(model(batch["audio"], batch["conditioning"], batch["year"],
                                               batch["excitation"]), batch["audio"]).item()
    assert teacher_forced_nll(model, [batch]) == pytest.approx(expected, rel=1e-6)
    # batching does not change it (equal-length excerpts: the mean over batches is the mean over samples)
    assert teacher_forced_nll(model, excerpt_batches(ex, 1)) == pytest.approx(expected, rel=1e-5)
    assert model.training is False


def test_gain_of_a_model_that_ignores_the_midi_is_zero(store):
    model = _tiny_model()
    config = Config(data=TINY_DATA, model=TINY)
    random_init = conditioning_gain(model, config, store, "test", n_excerpts=3, excerpt_seconds=0.25)
    assert abs(random_init["gain_zeroed"]) > 1e-4  # the random model does read its conditioning
    with torch.no_grad():
        model.cond_proj.weight.zero_()
        model.excitation_weight.zero_()
    gain = conditioning_gain(model, config, store, "test", n_excerpts=3, excerpt_seconds=0.25)
    assert abs(gain["gain_swapped"]) < 1e-6 and abs(gain["gain_zeroed"]) < 1e-6
    assert gain["nll_true"] > 0
    assert len(gain["per_excerpt"]) == 3


# A hand-set model whose predicted loudness follows the roll: log_scale = -8 + 13 * 0.5 * tanh(5 * sum(frame row)),
# so scale ~ 3e-4 where no key sounds and ~ 0.22 where one does.
LOUD_MODEL = ModelConfig(input_kind="scalar", output_kind="mol", n_mixtures=1, residual_channels=2, gate_channels=2,
                         skip_channels=2, n_stacks=1, layers_per_stack=1, context_channels=2, context_stacks=0,
                         context_layers_per_stack=1, year_embedding=False)
LOUD_DATA = DataConfig(conditioning=("frame",), use_year=False, segment_seconds=0.5)


def _loud_where_notes_model() -> Midi2Wave:
    model = Midi2Wave(LOUD_MODEL, LOUD_DATA).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.context.input.weight[0, :, 0] = 1.0
        model.cond_proj.weight[0, 0, 0] = 5.0  # layer 0, tanh half of the gate
        model.layers[0].out.weight[LOUD_MODEL.residual_channels, 0, 0] = 1.0  # gate -> skip channel 0
        model.head[1].weight[0, 0, 0] = 1.0
        model.head[3].weight[2, 0, 0] = 13.0  # log-scale of the single logistic
        model.head[3].bias[2] = -8.0
    return model


def _loud_where_notes_store(path, seconds=2.0):
    """Two test pieces with complementary notes: A sounds in [0, .25) + k/2 s, B in [.25, .5) + k/2 s.
    Audio: logistic noise of scale 0.2 in frames where a key sounds, of scale 3e-4 elsewhere."""
    rng = np.random.default_rng(0)
    pieces = []
    n = int(seconds * C.SAMPLE_RATE_HZ)
    for name, phase in (("a", 0.0), ("b", 0.25)):
        starts = np.arange(phase, seconds - 0.25, 0.5)
        notes = _notes([(s, s + 0.25, 60 + i % 12, 120) for i, s in enumerate(starts)])
        roll = frame_rolls(notes, PedalEvents.empty(), ("frame",), 0, n // C.SAMPLES_PER_FRAME, C.FRAME_RATE_HZ)
        sounding = np.repeat(roll.max(axis=0) > 0, C.SAMPLES_PER_FRAME)
        u = rng.uniform(1e-6, 1 - 1e-6, n)
        noise = np.log(u / (1 - u))
        x = np.where(sounding, 0.2 * noise, 3e-4 * noise)
        pcm = np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)
        pieces.append(FixturePiece(id=name, split="test", audio=pcm, notes=notes, year=None))
    write_store(path, pieces)
    return path


def test_gain_of_a_model_that_follows_the_roll_is_positive(tmp_path):
    store = _loud_where_notes_store(tmp_path / "store")
    model = _loud_where_notes_model()
    config = Config(data=LOUD_DATA, model=LOUD_MODEL)
    gain = conditioning_gain(model, config, store, "test", n_excerpts=4, excerpt_seconds=0.5, seed=0)
    # true MIDI: about the entropy of the two noises; zeroed: the loud half is scored with scale 3e-4
    # (hundreds of bits lost per sample); swapped: the complementary piece predicts quiet where the
    # audio is loud (as costly) and loud where it is quiet (~9 bits), over half the samples each.
    assert gain["nll_true"] < 12
    assert gain["gain_zeroed"] > 100
    assert 3.0 < gain["gain_swapped"] < gain["gain_zeroed"]
    assert all(p["nll_zeroed"] > p["nll_true"] and p["nll_swapped"] > p["nll_true"] for p in gain["per_excerpt"])


# --------------------------------------------------------------------------------- transcription


def _basic_pitch_missing() -> str | None:
    from midi2wave.transcribe import basic_pitch_available

    if not basic_pitch_available():
        return "basic-pitch / onnxruntime not installed (pip install --no-deps basic-pitch==0.4.0; see setup-dev.sh)"
    return None


def _fluidsynth_missing() -> str | None:
    try:
        from midi2wave.data import demo

        demo.find_soundfont()
        demo._import_fluidsynth()
    except Exception as e:  # noqa: BLE001 - any reason the renderer cannot run
        return f"FluidSynth renderer unavailable ({e})"
    return None


needs_basic_pitch = pytest.mark.skipif(_basic_pitch_missing() is not None, reason=str(_basic_pitch_missing()))
needs_fluidsynth = pytest.mark.skipif(_fluidsynth_missing() is not None, reason=str(_fluidsynth_missing()))


def _random_midi(path, seed, seconds=8.0):
    """A MIDI file of random 1-3 note chords (pitches 40..88, velocities 60..110) every 0.15-0.5 s."""
    from midi2wave.data import demo

    rng = np.random.default_rng(seed)
    rows = []
    t = 0.2
    while t < seconds - 1.0:
        for p in rng.choice(np.arange(40, 89), size=int(rng.integers(1, 4)), replace=False):
            rows.append((t, t + rng.uniform(0.2, 0.8), int(p), int(rng.integers(60, 111))))
        t += rng.uniform(0.15, 0.5)
    on, off, pitch, vel = (np.array(c) for c in zip(*rows))
    perf = demo.Performance(onset_s=on, offset_s=off, pitch=pitch.astype(np.int64), velocity=vel.astype(np.int64),
                            cc_time_s=np.zeros(0), cc_controller=np.zeros(0, np.int64), cc_value=np.zeros(0, np.int64))
    return demo.write_midi(perf, path)


@needs_basic_pitch
@needs_fluidsynth
def test_transcription_f1_of_a_render_is_high_and_of_another_piece_low(tmp_path):
    from midi2wave.evaluate import _render_midi_file, transcription_f1
    from midi2wave.midi import read_midi

    a, b = _random_midi(tmp_path / "a.mid", 1), _random_midi(tmp_path / "b.mid", 2)
    notes_a, _ = read_midi(a)
    audio_a, audio_b = _render_midi_file(a, C.SAMPLE_RATE_HZ), _render_midi_file(b, C.SAMPLE_RATE_HZ)
    own = transcription_f1(notes_a, audio_a, C.SAMPLE_RATE_HZ)
    other = transcription_f1(notes_a, audio_b, C.SAMPLE_RATE_HZ)
    silence = transcription_f1(notes_a, np.zeros_like(audio_a), C.SAMPLE_RATE_HZ)
    assert own["f1"] >= 0.7, own
    assert other["f1"] < 0.2, other
    assert silence["n_estimated"] == 0 and silence["f1"] == 0.0


@needs_basic_pitch
def test_perfect_generator_scores_the_ceiling_and_the_floor_the_chance_level(store, monkeypatch):
    """Wiring: a 'model' whose generation is the ground truth scores exactly the ceiling, and its
    shuffled-MIDI floor equals the ground truth scored against another excerpt's notes."""
    import midi2wave.evaluate as ev

    monkeypatch.setattr(ev, "_generate_excerpts", lambda model, config, excerpts, **kw: [e.audio for e in excerpts])
    model = _tiny_model()
    results = ev.evaluate_model(model, Config(data=TINY_DATA, model=TINY), store=store, split="test", n_excerpts=3,
                                excerpt_seconds=0.5)
    tr = results["transcription"]
    for key in ("precision", "recall", "f1", "n_matched", "n_estimated"):
        assert tr["generated"][key] == tr["ground_truth"][key]
        assert tr["generated_other_midi"][key] == tr["ground_truth_other_midi"][key]
    assert tr["ground_truth"]["n_reference"] == sum(e["reference_notes"] for e in results["excerpts"])
    assert len(tr["per_excerpt"]) == 3


# ------------------------------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from midi2wave.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    config = Config(data=TINY_DATA, model=TINY, train=TrainConfig())
    save_checkpoint(path, config, _tiny_model(seed=1))
    return path


def test_cli_evaluate_without_transcription_writes_json_and_refuses_to_overwrite(store, tiny_checkpoint, tmp_path,
                                                                                  capsys):
    from midi2wave.cli import main

    out = tmp_path / "eval.json"
    argv = ["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(store), "--excerpts", "3",
            "--excerpt-seconds", "0.25", "--no-transcription", "--json", str(out), "-q"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "true MIDI" in printed and "zeroed MIDI" in printed
    results = json.loads(out.read_text())
    assert results["format"] == "midi2wave-evaluation" and results["transcription"] is None
    assert results["settings"]["excerpts"] == 3 and results["settings"]["excerpt_seconds"] == 0.25
    assert results["settings"]["checkpoint"] == str(tiny_checkpoint)
    gain = results["conditioning_gain"]
    assert gain["gain_zeroed"] == pytest.approx(gain["nll_zeroed"] - gain["nll_true"])
    assert results["nll"]["bits_per_sample"] == gain["nll_true"]
    assert all(math.isfinite(v) for v in results["nll"]["per_excerpt"])
    assert len(results["excerpts"]) == 3 and all(e["donor"] is not None for e in results["excerpts"])

    # the same settings give the same numbers; an existing output is refused without --force
    before = out.read_text()
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_text() == before
    assert main(argv + ["--force"]) == 0
    again = json.loads(out.read_text())
    assert again["conditioning_gain"]["nll_true"] == gain["nll_true"]
    assert again["excerpts"] == results["excerpts"]


def test_cli_evaluate_errors_are_one_line(store, tiny_checkpoint, tmp_path, capsys):
    from midi2wave.cli import main

    assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--no-transcription", "-q"]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(tmp_path / "nope"),
                 "--no-transcription", "-q"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(store), "--split", "validation",
                 "--no-transcription", "-q"]) == 2
    assert "validation" in capsys.readouterr().err


@needs_basic_pitch
@needs_fluidsynth
def test_cli_evaluate_midi_files_with_transcription_and_plots(tiny_checkpoint, tmp_path, capsys):
    from midi2wave.cli import main

    a, b = _random_midi(tmp_path / "a.mid", 3, seconds=4.0), _random_midi(tmp_path / "b.mid", 4, seconds=4.0)
    out, plots = tmp_path / "eval.json", tmp_path / "plots"
    argv = ["evaluate", "--checkpoint", str(tiny_checkpoint), "--midi", str(a), str(b), "--excerpt-seconds", "1",
            "--json", str(out), "--plots", str(plots), "-q"]
    assert main(argv) == 0
    assert "ground truth (ceiling)" in capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["nll"] is None and results["conditioning_gain"] is None
    tr = results["transcription"]
    assert tr["ground_truth"]["f1"] > 0.5  # FluidSynth render of the file itself
    assert tr["generated"]["n_reference"] == tr["ground_truth"]["n_reference"] > 0
    assert {"generated_other_midi", "ground_truth_other_midi"} <= set(tr)
    pngs = sorted(plots.glob("*.png"))
    assert len(pngs) == 2 and all(p.stat().st_size > 10_000 for p in pngs)
    assert main(argv[:-5] + ["--plots", str(plots), "-q"]) == 2  # existing PNGs refused without --force
    assert "already exists" in capsys.readouterr().err


# ------------------------------------------------------------------------------ resonator bank


BANK_DATA = DataConfig(conditioning=("frame",), segment_seconds=0.25, resonator_partials=3)


def test_bank_targets_are_the_innovation_under_each_conditioning(store):
    from midi2wave import resonators

    ex = store_excerpts(store, "test", BANK_DATA, margin_frames=1, n_excerpts=3, excerpt_seconds=0.25, seed=0)
    donors = donor_indices(ex)
    true, = excerpt_batches(ex, 8, "true")
    swapped, = excerpt_batches(ex, 8, "swapped", donors)
    zeroed, = excerpt_batches(ex, 8, "zeroed")
    w = resonators.from_data_config(BANK_DATA).warmup_samples(C.SAMPLE_RATE_HZ)
    for i, e in enumerate(ex):
        assert e.warmup_audio.shape == (w,)
        x = np.concatenate([e.warmup_audio, e.audio]).astype(np.float64)
        own, _ = resonators.analyze(x, e.schedule)
        other, _ = resonators.analyze(x, ex[donors[i]].schedule)
        np.testing.assert_allclose(true["target"][i].numpy(), own[w:], atol=1e-6)
        np.testing.assert_allclose(swapped["target"][i].numpy(), other[w:], atol=1e-6)
        # no MIDI, no oscillators: the innovation is the audio itself
        np.testing.assert_allclose(zeroed["target"][i].numpy(), e.audio, atol=1e-6)
        assert np.abs(own[w:] - e.audio).max() > 1e-3  # the excerpt's notes make the bank predict


def test_gain_of_a_bank_model_is_measured_on_the_innovation(store):
    model = _tiny_model(model=TINY, data=BANK_DATA)
    config = Config(data=BANK_DATA, model=TINY)
    ex = store_excerpts(store, "test", BANK_DATA, model.context_margin_frames, n_excerpts=3, excerpt_seconds=0.25)
    batch, = excerpt_batches(ex, 3)
    with torch.no_grad():
        expected = model.bits_per_sample(model(batch["audio"], batch["conditioning"], batch["year"]),
                                         batch["target"]).item()
    assert teacher_forced_nll(model, [batch]) == pytest.approx(expected, rel=1e-6)
    gain = conditioning_gain(model, config, store, "test", n_excerpts=3, excerpt_seconds=0.25)
    assert math.isfinite(gain["gain_swapped"]) and math.isfinite(gain["gain_zeroed"])


@pytest.mark.parametrize("data", [TINY_DATA, BANK_DATA], ids=["rolls+excitation", "bank"])
def test_chunked_generation_of_excerpts(store, data):
    import midi2wave.evaluate as ev

    model = _tiny_model(model=TINY, data=data)
    config = Config(data=data, model=TINY)
    ex = store_excerpts(store, "test", data, model.context_margin_frames, n_excerpts=2, excerpt_seconds=0.5)
    whole = ev._generate_excerpts(model, config, ex, seed=3)
    # chunks at least as long as the excerpt: one stream each, the same samples
    same = ev._generate_excerpts(model, config, ex, seed=3, chunk_seconds=0.5, overlap_seconds=0.1)
    for a, b in zip(whole, same):
        np.testing.assert_array_equal(a, b)
    chunked = ev._generate_excerpts(model, config, ex, seed=3, chunk_seconds=0.2, overlap_seconds=0.1)
    for a, e in zip(chunked, ex):
        assert a.shape == e.audio.shape and np.isfinite(a).all()
    # the first chunk's own samples (before the second fades in) are a fresh stream from silence:
    # equal to the unchunked stream only if the seeds line up, so check shape and spread only
    assert any(np.abs(a).max() > 0 for a in chunked)
