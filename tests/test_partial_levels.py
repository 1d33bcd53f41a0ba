"""Fitted partial levels (`data.resonators.levels_db`, `sampling.partial_levels`).

Synthesis only: at a note's attack end each of its oscillators moves (in log amplitude) `lock` of
the way from the level its sampled attack left to the level fitted to the training audio, keeping
its phase. The analysis never does; a lock of 0 changes nothing; both engines agree; with a lock of
1 a note's partials no longer depend on the random draws of its attack.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from midi2wave.conditioning import resonators as rs
from midi2wave.config import (SYNTHESIS_ONLY_KEYS, Config, ConfigError, DataConfig, ModelSampling, SamplingOptions,
                              config_differences, config_from_dict)
from midi2wave.render.generate import generate
from midi2wave.midi import Notes, decay_tau_s
from helpers import bank_model, four_partial_config, isolated_notes, locked_levels, random_inputs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import fit_partials  # noqa: E402

SR = 16000
LEVELS = dict(level_pitches=(48.0, 72.0), levels_db=((-20.0, -30.0, -40.0, -50.0), (-26.0, -46.0, -66.0, -86.0)),
              level_velocity_slopes=(1.0, 1.5, 2.0, 2.5))
BANK = rs.ResonatorConfig(partials=4, input="innovation", gain=0.2, gain_attack_s=0.02, gain_sustain=0.25,
                          gain_release_s=0.03, gain_floor=1e-4, attack_s=0.05, noise_lowpass=0.6, sustain_kappa=0.001,
                          **LEVELS)
NOTES = Notes(np.array([0.0, 0.3]), np.array([0.6, 0.6]), np.array([60, 67], np.int16), np.array([64, 100], np.int16))


def test_the_levels_interpolate_in_pitch_stay_flat_beyond_and_rise_with_velocity():
    k = np.array([1, 2, 4, 1, 1, 3])
    pitch = np.array([48, 60, 72, 30, 100, 60])
    velocity = np.array([64, 64, 64, 64, 64, 128])
    db = 20 * np.log10(rs.fitted_levels(pitch, velocity, k, BANK))
    np.testing.assert_allclose(db, [-20.0, -38.0, -86.0, -20.0, -26.0, -53.0 + 2.0 * 20 * math.log10(2)], atol=1e-9)
    assert not rs.fitted_levels(pitch, velocity, k, dataclasses.replace(BANK, **{n: () for n in LEVELS})).any()
    sched = rs.schedule(NOTES, 0, SR, SR, BANK)
    assert sched.level.shape == sched.kappa.shape and (sched.level > 0).all()


def test_a_slope_table_gives_each_pitch_its_own_velocity_slope():
    """Slopes per grid pitch and partial, linear in pitch: at 48 the table's first row, at 72 its
    second, at 60 their mean; the levels at velocity 64 are the table's as before."""
    tabled = dataclasses.replace(BANK, level_velocity_slopes=(),
                                 level_velocity_slope_table=((1.0, 1.5, 2.0, 2.5), (0.5, 0.5, 0.5, 0.5)))
    k = np.array([1, 1, 1, 2, 3])
    pitch = np.array([48, 72, 60, 72, 48])
    up = 20 * math.log10(2)  # velocity 128 against 64
    db = 20 * np.log10(rs.fitted_levels(pitch, np.full(5, 128), k, tabled))
    base = 20 * np.log10(rs.fitted_levels(pitch, np.full(5, 64), k, tabled))
    np.testing.assert_allclose(db - base, [1.0 * up, 0.5 * up, 0.75 * up, 0.5 * up, 2.0 * up], atol=1e-9)
    np.testing.assert_allclose(base, 20 * np.log10(rs.fitted_levels(pitch, np.full(5, 64), k, BANK)), atol=1e-9)


def test_synthesis_partials_ring_in_synthesis_and_leave_the_analysis_as_it_was():
    """Partials above `partials` (`synthesis_partials`) are flagged in the schedule: the analysis (the
    network's training target) drops them and gives the same numbers bit for bit; synthesis rings
    them at their fitted levels."""
    two = dataclasses.replace(BANK, partials=2)
    more = dataclasses.replace(BANK, partials=2, synthesis_partials=4)
    base, extra = rs.schedule(NOTES, 0, SR, SR, two), rs.schedule(NOTES, 0, SR, SR, more)
    assert len(extra) == 2 * len(base) and extra.synthesis_only.sum() == len(base)
    assert not base.synthesis_only.any()
    for f in rs.Schedule.FIELDS:
        np.testing.assert_array_equal(getattr(extra.for_analysis(), f), getattr(base, f))
    audio = 0.1 * np.random.default_rng(3).standard_normal(SR)
    for a, b in zip(rs.analyze(audio, base), rs.analyze(audio, extra)):
        np.testing.assert_array_equal(a, b)
    u = np.clip(0.2 * np.random.default_rng(4).standard_normal(SR), -1, 1)
    x2 = rs.synthesize(u, base.for_sampling(partial_levels=1.0)).astype(np.float64)
    x4 = rs.synthesize(u, extra.for_sampling(partial_levels=1.0)).astype(np.float64)
    hz = float(rs.partial_hz(60, 4, BANK.tuning_cents, BANK.inharmonicity))  # the first note's 4th partial
    start = int(extra.attack_end[0])
    level = extra.level[(extra.synthesis_only > 0) & (extra.start == 0)][1]  # C4's 4th partial (-68 dB)
    added = _partial_amplitude(x4 - x2, hz, start)  # what the synthesis-only oscillators add: C4's 4th rings
    assert 0.4 * level < added < 1.1 * level and added > 2 * _partial_amplitude(x2, hz, start)  # over the noise
    with pytest.raises(ConfigError, match="synthesis_partials"):
        dataclasses.replace(BANK, synthesis_partials=3)  # fewer than partials
    with pytest.raises(ConfigError, match="synthesis_partials"):
        dataclasses.replace(BANK, partials=2, synthesis_partials=5)  # no level for the 5th


