"""midi2wave.render (api.py): MIDI in, audio out; a model and its path render alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import midi2wave
from midi2wave.checkpoint import save_checkpoint
from midi2wave.config import Config, ConfigError, ModelSampling, SamplingOptions
from midi2wave.errors import InputError
from midi2wave.midi import Notes, PedalEvents, read_midi, write_midi
from midi2wave.model import Midi2Wave
from midi2wave.render import synthesize as S
from helpers import tiny_data_config, tiny_model_config

ROOT = Path(__file__).resolve().parents[1]
RESTS = ROOT / "examples" / "rests.mid"
TINY = tiny_model_config(residual_channels=4, gate_channels=8, n_stacks=1, layers_per_stack=4, n_mixtures=2,
                         context_channels=4, context_layers_per_stack=1)
DATA = tiny_data_config(segment_seconds=0.5, excitation_partials=2)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Midi2Wave(TINY, DATA).eval()


@pytest.fixture(scope="module")
def midi(tmp_path_factory):
    notes = Notes(np.array([0.05, 0.10, 0.20]), np.array([0.25, 0.30, 0.40]), np.array([60, 64, 67], np.int16),
                  np.array([90, 70, 110], np.int16))
    pedals = PedalEvents(np.array([0.0, 0.3]), np.array([64, 64], np.int16), np.array([100, 0], np.int16))
    return write_midi(notes, pedals, tmp_path_factory.mktemp("midi") / "piece.mid")


def test_a_loaded_model_renders_as_its_path_with_its_own_sampling_defaults():
    """render(midi, model) and render(midi, path) are the same render: the loaded model carries its
    config's sampling defaults. The bundled model's own defaults are not the built-in ones, so a
    model that dropped them would render differently from the options resolved from its config."""
    model, config = midi2wave.load_model(None)
    assert model.sampling_defaults == config.sampling != ModelSampling()
    options = SamplingOptions(seed=3)
    by_path, rate = midi2wave.render(RESTS, None, options, end_s=1.0)
    by_model, rate_model = midi2wave.render(RESTS, model, options, end_s=1.0)
    assert rate == rate_model == config.data.sample_rate_hz and by_path.shape == (rate,)
    assert np.abs(by_path).max() > 0.01  # notes sound in the window
    np.testing.assert_array_equal(by_model, by_path)
    told, _ = midi2wave.render(RESTS, model, options.resolve(config), end_s=1.0)  # the config's, explicitly
    np.testing.assert_array_equal(by_model, told)
    builtin, _ = midi2wave.render(RESTS, model, options.resolve(None), end_s=1.0)
    assert not np.array_equal(by_model, builtin)  # the defaults matter here


def test_a_checkpoint_path_and_its_loaded_model_render_alike(tiny, midi, tmp_path):
    own = ModelSampling(sustain_temperature=0.3, attack_seconds=0.02)
    path = tmp_path / "own.pt"
    save_checkpoint(path, Config(data=DATA, model=TINY, sampling=own), tiny)
    loaded, _ = midi2wave.load_model(path)
    options = SamplingOptions(seed=1, chunk_seconds=0)
    by_path, _ = midi2wave.render(midi, path, options, end_s=0.3)
    np.testing.assert_array_equal(midi2wave.render(midi, loaded, options, end_s=0.3)[0], by_path)
    assert not np.array_equal(midi2wave.render(midi, tiny, options, end_s=0.3)[0], by_path)  # built-in defaults


def test_render_takes_a_path_or_notes_and_returns_audio_and_rate(tiny, midi):
    options = SamplingOptions(seed=2)
    audio, rate = midi2wave.render(midi, tiny, options, end_s=0.2)
    assert rate == DATA.sample_rate_hz and audio.dtype == np.float32 and audio.shape == (round(0.2 * rate),)
    from_notes, _ = midi2wave.render(read_midi(midi), tiny, options, end_s=0.2)
    np.testing.assert_array_equal(audio, from_notes)  # the sustain rule is applied to both alike
    np.testing.assert_array_equal(audio, S.render_midi(tiny, midi, options, end_s=0.2, progress=False))
    with pytest.raises(InputError, match="path or"):
        midi2wave.render(42, tiny)


def test_a_setting_the_model_cannot_honour_is_one_error(tiny, midi):
    with pytest.raises(ConfigError, match="no fitted partial levels") as err:
        midi2wave.render(midi, tiny, SamplingOptions(partial_levels=0.5), end_s=0.2)
    assert "\n" not in str(err.value)
