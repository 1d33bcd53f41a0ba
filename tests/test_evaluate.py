"""Evaluation metrics on hand-made cases with known answers, and `midi2wave evaluate` end to end."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pytest
import torch

from midi2wave import constants as C
from midi2wave.config import (Config, DataConfig, ModelConfig, ModelSampling, ResonatorConfig,
                              SamplingOptions, TrainConfig)
from midi2wave.errors import EvaluationError
from midi2wave.evaluation.evaluate import (
    EvaluateOptions,
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
from helpers import tiny_data_config, tiny_model_config

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
    later = lambda dt: Notes(REFERENCE.onset_s + dt, REFERENCE.offset_s + 0.5, REFERENCE.pitch, REFERENCE.velocity)  # noqa: E731
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
    from midi2wave.evaluation.transcribe import basic_pitch_available

    if not basic_pitch_available():
        return "basic-pitch / onnxruntime not installed (pip install --no-deps basic-pitch==0.4.0; see setup-dev.sh)"
    return None


def _fluidsynth_missing() -> str | None:
    try:
        from midi2wave.data import demo

        demo.find_soundfont()
        demo.import_fluidsynth()
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
    from midi2wave.evaluation.evaluate import transcription_f1
    from midi2wave.evaluation.excerpts import render_midi_file
    from midi2wave.midi import read_midi

    a, b = _random_midi(tmp_path / "a.mid", 1), _random_midi(tmp_path / "b.mid", 2)
    notes_a, _ = read_midi(a)
    audio_a, audio_b = render_midi_file(a, C.SAMPLE_RATE_HZ), render_midi_file(b, C.SAMPLE_RATE_HZ)
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
    from midi2wave.evaluation import evaluate as ev

    monkeypatch.setattr(ev, "_generate_excerpts", lambda model, config, excerpts, **kw: [e.audio for e in excerpts])
    model = _tiny_model()
    results = ev.evaluate_model(model, Config(data=TINY_DATA, model=TINY),
                                EvaluateOptions(store=store, split="test", n_excerpts=3, excerpt_seconds=0.5))
    tr = results["transcription"]
    for key in ("precision", "recall", "f1", "n_matched", "n_estimated"):
        assert tr["generated"][key] == tr["ground_truth"][key]
        assert tr["generated_other_midi"][key] == tr["ground_truth_other_midi"][key]
    assert tr["ground_truth"]["n_reference"] == sum(e["reference_notes"] for e in results["excerpts"])
    assert len(tr["per_excerpt"]) == 3


@needs_basic_pitch
def test_no_nll_skips_the_teacher_forced_pass_and_scores_the_same_generations(store, monkeypatch):
    from midi2wave.evaluation import evaluate as ev

    monkeypatch.setattr(ev, "_generate_excerpts", lambda model, config, excerpts, **kw: [e.audio for e in excerpts])
    model, config = _tiny_model(), Config(data=TINY_DATA, model=TINY)
    options = EvaluateOptions(store=store, n_excerpts=2, excerpt_seconds=0.5, other_instrument="none")
    full = ev.evaluate_model(model, config, options)
    assert full["nll"] is not None and full["settings"]["nll"] is True

    def no_teacher_forcing(*args, **kwargs):
        raise AssertionError("the teacher-forced pass ran")

    monkeypatch.setattr(ev, "_gain_on_excerpts", no_teacher_forcing)
    fast = ev.evaluate_model(model, config, dataclasses.replace(options, nll=False))
    assert fast["nll"] is None and fast["conditioning_gain"] is None and fast["settings"]["nll"] is False
    assert "teacher_forced" not in fast["timing_seconds"]
    assert fast["transcription"]["generated"] == full["transcription"]["generated"]
    assert fast["realism"]["generated"] == full["realism"]["generated"]
    table = ev.format_table(fast)
    assert "skipped (--no-nll)" in table and "true MIDI" not in table and "generated (model)" in table


@pytest.mark.parametrize("settings, problem", [
    ({}, "give --data STORE"),
    ({"store": "s", "midi_files": ["a.mid"]}, "not both"),
    ({"store": "s", "split": "dev"}, "--split dev: not one of train, validation, test"),
    ({"store": "s", "n_excerpts": 0}, "--excerpts 0: must be >= 1"),
    ({"store": "s", "excerpt_seconds": 0.0}, "--excerpt-seconds 0: must be > 0"),
    ({"store": "s", "other_instrument": "harpsichord"}, "--other-instrument harpsichord: not one of"),
    ({"store": "s", "sampling": SamplingOptions()}, "--chunk-seconds: give a length"),
    ({"store": "s", "transcription": False, "plots_dir": "p"}, "--plots needs the generations"),
    ({"store": "s", "transcription": False, "nll": False}, "nothing to evaluate"),
])
def test_evaluate_options_are_validated_once(settings, problem):
    with pytest.raises(EvaluationError, match=re.escape(problem)) as err:
        EvaluateOptions(**settings)
    assert "\n" not in str(err.value)


def test_evaluation_samples_with_the_models_own_defaults_unless_told(store):
    from midi2wave.evaluation import evaluate as ev

    model = _tiny_model()
    config = Config(data=TINY_DATA, model=TINY, sampling=ModelSampling(sustain_temperature=0.3, attack_seconds=0.02))
    options = EvaluateOptions(store=store, n_excerpts=1, excerpt_seconds=0.25, transcription=False)
    own = ev.evaluate_model(model, config, options)["settings"]
    assert (own["temperature"], own["sustain_temperature"], own["attack_seconds"]) == (1.0, 0.3, 0.02)
    told = ev.evaluate_model(model, config, dataclasses.replace(
        options, sampling=SamplingOptions(temperature=0.9, sustain_temperature=0.0, chunk_seconds=0.0)))["settings"]
    assert (told["temperature"], told["sustain_temperature"], told["attack_seconds"]) == (0.9, None, None)
    assert own["min_p"] == told["min_p"] == 0.0


def test_min_p_reaches_the_excerpts_generation(store):
    """The excerpts' generation (whole and in chunks) samples with `min_p`: the cut changes it
    (broken once: render_batch not passing it on, the two generations equal)."""
    from midi2wave.evaluation import evaluate as ev

    model = _tiny_model()
    config = Config(data=TINY_DATA, model=TINY)
    excerpts = store_excerpts(store, "test", TINY_DATA, model.context_margin_frames, 2, 0.25, 1)
    for chunk_seconds in (0.0, 0.1):
        plain = SamplingOptions(chunk_seconds=chunk_seconds, overlap_seconds=0.04)
        a = ev._generate_excerpts(model, config, excerpts, sampling=plain)
        b = ev._generate_excerpts(model, config, excerpts, sampling=dataclasses.replace(plain, min_p=0.5))
        assert len(a) == len(b) == 2 and not any(np.array_equal(x, y) for x, y in zip(a, b))


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


@needs_basic_pitch
def test_cli_evaluate_no_nll(store, tiny_checkpoint, tmp_path, capsys):
    from midi2wave.cli import main

    out = tmp_path / "eval.json"
    base = ["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(store), "--excerpts", "2",
            "--excerpt-seconds", "0.25", "--other-instrument", "none", "-q"]
    assert main(base + ["--no-nll", "--json", str(out)]) == 0
    assert "teacher-forced NLL and conditioning gain: skipped (--no-nll)" in capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["nll"] is None and results["conditioning_gain"] is None and results["settings"]["nll"] is False
    assert results["transcription"]["generated"]["n_reference"] > 0 and results["realism"] is not None
    assert main(base + ["--no-nll", "--no-transcription"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing to evaluate" in err
    assert main(base + ["--no-transcription", "--temperature", "0"]) == 2  # a sampling flag, named as typed
    assert capsys.readouterr().err.strip() == "midi2wave: error: --temperature 0.0: must be > 0"


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


BANK_DATA = DataConfig(conditioning=("frame",), segment_seconds=0.25, resonators=ResonatorConfig(partials=3))


def test_bank_targets_are_the_innovation_under_each_conditioning(store):
    from midi2wave.conditioning import resonators

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
    from midi2wave.evaluation import evaluate as ev

    model = _tiny_model(model=TINY, data=data)
    config = Config(data=data, model=TINY)
    ex = store_excerpts(store, "test", data, model.context_margin_frames, n_excerpts=2, excerpt_seconds=0.5)
    whole = ev._generate_excerpts(model, config, ex, SamplingOptions(seed=3, chunk_seconds=0.0))
    # chunks at least as long as the excerpt: one stream each, the same samples
    same = ev._generate_excerpts(model, config, ex, SamplingOptions(seed=3, chunk_seconds=0.5, overlap_seconds=0.1))
    for a, b in zip(whole, same):
        np.testing.assert_array_equal(a, b)
    chunked = ev._generate_excerpts(model, config, ex, SamplingOptions(seed=3, chunk_seconds=0.2, overlap_seconds=0.1))
    for a, e in zip(chunked, ex):
        assert a.shape == e.audio.shape and np.isfinite(a).all()
    # the first chunk's own samples (before the second fades in) are a fresh stream from silence:
    # equal to the unchunked stream only if the seeds line up, so check shape and spread only
    assert any(np.abs(a).max() > 0 for a in chunked)


# ------------------------------------------------------------------------------------- realism


@pytest.fixture(scope="module")
def gap_store(tmp_path_factory):
    """Two test pieces of 6 s: a note held by the pedal from 0.5 s to 2.2 s, nothing until 4.0 s
    (a 1.3 s gap after the release margin), then notes again; the fixture's audio is zero where
    no (sustained) note sounds."""
    from store_fixture import synthetic_piece

    path = tmp_path_factory.mktemp("gapstore") / "store"
    pieces = []
    for k in range(2):
        notes = _notes([(0.5, 1.0, 60 + k), (4.0, 4.5, 64 + k), (4.6, 5.2, 67 + k)])
        pedals = PedalEvents(np.array([0.2, 2.2]), np.array([64, 64], np.int16), np.array([127, 0], np.int16))
        pieces.append(synthetic_piece(f"gap{k}", "test", notes, pedals, seconds=6.0))
    write_store(path, pieces)
    return path


def test_excerpt_sounding_notes_hold_the_pedal_and_notes_from_before_the_window():
    from midi2wave.evaluation.excerpts import sounding_notes
    from midi2wave.midi import apply_sustain

    raw = _notes([(0.5, 1.0, 60), (1.5, 1.6, 62), (4.0, 4.5, 64)])
    pedals = PedalEvents(np.array([0.2, 2.2]), np.array([64, 64], np.int16), np.array([127, 0], np.int16))
    sustained = apply_sustain(raw, pedals)
    inside = sounding_notes(sustained, 2.5, 5.5)   # the pedal held notes 1-2 until 2.2 s: release reaches 2.5 s
    assert list(inside.pitch) == [60, 62, 64]
    np.testing.assert_allclose(inside.onset_s, [-2.0, -1.0, 1.5])
    np.testing.assert_allclose(inside.offset_s, [-0.3, -0.3, 2.0])
    assert list(sounding_notes(sustained, 2.8, 3.8).pitch) == []


def test_realism_of_a_perfect_generator_equals_the_ceiling_and_the_scale_is_pluggable(gap_store, monkeypatch):
    """Wiring: generation = ground truth gives the ceiling's gap noise and purity and distance 0; the
    second instrument comes from the OTHER_INSTRUMENTS registry (a renderer that returns the real
    audio at half level has distance 0); a renderer that cannot run skips the scale, no crash."""
    from midi2wave.evaluation import evaluate as ev
    from midi2wave.evaluation import realism
    from midi2wave.errors import InputError

    ex = store_excerpts(gap_store, "test", TINY_DATA, margin_frames=0, n_excerpts=4, excerpt_seconds=3.0, seed=0)
    monkeypatch.setitem(ev.OTHER_INSTRUMENTS, "echo", lambda notes, n, sr: 0.5 * _lookup(ex, notes))
    donors = donor_indices(ex)
    noisy = [e.audio + 0.01 * np.random.default_rng(i).standard_normal(len(e.audio)).astype(np.float32)
             for i, e in enumerate(ex)]
    out = ev.realism_scores(ex, [e.audio for e in ex], donors, "echo")
    noisy_out = ev.realism_scores(ex, noisy, donors, "none")
    assert len(out["per_excerpt"]) == 4
    with_gap = [p for p in out["per_excerpt"] if p["gap_seconds"] >= 0.1]
    assert with_gap, [p["gap_seconds"] for p in out["per_excerpt"]]
    for i, row in enumerate(out["per_excerpt"]):
        e = ex[i]
        assert row["generated"]["gap_noise_db"] == row["ground_truth"]["gap_noise_db"]
        assert row["generated"]["tonal_purity"] == row["ground_truth"]["tonal_purity"]
        assert row["generated"]["log_mel_distance"] == 0.0
        assert row["other_instrument"]["log_mel_distance"] == pytest.approx(0.0, abs=1e-9)
        mask = realism.gap_mask(e.sounding, len(e.audio), e.sample_rate_hz)
        assert row["gap_seconds"] == pytest.approx(mask.sum() / e.sample_rate_hz)
        assert row["ground_truth_other_midi"]["tonal_purity"] == realism.tonal_purity(
            ex[donors[i]].audio, e.sounding, e.sample_rate_hz)
        if row["gap_seconds"] >= 0.1:
            assert row["ground_truth"]["gap_noise_db"] == realism.FLOOR_DB  # the fixture is silent in gaps
            assert noisy_out["per_excerpt"][i]["generated"]["gap_noise_db"] > -60
    assert out["generated"]["gap_excerpts"] == len(with_gap)
    assert out["generated"]["log_mel_distance_mean"] == 0.0
    assert noisy_out["generated"]["log_mel_distance_mean"] > 0.1
    assert noisy_out["generated"]["gap_noise_db_median"] > -60
    assert out["other_instrument_name"] == "echo" and out["other_instrument_skipped"] is None
    assert noisy_out["other_instrument_name"] is None and "other_instrument" not in noisy_out
    assert "log-mel" in "\n".join(ev.realism_table(out))

    def broken(notes, n, sr):
        raise InputError("/nowhere/piano.sf2: no such file")

    monkeypatch.setitem(ev.OTHER_INSTRUMENTS, "broken", broken)
    lines = []
    skipped = ev.realism_scores(ex, [e.audio for e in ex], donors, "broken", lines.append)
    assert "no such file" in skipped["other_instrument_skipped"] and len(lines) == 1
    assert skipped["per_excerpt"][0]["other_instrument"] is None
    assert "no second-instrument scale" in "\n".join(ev.realism_table(skipped))


def _lookup(excerpts, notes):
    """The excerpt whose sounding notes are `notes` (the fake renderer returns its real audio)."""
    return next(e.audio for e in excerpts if e.sounding == notes)


def test_unknown_other_instrument_is_refused_before_any_work(store, capsys, tmp_path):
    from midi2wave.cli import main

    assert main(["evaluate", "--data", str(store), "--other-instrument", "harpsichord", "-q"]) == 2
    err = capsys.readouterr().err
    assert "harpsichord" in err and "musescore" in err and len(err.strip().splitlines()) == 1


@needs_fluidsynth
def test_musescore_renders_the_excerpt_notes_with_a_preroll():
    """The second instrument: a note held from 1 s before the window sounds at its start, a note
    inside starts at its onset, the length is exact, and a sampled piano is clean in the gap."""
    from midi2wave.evaluation import realism
    from midi2wave.evaluation.evaluate import OTHER_INSTRUMENTS

    sr = C.SAMPLE_RATE_HZ
    notes = _notes([(-1.0, 0.3, 60, 90), (2.0, 2.6, 67, 90)])
    audio = OTHER_INSTRUMENTS["musescore"](notes, 3 * sr, sr)
    assert audio.shape == (3 * sr,) and audio.dtype == np.float32

    def rms(a, b):
        return float(np.sqrt(np.mean(audio[int(a * sr):int(b * sr)] ** 2)))

    assert rms(0.0, 0.2) > 30 * rms(1.2, 1.9)          # the held note rings at the start, then stops
    assert rms(1.95, 1.99) < rms(2.02, 2.2) / 30         # the second note starts at 2.0 s
    mask = realism.gap_mask(notes, len(audio), sr)
    assert realism.gap_noise_db(audio, mask, sr) < -45
    assert realism.tonal_purity(audio, notes, sr) > 0.9
    silent = OTHER_INSTRUMENTS["musescore"](_notes([(-3.0, -2.0, 60)]), sr, sr)
    assert np.abs(silent).max() < 1e-3


def test_plots_shade_the_gaps_and_show_the_level(gap_store):
    from midi2wave.evaluation import realism
    from midi2wave.evaluation.evaluate import _excerpt_figure
    from midi2wave.evaluation.scores import mask_spans

    assert mask_spans(np.array([0, 1, 1, 0, 0, 1], bool), 2) == [(0.5, 1.5), (2.5, 3.0)]
    assert mask_spans(np.zeros(4, bool), 2) == []
    ex = store_excerpts(gap_store, "test", TINY_DATA, margin_frames=0, n_excerpts=4, excerpt_seconds=3.0, seed=0)
    e = next(e for e in ex if realism.gap_mask(e.sounding, len(e.audio), e.sample_rate_hz).sum() > 0.1 * 16000)
    spans = mask_spans(realism.gap_mask(e.sounding, len(e.audio), e.sample_rate_hz), e.sample_rate_hz)
    row = {"ground_truth": {"gap_noise_db": -120.0, "tonal_purity": 0.5},
           "generated": {"gap_noise_db": -3.0, "tonal_purity": 0.25, "log_mel_distance": 1.5}}
    fig = _excerpt_figure(e, e.audio * 0.5, realism_row=row)
    axes = fig.get_axes()
    level = [ax for ax in axes if ax.get_ylabel().startswith("level")]
    assert len(level) == 1
    for ax in [a for a in axes if a.get_label() != "<colorbar>"]:
        assert len(ax.patches) == len(spans) >= 1          # every time panel shades every gap
    labels = [t.get_text() for t in level[0].get_legend().get_texts()]
    assert any("gap -3.0 dB" in t and "log-mel dist. 1.50" in t for t in labels), labels
    assert any(t.startswith("gap: no note") for t in labels)


def test_render_excerpt_notes_prerolls_earlier_notes_and_trims_to_the_excerpt():
    """The second-instrument wrapper: the renderer sees notes at times >= 0 (a pre-roll of at most
    4 s holds the notes from before the excerpt), and the output is the excerpt's samples only."""
    from midi2wave.evaluation.evaluate import render_excerpt_notes

    sr = 1000
    seen = []

    def marker(notes, rate):  # a 1 at every onset, held (0.5) until the offset
        seen.append(notes)
        out = np.zeros(int(np.ceil(notes.offset_s.max() * rate)) + 10, np.float32)
        for on, off in zip(notes.onset_s, notes.offset_s):
            out[int(round(on * rate)):int(round(off * rate))] = 0.5
            out[int(round(on * rate))] = 1.0
        return out

    notes = _notes([(-10.0, 0.2, 40), (-1.0, -0.3, 50), (0.5, 9.0, 60)])
    audio = render_excerpt_notes(marker, notes, 2 * sr, sr)
    assert audio.shape == (2 * sr,) and audio.dtype == np.float32
    np.testing.assert_allclose(seen[0].onset_s, [0.0, 3.0, 4.5])        # pre-roll 4 s; -10 s moved to its start
    np.testing.assert_allclose(seen[0].offset_s, [4.2, 3.7, 6.0])       # offsets cut at the excerpt's end
    assert audio[0] == 0.5 and audio[199] == 0.5 and audio[200] == 0.0  # the first note held into the excerpt
    assert audio[500] == 1.0 and audio[1999] == 0.5                     # the third starts at 0.5 s
    assert not render_excerpt_notes(marker, _notes([(0.0, 0.001, 60)]), 50, sr)[5:].any()


