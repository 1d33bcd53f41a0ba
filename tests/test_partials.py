"""Where the bank's partials lie: stretch tuning and stiff strings (`resonators.partial_hz`), the
bank tracking a stiff string only when it knows the stiffness, and scripts/fit_partials.py
recovering both from audio."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from midi2wave.conditioning import resonators as rs
from midi2wave.config import ConfigError, DataConfig
from midi2wave.midi import Notes, decay_tau_s, pitch_to_hz

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import fit_partials  # noqa: E402

SR = 16000
TUNING = (1.0, 2.0, 0.5, 0.3)      # cents: c0 + c1 z + c2 z^2 + c3 z^3, z octaves from middle C
STIFFNESS = (-3.5, 0.5)            # log10 B at middle C, decades per octave


def _notes(onsets, durations, pitches) -> Notes:
    n = len(onsets)
    on = np.asarray(onsets, float)
    return Notes(on, on + np.asarray(durations, float), np.asarray(pitches, np.int16), np.full(n, 90, np.int16))


def _isolated_strings(seed: int, lowest: int, highest: int, step: int, spacing_s: float, duration_s: float,
                      partials: int, noise: float, decay=None):
    """Each pitch lowest, lowest + step, ... < highest struck twice in random order, one at a time
    (`spacing_s` apart, held `duration_s`), as synthetic stiff strings plus white noise: (notes, audio)."""
    rng = np.random.default_rng(seed)
    pitches = rng.permutation(np.repeat(np.arange(lowest, highest, step), 2))
    onsets = 0.1 + spacing_s * np.arange(len(pitches))
    notes = _notes(onsets, np.full(len(pitches), duration_s), pitches)
    n = int((onsets[-1] + duration_s + 0.3) * SR)
    return notes, _strings(notes, n, partials=partials, decay=decay) + noise * rng.standard_normal(n)


def _strings(notes: Notes, n: int, partials: int, tuning=TUNING, stiffness=STIFFNESS, seed: int = 0,
             decay=None) -> np.ndarray:
    """Decaying tones whose partials lie where a stretch-tuned stiff-stringed piano puts them; partial k
    decays with time constant 0.6 s, or decay(pitch, k) s."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = np.zeros(n)
    for on, off, p in zip(notes.onset_s, notes.offset_s, notes.pitch):
        sounding = (t >= on) & (t < off)
        for k in range(1, partials + 1):
            z = (int(p) - 60) / 12.0
            cents = sum(a * z ** i for i, a in enumerate(tuning))
            b = 10.0 ** (stiffness[0] + stiffness[1] * max(z, -1.25))
            f = float(pitch_to_hz(int(p))) * k * 2 ** (cents / 1200) * np.sqrt(1 + b * k * k)
            if f >= SR / 2 - 500:
                break
            tau = 0.6 if decay is None else decay(int(p), k)
            x += sounding * 0.05 / k * np.exp(-(t - on) / tau) * np.sin(2 * np.pi * f * (t - on)
                                                                         + rng.uniform(0, 2 * np.pi))
    return x


def test_partial_hz_is_equal_tempered_and_harmonic_by_default_and_follows_its_formula():
    pitch = np.array([21, 45, 60, 84, 108])[:, None]
    k = np.arange(1, 9)[None, :]
    np.testing.assert_allclose(rs.partial_hz(pitch, k), pitch_to_hz(pitch) * k)
    z = (pitch - 60) / 12.0
    cents = 1.0 + 2.0 * z + 0.5 * z ** 2 + 0.3 * z ** 3
    b = 10.0 ** (-3.5 + 0.5 * np.maximum(z, (45 - 60) / 12))
    expected = pitch_to_hz(pitch) * k * 2 ** (cents / 1200) * np.sqrt(1 + b * k ** 2)
    np.testing.assert_allclose(rs.partial_hz(pitch, k, TUNING, STIFFNESS), expected, rtol=1e-12)
    # the wound bass: the same stiffness below A2
    low = rs.partial_hz(np.array([21, 33, 45]), 8, (), STIFFNESS) / (pitch_to_hz(np.array([21, 33, 45])) * 8)
    np.testing.assert_allclose(low, low[0])


