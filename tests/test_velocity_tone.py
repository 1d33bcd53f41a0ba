"""The level table's velocity tone (`data.resonators.velocity_tone_velocities`, `velocity_tone_hz`,
`velocity_tone_db`; scripts/fit_partials.py --velocity-tone fits it): synthesis bends each partial's
fitted level by the note's velocity at the partial's frequency, where the table's straight line in
dB of velocity misses the training piano's blows."""

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import fit_partials  # noqa: E402
from helpers import LIVE_BANK  # noqa: E402

SR = 16000
BENT = dataclasses.replace(LIVE_BANK, velocity_tone_velocities=(32.0, 64.0, 127.0), velocity_tone_hz=(500.0, 2000.0),
                           velocity_tone_db=((1.0, -2.0), (0.0, 0.0), (-1.0, 6.0)))
PROMPT_BENT = dataclasses.replace(BENT, prompt_velocity_tone_db=((2.0, -4.0), (0.0, 1.0), (1.0, 9.0)))
STRAIGHT = dataclasses.replace(LIVE_BANK, velocity_tone_velocities=(), velocity_tone_hz=(), velocity_tone_db=())


def test_the_tone_is_validated_and_goes_with_the_synthesis_settings():
    bad = {
        r"velocity_tone_velocities = \[32.0, 32.0, 127.0\]: must be MIDI velocities in \[1, 127\] that rise":
            dict(velocity_tone_velocities=(32.0, 32.0, 127.0)),
        "must be MIDI velocities": dict(velocity_tone_velocities=(32.0, 64.0, 128.0)),
        "must be frequencies > 0 Hz that rise": dict(velocity_tone_hz=(2000.0, 500.0)),
        r"velocity_tone_db = 2: needs a row per velocity": dict(velocity_tone_db=((1.0, -2.0), (0.0, 0.0))),
        r"velocity_tone_db\[1\] = 1: needs a value per frequency": dict(velocity_tone_db=((1.0, -2.0), (0.0,), (1.0, 6.0))),
        r"velocity_tone_db\[2\] = 30.0: must be finite dB within \+-24 \(velocity 127\)":
            dict(velocity_tone_db=((1.0, -2.0), (0.0, 0.0), (-1.0, 30.0))),
    }
    for message, change in bad.items():
        with pytest.raises(ConfigError, match=message):
            dataclasses.replace(BENT, **change)
    with pytest.raises(ConfigError, match="must be finite dB"):
        dataclasses.replace(BENT, velocity_tone_db=((math.nan, 0.0), (0.0, 0.0), (0.0, 0.0)))
    with pytest.raises(ConfigError, match=r"prompt_velocity_tone_db = 1: needs a row per velocity"):
        dataclasses.replace(BENT, prompt_velocity_tone_db=((1.0, -2.0),))
    with pytest.raises(ConfigError, match=r"prompt_velocity_tone_db\[0\] = -25.0: must be finite dB within \+-24"):
        dataclasses.replace(PROMPT_BENT, prompt_velocity_tone_db=((-25.0, -2.0), (0.0, 0.0), (1.0, 9.0)))
    with pytest.raises(ConfigError, match="needs the prompt sound"):
        dataclasses.replace(PROMPT_BENT, prompt_levels_db=(), prompt_velocity_slope_table=(), prompt_seconds=0.0)
    with pytest.raises(ConfigError, match=r"prompt_velocity_tone_db = '...': needs the level table's velocity tone"):
        dataclasses.replace(PROMPT_BENT, velocity_tone_velocities=(), velocity_tone_hz=(), velocity_tone_db=())
    with pytest.raises(ConfigError, match=r"velocity_tone_db = '...': needs the fitted partial levels"):
        dataclasses.replace(BENT, level_pitches=(), levels_db=(), level_velocity_slope_table=(), prompt_levels_db=(),
                            prompt_velocity_slope_table=(), prompt_seconds=0.0, room_tone_hz=(), room_tone_db=())
    config = Config(data=DataConfig(resonators=PROMPT_BENT))
    assert config_from_dict(config.to_dict()) == config
    assert {"data.resonators.velocity_tone_velocities", "data.resonators.velocity_tone_hz",
            "data.resonators.velocity_tone_db", "data.resonators.prompt_velocity_tone_db"} <= set(SYNTHESIS_ONLY_KEYS)


