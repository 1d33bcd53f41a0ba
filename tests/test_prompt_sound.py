"""The prompt sound (`data.resonators.prompt_levels_db`): with the partial levels' lock on, a partial
whose prompt level is above the level table's leaves its attack there and falls in a straight line
in dB onto the level table's decay over `prompt_seconds`, then decays as before. The analysis and a
lock of 0 never see it; a window begun mid-note takes the same trajectory; the fit extrapolates
two measured tables to the attack's end.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from midi2wave.conditioning import resonators as rs
from midi2wave.config import SYNTHESIS_ONLY_KEYS, Config, ConfigError, DataConfig, config_from_dict
from midi2wave.midi import Notes
from helpers import four_partial_config, isolated_notes, locked_levels, undriven_amplitudes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import fit_partials  # noqa: E402

SR = 16000
SLOPES = ((1.0, 1.5, 2.0, 2.5), (0.5, 0.5, 0.5, 0.5))
PLAIN = rs.ResonatorConfig(partials=4, input="innovation", gain=0.2, gain_attack_s=0.02, gain_sustain=0.25,
                           gain_release_s=0.03, gain_floor=1e-4, attack_s=0.05, noise_lowpass=0.6, sustain_kappa=0.001,
                           level_pitches=(48.0, 72.0), levels_db=((-20.0, -30.0, -40.0, -50.0), (-26.0, -46.0, -66.0, -86.0)),
                           level_velocity_slope_table=SLOPES)
# partial 1 quieter in the prompt (no prompt sound), partials 2-4 louder by 6, 12 and 18 dB at velocity 64
# and brighter when struck harder (their slopes 0.5 dB per dB of velocity steeper at MIDI 60)
PROMPT = dataclasses.replace(PLAIN, prompt_levels_db=((-26.0, -24.0, -28.0, -32.0), (-32.0, -40.0, -54.0, -68.0)),
                             prompt_velocity_slope_table=((1.0, 2.0, 2.5, 3.0), (0.5, 1.0, 1.0, 1.0)),
                             prompt_seconds=0.1)
NOTE = Notes(np.array([0.0]), np.array([0.8]), np.array([60], np.int16), np.array([64], np.int16))


@pytest.mark.parametrize("velocity", [64, 100])
def test_a_louder_prompt_leaves_the_attack_above_the_table_and_falls_onto_its_decay(velocity: int):
    note = dataclasses.replace(NOTE, velocity=np.array([velocity], np.int16))
    plain = rs.schedule(note, 0, SR, SR, PLAIN).for_sampling(partial_levels=1.0)
    sched = rs.schedule(note, 0, SR, SR, PROMPT).for_sampling(partial_levels=1.0)
    end, T = int(sched.attack_end[0]), int(round(PROMPT.prompt_seconds * SR))
    assert (sched.prompt_end == sched.attack_end + T).all() and (plain.prompt_end == plain.attack_end).all()
    louder = 20 * math.log10(velocity / 64) * 0.5  # the steeper slopes
    expected_db = np.array([0.0, 6.0 + louder, 12.0 + louder, 18.0 + louder])
    np.testing.assert_allclose(20 * np.log10(sched.level / plain.level), expected_db, atol=1e-9)
    assert sched.r_prompt[0] == sched.r_hold[0] and (sched.r_prompt[1:] < sched.r_hold[1:]).all()
    n = end + T + 400
    amps, flat = undriven_amplitudes(sched, n), undriven_amplitudes(plain, n)
    np.testing.assert_allclose(amps[end - 1], sched.level, rtol=1e-12)  # the lock leaves it at the prompt's level
    # a straight line in dB from there onto the level table's decay, reached at prompt_end ...
    excess = 20 * np.log10(amps[end - 1:end + T + 300] / flat[end - 1:end + T + 300])
    line = np.clip(1.0 - np.arange(T + 301)[:, None] / T, 0.0, None) * expected_db
    np.testing.assert_allclose(excess, line, atol=1e-6)
    # ... and the partials without a louder prompt ring exactly as without the prompt table
    np.testing.assert_array_equal(amps[:, 0], flat[:, 0])


@pytest.mark.parametrize("release_s", [0.03, 0.1, 0.3])  # inside the attack, inside the prompt, past it
def test_released_anywhere_the_bank_rings_on_the_locked_trajectory(release_s: float):
    """Undriven past its attack, each oscillator's amplitude is `locked_amplitude`'s at every sample:
    the prompt's decay, then the hold's, then the release's, whichever comes first."""
    note = dataclasses.replace(NOTE, offset_s=np.array([release_s]))
    sched = rs.schedule(note, 0, SR, SR, PROMPT).for_sampling(partial_levels=1.0)
    end = int(sched.attack_end[0])
    n = int((release_s + 0.5 * PROMPT.release_tail_s) * SR)
    amps = undriven_amplitudes(sched, n)
    assert sched.stop.min() > n  # every oscillator still in the bank (read by its slot)
    for t in range(end, n, 97):
        np.testing.assert_allclose(amps[t], locked_levels(sched, t + 1), rtol=1e-9)


