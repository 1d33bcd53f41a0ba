"""Shared test helpers: the tiny configs every fast test builds its models from.

Tests that need a variant say how it differs (`tiny_model_config(n_stacks=1, ...)`), so the
difference is the point of the test and not an accident of a private copy. `configs/tiny.json` is
the tiny preset that trains in seconds (train, checkpoint and CLI tests).
Imported as `from helpers import ...` (pytest puts tests/ on sys.path, as for store_fixture.py);
conftest.py holds the fixtures only.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from midi2wave.config import (
    Config,
    DataConfig,
    ModelConfig,
    ResonatorConfig,
    SamplingOptions,
    load_config,
)
from midi2wave.conditioning import resonators as rs
from midi2wave.midi import Notes, PedalEvents, write_midi
from midi2wave.model import Midi2Wave

ROOT = Path(__file__).resolve().parents[1]
TINY_JSON = ROOT / "configs" / "tiny.json"

# A two-stack network of a few hundred parameters per layer: every code path, milliseconds per call.
_TINY_MODEL = dict(residual_channels=8, gate_channels=16, skip_channels=8, n_stacks=2, layers_per_stack=3,
                   n_mixtures=3, context_channels=8, context_stacks=1, context_layers_per_stack=2)
# Two conditioning kinds (notes and pedals) and one 32 ms segment (8 frames).
_TINY_DATA = dict(conditioning=("onset_velocity", "pedals"), segment_seconds=0.032)


def tiny_model_config(**overrides) -> ModelConfig:
    """The tiny network, with `overrides` (ModelConfig fields)."""
    return ModelConfig(**{**_TINY_MODEL, **overrides})


def tiny_data_config(**overrides) -> DataConfig:
    """The tiny data settings, with `overrides` (DataConfig fields)."""
    return DataConfig(**{**_TINY_DATA, **overrides})


def tiny_config(**train_overrides) -> Config:
    """`configs/tiny.json`, with `train_overrides` (TrainConfig fields)."""
    config = load_config(TINY_JSON)
    return config.replace(train=dataclasses.replace(config.train, **train_overrides))


def bank_model(bank: ResonatorConfig) -> Midi2Wave:
    """A tiny mu-law network (seeded, eval mode) over the resonator bank `bank`, reading one frame
    roll: the model of the bank's generation tests (gain, noise shaping, share, partial levels)."""
    torch.manual_seed(0)
    cfg = tiny_model_config(n_stacks=1, layers_per_stack=4, context_layers_per_stack=1, output_kind="mulaw")
    return Midi2Wave(cfg, DataConfig(conditioning=("frame",), segment_seconds=0.032, resonators=bank)).eval()


def random_inputs(model: Midi2Wave, n_samples: int, batch: int = 1, seed: int = 3):
    """(conditioning [B, C, frames + 2 margins], uniforms [B, n, 2], year [B] zeros) for `generate`,
    drawn in that order from one generator seeded `seed`."""
    g = torch.Generator().manual_seed(seed)
    frames = n_samples // model.samples_per_frame
    cond = torch.rand(batch, model.data_config.conditioning_channels, frames + 2 * model.context_margin_frames,
                      generator=g)
    return cond, torch.rand(batch, n_samples, 2, generator=g), torch.zeros(batch, dtype=torch.long)


# ---------------------------------------------------------------- the bank's locked trajectory

def undriven_amplitudes(sched: rs.Schedule, n: int, seed: int = 0) -> np.ndarray:
    """[n, oscillators] amplitudes after each sample (schedule order), driven only through the attack."""
    bank = rs.BankBatch([sched])
    end = int(sched.attack_end.max())
    e = np.zeros(n)
    e[:end] = 0.05 * np.random.default_rng(seed).standard_normal(end)
    k = len(sched)
    out = np.empty((n, k))
    for t in range(n):
        bank.predict(t)
        bank.update(t, e[t:t + 1])
        order = bank.state.idx[0, :k]
        out[t, order] = np.abs(bank.state.re[0, :k] + 1j * bank.state.im[0, :k])
    return out