def test_synthesis_partials_do_not_change_how_the_others_are_driven():
    """The kappa cap (`KAPPA_SUM_MAX`, active in a loud chord's attack) counts the analysis's
    partials only: with the same innovation, the first `partials` oscillators move exactly as
    without the synthesis-only ones."""
    chord = Notes(np.zeros(8), np.full(8, 0.5), np.arange(48, 64, 2).astype(np.int16), np.full(8, 100, np.int16))
    two = dataclasses.replace(BANK, partials=2, kappa=0.2)
    more = dataclasses.replace(two, synthesis_partials=4)
    base, extra = rs.schedule(chord, 0, SR, SR, two), rs.schedule(chord, 0, SR, SR, more)
    assert (base.kappa[:16].sum()) > rs.KAPPA_SUM_MAX  # the cap is on in the attack
    e = 0.05 * np.random.default_rng(5).standard_normal(600)
    states = []
    for sched in (base, extra):
        bank = rs.BankBatch([sched])
        for t in range(600):
            bank.predict(t)
            bank.update(t, e[t:t + 1], lock=False)
        n = int(bank.state.n_active[0])
        z = {int(i): complex(r, m) for i, r, m in zip(bank.state.idx[0, :n], bank.state.re[0, :n], bank.state.im[0, :n])}
        states.append([z[i] for i in sorted(z) if sched.synthesis_only[i] == 0.0])
    np.testing.assert_array_equal(states[0], states[1])


def test_a_primed_row_is_rendered_with_the_analysis_partials_only(tmp_path, monkeypatch):
    """The prime is teacher-forced as the analysis tracked the training audio, so its row leaves the
    synthesis-only partials out (the network would read their share of the prime's innovation);
    unprimed renders keep them."""
    from midi2wave.config import SamplingOptions
    from midi2wave.midi import PedalEvents, write_midi
    from midi2wave.render import synthesize as S

    model = bank_model(dataclasses.replace(BANK, partials=2, synthesis_partials=4))
    midi = tmp_path / "n.mid"
    write_midi(NOTES, PedalEvents.empty(), midi)
    seen = []
    real = S.sampled_schedules
    monkeypatch.setattr(S, "sampled_schedules", lambda schedules, *a, **k: seen.append(list(schedules))
                        or real(schedules, *a, **k))
    opts = SamplingOptions(chunk_seconds=0.0)
    prime = 0.1 * np.random.default_rng(0).standard_normal(800).astype(np.float32)
    S.render_midi(model, midi, opts, end_s=0.3, prime_audio=prime, prime_seconds=0.05, progress=False)
    assert seen and not seen[0][0].synthesis_only.any() and len(seen[0][0])
    seen.clear()
    S.render_midi(model, midi, opts, end_s=0.3, progress=False)
    assert seen and seen[0][0].synthesis_only.any()


def test_the_levels_are_validated_and_travel_through_json():
    with pytest.raises(ConfigError, match="levels_db"):
        dataclasses.replace(BANK, levels_db=LEVELS["levels_db"][:1])
    with pytest.raises(ConfigError, match="level_pitches"):
        dataclasses.replace(BANK, level_pitches=(72.0, 48.0))
    with pytest.raises(ConfigError, match="level_velocity_slopes"):
        dataclasses.replace(BANK, level_velocity_slopes=(1.0, 1.0))
    slope_table = ((1.0, 1.5, 2.0, 2.5), (0.5, 0.5, 0.5, 0.5))
    with pytest.raises(ConfigError, match="one of them"):  # slopes and a slope table
        dataclasses.replace(BANK, level_velocity_slope_table=slope_table)
    with pytest.raises(ConfigError, match="level_velocity_slope_table"):
        dataclasses.replace(BANK, level_velocity_slopes=(), level_velocity_slope_table=slope_table[:1])
    tabled = dataclasses.replace(BANK, level_velocity_slopes=(), level_velocity_slope_table=slope_table)
    config = Config(data=DataConfig(resonators=tabled))
    assert config_from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="sampling.partial_levels"):
        ModelSampling(partial_levels=1.5)
    assert SamplingOptions().resolve(Config(data=DataConfig(resonators=BANK), sampling=ModelSampling(partial_levels=0.5))).partial_levels == 0.5
    with pytest.raises(ConfigError, match="no fitted partial levels"):
        SamplingOptions(partial_levels=1.0).resolve(Config())
    assert SamplingOptions(partial_levels=1.0).resolve(Config(data=DataConfig(resonators=BANK))).partial_levels == 1.0
    config = Config(data=DataConfig(resonators=BANK))
    assert config_from_dict(config.to_dict()) == config


