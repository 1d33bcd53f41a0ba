"""The conditioning paths can be learned: when the audio is determined by the MIDI-derived inputs, a
tiny model trained for a few hundred steps draws clearly on them (positive conditioning gain).

This guards the heart of the project against a silent break of a conditioning path (a projection
that is not applied, a misaligned upsampling), which teacher-forced loss alone would not reveal.
The mu-law head is used because it learns this in a few hundred steps; the 16-bit MoL head needs
far longer before the conditioning's few bits show above its precision noise (docs/conditioning-study.md).
"""

from __future__ import annotations

import math

import pytest
import torch

from midi2wave.config import DataConfig
from midi2wave.model import Midi2Wave
from midi2wave.model.distributions import quantize_pcm
from helpers import tiny_model_config

SPF = 64
FRAMES = 8
T = FRAMES * SPF


def _train(model: Midi2Wave, make_batch, steps: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        audio, cond, exc = make_batch(step)
        year = torch.zeros(audio.shape[0], dtype=torch.long)
        loss = model.bits_per_sample(model(audio, cond, year, excitation=exc), audio)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _gain(model: Midi2Wave, audio, cond, exc) -> float:
    year = torch.zeros(audio.shape[0], dtype=torch.long)
    with torch.no_grad():
        true = model.bits_per_sample(model(audio, cond, year, excitation=exc), audio).item()
        zero_exc = None if exc is None else torch.zeros_like(exc)
        zeroed = model.bits_per_sample(model(audio, torch.zeros_like(cond), year, excitation=zero_exc), audio).item()
    return zeroed - true


def _bursts(seed: int, batch: int = 8):
    """Audio that is silent except for decaying 1 kHz bursts starting at random onset frames."""
    g = torch.Generator().manual_seed(seed)
    onsets = torch.rand(batch, FRAMES, generator=g) < 0.3
    velocity = 0.3 + 0.7 * torch.rand(batch, FRAMES, generator=g)
    roll = torch.zeros(batch, 88, FRAMES)
    roll[:, 40] = onsets * velocity
    t = torch.arange(SPF * 2) / 16000.0
    burst = torch.sin(2 * math.pi * 1000 * t) * torch.exp(-t / 0.003)
    audio = torch.zeros(batch, T + SPF * 2)
    for b in range(batch):
        for f in torch.nonzero(onsets[b]).flatten().tolist():
            audio[b, f * SPF: f * SPF + 2 * SPF] += 0.3 * velocity[b, f] * burst
    return quantize_pcm(audio[:, :T]), roll


TINY = tiny_model_config(residual_channels=12, gate_channels=24, skip_channels=12, n_stacks=1, layers_per_stack=4,
                         output_kind="mulaw", context_channels=12, context_layers_per_stack=1, year_embedding=False)
STEPS = 500


@pytest.mark.training
def test_a_tiny_model_learns_to_use_the_onset_roll():
    torch.manual_seed(0)
    data = DataConfig(conditioning=("onset_velocity",), use_year=False)
    model = Midi2Wave(TINY, data)
    m = model.context_margin_frames

    def batch(step):
        audio, roll = _bursts(step)
        return audio, torch.nn.functional.pad(roll, (m, m)), None

    audio, cond, _ = batch(10_000)
    before = _gain(model, audio, cond, None)
    _train(model, batch, STEPS)
    after = _gain(model, audio, cond, None)
    assert abs(before) < 0.1
    assert after > 0.7, f"conditioning gain after training {after:.3f} bits/sample"


@pytest.mark.training
def test_a_tiny_model_learns_to_use_the_excitation():
    torch.manual_seed(0)
    data = DataConfig(conditioning=("onset_velocity",), use_year=False, excitation_partials=1)
    model = Midi2Wave(TINY, data)
    m = model.context_margin_frames

    def batch(step):
        audio, roll = _bursts(step)
        # the excitation carries the waveform; the roll is withheld so only the excitation informs
        return audio, torch.zeros(audio.shape[0], 88, FRAMES + 2 * m), audio.clone()

    audio, cond, exc = batch(10_000)
    _train(model, batch, STEPS)
    after = _gain(model, audio, cond, exc)
    assert after > 0.7, f"excitation gain after training {after:.3f} bits/sample"


def _path_effect(model: Midi2Wave, audio, cond, exc, path: str) -> tuple[float, float]:
    """(bits per sample gained from one path alone, largest change of the output parameters): that
    path's input zeroed, the other path's input kept."""
    year = torch.zeros(audio.shape[0], dtype=torch.long)
    cut_cond, cut_exc = (torch.zeros_like(cond), exc) if path == "roll" else (cond, torch.zeros_like(exc))
    with torch.no_grad():
        full = model(audio, cond, year, excitation=exc)
        cut = model(audio, cut_cond, year, excitation=cut_exc)
        gain = (model.bits_per_sample(cut, audio) - model.bits_per_sample(full, audio)).item()
    return gain, (full - cut).abs().max().item()


@pytest.mark.parametrize("path", ["roll", "excitation"])
def test_gain_is_zero_when_the_path_is_cut(path):
    """The measurement itself: with one path's weights zeroed, that path's gain is exactly zero (the
    output does not move), while the other path, left connected, still moves it."""
    torch.manual_seed(0)
    data = DataConfig(conditioning=("onset_velocity",), use_year=False, excitation_partials=1)
    model = Midi2Wave(TINY, data)
    m = model.context_margin_frames
    audio, roll = _bursts(3)
    cond = torch.nn.functional.pad(roll, (m, m))
    exc = audio.clone()
    other = {"roll": "excitation", "excitation": "roll"}[path]
    assert _path_effect(model, audio, cond, exc, path)[1] > 1e-3  # connected, the path moves the output
    with torch.no_grad():
        (model.cond_proj.weight if path == "roll" else model.excitation_weight).zero_()
    gain, change = _path_effect(model, audio, cond, exc, path)
    assert change == 0.0 and gain == 0.0
    assert _path_effect(model, audio, cond, exc, other)[1] > 1e-3
