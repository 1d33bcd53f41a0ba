"""Where the synthesis-only partials lie (`data.resonators.synthesis_inharmonicity_*`,
`resonators.bank_partial_hz`): partials above `partials` take log10 B from the table, the analysis's
partials stay on the line (the analysis, and so the network's target, the same to the bit), the live
bank builds the same oscillators, and scripts/fit_partials.py recovers a known stiffness and reads
levels where the partials are.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from midi2wave.conditioning import resonators as rs
from midi2wave.config import SYNTHESIS_ONLY_KEYS, ConfigError
from midi2wave.midi import Notes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import fit_partials  # noqa: E402

SR = 16000
TUNING = (-0.4, 1.6, 0.4, 0.3)
LINE = (-3.6, 0.48)
BANK = rs.ResonatorConfig(partials=4, synthesis_partials=12, input="innovation", gain=0.2, gain_attack_s=0.02,
                          gain_sustain=0.25, gain_release_s=0.03, gain_floor=1e-4, attack_s=0.05, noise_lowpass=0.6,
                          sustain_kappa=0.001, decay_exponent=0.0, tuning_cents=TUNING, inharmonicity=LINE,
                          level_pitches=(36.0, 72.0), levels_db=((-20.0,) * 12, (-30.0,) * 12),
                          level_velocity_slopes=(1.0,) * 12)
# the bass four times stiffer than the line (log10 B -3.6 at MIDI 36, where the line is flat at -4.2)
STIFF = dataclasses.replace(BANK, synthesis_inharmonicity_pitches=(36.0, 60.0, 72.0),
                            synthesis_inharmonicity_log10=(-3.6, -3.5, -3.1))
NOTES = Notes(np.array([0.05, 0.3]), np.array([0.9, 0.8]), np.array([40, 66], np.int16), np.array([90, 50], np.int16))


@pytest.mark.parametrize("change, problem", [
    (dict(synthesis_inharmonicity_log10=(-3.6, -3.5)), "one value per pitch"),
    (dict(synthesis_inharmonicity_pitches=(60.0, 36.0, 72.0)), "rise"),
    (dict(synthesis_inharmonicity_pitches=(10.0, 60.0, 72.0)), "MIDI pitches"),
    (dict(synthesis_inharmonicity_log10=(-3.6, -0.5, -3.1)), "must lie in"),
    (dict(synthesis_inharmonicity_log10=(-3.6, math.nan, -3.1)), "must lie in"),
    (dict(synthesis_inharmonicity_pitches=()), "MIDI pitches"),
])
def test_the_config_refuses_a_bad_table(change, problem):
    with pytest.raises(ConfigError, match=problem):
        dataclasses.replace(STIFF, **change)


def test_the_table_is_a_synthesis_setting():
    """`export --sampling-from` carries it over without retraining: the analysis never reads it."""
    for name in ("synthesis_inharmonicity_pitches", "synthesis_inharmonicity_log10"):
        assert f"data.resonators.{name}" in SYNTHESIS_ONLY_KEYS


def test_synthesis_only_partials_take_the_tables_stiffness_and_the_rest_stay_on_the_line():
    pitch = np.array([30.0, 36.0, 48.0, 66.0, 80.0])[:, None]
    k = np.arange(1, 13, dtype=np.float64)[None, :]
    line = rs.partial_hz(pitch, k, TUNING, LINE)
    np.testing.assert_array_equal(rs.bank_partial_hz(pitch, k, BANK), line)  # no table: the line, every partial
    got = rs.bank_partial_hz(pitch, k, STIFF)
    np.testing.assert_array_equal(got[:, :4], line[:, :4])  # the analysis's partials, to the bit
    # above them, k f0 2^(c/1200) sqrt(1 + B k^2), log10 B linear between the table's pitches, flat beyond
    log10_b = np.array([-3.6, -3.6, -3.55, -3.3, -3.1])[:, None]
    tuned = rs.partial_hz(pitch, k, TUNING)
    np.testing.assert_allclose(got[:, 4:], (tuned * np.sqrt(1.0 + 10.0 ** log10_b * k * k))[:, 4:], rtol=1e-12)
    cents = 1200.0 * np.log2(got[1, 11] / line[1, 11])
    assert cents > 10.0  # the 12th partial of MIDI 36: the stiffer string lifts it clear of the line


def test_the_schedule_puts_synthesis_only_oscillators_there_and_the_analysis_is_unchanged():
    plain = rs.schedule(NOTES, 0, SR, SR, BANK)
    stiff = rs.schedule(NOTES, 0, SR, SR, STIFF)
    extra = stiff.synthesis_only > 0
    assert extra.any() and (~extra).any()
    np.testing.assert_array_equal(stiff.omega[~extra], plain.omega[~extra])
    # each note's oscillators in a row, partial 1, 2, ... (those below max_hz)
    k = np.concatenate([np.arange(1, n + 1) for n in np.unique(stiff.start, return_counts=True)[1]])
    np.testing.assert_array_equal(stiff.omega, 2.0 * np.pi * rs.bank_partial_hz(stiff.pitch, k, STIFF) / SR)
    assert np.all(stiff.omega[extra] > plain.omega[extra])  # stiffer than the line in the bass and middle
    audio = 0.1 * np.random.default_rng(1).standard_normal(SR)
    for a, b in zip(rs.analyze(audio, plain), rs.analyze(audio, stiff)):
        np.testing.assert_array_equal(a, b)


def test_the_live_bank_builds_the_offline_oscillators():
    want = rs.schedule(NOTES, 0, SR, SR, STIFF)
    bank = rs.LiveBank(STIFF, SR, partial_levels=1.0)
    rows = [bank.add_note(int(p), int(v), int(np.ceil(o * SR))) for o, p, v in zip(NOTES.onset_s, NOTES.pitch,
                                                                                     NOTES.velocity)]
    for r, off in zip(rows, NOTES.offset_s):
        bank.release_note(r, int(np.ceil(off * SR)))
    np.testing.assert_array_equal(bank.omega[:bank.size], want.omega)


# ------------------------------------------------------------------ the fit (scripts/fit_partials.py)

def _stiff_strings(pitches, log10_b, partials: int = 40, seconds: float = 1.0, seed: int = 0):
    """(notes, audio): each pitch struck alone, `seconds` apart, its partials at k f0 2^(c/1200)
    sqrt(1 + B k^2) with the bank's tuning and log10 B = log10_b(pitch), 1/k in amplitude, a little noise."""
    rng = np.random.default_rng(seed)
    onsets = 0.1 + seconds * np.arange(len(pitches))
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros(int((onsets[-1] + seconds + 0.2) * SR))
    for on, p in zip(onsets, pitches):
        k = np.arange(1, partials + 1, dtype=np.float64)
        hz = rs.partial_hz(float(p), k, TUNING, log10_b=log10_b(p))
        keep = hz < SR / 2 - 500
        tone = sum(np.exp(-t / 0.6) / kk * np.sin(2 * np.pi * f * t + kk) for kk, f in zip(k[keep], hz[keep]))
        a = int(on * SR)
        x[a:a + len(t)] += 0.05 * tone
    x += 1e-5 * rng.standard_normal(len(x))
    notes = Notes(onsets, onsets + 0.8, np.asarray(pitches, np.int16), np.full(len(pitches), 90, np.int16))
    return notes, x