def _bank_after(sched: rs.Schedule, innovation: np.ndarray, t_end: int) -> tuple[rs.BankBatch, np.ndarray]:
    """Step one bank through innovation[:t_end]; returns it and its outputs."""
    bank = rs.BankBatch([sched])
    out = np.empty(t_end)
    for t in range(t_end):
        out[t] = bank.predict(t)[0]
        bank.update(t, innovation[t:t + 1])
    return bank, out


def _amplitudes_through_the_attack(sched: rs.Schedule, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(amplitudes [T, n] after each sample, phases [T, n], oscillator order) of one bank fed e."""
    bank = rs.BankBatch([sched])
    n = len(sched)
    amps, phases = [], []
    for t in range(len(e)):
        bank.predict(t)
        bank.update(t, e[t:t + 1])
        order = bank.state.idx[0, :n].copy()
        z = bank.state.re[0, :n] + 1j * bank.state.im[0, :n]
        back = np.argsort(order)
        amps.append(np.abs(z)[back])
        phases.append(np.angle(z)[back])
    return np.array(amps), np.array(phases), np.arange(n)


def _trajectory(sched: rs.Schedule, t: int) -> np.ndarray:
    """A(t) of every oscillator after sample t: the rise times its level carried to t + 1."""
    k = t + 1 - sched.start
    rise = np.where(k >= rs.LOCK_RISE_SAMPLES, 1.0, 0.5 - 0.5 * np.cos(np.pi * k / rs.LOCK_RISE_SAMPLES))
    return rise * locked_levels(sched, t + 1)


def test_a_full_lock_holds_each_partial_on_its_rising_level_through_the_attack():
    """Driven by any innovation, with w = 1 every amplitude is rise(t) * L(t) at each sample of the
    attack: the partials sound from the onset, rise over LOCK_RISE_SAMPLES and reach their level
    exactly at the attack end; then they ring on freely."""
    notes = Notes(np.array([0.0]), np.array([0.5]), np.array([60], np.int16), np.array([90], np.int16))
    sched = rs.schedule(notes, 0, SR, SR, BANK).for_sampling(partial_levels=1.0)
    end = int(sched.attack_end[0])
    assert rs.LOCK_RISE_SAMPLES < end
    e = 0.05 * np.random.default_rng(0).standard_normal(end + 200)
    e[end:] = 0.0  # undriven past the attack: what the lock left rings on
    amps, _, _ = _amplitudes_through_the_attack(sched, e)
    for t in range(end):
        np.testing.assert_allclose(amps[t], _trajectory(sched, t), rtol=1e-12)
    np.testing.assert_allclose(amps[end - 1], sched.level, rtol=1e-12)
    assert (amps[0] < 1e-3 * sched.level).all()  # from near silence at the onset
    free, _, _ = _amplitudes_through_the_attack(sched.for_sampling(partial_levels=0.0), e)
    assert not np.allclose(amps[end + 100], free[end + 100], rtol=0.1)  # past the attack: what the lock left
    # ... decaying from there as during the attack: no step at the attack end
    step = np.abs(np.log(amps[end + 1:end + 50] / amps[end:end + 49])).max()
    held = np.abs(np.log(amps[end - 50:end] / amps[end - 51:end - 1])).max()
    assert step < 0.01 and held < 0.01


def test_a_partial_lock_closes_its_share_of_the_log_distance_each_sample_keeping_the_phase():
    """Undriven, an oscillator only turns (z <- r e^{iw} z) and the lock scales it by a positive
    factor: with w = 0.5 each sample's amplitude is the geometric mean of r |z| and its target, and
    the phase advances by w exactly."""
    notes = Notes(np.array([0.0]), np.array([0.5]), np.array([60], np.int16), np.array([90], np.int16))
    sched = rs.schedule(notes, 0, SR, SR, BANK).for_sampling(partial_levels=0.5)
    end = int(sched.attack_end[0])
    e = np.zeros(end)
    e[:20] = 0.05 * np.random.default_rng(3).standard_normal(20)  # a drive, then none
    amps, phases, _ = _amplitudes_through_the_attack(sched, e)
    for t in range(40, end):
        np.testing.assert_allclose(amps[t], np.sqrt(sched.r_hold * amps[t - 1] * _trajectory(sched, t)), rtol=1e-9)
        turn = np.angle(np.exp(1j * (phases[t] - phases[t - 1] - sched.omega)))
        np.testing.assert_allclose(turn, 0.0, atol=1e-9)


def test_the_analysis_ignores_the_lock_and_a_lock_of_zero_changes_nothing():
    sched = rs.schedule(NOTES, 0, SR, SR, BANK)
    rng = np.random.default_rng(1)
    audio = 0.1 * rng.standard_normal(SR)
    for a, b in zip(rs.analyze(audio, sched), rs.analyze(audio, sched.for_sampling(partial_levels=1.0))):
        np.testing.assert_array_equal(a, b)
    u = np.clip(0.3 * rng.standard_normal(SR), -1, 1)
    np.testing.assert_array_equal(rs.synthesize(u, sched), rs.synthesize(u, sched.for_sampling(partial_levels=0.0)))
    unlevelled = dataclasses.replace(sched, level=np.zeros_like(sched.level)).for_sampling(partial_levels=1.0)
    np.testing.assert_array_equal(rs.synthesize(u, sched), rs.synthesize(u, unlevelled))
    assert not np.array_equal(rs.synthesize(u, sched), rs.synthesize(u, sched.for_sampling(partial_levels=1.0)))


def _partial_amplitude(x: np.ndarray, hz: float, start: int, n: int = 2048) -> float:
    w = np.hanning(n)
    return 2 * abs(np.dot(x[start:start + n] * w, np.exp(-2j * np.pi * hz * np.arange(n) / SR))) / w.sum()


def test_with_a_full_lock_a_notes_partials_no_longer_depend_on_its_attacks_draws():
    notes = Notes(np.array([0.0]), np.array([0.8]), np.array([57], np.int16), np.array([90], np.int16))
    sched = rs.schedule(notes, 0, SR, SR, BANK)
    start = int(sched.attack_end[0])
    k1 = int(np.argmin(sched.omega))
    hz = sched.omega[k1] * SR / (2 * np.pi)
    tau = BANK.decay_scale * float(decay_tau_s(57))
    levels = {}
    for lock in (0.0, 1.0):
        amps = []
        for seed in range(4):
            u = np.clip(0.5 * np.random.default_rng(seed).standard_normal(SR), -1, 1)
            u[start:] *= 0.01  # quiet after the attack: what rings is what the attack (and the lock) left
            x = rs.synthesize(u, sched.for_sampling(partial_levels=lock)).astype(np.float64)
            amps.append(_partial_amplitude(x, hz, start))
        levels[lock] = np.array(amps)
    spread = {lock: np.ptp(20 * np.log10(a)) for lock, a in levels.items()}
    assert spread[0.0] > 3.0 and spread[1.0] < 0.5, spread
    # ... and the fundamental rings at its fitted level, decaying as the bank does
    expected = sched.level[k1] * math.exp(-1024 / SR / tau)
    np.testing.assert_allclose(levels[1.0], expected, rtol=0.05)


def _generate(model, T, lock, engine, prime=None):
    sched = rs.schedule(NOTES, 0, T, SR, BANK).for_sampling(0.5, lock)
    cond, uniforms, year = random_inputs(model, T)
    return generate(model, T, conditioning=cond, year=year, uniforms=uniforms, resonators=[sched], engine=engine,
                    prime=prime)[0].double().numpy()


def test_both_engines_lock_the_levels_and_the_lock_changes_the_notes_after_their_attacks():
    model = bank_model(BANK)
    T = int(0.5 * SR) // 64 * 64
    free = _generate(model, T, 0.0, "numba")
    locked = _generate(model, T, 1.0, "numba")
    assert (locked == _generate(model, T, 1.0, "torch")).mean() > 0.99
    first = int(round(NOTES.onset_s.min() * SR))  # the first note's start: the lock acts from there
    np.testing.assert_array_equal(free[:first], locked[:first])
    assert not np.array_equal(free[first:first + 400], locked[first:first + 400])


@pytest.mark.parametrize("delay_s", [0.0, 0.1])
def test_fit_partials_recovers_the_levels_and_their_velocity_slopes(delay_s: float):
    """The levels at the attack's end, measured there or `delay_s` later and referred back along the
    decay (broken once: not referred back, the later window reads the levels low)."""
    rng = np.random.default_rng(5)
    pitches = rng.permutation(np.repeat(np.arange(45, 76, 2), 3))
    velocities = rng.choice([40, 64, 100], len(pitches))
    onsets = 0.1 + 0.9 * np.arange(len(pitches))
    notes = Notes(onsets, onsets + 0.8, pitches.astype(np.int16), velocities.astype(np.int16))
    n = int((onsets[-1] + 1.2) * SR)
    t = np.arange(n) / SR
    x = 1e-5 * rng.standard_normal(n)

    def true_db(p, v, k):  # the synthetic piano: a pitch- and partial-dependent level, brighter when louder,
        # the more so in the treble
        return -20.0 - 6.0 * (k - 1) - 0.2 * (p - 60) + (1.0 + 0.5 * (k - 1) + 0.03 * (p - 60)) * 20 * math.log10(v / 64)

    for on, off, p, v in zip(notes.onset_s, notes.offset_s, notes.pitch, notes.velocity):
        sounding = (t >= on) & (t < off)
        tau = 0.6 * float(decay_tau_s(int(p)))
        for k in range(1, 5):
            hz = float(rs.partial_hz(int(p), k))
            amp = 10 ** (true_db(int(p), int(v), k) / 20) * math.exp(0.05 / tau)  # level at the attack end
            x += sounding * amp * np.exp(-(t - on) / tau) * np.sin(2 * np.pi * hz * (t - on) + rng.uniform(0, 6.3))
    obs = fit_partials.measure_levels([(notes, x)], (), (), 0.6, 0.0, attack_s=0.05, delay_s=delay_s)
    assert (obs[:, 2] <= 4).sum() == 4 * len(pitches)  # every held note, each partial
    grid, table, slope_table, err = fit_partials.fit_levels(obs, partials=4)
    assert err < 0.3
    _, _, shared, shared_err = fit_partials.fit_levels(obs, partials=4, slope_table=False)
    assert len(shared) == 4 and shared_err > 2 * err  # one slope per partial cannot follow the treble's
    config = dataclasses.replace(rs.ResonatorConfig(partials=4), level_pitches=grid, levels_db=table,
                                 level_velocity_slope_table=slope_table)
    for p in (47, 60, 73):
        for k in (1, 2, 4):
            for v in (40, 100):
                got = 20 * np.log10(rs.fitted_levels(np.array([p]), np.array([v]), np.array([k]), config)[0])
                assert abs(got - true_db(p, v, k)) < 0.5, (p, k, v, got, true_db(p, v, k))


def _levels_whole_system(obs, K, G, step, slope_table):
    """`fit_levels`' least squares as one system over every partial (partials x 2G unknowns): the
    formulation the split per partial must reproduce."""
    grid0 = 21.0
    n_slopes = G * K if slope_table else K
    level = 20.0 * np.log10(np.maximum(obs[:, 3], 1e-7))
    pos = np.clip((obs[:, 0] - grid0) / step, 0.0, G - 1 - 1e-9)
    lo = pos.astype(np.int64)
    hi = np.minimum(lo + 1, G - 1)
    w = pos - lo
    k = obs[:, 2].astype(np.int64)
    vdb = 20.0 * np.log10(np.maximum(obs[:, 1], 1.0) / 64.0)
    rows = np.arange(len(obs))
    design = np.zeros((len(obs), G * K + n_slopes))
    design[rows, lo * K + k - 1] = 1.0 - w
    design[rows, hi * K + k - 1] += w
    if slope_table:
        design[rows, G * K + lo * K + k - 1] = (1.0 - w) * vdb
        design[rows, G * K + hi * K + k - 1] += w * vdb
    else:
        design[rows, G * K + k - 1] = vdb
    penalty = []
    for block, weight in ((0, fit_partials.LEVEL_SMOOTHING), (G * K, fit_partials.LEVEL_SLOPE_SMOOTHING)):
        if block and not slope_table:
            continue
        for j in range(K):
            for g in range(1, G):
                row = np.zeros(G * K + n_slopes)
                row[block + (g - 1) * K + j], row[block + g * K + j] = -weight, weight
                penalty.append(row)
    penalty = np.asarray(penalty)
    weight = np.ones(len(obs))
    for _ in range(6):
        theta = np.linalg.lstsq(np.vstack([design * weight[:, None], penalty]),
                                np.concatenate([level * weight, np.zeros(len(penalty))]), rcond=None)[0]
        residual = level - design @ theta
        weight = np.sqrt(1.0 / np.maximum(1.0, np.abs(residual) / fit_partials.LEVEL_HUBER_DB))
    slopes = theta[G * K:].reshape(G, K) if slope_table else theta[G * K:]
    return theta[:G * K].reshape(G, K), slopes, residual


@pytest.mark.parametrize("slope_table", [True, False])
def test_the_level_fit_split_per_partial_solves_the_whole_system(slope_table: bool):
    """One small least squares per partial gives the whole system's solution: outliers (the Huber
    weights), pitches without notes (the smoothing) and a partial with no rows at all (broken once:
    the slope smoothing left out of the split, the solutions parted by 1.6 dB; the Huber weights left at 1,
    by 6.9 dB)."""
    rng = np.random.default_rng(3)
    K, step = 5, 6
    n = 600
    pitch = rng.choice(np.r_[30:60, 70:100], n).astype(np.float64)  # a gap of grid pitches without notes
    velocity = rng.integers(10, 127, n).astype(np.float64)
    k = rng.choice([1, 2, 3, 5], n).astype(np.float64)  # partial 4 never measured
    db = -20 - 5 * (k - 1) - 0.1 * (pitch - 60) + (1 + 0.2 * k) * 20 * np.log10(velocity / 64) + rng.normal(0, 1, n)
    db[rng.random(n) < 0.05] += 25.0  # a few partials caught on another note's
    obs = np.stack([pitch, velocity, k, 10 ** (db / 20)], axis=1)
    grid, table, slopes, residual = fit_partials.solve_levels(obs, K, 64.0, step, slope_table)
    want_table, want_slopes, want_residual = _levels_whole_system(obs, K, len(grid), step, slope_table)
    np.testing.assert_allclose(table, want_table, atol=1e-8)
    np.testing.assert_allclose(slopes, want_slopes, atol=1e-8)
    np.testing.assert_allclose(residual, want_residual, atol=1e-8)
    assert np.abs(table[:, 3]).max() < 1e-9  # no rows: the smoothing alone, at its least norm


def test_a_window_begun_mid_note_rings_its_notes_at_their_levels():
    """An oscillator admitted after its attack ended (a chunk row or excerpt starting mid-note)
    starts from silence; with the lock it takes its level carried to then, at a spread phase."""
    notes = Notes(np.array([0.0]), np.array([2.0]), np.array([60], np.int16), np.array([90], np.int16))
    whole = rs.schedule(notes, 0, 2 * SR, SR, BANK)
    late = rs.schedule(notes, SR // 2, SR, SR, BANK).for_sampling(partial_levels=1.0)  # from 0.5 s on
    assert (late.attack_end < 0).all()
    quiet = np.zeros(4)
    bank, _ = _bank_after(late, quiet, 1)
    n = len(late)
    z = bank.state.re[0, :n] + 1j * bank.state.im[0, :n]
    order = bank.state.idx[0, :n]
    expected = locked_levels(late, 1, order)
    np.testing.assert_allclose(np.abs(z), expected, rtol=1e-12)
    np.testing.assert_allclose(expected, whole.level[order] * whole.r_hold[order] ** (SR // 2 + 1 - whole.attack_end[order]),
                               rtol=1e-9)  # as loud as the whole note's oscillators would be by then
    assert len(np.unique(np.round(np.angle(z), 6))) == n  # not all in phase
    free, _ = _bank_after(late.for_sampling(partial_levels=0.0), quiet, 1)
    assert not free.state.re[0, :n].any()


def test_a_note_released_inside_its_attack_is_set_to_its_level_decayed_since_the_release():
    notes = Notes(np.array([0.0]), np.array([0.02]), np.array([60], np.int16), np.array([90], np.int16))
    sched = rs.schedule(notes, 0, SR, SR, BANK)
    end = int(sched.attack_end[0])
    assert (sched.release < sched.attack_end).all()
    e = 0.05 * np.random.default_rng(0).standard_normal(end)
    bank, _ = _bank_after(sched.for_sampling(partial_levels=1.0), e, end)
    n = len(sched)
    order = bank.state.idx[0, :n]
    z = np.abs(bank.state.re[0, :n] + 1j * bank.state.im[0, :n])
    expected = sched.level[order] * (sched.r_release[order] / sched.r_hold[order]) ** (end - sched.release[order])
    np.testing.assert_allclose(z, expected, rtol=1e-12)
    assert (z < 0.9 * sched.level[order]).all()  # quieter than a held note: 30 ms of release


def test_a_teacher_forced_prime_is_tracked_not_locked_in_both_engines():
    model = bank_model(BANK)
    T = int(0.5 * SR) // 64 * 64
    n_prime = 3200  # the first note's attack ends at 800, inside the prime
    prime = torch.from_numpy(0.05 * np.random.default_rng(2).standard_normal((1, n_prime)).astype(np.float32))
    outs = {(engine, lock): _generate(model, T, lock, engine, prime) for engine in ("numba", "torch")
            for lock in (0.0, 1.0)}
    second = int(round(0.3 * SR))  # the second note's start, past the prime: its lock begins there
    for engine in ("numba", "torch"):  # nothing differs until the first note that starts after the prime
        np.testing.assert_array_equal(outs[engine, 0.0][:second], outs[engine, 1.0][:second])
        assert not np.array_equal(outs[engine, 0.0], outs[engine, 1.0])


def test_the_settings_are_cross_checked():
    with pytest.raises(ConfigError, match="no fitted partial levels"):
        Config(sampling=ModelSampling(partial_levels=1.0))
    with pytest.raises(ConfigError, match="finite"):
        dataclasses.replace(BANK, levels_db=((float("nan"),) * 4, LEVELS["levels_db"][1]))
    with pytest.raises(ConfigError, match="partials > 0"):
        dataclasses.replace(BANK, partials=0, gain=0.0, noise_lowpass=0.0)
    with pytest.raises(ConfigError, match="attack_s"):
        dataclasses.replace(BANK, attack_s=0.0)


def test_fit_partials_skips_partials_that_coincide_with_a_ringing_note():
    t = np.arange(3 * SR) / SR
    x = sum(0.02 / k * np.sin(2 * np.pi * k * float(rs.partial_hz(48, 1)) * t) for k in range(1, 9))
    x = x + sum(0.02 / k * np.sin(2 * np.pi * k * float(rs.partial_hz(61, 1)) * t) * (t >= 1.0) for k in range(1, 9))
    for c3_offset, first_partial_measured in ((2.5, False), (0.9, True)):  # C3 still ringing at C#4, or not
        notes = Notes(np.array([0.0, 1.0]), np.array([c3_offset, 2.0]), np.array([48, 61], np.int16),
                      np.array([80, 80], np.int16))
        obs = fit_partials.measure_levels([(notes, x)], (), (), 0.6, 0.0)
        sharp = obs[obs[:, 0] == 61]
        # C#4's fundamental (277 Hz) lies 16 Hz from C3's 2nd partial (262 Hz); its 2nd (554 Hz) 31 Hz from any
        assert (1 in sharp[:, 2]) == first_partial_measured and 2 in sharp[:, 2]


def test_config_differences_name_nested_keys_and_skip_the_synthesis_only_ones():
    old = Config(data=DataConfig(resonators=BANK))
    new = Config(data=DataConfig(resonators=dataclasses.replace(BANK, kappa=0.03, levels_db=((-1.0,) * 4,) * 2)))
    assert config_differences(new, old, "data") == [
        "data.resonators.kappa: 0.02 -> 0.03",
        f"data.resonators.levels_db: {[list(r) for r in LEVELS['levels_db']]!r} -> {[[-1.0] * 4] * 2!r}"]
    assert config_differences(new, old, "data", ignore=SYNTHESIS_ONLY_KEYS) == ["data.resonators.kappa: 0.02 -> 0.03"]
    assert config_differences(old, old, "model") == []


def test_a_released_model_takes_the_levels_and_sampling_of_its_own_config_only():
    bare = Config(data=DataConfig(resonators=dataclasses.replace(BANK, **{n: () for n in LEVELS})))
    fitted = Config(data=DataConfig(resonators=BANK), sampling=ModelSampling(partial_levels=1.0, sustain_innovation=0.7))
    released = bare.with_synthesis_settings_from(fitted)
    assert released == fitted
    with pytest.raises(ConfigError, match="data.resonators.kappa: differs"):
        bare.with_synthesis_settings_from(dataclasses.replace(
            fitted, data=DataConfig(resonators=dataclasses.replace(BANK, kappa=0.03))))


def test_levels_bound_fits_the_table_to_a_note_sheets_reference(tmp_path, capsys):
    """scripts/levels_bound.py: the level table fitted to a note sheet's reference notes (synthetic
    partials of known level, decaying as the bank does), printed inside the whole config."""
    import json

    import soundfile as sf

    import levels_bound

    config_path, bank = four_partial_config(tmp_path)
    pitches = np.repeat(np.arange(45, 76, 3), 3)
    velocities = np.tile([40, 64, 100], len(pitches) // 3)

    def true_db(p, v, k):
        return -20.0 - 6.0 * (k - 1) - 0.2 * (p - 60) + 1.2 * 20 * math.log10(v / 64)

    notes_in, x = isolated_notes(pitches, velocities, true_db, bank, seed=7)
    onsets = notes_in.onset_s
    sheet = tmp_path / "sheet"
    (sheet / "audio").mkdir(parents=True)
    sf.write(sheet / "audio" / "reference_2018.wav", x, SR, subtype="FLOAT")
    notes = [{"pitch": int(p), "velocity": int(v), "onset_s": float(o)} for p, v, o in zip(pitches, velocities, onsets)]
    (sheet / "note_sheet.json").write_text(json.dumps({"sheet": {"hold_seconds": 0.8},
                                                       "per_note": {"reference": {"2018": notes}}}))
    assert levels_bound.main([str(sheet), "-c", str(config_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sampling"] == json.loads(config_path.read_text())["sampling"]  # the rest of -c as it was
    fitted = dataclasses.replace(bank, **{k: v for k, v in out["data"]["resonators"].items()
                                          if k.startswith(("level", "prompt"))})
    assert not fitted.prompt_levels_db  # fitted beside the config's table: left out
    for p in (48, 60, 72):
        for k in (1, 2, 4):
            for v in (40, 100):
                got = 20 * np.log10(rs.fitted_levels(np.array([p]), np.array([v]), np.array([k]), fitted)[0])
                assert abs(got - true_db(p, v, k)) < 1.0, (p, k, v, got, true_db(p, v, k))
    with pytest.raises(SystemExit):
        levels_bound.main([str(tmp_path / "missing"), "-c", str(config_path)])


def test_after_a_prime_ending_mid_attack_the_lock_rises_instead_of_snapping():
    """A prime (teacher-forced audio, here near silence) ending 25 ms into a note's attack: the
    partials glide to their levels' trajectory over PRIME_FADE_SAMPLES instead of jumping there in
    one sample (broken once: at once the fundamental grew 1200-fold in a sample, a click), and
    reach it."""
    notes = Notes(np.array([0.1]), np.array([1.0]), np.array([60], np.int16), np.array([90], np.int16))
    n_samples = 8000
    sched = rs.schedule(notes, 0, n_samples, SR, dataclasses.replace(BANK, **LEVELS)).for_sampling(partial_levels=1.0)
    end = int(sched.start[0]) + 400
    assert end + rs.PRIME_FADE_SAMPLES < int(sched.attack_end[0])
    given = (1e-3 * np.random.default_rng(1).normal(size=n_samples)).astype(np.float32)
    bank = rs.BankBatch([sched])
    amps = []
    for t in range(n_samples):
        primed = t < end
        bank.step(t, primed, True, np.array([given[t] if primed else 0.0], np.float32))
        amps.append(np.abs(bank.state.re[0, :len(sched)] + 1j * bank.state.im[0, :len(sched)]))
    a = np.array(amps)
    steps = a[end:end + 200] / np.maximum(a[end - 1:end + 199], 1e-30)
    assert steps.max() < 2.0, steps.max(axis=0)
    attack_end = int(sched.attack_end[0])
    assert a[end - 1, 0] < 0.01 * a[attack_end - 1, 0]  # the prime left the partials far below their levels
    reached = a[end + rs.PRIME_FADE_SAMPLES:attack_end, 0] / a[attack_end - 1, 0]
    assert reached.min() > 0.9  # on the trajectory from the end of the glide (it decays to the attack end)


def test_fit_partials_reads_a_partial_off_its_fitted_position_with_the_search():
    """A partial 15 cents above its fitted position: a probe at the position reads it far too low,
    the spectrum's peak within --level-search-cents 30 reads its level (broken once: the peak not
    searched)."""
    onset = 0.1
    notes = Notes(np.array([onset]), np.array([onset + 0.8]), np.array([72], np.int16), np.array([64], np.int16))
    t = np.arange(int(1.2 * SR)) / SR
    hz = float(rs.partial_hz(72, 8)) * 2.0 ** (15.0 / 1200.0)
    x = 0.01 * np.where(t >= onset, 1.0, 0.0) * np.sin(2 * np.pi * hz * t)  # no decay: exponent 0, a long tau
    rows = {}
    for cents in (0.0, 30.0):
        obs = fit_partials.measure_levels([(notes, x)], (), (), 1e6, 0.0, attack_s=0.05, partials=8,
                                          search_cents=cents)
        rows[cents] = 20 * np.log10(obs[obs[:, 2] == 8][0, 3])
    assert abs(rows[30.0] - 20 * np.log10(0.01)) < 0.5, rows
    assert rows[0.0] < rows[30.0] - 10.0, rows


def test_fit_partials_level_corpus_adds_isolated_notes_to_the_level_fit(tmp_path, monkeypatch, capsys):
    """--level-corpus DIR: MIDI + WAV pairs under DIR (note_corpus.py's layout) join the store's
    notes in the level fit only. The store here plays only the middle; the corpus the treble, where
    the table without it is extrapolated (broken once: the corpus read but left out of the fit)."""
    import json

    import soundfile as sf

    from midi2wave.midi import PedalEvents, write_midi

    config_path, bank = four_partial_config(tmp_path)

    def true_db(p, v, k):  # the treble's upper partials fall much faster than the middle's predict
        return -20.0 - 6.0 * (k - 1) - (0.2 + (0.6 * (k - 1) if p > 75 else 0.0)) * (p - 60) + 20 * math.log10(v / 64)

    mid = np.repeat(np.arange(48, 73, 3), 9)  # enough partial rows for main to fit levels from the store alone
    store = isolated_notes(mid, np.tile([40, 64, 100], len(mid) // 3), true_db, bank, seed=1)
    monkeypatch.setattr(fit_partials, "training_pieces", lambda *a, **k: [(None, store[0], store[1])])
    treble = np.repeat(np.arange(84, 97, 3), 3)
    notes, x = isolated_notes(treble, np.tile([40, 64, 100], len(treble) // 3), true_db, bank, seed=2)
    corpus = tmp_path / "corpus" / "2006"
    corpus.mkdir(parents=True)
    write_midi(notes, PedalEvents(np.zeros(0), np.zeros(0, np.int16), np.zeros(0, np.int16)), corpus / "notes.midi")
    sf.write(corpus / "notes.wav", x, SR, subtype="FLOAT")
    (corpus / "stray.midi").write_bytes(b"")  # a MIDI without its audio is not a pair: skipped, reported

    errs = []

    def table_error(extra):
        assert fit_partials.main(["STORE", "-c", str(config_path), "--level-partials", "4", *extra]) == 0
        captured = capsys.readouterr()
        errs.append(captured.err)
        block = json.loads(captured.out)["data"]["resonators"]
        assert "levels_db" in block
        fitted = dataclasses.replace(bank, **{k: v for k, v in block.items() if k.startswith(("level", "prompt"))})
        assert not fitted.prompt_levels_db  # a new table without --prompt-delay: the old prompt emptied
        return max(abs(20 * np.log10(rs.fitted_levels(np.array([p]), np.array([v]), np.array([k]), fitted)[0])
                       - true_db(p, v, k)) for p in (87, 93) for v in (40, 100) for k in (2, 4))

    assert table_error([]) > 10.0  # the store alone: the treble extrapolated from the middle
    assert table_error(["--level-corpus", str(tmp_path / "corpus")]) < 1.0
    assert "skipped: " in errs[-1] and "stray.midi: no audio beside it" in errs[-1]
    # the levels are measured where -c's bank puts its partials, not at positions refitted here
    # (broken once: at the refitted ones, 30 cents off, a probe reads the upper partials low)
    monkeypatch.setattr(fit_partials, "fit", lambda obs: ((30.0, 0.0, 0.0, 0.0), bank.inharmonicity, 0.0))
    assert table_error(["--level-corpus", str(tmp_path / "corpus"), "--level-search-cents", "0"]) < 1.0
    # bad corpora: one line naming the file, before the store is read
    monkeypatch.setattr(fit_partials, "training_pieces", lambda *a, **k: pytest.fail("the store was read first"))
    (corpus / "notes.wav").write_bytes(b"not a wav")
    assert fit_partials.main(["STORE", "-c", str(config_path), "--level-corpus", str(tmp_path / "corpus")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "notes.wav: cannot decode audio" in err[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert fit_partials.main(["STORE", "-c", str(config_path), "--level-corpus", str(empty)]) == 1
    assert "no MIDI + audio pairs" in capsys.readouterr().err
    assert fit_partials.main(["STORE", "-c", str(config_path), "--level-corpus", str(tmp_path / "nowhere")]) == 1
    assert "nowhere: source not found" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "take.mid").write_bytes(b"MThd garbage")
    sf.write(bad / "take.wav", x, SR, subtype="FLOAT")
    assert fit_partials.main(["STORE", "-c", str(config_path), "--level-corpus", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "take.mid:" in err[0] and "MIDI" in err[0]