def test_the_analysis_and_a_lock_of_zero_never_hear_the_prompt():
    plain = rs.schedule(NOTE, 0, SR, SR, PLAIN)
    sched = rs.schedule(NOTE, 0, SR, SR, PROMPT)
    audio = 0.1 * np.random.default_rng(1).standard_normal(SR)
    for a, b in zip(rs.analyze(audio, plain), rs.analyze(audio, sched)):
        np.testing.assert_array_equal(a, b)
    u = np.clip(0.3 * np.random.default_rng(2).standard_normal(SR), -1, 1)
    np.testing.assert_array_equal(rs.synthesize(u, plain.for_sampling(partial_levels=0.0)),
                                  rs.synthesize(u, sched.for_sampling(partial_levels=0.0)))
    assert not np.array_equal(rs.synthesize(u, plain.for_sampling(partial_levels=1.0)),
                              rs.synthesize(u, sched.for_sampling(partial_levels=1.0)))


@pytest.mark.parametrize("from_s", [0.08, 0.2])  # inside the prompt sound, and past it
def test_a_window_begun_mid_note_takes_the_prompts_trajectory(from_s: float):
    whole = rs.schedule(NOTE, 0, SR, SR, PROMPT).for_sampling(partial_levels=1.0)
    start = int(from_s * SR)
    late = rs.schedule(NOTE, start, SR, SR, PROMPT).for_sampling(partial_levels=1.0)
    assert (late.attack_end < 0).all()
    bank = rs.BankBatch([late])
    bank.predict(0)
    bank.update(0, np.zeros(1))
    k = len(late)
    got = np.empty(k)
    got[bank.state.idx[0, :k]] = np.abs(bank.state.re[0, :k] + 1j * bank.state.im[0, :k])
    amps = undriven_amplitudes(whole, start + 1)
    np.testing.assert_allclose(got, amps[start], rtol=1e-9)  # as loud as the whole note's oscillators by then


def test_fit_partials_extrapolates_the_prompt_to_the_attacks_end():
    """Tables measured at 0.064 s and 0.314 s: the prompt's excess at the attack's end is the early
    excess times 0.314 / 0.25, so the straight line passes through both measurements."""
    late, early = np.array([[-40.0, -50.0]]), np.array([[-35.0, -52.0]])
    late_s, early_s = np.array([[1.0, 2.0]]), np.array([[1.5, 2.0]])
    levels, slopes = fit_partials.prompt_tables(late, late_s, early, early_s, 0.314, 0.064)
    scale = 0.314 / 0.25
    np.testing.assert_allclose(levels, [[-40.0 + 5.0 * scale, -50.0 - 2.0 * scale]], atol=0.01)
    np.testing.assert_allclose(slopes, [[1.0 + 0.5 * scale, 2.0]], atol=0.001)
    at_early = np.asarray(levels) + (np.asarray(late) - np.asarray(levels)) * 0.064 / 0.314
    np.testing.assert_allclose(at_early, early, atol=0.01)
    with pytest.raises(ValueError, match="before"):
        fit_partials.prompt_tables(late, late_s, early, early_s, 0.1, 0.2)
    # share: that fraction of the excess (in dB)
    halved, _ = fit_partials.prompt_tables(late, late_s, early, early_s, 0.314, 0.064, share=0.5)
    np.testing.assert_allclose(np.asarray(halved) - late, 0.5 * (np.asarray(levels) - late), atol=0.01)
    with pytest.raises(ValueError, match="share"):
        fit_partials.prompt_tables(late, late_s, early, early_s, 0.314, 0.064, share=1.5)
    # partials below min_hz keep the level table: no prompt sound there
    levels, slopes = fit_partials.prompt_tables(late, late_s, early, early_s, 0.314, 0.064,
                                                partial_hz_table=[[1500.0, 2500.0]], min_hz=2000.0)
    assert levels[0][0] == -40.0 and slopes[0][0] == 1.0
    assert levels[0][1] == pytest.approx(-50.0 - 2.0 * scale, abs=0.01)