def test_the_tone_is_bilinear_in_db_of_velocity_and_log_frequency_and_flat_beyond():
    v45 = 10 ** ((20 * math.log10(32) + 20 * math.log10(64)) / 40)  # halfway (in dB) from 32 to 64
    velocity = np.array([10.0, 32.0, v45, 64.0, 127.0, 127.0, 127.0, 127.0])
    hz = np.array([100.0, 500.0, 500.0, 3000.0, 250.0, 1000.0, 2000.0, 7000.0])
    # at 127: 1 kHz is halfway (in octaves) from 500 Hz to 2 kHz
    np.testing.assert_allclose(rs.velocity_tone_db(velocity, hz, BENT), [1.0, 1.0, 0.5, 0.0, -1.0, 2.5, 6.0, 6.0],
                               atol=1e-9)
    assert not rs.velocity_tone_db(velocity, hz, STRAIGHT).any()
    # between points on both axes: the mean of the four corners (64 / 127 at 500 Hz / 2 kHz: 0, 0, -1, 6)
    v90 = 10 ** ((20 * math.log10(64) + 20 * math.log10(127)) / 40)
    assert rs.velocity_tone_db(np.array([v90]), np.array([1000.0]), BENT)[0] == pytest.approx(1.25, abs=1e-9)
    # one velocity: the same at every velocity
    one = dataclasses.replace(BENT, velocity_tone_velocities=(64.0,), velocity_tone_db=((1.0, -2.0),))
    np.testing.assert_allclose(rs.velocity_tone_db(np.array([5.0, 64.0, 127.0]), np.full(3, 1000.0), one), -0.5)