def _bank(synthesis_partials: int) -> rs.ResonatorConfig:
    n = synthesis_partials
    return dataclasses.replace(BANK, synthesis_partials=n, levels_db=((-20.0,) * n, (-30.0,) * n),
                               level_velocity_slopes=(1.0,) * n)


def true_log10_b(pitch):
    """The middle 20 % stiffer than the line, the bass rising below A2 where the line is flat (as the
    training piano's: 1.4 times the line at MIDI 36, 3.5 times at MIDI 24)."""
    return -3.52 + 0.48 * (pitch - 60.0) / 12.0 if pitch >= 45 else -4.1 - 0.25 * (pitch - 45.0) / 12.0


def test_fit_partials_recovers_where_the_synthesis_only_partials_lie():
    pitches = [24, 30, 36, 45, 48, 54, 60, 24, 36, 48]
    notes, x = _stiff_strings(pitches, true_log10_b)
    bank = _bank(40)
    grid, table, used, mad = fit_partials.fit_synthesis_inharmonicity(fit_partials.note_spectra([(notes, x)]), bank,
                                                                      40)
    assert used > 200 and mad < 1.0
    for p in sorted(set(pitches)):
        assert abs(table[list(grid).index(float(p))] - true_log10_b(p)) < 0.03, p
    # a grid pitch no note is near keeps the line (the treble)
    assert table[list(grid).index(96.0)] == pytest.approx(float(rs.inharmonicity_log10(96.0, LINE)), abs=1e-4)
    # where the bass's line is off by 0.4-0.8 decades, partial 40 lies within 2 cents of the string's
    fitted = dataclasses.replace(bank, synthesis_inharmonicity_pitches=tuple(grid),
                                 synthesis_inharmonicity_log10=tuple(table))
    for p in (24, 36):
        truth = rs.partial_hz(float(p), 40.0, TUNING, log10_b=true_log10_b(p))
        assert abs(1200 * math.log2(float(rs.bank_partial_hz(float(p), 40.0, fitted)) / truth)) < 2.0
        assert abs(1200 * math.log2(float(rs.bank_partial_hz(float(p), 40.0, bank)) / truth)) > 20.0