def test_the_prompt_is_validated_and_travels_through_json():
    with pytest.raises(ConfigError, match="prompt_levels_db"):
        dataclasses.replace(PROMPT, prompt_levels_db=PROMPT.prompt_levels_db[:1])
    with pytest.raises(ConfigError, match="prompt_velocity_slope_table"):
        dataclasses.replace(PROMPT, prompt_velocity_slope_table=((1.0, 1.0),) * 2)
    for seconds in (0.0, 1e-5, 20.0):  # none, under a sample, past int64's reach at any start
        with pytest.raises(ConfigError, match="prompt_seconds"):
            dataclasses.replace(PROMPT, prompt_seconds=seconds)
    with pytest.raises(ConfigError, match="prompt_levels_db"):  # the level table's velocity slopes per partial
        dataclasses.replace(PROMPT, level_velocity_slope_table=(), level_velocity_slopes=(1.0, 1.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="must be finite"):
        dataclasses.replace(PROMPT, prompt_levels_db=((math.nan, 0, 0, 0), (0, 0, 0, 0)))
    config = Config(data=DataConfig(resonators=PROMPT))
    assert config_from_dict(config.to_dict()) == config
    assert {"data.resonators.prompt_levels_db", "data.resonators.prompt_seconds"} <= set(SYNTHESIS_ONLY_KEYS)


def test_fit_partials_recovers_a_double_decay_from_isolated_notes(tmp_path, monkeypatch, capsys):
    """Synthetic isolated notes whose upper partials start 12 dB above their later decay's line and
    fall onto it over 0.314 s (the bank's prompt sound); `--prompt-delay 0` gives prompt levels within
    1.5 dB of the truth at the attack's end and none on the partials below `--prompt-min-hz`."""
    import json

    config_path, bank = four_partial_config(tmp_path)
    T = 0.25 + 1024 / SR  # the level table's window centre after the attack's end

    def true_db(p, v, k):
        return -20.0 - 6.0 * (k - 1) - 0.2 * (p - 72) + 20 * math.log10(v / 64)

    pitches = np.repeat(np.arange(66, 85, 3), 12)
    # the prompt: partials 3 and 4 start 12 dB over their later decay's line and reach it at T
    notes, x = isolated_notes(pitches, np.tile([40, 64, 100], len(pitches) // 3), true_db, bank, seed=0,
                              excess_db=lambda k: 12.0 if k >= 3 else 0.0)
    monkeypatch.setattr(fit_partials, "training_pieces", lambda *a, **k: [(None, notes, x)])
    assert fit_partials.main(["STORE", "-c", str(config_path), "--level-partials", "4", "--prompt-delay", "0",
                              "--prompt-min-hz", "2500"]) == 0
    block = json.loads(capsys.readouterr().out)["data"]["resonators"]
    fitted = dataclasses.replace(bank, **{k: v for k, v in block.items() if k.startswith(("level", "prompt"))})
    assert fitted.prompt_seconds == pytest.approx(T, abs=1e-3)
    checked = {"below": 0, "prompt": 0}
    for p in (72, 78):
        hz = rs.partial_hz(p, np.arange(1, 5), bank.tuning_cents, bank.inharmonicity)
        for v in (40, 100):
            k = np.arange(1, 5)
            late = 20 * np.log10(rs.fitted_levels(np.full(4, p), np.full(4, v), k, fitted))
            early = 20 * np.log10(rs.fitted_levels(np.full(4, p), np.full(4, v), k, fitted, prompt=True))
            truth = [true_db(p, v, j) for j in k]
            np.testing.assert_allclose(late, truth, atol=1.5)
            for j in range(4):
                if hz[j] < 2500.0:
                    assert early[j] == late[j]  # no prompt below --prompt-min-hz
                    checked["below"] += 1
                elif j >= 2:
                    assert early[j] - truth[j] == pytest.approx(12.0, abs=1.5)
                    checked["prompt"] += 1
    assert checked["below"] and checked["prompt"]
