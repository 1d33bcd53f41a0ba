"""The sampled innovation's direct share after the attacks (`sampling.sustain_innovation`).

Synthesis only: while notes sound (held or releasing) and none is in its attack, only `mix` of the
innovation reaches the output directly; the bank (and the network) still get all of it, so the
noise is heard through the resonators at the notes' partials. 1 changes nothing; both engines
agree; the attacks and the silences are untouched.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from midi2wave import realism
from midi2wave import resonators as rs
from midi2wave.config import ConfigError, ModelSampling, SamplingOptions
from midi2wave.generate import generate
from midi2wave.midi import Notes
from conftest import bank_model, random_inputs

SR = 16000
BANK = rs.ResonatorConfig(partials=4, input="innovation", gain=0.2, gain_attack_s=0.02, gain_sustain=0.25,
                          gain_release_s=0.03, gain_floor=1e-4, attack_s=0.05, noise_lowpass=0.6)
NOTES = Notes(np.array([0.0, 0.02, 1.0]), np.array([0.45, 0.4, 1.2]), np.array([60, 67, 64], np.int16),
              np.array([110, 90, 100], np.int16))


def _generate(model, T, mix, engine="numba"):
    sched = rs.schedule(NOTES, 0, T, SR, BANK)
    if mix is not None:
        sched = sched.for_sampling(mix)
    cond, uniforms, year = random_inputs(model, T)
    return generate(model, T, conditioning=cond, year=year, uniforms=uniforms, resonators=[sched],
                    engine=engine)[0].double().numpy()


def test_the_setting_is_validated_and_travels_with_the_schedule():
    assert ModelSampling().sustain_innovation == 1.0
    with pytest.raises(ConfigError, match="sampling.sustain_innovation"):
        ModelSampling(sustain_innovation=1.5)
    with pytest.raises(ConfigError, match="sampling.sustain_innovation"):
        SamplingOptions(sustain_innovation=-0.1)
    assert SamplingOptions().for_model(ModelSampling(sustain_innovation=0.4)).sustain_innovation == 0.4
    sched = rs.schedule(NOTES, 0, SR, SR, BANK)
    assert sched.sustain_mix == 1.0 and sched.for_sampling(0.3).shifted(5).sustain_mix == 0.3
    with pytest.raises(ValueError, match="sustain mix"):
        rs.BankBatch([sched, sched.for_sampling(0.3)])


def test_a_share_of_one_changes_nothing():
    model = bank_model(BANK)
    T = 4096
    np.testing.assert_array_equal(_generate(model, T, None), _generate(model, T, 1.0))


def test_after_the_attacks_only_the_bank_sounds_and_the_attacks_are_untouched():
    model = bank_model(BANK)
    T = int(1.3 * SR) // 64 * 64
    full = _generate(model, T, 1.0)
    bank_only = _generate(model, T, 0.0)
    torch_engine = _generate(model, T, 0.0, "torch")
    assert (bank_only == torch_engine).mean() > 0.99  # both engines implement it
    # until the first sample where no note is in its attack, nothing differs
    first_free = math.ceil(0.02 * SR) + round(BANK.attack_s * SR)
    np.testing.assert_array_equal(bank_only[:first_free], full[:first_free])
    assert not np.array_equal(bank_only[first_free:first_free + 800], full[first_free:first_free + 800])
    # in silence (no oscillator left) all of it again: in the gap only the floor-bounded
    # innovation sounds, as with the full share
    tail = math.ceil(BANK.release_tail_s * SR)
    gap = slice(math.ceil(0.45 * SR) + tail, int(1.0 * SR))
    lsb = 1.0 / 32768
    for x in (full, bank_only):
        assert 0 < np.abs(x[gap]).max() <= BANK.gain_floor + lsb
    # the held notes after their attacks: what sounds lies at their partials
    held = slice(first_free, int(0.4 * SR))
    notes = Notes(NOTES.onset_s[:2] - first_free / SR, NOTES.offset_s[:2] - first_free / SR,
                  NOTES.pitch[:2], NOTES.velocity[:2])
    purity = {name: realism.tonal_purity(x[held], notes, SR) for name, x in (("full", full), ("bank", bank_only))}
    assert purity["bank"] > purity["full"] + 0.03, purity
    assert purity["bank"] > 0.93, purity
    # ... and the same in their releases (every note released, the oscillators still ringing)
    ringing = slice(math.ceil(0.45 * SR), math.ceil(0.45 * SR) + int(0.2 * SR))
    released = Notes(NOTES.onset_s[:2] - 0.45, NOTES.offset_s[:2] - 0.45, NOTES.pitch[:2], NOTES.velocity[:2])
    purity = {name: realism.tonal_purity(x[ringing], released, SR) for name, x in (("full", full), ("bank", bank_only))}
    assert purity["bank"] > purity["full"] + 0.015, purity


def test_the_share_is_decided_as_by_looking_at_every_sounding_note():
    """direct_share looks at the newest admitted oscillator first; it must agree with checking them all."""
    rng = np.random.default_rng(4)
    n = 40
    onsets = np.sort(rng.uniform(0, 2.0, n))
    offsets = onsets + rng.uniform(0.002, 0.4, n)
    # and a note so short that it stops while the one struck 10 ms before it is still in its attack
    onsets, offsets = np.append(onsets, [2.5, 2.51]), np.append(offsets, [2.8, 2.512])
    notes = Notes(onsets, offsets, rng.integers(40, 90, n + 2).astype(np.int16), np.full(n + 2, 80, np.int16))
    sched = rs.schedule(notes, 0, 3 * SR, SR, dataclasses.replace(BANK, release_tau_s=0.001, gain_release_s=0.001))
    for t in range(0, 3 * SR, 7):
        active = np.nonzero((sched.start <= t) & (sched.stop > t))[0]
        nxt = int(np.sum(sched.start <= t))
        expected = 1.0 if len(active) == 0 or np.any(t < sched.attack_end[active]) else 0.3
        got = rs.direct_share(t, 0.3, active.astype(np.int64), len(active), nxt, sched.attack_end, sched.stop)
        assert got == expected, t