def test_the_schedule_puts_its_oscillators_at_partial_hz_and_keeps_a_gain_carrying_fundamental():
    notes = _notes([0.0, 0.1], [0.5, 0.5], [60, 108])
    bank = rs.ResonatorConfig(partials=3, max_hz=6000.0, tuning_cents=TUNING, inharmonicity=STIFFNESS)
    sched = rs.schedule(notes, 0, SR, SR, bank)
    hz = np.sort(sched.omega * SR / (2 * np.pi))
    np.testing.assert_allclose(hz, np.sort(np.concatenate([rs.partial_hz(60, np.arange(1, 4), TUNING, STIFFNESS),
                                                            rs.partial_hz(108, [1], TUNING, STIFFNESS)])))
    # stretched above max_hz, C8's fundamental still carries the note's gain when the gain is on
    tight = dataclasses.replace(bank, max_hz=4200.0)
    assert rs.partial_hz(108, 1, TUNING, STIFFNESS) > 4200.0
    with_gain = dataclasses.replace(tight, gain=0.01)
    sched = rs.schedule(notes, 0, SR, SR, with_gain)
    assert (sched.gain_attack > 0).sum() == 2  # both notes have their carrier
    without = rs.schedule(notes, 0, SR, SR, tight)
    assert len(without) == len(sched) - 1


def test_the_bank_tracks_a_stiff_string_only_when_it_knows_the_stiffness():
    notes = _notes([0.05, 0.6], [0.5, 0.7], [72, 84])
    n = int(1.4 * SR)
    x = _strings(notes, n, partials=8)
    energy = {}
    for name, tuning, stiffness in (("harmonic", (), ()), ("stiff", TUNING, STIFFNESS)):
        bank = rs.ResonatorConfig(partials=8, max_hz=7800.0, kappa=0.02, sustain_kappa=0.001, attack_s=0.05,
                                  decay_scale=1.0, decay_exponent=0.0, tuning_cents=tuning, inharmonicity=stiffness)
        e, _ = rs.analyze(x, rs.schedule(notes, 0, n, SR, bank))
        held = np.zeros(n, bool)  # after the attack, before the (abrupt) offset
        for on, off in zip(notes.onset_s, notes.offset_s):
            held[int((on + 0.1) * SR):int(off * SR)] = True
        energy[name] = float(np.sum(e[held].astype(np.float64) ** 2) / np.sum(x[held] ** 2))
    assert energy["stiff"] < 0.01, energy          # below -20 dB: the bank explains the string
    assert energy["harmonic"] > 10 * energy["stiff"], energy


def test_data_config_validates_the_partial_positions():
    rs.ResonatorConfig(partials=6, tuning_cents=TUNING, inharmonicity=STIFFNESS)
    with pytest.raises(ConfigError, match=r"data\.resonators\.inharmonicity"):
        rs.ResonatorConfig(partials=6, inharmonicity=(-3.5,))
    with pytest.raises(ConfigError, match=r"data\.resonators\.inharmonicity"):
        rs.ResonatorConfig(partials=6, inharmonicity=(3.5, 0.5))
    with pytest.raises(ConfigError, match=r"data\.resonators\.tuning_cents"):
        rs.ResonatorConfig(partials=6, tuning_cents=(0.0,) * 7)
    bank = rs.from_data_config(DataConfig(resonators=rs.ResonatorConfig(
        partials=6, tuning_cents=list(TUNING), inharmonicity=list(STIFFNESS))))
    assert bank.tuning_cents == TUNING and bank.inharmonicity == STIFFNESS


