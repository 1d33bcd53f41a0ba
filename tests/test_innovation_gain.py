"""The innovation gain: the MIDI bounds how loud the network's samples can be (resonators.py).

With the gain on, the network samples u in [-1, 1) and the bank is driven by e = g_t * u, where g_t
comes from the notes alone and is the floor where nothing sounds. So a gap in the MIDI is a gap in
the output, whatever the network samples, and analysis (training targets) and synthesis
(generation) still invert each other.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from midi2wave.conditioning import resonators as rs
from midi2wave.config import ConfigError, DataConfig
from midi2wave.render.generate import generate
from midi2wave.midi import Notes, decay_tau_s
from helpers import bank_model, random_inputs

SR = 16000
GAIN = rs.ResonatorConfig(partials=4, decay_scale=0.5, decay_exponent=1.0, gain=0.2, gain_velocity_exponent=1.0,
                          gain_attack_s=0.02, gain_sustain=0.25, gain_decay_scale=0.5, gain_release_s=0.03,
                          gain_floor=1e-4)


def _notes(onsets, offsets, pitches, velocities=None) -> Notes:
    n = len(onsets)
    return Notes(np.asarray(onsets, float), np.asarray(offsets, float), np.asarray(pitches, np.int16),
                 np.asarray(velocities if velocities is not None else [90] * n, np.int16))


def _envelope(t_s: np.ndarray, on_s: float, off_s: float, pitch: int, velocity: int, cfg: rs.ResonatorConfig):
    """a_n(t) of one note, straight from the definition in ResonatorConfig (times on the sample grid)."""
    on, off = math.ceil(on_s * SR), math.ceil(off_s * SR)
    t = np.round(t_s * SR).astype(np.int64)
    held = np.minimum(t, off) - on
    tau_d = cfg.gain_decay_scale * float(decay_tau_s(np.array([pitch]))[0])
    a = cfg.gain * (velocity / 127) ** cfg.gain_velocity_exponent * (
        np.exp(-held / (cfg.gain_attack_s * SR)) + cfg.gain_sustain * np.exp(-held / (tau_d * SR)))
    a = np.where(t > off, a * np.exp(-(t - off) / (cfg.gain_release_s * SR)), a)
    stop = off + math.ceil(cfg.release_tail_s * SR)
    return np.where((t >= on) & (t < stop), a, 0.0)


def test_the_gain_follows_its_definition_and_is_the_floor_where_nothing_sounds():
    notes = _notes([0.05, 0.1], [0.3, 0.2], [48, 72], [100, 40])
    n = SR
    g = rs.gain_track(rs.schedule(notes, 0, n, SR, GAIN), n)
    t = np.arange(n) / SR
    expected = GAIN.gain_floor + np.sqrt(sum(_envelope(t, on, off, p, v, GAIN) ** 2 for on, off, p, v in
                                             zip(notes.onset_s, notes.offset_s, notes.pitch, notes.velocity)))
    np.testing.assert_allclose(g, expected, rtol=1e-9, atol=1e-12)
    assert g[: int(0.05 * SR)].max() == GAIN.gain_floor  # before the first note
    assert g[int(0.3 * SR) + math.ceil(GAIN.release_tail_s * SR):].max() == GAIN.gain_floor  # after the last
    assert g.max() > 100 * GAIN.gain_floor
    # louder notes get a larger gain; the gain decays after the attack
    assert g[int(0.051 * SR)] > 5 * g[int(0.29 * SR)]


def test_a_window_starting_mid_note_gets_the_whole_piece_gain():
    notes = _notes([0.05, 0.4], [0.6, 1.0], [40, 64])
    n = int(1.2 * SR)
    whole = rs.gain_track(rs.schedule(notes, 0, n, SR, GAIN), n)
    start = int(0.5 * SR)
    window = rs.gain_track(rs.schedule(notes, start, 4000, SR, GAIN), 4000)
    np.testing.assert_allclose(window, whole[start:start + 4000], rtol=1e-9)
    shifted = rs.gain_track(rs.schedule(notes, 0, n, SR, GAIN).shifted(-start), 4000)
    np.testing.assert_allclose(shifted, whole[start:start + 4000], rtol=1e-9)


def test_analysis_gives_the_innovation_over_the_gain_and_synthesis_inverts_it():
    notes = _notes([0.01, 0.05, 0.2], [0.3, 0.25, 0.5], [40, 52, 71])
    n = 9000
    sched = rs.schedule(notes, 0, n, SR, GAIN)
    x = np.random.default_rng(1).standard_normal(n) * 0.01
    u, p = rs.analyze(x, sched)
    g = rs.gain_track(sched, n)
    np.testing.assert_allclose(p.astype(np.float64) + g * u, x, atol=1e-6)
    np.testing.assert_allclose(rs.synthesize(u, sched), x, atol=1e-5)
    # the same bank without the gain: the target is the innovation itself, and it differs
    plain = rs.ResonatorConfig(partials=4, decay_scale=0.5, decay_exponent=1.0)
    e, _ = rs.analyze(x, rs.schedule(notes, 0, n, SR, plain))
    np.testing.assert_allclose(u * g, e, rtol=1e-4, atol=1e-6)
    assert not np.allclose(u, e)


def test_without_gain_keeps_the_oscillators_and_analyses_the_innovation_itself():
    notes = _notes([0.01, 0.05], [0.1, 0.15], [45, 64])
    n = 12000
    long_tail = dataclasses.replace(GAIN, gain_release_s=0.12)  # tail 0.6 s instead of the plain bank's 0.4 s
    sched = rs.schedule(notes, 0, n, SR, long_tail)
    x = np.random.default_rng(3).standard_normal(n) * 0.01
    u, _ = rs.analyze(x, sched)
    e, _ = rs.analyze(x, sched.without_gain())
    np.testing.assert_allclose(u * rs.gain_track(sched, n), e, rtol=1e-4, atol=1e-6)
    assert np.all(rs.gain_track(sched.without_gain(), n) == 1.0)
    np.testing.assert_array_equal(sched.without_gain().stop, sched.stop)
    # a schedule of the same bank with the gain set to 0 has the plain bank's shorter tail
    plain = rs.schedule(notes, 0, n, SR, dataclasses.replace(long_tail, gain=0.0))
    assert (plain.stop < sched.stop).all()
    assert not np.allclose(rs.analyze(x, plain)[0], e, rtol=1e-4, atol=1e-6)


def test_config_validates_the_gain_and_passes_it_to_the_bank():
    with pytest.raises(ConfigError, match=r"data\.resonators\.gain = 0\.1: needs the resonator bank"):
        rs.ResonatorConfig(gain=0.1)  # no bank
    with pytest.raises(ConfigError, match=r"data\.resonators\.max_hz"):
        rs.ResonatorConfig(partials=4, gain=0.1, max_hz=3000.0)
    with pytest.raises(ConfigError, match=r"data\.resonators\.gain_floor"):
        rs.ResonatorConfig(partials=4, gain=0.1, gain_floor=0.0)
    bank = rs.from_data_config(DataConfig(resonators=rs.ResonatorConfig(partials=4, gain=0.3, gain_floor=2e-4)))
    assert bank.gain == 0.3 and rs.schedule(_notes([0.0], [0.1], [60]), 0, 100, SR, bank).gain_floor == 2e-4
    assert rs.schedule(_notes([0.0], [0.1], [60]), 0, 100, SR, rs.from_data_config(
        DataConfig(resonators=rs.ResonatorConfig(partials=4)))).gain_floor is None
    with pytest.raises(ValueError, match="gain floor"):
        rs.BankBatch([rs.Schedule.empty(1e-4), rs.Schedule.empty(None)])


# ----------------------------------------------------------------------------------- generation

def _model(gain: float):
    return bank_model(rs.ResonatorConfig(partials=4, input="innovation", gain=gain, gain_attack_s=0.02,
                                         gain_sustain=0.25, gain_release_s=0.03, gain_floor=1e-4))


def _generate(model, notes_per_stream, T, engine="numba", seed=5):
    bank = rs.from_data_config(model.data_config)
    scheds = [rs.schedule(n, 0, T, SR, bank) for n in notes_per_stream]
    cond, uniforms, year = random_inputs(model, T, len(scheds), seed)
    audio = generate(model, T, conditioning=cond, year=year, uniforms=uniforms, resonators=scheds, engine=engine)
    return audio.double().numpy(), scheds, cond, uniforms


def _db(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(max(float(np.mean(a ** 2)), 1e-30) / float(np.mean(b ** 2)))


def test_no_midi_is_silence_and_a_gap_in_the_midi_is_a_gap_in_the_output():
    T = int(1.2 * SR)
    gap_notes = _notes([0.0, 0.05, 0.8], [0.15, 0.2, 1.0], [60, 67, 64], [110, 90, 100])
    silent = _notes([], [], [])
    audio, scheds, _, _ = _generate(_model(0.2), [gap_notes, silent], T)
    lsb = 1.0 / 32768
    # no notes: nothing but the floor can sound (|u| <= 1, plus the 16-bit rounding)
    assert np.abs(audio[1]).max() <= 1e-4 + lsb
    # the gap: from the end of the first notes' release tail to the next onset
    tail = math.ceil(rs.from_data_config(_model(0.2).data_config).release_tail_s * SR)
    gap = slice(int(0.2 * SR) + tail, int(0.8 * SR))
    sounding = slice(0, int(0.2 * SR))
    assert np.abs(audio[0, gap]).max() <= 1e-4 + lsb
    assert _db(audio[0, gap], audio[0, sounding]) < -45.0
    assert np.abs(audio[0, int(0.8 * SR):]).max() > 100 * lsb  # and the next note sounds again
    # the same network without the gain fills the gap (what the gain is for)
    plain, _, _, _ = _generate(_model(0.0), [gap_notes], T)
    assert _db(plain[0, gap], plain[0, sounding]) > -45.0


def test_generation_with_the_gain_agrees_between_engines_and_replays_through_the_forward_pass():
    model = _model(0.2)
    T = 3200
    notes = [_notes([0.0, 0.05], [0.15, 0.2], [60, 67]), _notes([0.02], [0.18], [48])]
    a_numba, scheds, cond, uniforms = _generate(model, notes, T, "numba")
    a_torch, _, _, _ = _generate(model, notes, T, "torch")
    assert (a_numba == a_torch).mean() > 0.99  # rare decision-boundary flips aside
    # what training feeds the network is (x - p) / g on the 16-bit grid: replaying the generated audio
    # that way through the full forward pass, the same uniforms pick the same samples
    x = a_numba[0]
    u, p = rs.analyze(x, scheds[0])
    g = rs.gain_track(scheds[0], T)
    network_input = torch.from_numpy(np.floor(np.clip((x - p.astype(np.float64)) / g, -1, 1) * 32768) / 32768)
    with torch.no_grad():
        params = model(network_input.float()[None], cond[:1], torch.zeros(1, dtype=torch.long))
        v = model.sample(params[0].t(), uniforms[0, :, 0], uniforms[0, :, 1]).double().numpy()
    replay = np.clip(np.floor((p.astype(np.float64) + g * v) * 32768), -32768, 32767) / 32768
    assert np.mean(np.abs(replay - x) <= 1.5 / 32768) > 0.98