def test_every_level_of_the_trajectory_is_bent_at_its_partials_frequency():
    pitch = np.repeat([45, 60, 79], 4 * 3).astype(np.float64)
    velocity = np.tile(np.repeat([20, 64, 120], 4), 3).astype(np.float64)
    k = np.tile([1, 2, 3, 4], 9)
    bend = rs.velocity_tone_db(velocity, rs.partial_hz(pitch, k), BENT)
    assert np.ptp(bend) > 5.0
    for prompt in (False, True):
        got = 20 * np.log10(rs.fitted_levels(pitch, velocity, k, BENT, prompt=prompt))
        plain = 20 * np.log10(rs.fitted_levels(pitch, velocity, k, STRAIGHT, prompt=prompt))
        np.testing.assert_allclose(got - plain, bend, atol=1e-9)
    # with a tone of its own, the prompt sound takes that one and the level table keeps its own
    prompt_bend = rs.velocity_tone_db(velocity, rs.partial_hz(pitch, k), PROMPT_BENT, prompt=True)
    assert np.abs(prompt_bend - bend).max() > 2.0
    for prompt, want in ((False, bend), (True, prompt_bend)):
        got = 20 * np.log10(rs.fitted_levels(pitch, velocity, k, PROMPT_BENT, prompt=prompt))
        plain = 20 * np.log10(rs.fitted_levels(pitch, velocity, k, STRAIGHT, prompt=prompt))
        np.testing.assert_allclose(got - plain, want, atol=1e-9)
    # the schedule: levels bent, the prompt's fall onto the table's decay (a ratio of the two) untouched
    notes = Notes(np.array([0.0, 0.01]), np.array([0.3, 0.3]), np.array([60, 79], np.int16), np.array([20, 120], np.int16))
    bent, straight = rs.schedule(notes, 0, 4000, SR, BENT), rs.schedule(notes, 0, 4000, SR, STRAIGHT)
    hz = bent.omega * SR / (2 * math.pi)
    assert (bent.omega[:len(bent) // 2] == straight.omega[:len(bent) // 2]).all()  # the two notes' rows, in order
    vel = np.repeat([20.0, 120.0], len(bent) // 2)
    np.testing.assert_allclose(bent.level, straight.level * 10 ** (rs.velocity_tone_db(vel, hz, BENT) / 20), rtol=1e-9)
    np.testing.assert_array_equal(bent.r_prompt, straight.r_prompt)
    # the prompt's own tone reaches the trajectory: its fall onto the table's decay changes
    assert not np.allclose(rs.schedule(notes, 0, 4000, SR, PROMPT_BENT).r_prompt, bent.r_prompt)
    # the live bank's tables carry it too: its rows are the offline oscillators'
    live = rs.LiveBank(BENT, SR)
    fixed, by_velocity = live.note_table(79)
    np.testing.assert_allclose(by_velocity["level"][119], bent.level[len(bent) // 2:], rtol=1e-12)


GRID_V, GRID_HZ = (16, 32, 48, 64, 80, 96, 112, 127), (250, 500, 1000, 2000, 3000, 4000, 5000, 6000, 7000)
TRUE_BEND = np.outer([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 10.0])
TABLE = dataclasses.replace(STRAIGHT, partials=8, level_pitches=(30.0, 100.0),
                            levels_db=tuple(tuple(-30.0 - 3.0 * j for j in range(8)) for _ in range(2)),
                            level_velocity_slope_table=((1.0,) * 8, (1.0,) * 8), prompt_levels_db=(),
                            prompt_velocity_slope_table=(), prompt_seconds=0.0, room_tone_hz=(), room_tone_db=())


def _rows(seed=0, floor_rows=False):
    """`measure_levels`-like rows (pitch, velocity, k, amplitude, floor) of a piano whose levels are
    TABLE's line bent by TRUE_BEND, with 1 dB of scatter; `floor_rows`: the soft blows' partials above
    4 kHz sink into a floor 12 dB over them (their peaks measure it), as a recording's do."""
    rng = np.random.default_rng(seed)
    n = 40000
    pitch = rng.integers(36, 97, n).astype(np.float64)
    k = rng.integers(1, 9, n)
    velocity = rng.integers(10, 128, n).astype(np.float64)
    ok = rs.partial_hz(pitch, k) < 7800
    pitch, k, velocity = pitch[ok], k[ok], velocity[ok]
    truth = dataclasses.replace(TABLE, velocity_tone_velocities=GRID_V, velocity_tone_hz=GRID_HZ,
                                velocity_tone_db=tuple(map(tuple, TRUE_BEND)))
    amp = rs.fitted_levels(pitch, velocity, k, truth) * 10 ** (rng.normal(0, 1.0, len(k)) / 20)
    floor = amp / 1000.0
    if floor_rows:
        sunk = (velocity < 40) & (rs.partial_hz(pitch, k) > 4000)
        floor[sunk] = amp[sunk] * 10 ** (12 / 20)
        amp[sunk] = floor[sunk] * 10 ** (6 / 20) * 10 ** (rng.normal(0, 1.0, sunk.sum()) / 20)  # noise's peak
    return np.column_stack([pitch, velocity, k, amp, floor])


def test_the_fit_recovers_a_known_bend_from_the_lines_residuals():
    tone, before, after = fit_partials.fit_velocity_tone(_rows(), TABLE, GRID_V, GRID_HZ)
    assert after < before
    np.testing.assert_allclose(np.asarray(tone), TRUE_BEND, atol=0.6)
    half, _, _ = fit_partials.fit_velocity_tone(_rows(), TABLE, GRID_V, GRID_HZ, share=0.5)
    np.testing.assert_allclose(np.asarray(half), 0.5 * np.asarray(tone), atol=0.011)


def test_rows_in_their_floor_do_not_brighten_the_soft_blows():
    rows = _rows(floor_rows=True)
    tone = np.asarray(fit_partials.fit_velocity_tone(rows, TABLE, GRID_V, GRID_HZ)[0])
    np.testing.assert_allclose(tone, TRUE_BEND, atol=0.8)
    # read as measured, the floor would have lifted the soft blows' top by several dB
    blind = np.asarray(fit_partials.fit_velocity_tone(rows[:, :4], TABLE, GRID_V, GRID_HZ)[0])
    assert blind[:2, 6:].max() > 4.0
    # a grid point most of whose rows are in their floor is not read from the few that stand out (the
    # loud ones): it takes its neighbours'
    rng = np.random.default_rng(1)
    hz = rs.partial_hz(rows[:, 0], rows[:, 2])
    point = (rows[:, 1] <= 22) & (hz > 2450) & (hz < 3460)  # the rows nearest (16, 3000 Hz)
    loud = point & (rng.random(len(rows)) < 0.3)
    rows[point & ~loud, 4] = rows[point & ~loud, 3] * 2.0
    rows[loud, 3] *= 10 ** (6 / 20)
    tone = np.asarray(fit_partials.fit_velocity_tone(rows, TABLE, GRID_V, GRID_HZ)[0])
    assert abs(tone[0, 4] - TRUE_BEND[0, 4]) < 0.5
    # a row whose floor could not be read (0: the bass's packed partials) is unknown and left out
    unread = _rows(seed=3)
    odd = (unread[:, 1] < 40) & (rs.partial_hz(unread[:, 0], unread[:, 2]) > 4000)
    unread[odd, 3] *= 10 ** (8 / 20)
    unread[odd, 4] = 0.0
    tone = np.asarray(fit_partials.fit_velocity_tone(unread, TABLE, GRID_V, GRID_HZ)[0])
    np.testing.assert_allclose(tone, TRUE_BEND, atol=0.8)


def test_the_prompts_tone_is_drawn_back_as_its_table_is():
    late, early = np.array([[0.0, 2.0, 4.0]]), np.array([[1.0, 6.0, 6.0]])
    hz = np.array([[1000.0, 3000.0, 6000.0]])
    # the line through 0.25 s and 0.05 s drawn back to 0: the excess at 0.05 s times 0.25 / 0.2, halved
    got = fit_partials.prompt_extrapolation(late, early, 0.25, 0.05, 0.5, hz, 2000.0)
    np.testing.assert_allclose(got, [[0.0, 2.0 + 0.625 * 4.0, 4.0 + 0.625 * 2.0]])
    np.testing.assert_allclose(fit_partials.prompt_extrapolation(late, early, 0.25, 0.05), late + 1.25 * (early - late))
    # the prompt's velocity tone: the same line, the level table's tone at and below --prompt-min-hz, clipped
    tone, clipped = fit_partials.prompt_velocity_tone([[1.0, 2.0, 20.0]], [[3.0, 6.0, 30.0]], (1000.0, 2000.0, 6000.0),
                                                      0.25, 0.05, 1.0, 2000.0)
    assert tone == ((1.0, 2.0, 24.0),) and clipped == 1  # 20 + 1.25 * 10 = 32.5 -> 24
    tone, clipped = fit_partials.prompt_velocity_tone([[1.0, 2.0, 4.0]], [[3.0, 6.0, 6.0]], (1000.0, 2000.0, 6000.0),
                                                      0.25, 0.05, 1.0, 1500.0)
    assert tone == ((1.0, 7.0, 6.5),) and clipped == 0


def test_measure_levels_reads_each_partials_floor_without_changing_its_level():
    rng = np.random.default_rng(2)
    n = int(1.5 * SR)
    t = np.arange(n) / SR
    notes = Notes(np.array([0.1]), np.array([1.2]), np.array([69], np.int16), np.array([80], np.int16))
    tone = sum(a * np.sin(2 * np.pi * 440.0 * k * t) for k, a in ((1, 0.1), (2, 0.01), (3, 1e-5)))
    floors = []
    for sigma in (1e-3, 2e-3):
        x = tone + sigma * rng.standard_normal(n)
        plain = fit_partials.measure_levels([(notes, x)], (), (), 100.0, 0.0, partials=4, search_cents=15)
        obs = fit_partials.measure_levels([(notes, x)], (), (), 100.0, 0.0, partials=4, search_cents=15, floor=True)
        np.testing.assert_array_equal(obs[:, :4], plain)
        over = 20 * np.log10(obs[:, 3] / obs[:, 4])
        assert over[0] > 40 and over[1] > 20 and over[2] < 10  # the third partial is in the noise
        floors.append(obs[:, 4])
    np.testing.assert_allclose(20 * np.log10(floors[1] / floors[0]), 6.02, atol=1.0)
    # partials packed closer than the window resolves well (F2, 87 Hz apart: a few bins clear of their main
    # lobes) leave no floor to read: 0, kept
    low = Notes(np.array([0.1]), np.array([1.2]), np.array([41], np.int16), np.array([80], np.int16))
    x = sum(0.05 * np.sin(2 * np.pi * rs.partial_hz(41, k) * t) for k in range(1, 5)) + 1e-3 * rng.standard_normal(n)
    obs = fit_partials.measure_levels([(low, x)], (), (), 100.0, 0.0, partials=4, search_cents=15, floor=True)
    assert len(obs) == 4 and not obs[:, 4].any()


def test_the_command_fits_the_tone_and_the_prompts_from_isolated_notes(tmp_path, monkeypatch, capsys):
    """Synthetic isolated notes whose loud blows' upper partials stand over the straight line in dB of
    velocity (a bend the table cannot follow): `--velocity-tone` brings the fitted levels nearer, and
    the prompt's tone keeps the level table's at and below `--prompt-min-hz`."""
    import json

    from helpers import four_partial_config, isolated_notes

    config_path, bank = four_partial_config(tmp_path)

    def true_db(p, v, k):  # velocity 100's partials above 2.5 kHz 6 dB over the line
        f = float(rs.partial_hz(p, k, bank.tuning_cents, bank.inharmonicity))
        return -20.0 - 6.0 * (k - 1) - 0.2 * (p - 72) + 20 * math.log10(v / 64) + (6.0 if v == 100 and f > 2500 else 0.0)

    pitches = np.repeat(np.arange(60, 85, 3), 12)
    notes, x = isolated_notes(pitches, np.tile([40, 64, 100], len(pitches) // 3), true_db, bank, seed=1,
                              excess_db=lambda k: 6.0 if k >= 3 else 0.0)
    monkeypatch.setattr(fit_partials, "training_pieces", lambda *a, **k: [(None, notes, x)])
    assert fit_partials.main(["STORE", "-c", str(config_path), "--level-partials", "4", "--prompt-delay", "0",
                              "--prompt-min-hz", "2000", "--velocity-tone"]) == 0
    block = json.loads(capsys.readouterr().out)["data"]["resonators"]
    fitted = dataclasses.replace(bank, **{k: v for k, v in block.items() if k.startswith(("level", "prompt", "velocity"))})
    low = np.asarray(fitted.velocity_tone_hz) <= 2000
    np.testing.assert_array_equal(np.asarray(fitted.prompt_velocity_tone_db)[:, low],
                                  np.asarray(fitted.velocity_tone_db)[:, low])
    straight = dataclasses.replace(fitted, velocity_tone_velocities=(), velocity_tone_hz=(), velocity_tone_db=(),
                                   prompt_velocity_tone_db=())
    p, k = np.repeat(np.arange(63, 85, 3), 4), np.tile(np.arange(1, 5), 8)
    top = rs.partial_hz(p, k, bank.tuning_cents, bank.inharmonicity) > 2500  # where the bend is
    p, k = p[top], k[top]
    errors = {}
    for name, config in (("bent", fitted), ("straight", straight)):
        for v in (64, 100):
            got = 20 * np.log10(rs.fitted_levels(p, np.full(len(p), v), k, config))
            errors[name, v] = np.median(np.abs(got - [true_db(a, v, b) for a, b in zip(p, k)]))
    assert errors["bent", 100] < 0.6 * errors["straight", 100] and errors["straight", 100] > 1.0
    assert errors["bent", 64] < errors["straight", 64] + 0.3


def test_the_command_refuses_a_tone_without_the_models_bank(capsys):
    with pytest.raises(SystemExit):
        fit_partials.main(["no-store", "--velocity-tone"])
    assert "--velocity-tone needs -c CONFIG" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fit_partials.main(["no-store", "--velocity-tone-share", "2"])
    assert "--velocity-tone-share must be between 0 and 1" in capsys.readouterr().err