def test_fit_partials_recovers_the_tuning_and_stiffness_of_isolated_notes():
    notes, x = _isolated_strings(1, 36, 97, 3, spacing_s=0.8, duration_s=0.7, partials=12, noise=1e-4)
    obs = fit_partials.measure([(notes, x)])
    assert len(obs) > 100
    tuning, stiffness, mad = fit_partials.fit(obs)
    assert mad < 1.0
    for p in (40, 60, 84, 96):
        for k in (1, 4, 8):
            fitted = rs.partial_hz(p, k, tuning, stiffness)
            true = rs.partial_hz(p, k, TUNING, STIFFNESS)
            if true > 7000.0:  # above the measured partials
                continue
            assert abs(1200 * np.log2(fitted / true)) < 1.5, (p, k, tuning, stiffness)


def test_fit_partials_recovers_how_fast_partials_decay():
    def decay(p, k):
        return 0.7 * float(decay_tau_s(p)) / k ** 0.3

    notes, x = _isolated_strings(2, 40, 85, 4, spacing_s=1.0, duration_s=0.9, partials=10, noise=1e-5, decay=decay)
    obs = fit_partials.measure_decays([(notes, x)], TUNING, STIFFNESS)
    assert len(obs) > 100
    scale, exponent, log_err = fit_partials.fit_decays(obs)
    assert abs(scale - 0.7) < 0.05 and abs(exponent - 0.3) < 0.05, (scale, exponent)
    assert log_err < 0.05


def test_kappa_exponent_drives_upper_partials_less():
    notes = _notes([0.0], [0.5], [60])
    plain = rs.ResonatorConfig(partials=4, kappa=0.02, sustain_kappa=0.004)
    steep = dataclasses.replace(plain, kappa_exponent=1.5)
    a, b = rs.schedule(notes, 0, SR, SR, plain), rs.schedule(notes, 0, SR, SR, steep)
    k = np.rint(b.omega / b.omega.min())
    np.testing.assert_allclose(a.kappa, 0.02)
    np.testing.assert_allclose(b.kappa, 0.02 / k ** 1.5)
    np.testing.assert_allclose(b.kappa_sustain, 0.004 / k ** 1.5)
    # free-running from the same white innovation, the upper partials ring correspondingly weaker
    rng = np.random.default_rng(0)
    u = np.zeros(SR // 2)
    u[:320] = 0.1 * rng.standard_normal(320)
    spectra = [np.abs(np.fft.rfft(rs.synthesize(u, s)[800:].astype(np.float64))) for s in (a, b)]
    f = np.fft.rfftfreq(SR // 2 - 800, 1 / SR)
    def level(spec, hz):
        return spec[(f > hz - 5) & (f < hz + 5)].max()
    f0 = float(pitch_to_hz(60))
    ratio_plain = level(spectra[0], 4 * f0) / level(spectra[0], f0)
    ratio_steep = level(spectra[1], 4 * f0) / level(spectra[1], f0)
    assert ratio_steep < ratio_plain / 4 ** 1.5 * 1.5


def test_parabolic_shift_finds_a_peak_between_bins():
    """`fit_partials.parabolic_shift`, which every peak reader of the fits and `partial_positions.py`
    uses: a Hann-windowed tone 0.3 bins above a bin reads within 0.03 bins of it, on magnitudes and on
    powers alike; at the spectrum's ends, 0."""
    n = 4096
    t = np.arange(n)
    for offset in (0.3, -0.4, 0.0):
        x = np.sin(2 * np.pi * (100 + offset) * t / n) * np.hanning(n)
        magnitude = np.abs(np.fft.rfft(x))
        j = int(np.argmax(magnitude))
        assert abs(j + fit_partials.parabolic_shift(magnitude, j) - (100 + offset)) < 0.03
        assert abs(j + fit_partials.parabolic_shift(magnitude ** 2, j, floor=1e-30) - (100 + offset)) < 0.03
    assert fit_partials.parabolic_shift(magnitude, 0) == 0.0
    assert fit_partials.parabolic_shift(magnitude, len(magnitude) - 1) == 0.0
