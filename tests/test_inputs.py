"""One builder of model inputs: training examples, evaluation excerpts and synthesis read the same
rolls, excitation, year, resonator schedule and teacher-forced target for the same window."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_data_config, tiny_model_config
from store_fixture import make_store

from midi2wave import constants as C
from midi2wave.conditioning import resonators
from midi2wave.config import ResonatorConfig
from midi2wave.data.dataset import SegmentDataset
from midi2wave.evaluation.evaluate import excerpt_batches, store_excerpts
from midi2wave.conditioning.inputs import window_inputs
from midi2wave.model import Midi2Wave
from midi2wave.render.synthesize import model_inputs

DATA = tiny_data_config(conditioning=("onset_velocity", "frame", "pedals"), segment_seconds=0.256,
                        excitation_partials=4, resonators=ResonatorConfig(partials=3, input="innovation", gain=0.2,
                                                                          gain_floor=1e-4))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "store"
    make_store(path, {"test": 2}, seconds=2.0, seed=11)
    return path


def _schedule_arrays(sched: resonators.Schedule) -> dict:
    return {f: getattr(sched, f) for f in resonators.Schedule.FIELDS}


def test_dataset_evaluation_and_synthesis_build_the_same_inputs(store):
    model = Midi2Wave(tiny_model_config(), DATA).eval()
    margin = model.context_margin_frames
    dataset = SegmentDataset(store, "test", DATA, margin_frames=margin)
    excerpts = store_excerpts(store, "test", DATA, margin, n_excerpts=3, excerpt_seconds=DATA.segment_seconds)
    batch, = excerpt_batches(excerpts, len(excerpts), "true")
    for i, e in enumerate(excerpts):
        piece = e.extra["piece_index"]
        item = dataset.example(piece, e.start_frame)  # training
        notes, pedals = dataset.piece_notes(piece)
        s0 = e.start_frame * DATA.samples_per_frame
        synth = model_inputs(model, notes, pedals, [s0], DATA.segment_samples, year=dataset.piece_years[piece])
        # rolls (with the context margins), excitation, year: identical in all three
        np.testing.assert_array_equal(item["conditioning"].numpy(), e.conditioning)
        np.testing.assert_array_equal(synth.rolls[0].numpy(), e.conditioning)
        np.testing.assert_array_equal(item["excitation"].numpy(), e.excitation)
        np.testing.assert_array_equal(synth.excitation[0].numpy(), e.excitation)
        assert int(item["year"]) == e.year == int(synth.year[0])
        # the teacher-forced target of training is the one evaluation scores
        np.testing.assert_array_equal(item["target"].numpy(), batch["target"][i].numpy())
        np.testing.assert_array_equal(item["audio"].numpy(), e.audio)
        # the oscillators generation runs are evaluation's, moved from the warm-up to the window start
        moved = e.schedule.shifted(-len(e.warmup_audio))
        window = [o for o in range(len(moved)) if moved.stop[o] > 0]
        gen = _schedule_arrays(synth.resonators[0])
        for field, values in _schedule_arrays(moved).items():
            np.testing.assert_array_equal(values[window], gen[field], err_msg=field)
        assert synth.resonators[0].gain_floor == e.schedule.gain_floor == 1e-4


def test_window_inputs_refuse_a_start_off_the_frame_grid():
    with pytest.raises(ValueError, match="multiple"):
        window_inputs(DATA, *_empty(), 3, 640)


def test_generation_inputs_have_no_target_and_teacher_forced_ones_do():
    notes, pedals = _empty()
    plain = window_inputs(DATA, notes, pedals, 0, 640)
    assert plain.target is None and plain.schedule is not None and plain.year == C.UNKNOWN_YEAR_INDEX
    forced = window_inputs(DATA, notes, pedals, 640, 640, audio=np.zeros(4000, np.int16), audio_scale=1 / 32768)
    assert forced.target.shape == (640,) and forced.warmup_audio.shape == (DATA.sample_rate_hz // 20,)
    assert torch.from_numpy(forced.target).abs().max() == 0


def _empty():
    from midi2wave.midi import Notes, PedalEvents

    return Notes.empty(), PedalEvents.empty()