def locked_levels(sched: rs.Schedule, t: int, order=None) -> np.ndarray:
    """`resonators.locked_amplitude` of each oscillator (schedule order, or `order`) at sample t."""
    rows = range(len(sched)) if order is None else order
    return np.array([rs.locked_amplitude(t, sched.level[s], sched.attack_end[s], sched.release[s], sched.r_hold_locked[s],
                                         sched.r_release[s], sched.r_prompt[s], sched.prompt_end[s], sched.knee[s],
                                         sched.r_after[s]) for s in rows])


# ---------------------------------------------------------------- the live engine (test_live*.py)

LIVE_BANK = rs.ResonatorConfig(partials=4, input="innovation", gain=0.2, gain_attack_s=0.02, gain_sustain=0.25,
                          gain_release_s=0.03, gain_floor=1e-4, attack_s=0.02, pre_emphasis=0.5, noise_lowpass=0.6,
                          level_pitches=(40, 80),
                          levels_db=((-30.0, -36.0, -40.0, -44.0), (-32.0, -38.0, -42.0, -46.0)),
                          level_velocity_slope_table=((0.5, 0.5, 0.5, 0.5), (0.5, 0.5, 0.5, 0.5)),
                          # a prompt sound on the upper partials, louder when struck harder (and none on the first)
                          prompt_levels_db=((-30.0, -33.0, -34.0, -36.0), (-32.0, -34.0, -35.0, -37.0)),
                          prompt_velocity_slope_table=((0.5, 0.8, 1.0, 1.2), (0.5, 0.8, 1.0, 1.2)), prompt_seconds=0.06,
                          # a room with its release and its tone (quieter below 500 Hz, brighter above 2 kHz)
                          room_years=(2011,), room_release_tau_s=(0.05,), room_tone_hz=(500.0, 2000.0),
                          room_tone_db=((-2.0, 3.0),),
                          # a velocity tone: the soft blows' top darker, the loud ones' brighter
                          velocity_tone_velocities=(40.0, 64.0, 120.0), velocity_tone_hz=(1000.0, 3000.0),
                          velocity_tone_db=((0.0, -2.0), (0.0, 0.0), (0.5, 4.0)))


def live_model(causal: bool = True) -> Midi2Wave:
    """A tiny causal mu-law model over the bank, reading every kind of input the live model reads."""
    torch.manual_seed(0)
    cfg = tiny_model_config(n_stacks=1, layers_per_stack=4, context_layers_per_stack=2, output_kind="mulaw",
                            context_causal=causal)
    data = DataConfig(conditioning=("onset_velocity", "frame", "offset", "pedals"), segment_seconds=0.032,
                      resonators=LIVE_BANK, excitation_partials=4)
    model = Midi2Wave(cfg, data).eval()
    with torch.no_grad():  # a visible year and context: the tests see them reach the output
        model.year_embed.weight.normal_(0, 0.3)
    return model


LIVE_OPTIONS = SamplingOptions(sustain_temperature=0.5, sustain_innovation=0.7, release_innovation=0.2,
                          partial_levels=1.0, attack_lowpass_hz=900.0, attack_lowpass_key_tracking=0.6, sustain_limit=4.0,
                          attack_lowpass_velocity_tracking=1.75, sustain_noise_decay_db_per_s=15.0, seed=3)