@needs_fluidsynth
def test_realism_of_renders_script_measures_a_wav_beside_the_sampled_piano(tmp_path, capsys):
    """scripts/realism_of_renders.py: the sampled piano's own render scores distance 0 and a clean
    gap, a noisy copy of it a loud gap, lower purity and a positive distance; bad input is one line."""
    import importlib.util
    from pathlib import Path

    from midi2wave.audio import save_wav
    from midi2wave.data import demo
    from midi2wave.evaluation.evaluate import OTHER_INSTRUMENTS

    spec = importlib.util.spec_from_file_location(
        "realism_of_renders", Path(__file__).resolve().parents[1] / "scripts" / "realism_of_renders.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    notes = _notes([(0.2, 0.6, 60, 90), (2.5, 3.0, 67, 90)])
    e = np.zeros(0)
    perf = demo.Performance(onset_s=notes.onset_s, offset_s=notes.offset_s, pitch=notes.pitch.astype(np.int64),
                            velocity=notes.velocity.astype(np.int64), cc_time_s=e, cc_controller=e.astype(np.int64),
                            cc_value=e.astype(np.int64))
    midi = demo.write_midi(perf, tmp_path / "a.mid")
    sr = C.SAMPLE_RATE_HZ
    clean = OTHER_INSTRUMENTS["musescore"](notes, 4 * sr, sr)
    noisy = clean + 0.003 * np.random.default_rng(0).standard_normal(len(clean)).astype(np.float32)
    save_wav(tmp_path / "noisy.wav", noisy, sr)
    out = tmp_path / "r.json"
    assert script.main([str(midi), "--wav", str(tmp_path / "noisy.wav"), "--seconds", "4", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["renders"]
    ref, wav = rows["musescore (reference)"], rows[str(tmp_path / "noisy.wav")]
    assert ref["log_mel_distance"] == 0.0 and ref["gap_noise_db"] < -60 and ref["gap_seconds"] > 1.0
    assert wav["gap_noise_db"] > -40 and wav["log_mel_distance"] > 0.1
    assert wav["tonal_purity"] < ref["tonal_purity"]
    assert "gap dB" in capsys.readouterr().out
    assert script.main([str(midi), "--wav", str(tmp_path / "missing.wav")]) == 2
    assert "missing.wav" in capsys.readouterr().err
    assert script.main([str(midi), "--json", str(out)]) == 2        # exists: refused without --force


LEAD_DATA = dataclasses.replace(BANK_DATA, excitation_partials=2)


def test_a_generation_lead_in_extends_the_excerpts_inputs_back_and_is_cut_off(store):
    from midi2wave.evaluation import evaluate as ev

    model = _tiny_model(model=TINY, data=LEAD_DATA)
    config = Config(data=LEAD_DATA, model=TINY)
    margin = model.context_margin_frames
    plain = store_excerpts(store, "test", LEAD_DATA, margin, n_excerpts=2, excerpt_seconds=0.25, seed=0)
    led = store_excerpts(store, "test", LEAD_DATA, margin, n_excerpts=2, excerpt_seconds=0.25, seed=0,
                         lead_in_seconds=0.2)
    lead_frames = int(round(0.2 * LEAD_DATA.frame_rate_hz))
    for p, e in zip(plain, led):
        assert p.lead_in is None and e.lead_in_samples == lead_frames * LEAD_DATA.samples_per_frame
        assert (e.source, e.start_frame) == (p.source, p.start_frame)
        np.testing.assert_array_equal(e.lead_in.rolls[:, lead_frames:], p.conditioning)
        np.testing.assert_array_equal(e.lead_in.excitation[e.lead_in_samples:], p.excitation)
        window = p.schedule.shifted(-len(p.warmup_audio))  # the excerpt's oscillators, times from its start
        early = e.lead_in.schedule.shifted(-e.lead_in_samples)
        assert set(zip(window.start, window.omega)) <= set(zip(early.start, early.omega))
    sampling = SamplingOptions(seed=5, chunk_seconds=0.0)
    without = ev._generate_excerpts(model, config, plain, sampling)
    with_lead = ev._generate_excerpts(model, config, led, sampling)
    for a, b, e in zip(without, with_lead, led):
        assert a.shape == b.shape == e.audio.shape
    assert any(not np.array_equal(a, b) for a, b in zip(without, with_lead))
    # the lead-in is generated, then cut: the same as generating the longer window, taking its DC
    # offset out as a render does (from the generation's start) and slicing it
    from midi2wave.audio import DCBlocker
    from midi2wave.render.generate import generate
    full = generate(model, led[0].lead_in_samples + len(led[0].audio),
                    conditioning=torch.from_numpy(np.stack([e.lead_in.rolls for e in led])),
                    year=torch.tensor([e.year for e in led]),
                    excitation=torch.from_numpy(np.stack([e.lead_in.excitation for e in led])),
                    seed=5, temperature=1.0, resonators=[e.lead_in.schedule for e in led]).float().numpy()
    for row, b, e in zip(full, with_lead, led):
        np.testing.assert_array_equal(DCBlocker(LEAD_DATA.sample_rate_hz)(row)[e.lead_in_samples:], b)
