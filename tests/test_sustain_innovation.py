"""The sampled innovation's direct share after the attacks (`sampling.sustain_innovation`).

Synthesis only: while notes sound (held or releasing) and none is in its attack, only `mix` of the
innovation reaches the output directly; the bank (and the network) still get all of it, so the
noise is heard through the resonators at the notes' partials. 1 changes nothing; both engines
agree; the attacks and the silences are untouched. Once every note is released the share may
differ (`sampling.release_innovation`).
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest

from midi2wave.evaluation import realism
from midi2wave.conditioning import resonators as rs
from midi2wave.config import Config, ConfigError, ModelSampling, SamplingOptions, config_from_dict
from midi2wave.render.generate import generate
from midi2wave.midi import Notes
from helpers import bank_model, random_inputs

SR = 16000
BANK = rs.ResonatorConfig(partials=4, input="innovation", gain=0.2, gain_attack_s=0.02, gain_sustain=0.25,
                          gain_release_s=0.03, gain_floor=1e-4, attack_s=0.05, noise_lowpass=0.6)
NOTES = Notes(np.array([0.0, 0.02, 1.0]), np.array([0.45, 0.4, 1.2]), np.array([60, 67, 64], np.int16),
              np.array([110, 90, 100], np.int16))


def _generate(model, T, mix, engine="numba", release_innovation=None):
    sched = rs.schedule(NOTES, 0, T, SR, BANK)
    if mix is not None:
        sched = sched.for_sampling(mix, release_innovation=release_innovation)
    cond, uniforms, year = random_inputs(model, T)
    return generate(model, T, conditioning=cond, year=year, uniforms=uniforms, resonators=[sched],
                    engine=engine)[0].double().numpy()


def test_the_setting_is_validated_and_travels_with_the_schedule():
    assert ModelSampling().sustain_innovation == 1.0
    with pytest.raises(ConfigError, match="sampling.sustain_innovation"):
        ModelSampling(sustain_innovation=1.5)
    with pytest.raises(ConfigError, match="sampling.sustain_innovation"):
        SamplingOptions(sustain_innovation=-0.1)
    assert SamplingOptions().resolve(Config(sampling=ModelSampling(sustain_innovation=0.4))).sustain_innovation == 0.4
    sched = rs.schedule(NOTES, 0, SR, SR, BANK)
    assert sched.sustain_innovation == 1.0 and sched.for_sampling(0.3).shifted(5).sustain_innovation == 0.3
    with pytest.raises(ValueError, match="sustain innovation"):
        rs.BankBatch([sched, sched.for_sampling(0.3)])


def test_the_release_share_is_validated_and_defaults_to_the_sustain_share():
    assert ModelSampling().release_innovation is None
    assert SamplingOptions().resolve(Config(sampling=ModelSampling(sustain_innovation=0.4))).release_innovation == 0.4
    released_silent = ModelSampling(sustain_innovation=0.4, release_innovation=0.0)
    assert SamplingOptions().resolve(Config(sampling=released_silent)).release_innovation == 0.0
    with pytest.raises(ConfigError, match="sampling.release_innovation"):
        ModelSampling(release_innovation=1.5)
    with pytest.raises(ConfigError, match="sampling.release_innovation"):
        SamplingOptions(release_innovation=-0.1)
    model_own = ModelSampling(sustain_innovation=0.4, release_innovation=0.1)
    assert SamplingOptions().resolve(Config(sampling=model_own)).release_innovation == 0.1
    assert SamplingOptions(release_innovation=0.2).resolve(Config(sampling=model_own)).release_innovation == 0.2
    assert SamplingOptions(sustain_innovation=0.5).resolve(Config()).release_innovation == 0.5
    assert SamplingOptions().resolve().release_innovation == 1.0
    sched = rs.schedule(NOTES, 0, SR, SR, BANK)
    assert sched.release_innovation == 1.0 and sched.for_sampling(0.3).release_innovation == 0.3
    assert sched.for_sampling(0.3, release_innovation=0.1).shifted(5).release_innovation == 0.1
    with pytest.raises(ValueError, match="release innovation"):
        rs.BankBatch([sched.for_sampling(0.3), sched.for_sampling(0.3, release_innovation=0.1)])
    with pytest.raises(ValueError, match="release_innovation"):
        sched.for_sampling(0.3, release_innovation=1.5)
    with pytest.raises(ValueError, match="sustain_innovation"):
        sched.for_sampling(-0.1)
    # from a config file: null or a number, nothing else
    base = Config().to_dict()
    for value, expected in ((None, None), (0, 0.0), (0.25, 0.25)):
        d = copy.deepcopy(base)
        d["sampling"]["release_innovation"] = value
        got = config_from_dict(d).sampling.release_innovation
        assert got == expected and type(got) is type(expected)
    for bad in ("0.1", True, [0.1]):
        d = copy.deepcopy(base)
        d["sampling"]["release_innovation"] = bad
        with pytest.raises(ConfigError, match="sampling.release_innovation"):
            config_from_dict(d)


def test_the_release_share_applies_once_every_note_is_released():
    """Equal to the sustain share it changes nothing; else the output differs from the first sample
    where every sounding note is released (not before), the engines agree, and the silence after
    the last oscillator is the floor-bounded innovation again."""
    model = bank_model(BANK)
    T = int(1.3 * SR) // 64 * 64
    sustain = _generate(model, T, 0.7)
    np.testing.assert_array_equal(_generate(model, T, 0.7, release_innovation=0.7), sustain)
    quiet = _generate(model, T, 0.7, release_innovation=0.0)
    torch_engine = _generate(model, T, 0.7, "torch", release_innovation=0.0)
    assert (quiet == torch_engine).mean() > 0.99
    released = math.ceil(0.45 * SR)  # both notes struck at 0 and 20 ms are released (offsets 0.4 and 0.45 s)
    np.testing.assert_array_equal(quiet[:released], sustain[:released])
    ringing = slice(released, released + int(0.1 * SR))
    assert not np.array_equal(quiet[ringing], sustain[ringing])
    # the bank's ringing partials alone: what sounds lies at them
    notes = Notes(NOTES.onset_s[:2] - 0.45, NOTES.offset_s[:2] - 0.45, NOTES.pitch[:2], NOTES.velocity[:2])
    purity = {name: realism.tonal_purity(x[ringing], notes, SR) for name, x in (("sustain", sustain), ("quiet", quiet))}
    assert purity["quiet"] > purity["sustain"] + 0.01, purity
    gap = slice(released + math.ceil(BANK.release_tail_s * SR), int(1.0 * SR))
    assert 0 < np.abs(quiet[gap]).max() <= BANK.gain_floor + 1.0 / 32768


def test_a_share_of_one_is_one_at_every_sample():
    """Shares of 1 change nothing: with them the bank step skips `direct_share` (`bank_step`'s
    `sustain_innovation < 1.0` test) and takes all of the innovation, so `direct_share` itself must give
    exactly 1 at every sample then: in attacks, while notes are held, over the release ramp, in silence.
    The same walk with shares 0.3 (held) and 0.1 (released) sees each of those cases."""
    T = int(1.3 * SR)
    bank = rs.BankBatch([rs.schedule(NOTES, 0, T, SR, BANK).for_sampling(0.3, release_innovation=0.1)])
    lows = np.empty(T)
    for t in range(T):
        bank.predict(t)
        s = bank.state
        state = (s.idx[0], s.n_active[0], s.next[0], bank.attack_end, bank.stop, bank.held_until)
        assert rs.direct_share(t, 1.0, 1.0, *state) == 1.0, t
        lows[t] = rs.direct_share(t, bank.sustain_innovation, bank.release_innovation, *state)
        bank.update(t, np.zeros(1))
    ramp = (lows > 0.1) & (lows < 0.3)
    assert (lows == 1.0).any() and (lows == 0.3).any() and (lows == 0.1).any() and ramp.sum() >= 100, \
        np.unique(lows.round(3))


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
    """direct_share looks at the newest admitted oscillator first, and at the latest release so far;
    it must agree with checking every sounding one."""
    rng = np.random.default_rng(4)
    n = 40
    onsets = np.sort(rng.uniform(0, 2.0, n))
    offsets = onsets + rng.uniform(0.002, 0.4, n)
    # and a note so short that it stops (30 ms tail) while the one struck 10 ms before it is still in its attack
    onsets, offsets = np.append(onsets, [2.5, 2.51]), np.append(offsets, [2.8, 2.512])
    notes = Notes(onsets, offsets, rng.integers(40, 90, n + 2).astype(np.int16), np.full(n + 2, 80, np.int16))
    sched = rs.schedule(notes, 0, 3 * SR, SR, dataclasses.replace(BANK, release_tau_s=0.006, gain_release_s=0.006))
    held_until = np.maximum.accumulate(sched.release.astype(np.float64))
    seen = set()
    for t in range(0, 3 * SR, 7):
        active = np.nonzero((sched.start <= t) & (sched.stop > t))[0]
        nxt = int(np.sum(sched.start <= t))
        if len(active) == 0 or np.any(t < sched.attack_end[active]):
            expected = 1.0
        elif np.any(t < sched.release[active]):
            expected = 0.3
        else:  # every sounding note released: towards 0.1 over the ramp
            ramp = min(1.0, (t - sched.release[active].max()) / rs.RELEASE_RAMP_SAMPLES)
            expected = 0.3 + (0.1 - 0.3) * ramp
        got = rs.direct_share(t, 0.3, 0.1, active.astype(np.int64), len(active), nxt, sched.attack_end, sched.stop,
                              held_until)
        assert got == pytest.approx(expected, abs=1e-12), t
        seen.add(round(expected, 6) if expected in (1.0, 0.3, 0.1) else "ramp")
    assert seen == {1.0, 0.3, 0.1, "ramp"}