def live_piece(folder) -> str:
    """Notes, a rest long enough to fall silent, the sustain and sostenuto pedals, a re-struck key."""
    notes = Notes(np.array([0.013, 0.05, 0.2, 0.21, 0.3, 2.6, 2.61, 2.8]),
                  np.array([0.15, 0.12, 0.25, 0.6, 0.45, 2.7, 2.9, 3.0]),
                  np.array([60, 64, 67, 48, 67, 72, 76, 40], np.int16),
                  np.array([100, 80, 90, 60, 110, 70, 75, 120], np.int16))
    pedals = PedalEvents(np.array([0.1, 0.4, 2.65, 2.75, 2.85]), np.array([64, 64, 66, 66, 67], np.int16),
                         np.array([100, 0, 90, 0, 127], np.int16))
    path = Path(folder) / "piece.mid"
    write_midi(notes, pedals, path)
    return str(path)


def missing(why: str) -> None:
    """Something a test needs is not installed: a failure under CI (which installs everything), else a skip."""
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


def started(start, *args, **kwargs):
    """`start(*args, **kwargs)` (`audio_servers.start_jackd` or `start_pipewire`): the server, or the
    test fails with its one line, or, where the server is not installed, is `missing`."""
    from audio_servers import ServerError, ServerMissing

    try:
        return start(*args, **kwargs)
    except ServerMissing as e:
        missing(str(e))
    except ServerError as e:
        pytest.fail(str(e))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on just now (for a rendezvous or a store)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- partial-level fits (fit_partials.py)

def four_partial_config(folder: Path) -> tuple[Path, ResonatorConfig]:
    """configs/default.json with a four-partial bank (a quick level fit) and no velocity tone (the
    synthetic notes' levels are straight lines in dB of velocity), written to `folder`: (its path,
    its bank)."""
    import json

    raw = json.loads((Path(__file__).resolve().parents[1] / "configs" / "default.json").read_text())
    raw["data"]["resonators"].update(partials=4, synthesis_partials=0, velocity_tone_velocities=[], velocity_tone_hz=[],
                                     velocity_tone_db=[], prompt_velocity_tone_db=[])
    path = Path(folder) / "config.json"
    path.write_text(json.dumps(raw))
    return path, load_config(path).data.resonators


def isolated_notes(pitches, velocities, true_db, bank: ResonatorConfig, seed: int, excess_db=None,
                   sample_rate_hz: int = 16000) -> tuple[Notes, np.ndarray]:
    """(notes, audio) of held isolated notes, 1.2 s apart and held 0.8 s, whose 4 partials are at
    `true_db(p, v, k)` at the bank's attack end and decay as the bank decays them, over a faint
    noise. `excess_db(k)`: a prompt sound, that many dB over the decay's line at the attack's end,
    falling in a straight line in dB onto it at the level fit's window centre (0.25 s + 1024
    samples after the attack's end; as the bank's `prompt_seconds`)."""
    from midi2wave.midi import decay_tau_s

    sr = sample_rate_hz
    rng = np.random.default_rng(seed)
    onsets = 0.5 + 1.2 * np.arange(len(pitches))
    t = np.arange(int((onsets[-1] + 1.5) * sr)) / sr
    prompt_s = 0.25 + 1024 / sr
    x = 1e-6 * rng.standard_normal(len(t))
    for on, p, v in zip(onsets, pitches, velocities):
        sounding = (t >= on) & (t < on + 0.8)
        after = np.maximum(t - on - bank.attack_s, 0.0)
        for k in range(1, 5):
            tau = bank.decay_scale * float(decay_tau_s(int(p))) / k ** bank.decay_exponent
            hz = float(rs.partial_hz(int(p), k, bank.tuning_cents, bank.inharmonicity))
            db = true_db(p, v, k) + (excess_db(k) * np.maximum(0.0, 1.0 - after / prompt_s) if excess_db else 0.0)
            x += (sounding * 10 ** (db / 20) * np.exp(-(t - on - bank.attack_s) / tau)
                  * np.sin(2 * np.pi * hz * (t - on) + rng.uniform(0, 6.3)))
    notes = Notes(onsets, onsets + 0.8, np.asarray(pitches, np.int16), np.asarray(velocities, np.int16))
    return notes, x