def test_the_levels_are_read_where_the_bank_puts_the_partials():
    """A level searched 15 cents around the line misses a partial 30 cents above it (its skirt, far
    lower); read where the table puts it, it is the partial's own."""
    notes, x = _stiff_strings([36, 36], true_log10_b, partials=30, seconds=1.0)
    bank = _bank(30)
    stiff = dataclasses.replace(bank, synthesis_inharmonicity_pitches=(36.0,),
                                synthesis_inharmonicity_log10=(true_log10_b(36),))
    common = dict(tuning_cents=TUNING, inharmonicity=LINE, decay_scale=1e6, decay_exponent=0.0, partials=30,
                  search_cents=15.0)
    on_line = fit_partials.measure_levels([(notes, x)], **common)
    there = fit_partials.measure_levels([(notes, x)], **common,
                                        positions=lambda p, k: rs.bank_partial_hz(p, k, stiff))
    row = {int(k): a for k, a in zip(there[:, 2], there[:, 3])}
    line_row = {int(k): a for k, a in zip(on_line[:, 2], on_line[:, 3])}
    off = 1200 * math.log2(float(rs.bank_partial_hz(36.0, 28.0, stiff) / rs.partial_hz(36.0, 28.0, TUNING, LINE)))
    assert off > 30.0
    # partial 28: the string's amplitude (0.05 / 28, decayed over the window's centre) on the table's position
    centre = 0.05 + 2048 / 2 / SR
    assert 20 * math.log10(row[28] / (0.05 / 28 * math.exp(-centre / 0.6))) == pytest.approx(0.0, abs=1.5)
    assert 20 * math.log10(line_row[28] / row[28]) < -10.0
    assert row[3] == line_row[3]  # the analysis's partials: the same position, the same level


def test_fit_partials_refuses_the_table_without_a_bank_that_has_synthesis_only_partials(tmp_path, capsys):
    with pytest.raises(SystemExit):
        fit_partials.main([str(tmp_path), "--synthesis-inharmonicity"])
    assert "needs -c CONFIG" in capsys.readouterr().err
    config = tmp_path / "config.json"
    config.write_text('{"data": {"resonators": {"partials": 16}}}')
    with pytest.raises(SystemExit):
        fit_partials.main([str(tmp_path), "-c", str(config), "--synthesis-inharmonicity"])
    assert "has no synthesis-only partials" in capsys.readouterr().err


def test_fit_partials_main_prints_the_table_and_the_levels_read_where_it_puts_the_partials(tmp_path, monkeypatch,
                                                                                           capsys):
    """The whole command: `--synthesis-inharmonicity` prints the table, and the level tables (the prompt's
    too) are read where it puts the partials: a 28th partial 37 cents above the line reads higher
    there than around the line."""
    import json

    from helpers import four_partial_config

    config_path, _ = four_partial_config(tmp_path)
    raw = json.loads(config_path.read_text())
    raw["data"]["resonators"]["synthesis_partials"] = 30
    config_path.write_text(json.dumps(raw))
    monkeypatch.setattr(sys.modules[__name__], "TUNING", tuple(raw["data"]["resonators"]["tuning_cents"]))
    notes, x = _stiff_strings([36, 48] * 8, true_log10_b, partials=30, seconds=1.0)  # on the config's tuning
    monkeypatch.setattr(fit_partials, "training_pieces", lambda *a, **k: [(None, notes, x)])

    def block(*extra):
        assert fit_partials.main(["STORE", "-c", str(config_path), "--prompt-delay", "0", *extra]) == 0
        return json.loads(capsys.readouterr().out)["data"]["resonators"]

    line, table = block(), block("--synthesis-inharmonicity")
    assert "synthesis_inharmonicity_log10" not in line
    grid = table["synthesis_inharmonicity_pitches"]
    for p in (36, 48):
        assert abs(table["synthesis_inharmonicity_log10"][grid.index(float(p))] - true_log10_b(p)) < 0.03
    row = table["level_pitches"].index(36.0)
    for name in ("levels_db", "prompt_levels_db"):
        assert table[name][row][27] > line[name][row][27] + 3.0, name  # partial 28 (the fit smooths it)
        assert table[name][row][1] == pytest.approx(line[name][row][1], abs=0.05), name  # partial 2: the same place
