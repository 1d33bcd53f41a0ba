"""Noise shaping of the innovation (`ResonatorConfig.pre_emphasis` a, `noise_lowpass` c).

With n_t = e_t / g_t the network samples u, and the bank is driven by e_t = g_t n_t with
n = D(z) u, D(z) = (1 + c z^-1) / ((1 + c)(1 - a z^-1)) (bounded to [-1, 1] when a > 0): white
samples become an innovation that is dark like a piano's, and never louder than the gain. Analysis
(training targets) and synthesis (generation) still invert each other, both engines agree, the
network reads in generation what training feeds it, a reset restarts the filter, and a gap in the
MIDI is still a gap in the output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from midi2wave.conditioning import resonators as rs
from midi2wave.config import ConfigError
from midi2wave.render.generate import GenerationCache, generate
from midi2wave.midi import Notes
from helpers import bank_model, random_inputs

SR = 16000
A = 0.9
C = 0.8
SHAPINGS = [(A, 0.0), (0.0, C), (A, C)]


def _bank(pre_emphasis: float = A, noise_lowpass: float = 0.0, gain: float = 0.2) -> rs.ResonatorConfig:
    return rs.ResonatorConfig(partials=4, input="innovation", gain=gain, gain_attack_s=0.02, gain_sustain=0.25,
                              gain_release_s=0.03, gain_floor=1e-4, pre_emphasis=pre_emphasis,
                              noise_lowpass=noise_lowpass)


def _unshape(n: np.ndarray, a: float, c: float) -> np.ndarray:
    """u of n by the definition: u_t = (1 + c)(n_t - a n_{t-1}) - c u_{t-1} (float64 loop)."""
    u = np.zeros_like(n)
    n_prev = u_prev = 0.0
    for t in range(len(n)):
        u[t] = (1 + c) * (n[t] - a * n_prev) - c * u_prev
        n_prev, u_prev = n[t], u[t]
    return u


def _notes(onsets, offsets, pitches, velocities=None) -> Notes:
    n = len(onsets)
    return Notes(np.asarray(onsets, float), np.asarray(offsets, float), np.asarray(pitches, np.int16),
                 np.asarray(velocities if velocities is not None else [90] * n, np.int16))


def _model(pre_emphasis: float = A, noise_lowpass: float = 0.0):
    return bank_model(_bank(pre_emphasis, noise_lowpass))


def _band_db(x: np.ndarray, lo_hz: float, hi_hz: float) -> float:
    spec = np.abs(np.fft.rfft(x.reshape(-1, 512) * np.hanning(512), axis=1)) ** 2
    f = np.fft.rfftfreq(512, 1 / SR)
    return 10 * math.log10(spec[:, (f >= lo_hz) & (f < hi_hz)].mean())


@pytest.mark.parametrize("a,c", SHAPINGS)
def test_the_target_is_the_shaped_innovation_over_the_gain_and_synthesis_inverts_it(a, c):
    notes = _notes([0.0, 0.05], [0.3, 0.2], [48, 72], [100, 60])
    n = SR // 2
    t = np.arange(n) / SR
    x = np.random.default_rng(0).normal(0, 0.01, n) * np.exp(-t / 0.05) * (t < 0.3)
    sched = rs.schedule(notes, 0, n, SR, _bank(a, c))
    assert (sched.pre_emphasis, sched.noise_lowpass) == (a, c)
    assert (sched.shifted(10).pre_emphasis, sched.shifted(10).noise_lowpass) == (a, c)
    u, p = rs.analyze(x, sched)
    # the definition, from the bank's own prediction and gain
    g = rs.gain_track(sched, n)
    nt = (x - p.astype(np.float64)) / g
    assert np.abs(nt).max() < 1.0  # (so that synthesis' bound does not act below)
    expected = _unshape(nt, a, c)
    np.testing.assert_allclose(u, expected, rtol=2e-4, atol=1e-6 * np.abs(expected).max())
    # without the gain, the analysis gives the innovation itself (what the gain is fitted to)
    e, _ = rs.analyze(x, sched.without_gain())
    np.testing.assert_allclose(e, nt * g, rtol=2e-4, atol=1e-9)
    # analysis and synthesis invert each other
    back = rs.synthesize(u, sched)
    np.testing.assert_allclose(back, x, atol=1e-5)
    # without the emphasis, the target differs
    u0, _ = rs.analyze(x, rs.schedule(notes, 0, n, SR, _bank(0.0, 0.0)))
    assert np.abs(u0 - u).max() > 0.1 * np.abs(u).max()


def test_white_samples_become_a_dark_innovation():
    """Where nothing sounds (the gain's floor, no oscillators), the output is the innovation itself:
    white u comes out tilted by 1 / |1 - a e^{-iw}|^2 (about 22 dB from 250 Hz to 6 kHz at a = 0.9),
    or rolled off at the top only by |1 + c e^{-iw}| / (1 + c), and never louder than the gain,
    whatever is sampled."""
    n = 64 * 512
    u = np.random.default_rng(1).uniform(-0.1, 0.1, n)  # small enough that the bound rarely acts
    low, high = {}, {}
    for a, c in [(0.0, 0.0)] + SHAPINGS:
        x = rs.synthesize(u, rs.schedule(_notes([], [], []), 0, n, SR, _bank(a, c))).astype(np.float64)
        low[a, c], high[a, c] = _band_db(x, 0, 500), _band_db(x, 6000, 8000)
    tilt = {k: high[k] - low[k] for k in low}
    assert abs(tilt[0.0, 0.0]) < 1.5, tilt  # white stays white
    assert tilt[A, 0.0] < tilt[0.0, 0.0] - 15.0, tilt
    assert low[A, 0.0] > low[0.0, 0.0] + 10.0  # the pole lifts the lows
    assert abs(low[0.0, C] - low[0.0, 0.0]) < 1.0  # the zero leaves them ...
    assert high[0.0, C] < high[0.0, 0.0] - 10.0  # ... and takes the top down
    assert tilt[A, C] < tilt[A, 0.0] - 10.0
    # the zero alone keeps |n| <= max |u|: samples at the rail stay at the floor without a bound
    x = rs.synthesize(np.sign(u), rs.schedule(_notes([], [], []), 0, n, SR, _bank(0.0, C)))
    assert np.abs(x).max() <= 1e-4 * (1 + 1e-6)
    # the bound: samples stuck at the rail (DC: the de-emphasis' gain is 1 / (1 - a) there) stay at the floor
    for rail in (np.ones(n), -np.ones(n), np.random.default_rng(2).uniform(0.5, 1, n)):
        x = rs.synthesize(rail, rs.schedule(_notes([], [], []), 0, n, SR, _bank(A)))
        assert np.abs(x).max() <= 1e-4 * (1 + 1e-6)
        assert np.abs(x[-100:]).min() > 0.9e-4  # it does reach the rail


def test_config_validates_the_pre_emphasis():
    with pytest.raises(ConfigError, match=r"data\.resonators\.pre_emphasis"):
        _bank(1.0)
    with pytest.raises(ConfigError, match=r"data\.resonators\.pre_emphasis"):
        _bank(-0.1)
    with pytest.raises(ConfigError, match=r"data\.resonators\.pre_emphasis"):
        rs.ResonatorConfig(partials=0, pre_emphasis=0.5)
    for name in ("noise_lowpass",):
        with pytest.raises(ConfigError, match=rf"data\.resonators\.{name}"):
            rs.ResonatorConfig(partials=4, **{name: 1.0})
        with pytest.raises(ConfigError, match=rf"data\.resonators\.{name}"):
            rs.ResonatorConfig(partials=0, **{name: 0.5})
    with pytest.raises(ValueError, match="noise shaping"):
        rs.BankBatch([rs.Schedule.empty(1e-4, 0.9), rs.Schedule.empty(1e-4, 0.0)])
    with pytest.raises(ValueError, match="noise shaping"):
        rs.BankBatch([rs.Schedule.empty(1e-4, 0.0, 0.5), rs.Schedule.empty(1e-4, 0.0)])


@pytest.mark.parametrize("a,c", [(A, 0.0), (0.0, C)])
def test_generation_with_noise_shaping_agrees_between_engines_and_replays_through_the_forward_pass(a, c):
    model = _model(a, c)
    T = 3200
    bank = rs.from_data_config(model.data_config)
    scheds = [rs.schedule(n, 0, T, SR, bank) for n in
              (_notes([0.0, 0.05], [0.15, 0.2], [60, 67]), _notes([0.02], [0.18], [48]))]
    cond, uniforms, year = random_inputs(model, T, 2, seed=5)
    kw = dict(conditioning=cond, year=year, uniforms=uniforms, resonators=scheds)
    a_numba = generate(model, T, engine="numba", **kw).double().numpy()
    a_torch = generate(model, T, engine="torch", **kw).double().numpy()
    assert (a_numba == a_torch).mean() > 0.99  # rare decision-boundary flips aside
    # training feeds the network u (n = (x - p) / g unshaped) on the 16-bit grid: replaying the
    # generated audio that way through the full forward pass, the same uniforms pick the same samples
    x = a_numba[0]
    _, p = rs.analyze(x, scheds[0])
    g = rs.gain_track(scheds[0], T)
    nt = (x - p.astype(np.float64)) / g
    u = _unshape(nt, a, c)
    network_input = torch.from_numpy(np.floor(np.clip(u, -1, 1) * 32768) / 32768)
    with torch.no_grad():
        params = model(network_input.float()[None], cond[:1], year[:1])
        v = model.sample(params[0].t(), uniforms[0, :, 0], uniforms[0, :, 1]).double().numpy()
    prev = lambda s: np.concatenate([[0.0], s[:-1]])  # noqa: E731
    n_replay = (v + c * prev(u)) / (1 + c) + a * prev(nt)
    if a > 0:
        n_replay = np.clip(n_replay, -1.0, 1.0)
    replay = np.clip(np.floor((p.astype(np.float64) + n_replay * g) * 32768), -32768, 32767) / 32768
    assert np.mean(np.abs(replay - x) <= 1.5 / 32768) > 0.98
    # ... and not when the replay forgets the emphasis
    forgot = np.clip(np.floor((p.astype(np.float64) + g * v) * 32768), -32768, 32767) / 32768
    assert np.mean(np.abs(forgot - x) <= 1.5 / 32768) < 0.9
    # and the analysis of the output gives back u (the training target)
    np.testing.assert_allclose(rs.analyze(x, scheds[0])[0], u, atol=1e-3 * np.abs(u).max())


@pytest.mark.parametrize("a,c", [(A, 0.0), (0.0, C)])
def test_a_reset_restarts_the_noise_shaping(a, c):
    model = _model(a, c)
    T = 1600
    sched = rs.schedule(_notes([0.0], [0.2], [60], [120]), 0, T, SR, rs.from_data_config(model.data_config))
    cond, uniforms, year = random_inputs(model, T, 1, seed=5)
    cache = GenerationCache(model, 1, engine="numba")
    first = generate(model, T, conditioning=cond, year=year, uniforms=uniforms, cache=cache, resonators=[sched])
    cache.reset()
    again = generate(model, T, conditioning=cond, year=year, uniforms=uniforms, cache=cache)
    assert torch.equal(first, again)
    cache.close()


@pytest.mark.parametrize("a,c", [(A, 0.0), (0.0, C)])
def test_a_gap_in_the_midi_is_still_a_gap_in_the_output(a, c):
    model = _model(a, c)
    T = int(1.2 * SR)
    scheds = [rs.schedule(n, 0, T, SR, rs.from_data_config(model.data_config)) for n in
              (_notes([0.0, 0.05, 0.8], [0.15, 0.2, 1.0], [60, 67, 64], [110, 90, 100]), _notes([], [], []))]
    cond, uniforms, year = random_inputs(model, T, 2, seed=5)
    audio = generate(model, T, conditioning=cond, year=year, uniforms=uniforms, resonators=scheds).double().numpy()
    lsb = 1.0 / 32768
    bound = 1e-4 + lsb  # the floor: the de-emphasis is bounded by the gain
    assert np.abs(audio[1]).max() <= bound  # no notes: silence
    tail = math.ceil(_bank().release_tail_s * SR)
    gap = audio[0, int(0.2 * SR) + tail:int(0.8 * SR)]
    assert np.abs(gap).max() <= bound
    sounding = audio[0, :int(0.2 * SR)]
    assert 10 * math.log10(np.mean(gap ** 2) / np.mean(sounding ** 2)) < -45.0
    assert np.abs(audio[0, int(0.8 * SR):]).max() > 100 * lsb
