"""The two generation engines (render/engines.py) and the numba kernel (render/kernel.py): both run
the resonator bank through one bank step (`resonators.bank_step`), the kernel's cache is dropped
when the bank's helpers change, and the kernel's activations keep their error bound.
(Engines against the full forward pass and each other without a bank: test_generate.py.)
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from midi2wave.conditioning import resonators as rs
from midi2wave.midi import Notes
from midi2wave.render import engines, kernel
from midi2wave.render.generate import generate
from helpers import bank_model, random_inputs

SR = 16000
# Every part of the bank step on: gain, noise shaping (pole and zero), partial levels, innovation input.
BANK = rs.ResonatorConfig(partials=4, input="innovation", gain=0.2, gain_attack_s=0.02, gain_sustain=0.25,
                          gain_release_s=0.03, gain_floor=1e-4, attack_s=0.02, pre_emphasis=0.5, noise_lowpass=0.6,
                          level_pitches=(40, 80),
                          levels_db=((-30.0, -36.0, -40.0, -44.0), (-32.0, -38.0, -42.0, -46.0)),
                          level_velocity_slopes=(0.5, 0.5, 0.5, 0.5))
NOTES = Notes(np.array([0.0, 0.01, 0.12]), np.array([0.08, 0.07, 0.2]), np.array([60, 67, 64], np.int16),
              np.array([110, 90, 100], np.int16))
T = 4096  # 0.26 s: attacks, sustains, releases (the ramp to the release share) and silence


def _schedules(batch: int, sustain: float, release: float, lock: float, attack_pole: float = 0.0,
               highpass: float = 0.0, limit: float = 0.0, noise_decay: float = 0.0) -> list:
    dc = rs.highpass_rate(rs.DIRECT_DC_HZ, SR) if attack_pole or highpass else 0.0
    sched = rs.schedule(NOTES, 0, T, SR, BANK).for_sampling(sustain, lock, release, attack_pole,
                                                            sustain_highpass=highpass, direct_dc_rate=dc,
                                                            sustain_limit=limit, sustain_noise_decay=noise_decay)
    return [sched.shifted(7 * b) for b in range(batch)]  # streams that differ


def _render(engine: str, schedules, prime: int = 0) -> torch.Tensor:
    model = bank_model(BANK)
    cond, uniforms, year = random_inputs(model, T, batch=len(schedules))
    kw = {}
    if prime:
        kw["prime"] = torch.from_numpy(np.round(np.sin(np.arange(prime) / 5.0) * 0.1 * 32768) / 32768).float(
            ).repeat(len(schedules), 1)
    return generate(model, T, conditioning=cond, year=year, uniforms=uniforms, resonators=schedules, engine=engine,
                    **kw)


def test_both_engines_run_the_one_bank_step(monkeypatch):
    """The kernel calls `resonators.bank_step` inside its loop; the torch engine calls it once per sample
    through `BankBatch.step`, and has no bank arithmetic of its own."""
    assert kernel.run_streams.py_func.__globals__["bank_step"] is rs.bank_step
    assert "bank_step" in kernel.run_streams.py_func.__code__.co_names
    assert "bank_step" in rs.BankBatch.step.__code__.co_names
    torch_source = inspect.getsource(engines.TorchEngine)
    for own in ("shape_noise", "direct_share", "quantize_sum", "np.floor", ".predict(", ".update("):
        assert own not in torch_source, own
    steps = []
    real_step = rs.BankBatch.step

    def counting_step(self, t, *args):
        steps.append(t)
        return real_step(self, t, *args)

    monkeypatch.setattr(rs.BankBatch, "step", counting_step)
    n = 320
    model = bank_model(BANK)
    cond, uniforms, year = random_inputs(model, n)
    generate(model, n, conditioning=cond, year=year, uniforms=uniforms, engine="torch",
             resonators=[rs.schedule(NOTES, 0, n, SR, BANK)])
    assert steps == list(range(n))


@pytest.mark.parametrize("sustain, release, lock, attack_pole, highpass, limit, noise_decay", [
    (1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0), (0.4, 0.1, 0.8, 0.0, 0.0, 0.0, 0.0), (0.4, 0.1, 0.8, 0.8, 0.0, 0.0, 0.0),
    (0.4, 0.1, 0.8, 0.8, 0.1, 0.0, 0.0), (1.0, 1.0, 0.0, 0.0, 0.1, 0.0, 0.0), (0.4, 0.1, 0.8, 0.8, 0.1, 1.5, 0.0),
    (0.4, 0.1, 0.8, 0.8, 0.1, 1.5, 2e-3)])
def test_the_engines_agree_through_the_bank(sustain, release, lock, attack_pole, highpass, limit, noise_decay):
    """Same uniforms, same audio: the engines differ only in the network's float rounding (a rare flip at a
    sampling decision boundary), not in the bank (shares, levels, noise shaping, the attacks' filter, the
    sustain limit (1.5: it acts), the sustain noise's decay (2e-3 per sample: 280 dB/s, the notes' noise
    gone within their holds), 16-bit grid)."""
    schedules = _schedules(2, sustain, release, lock, attack_pole, highpass, limit, noise_decay)
    a_numba = _render("numba", schedules)
    a_torch = _render("torch", schedules)
    assert a_numba.shape == (2, T) and a_numba.abs().max() <= 1.0
    assert a_numba.abs().max() > 1e-3  # the notes sound
    assert (a_numba == a_torch).float().mean().item() >= 0.99
    levels = a_numba.double() * 32768.0  # both on the 16-bit grid
    assert torch.equal(levels, levels.round())


@pytest.mark.parametrize("attack_pole, highpass", [(0.0, 0.0), (0.8, 0.1)])
def test_the_engines_agree_through_a_teacher_forced_prime(attack_pole, highpass):
    """A prime feeds the bank the given audio (no share, no level lock, no filter) in both engines alike."""
    schedules = _schedules(2, 0.4, 0.1, 0.8, attack_pole, highpass)
    a_numba = _render("numba", schedules, prime=512)
    a_torch = _render("torch", schedules, prime=512)
    assert (a_numba == a_torch).float().mean().item() >= 0.99


def test_a_kernel_compiled_with_an_older_resonators_module_is_dropped(tmp_path):
    from midi2wave.render.kernel import drop_stale_kernel_cache

    (tmp_path / "resonators.py").write_text("x = 1\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    compiled = cache / "kernel.run_streams-344.py311.nbi"
    other = cache / "kernel.fast_activations-277.py311.nbi"
    for p in (compiled, other):
        p.write_text("cached")
    assert drop_stale_kernel_cache(tmp_path, tmp_path / "resonators.py") and not compiled.exists() and other.exists()
    compiled.write_text("cached")  # compiled again with this resonators.py: kept
    assert not drop_stale_kernel_cache(tmp_path, tmp_path / "resonators.py") and compiled.exists()
    (tmp_path / "resonators.py").write_text("x = 2\n")  # the bank's helpers changed: dropped
    assert drop_stale_kernel_cache(tmp_path, tmp_path / "resonators.py") and not compiled.exists()


def test_fast_activations_error_bound():
    from midi2wave.render.kernel import (
        FAST_SIGMOID_MAX_ABS_ERROR,
        FAST_TANH_MAX_ABS_ERROR,
        max_abs_error_of_fast_activations,
    )

    f32 = np.finfo(np.float32)
    dense = np.linspace(-40.0, 40.0, 4_000_001, dtype=np.float32)
    tiny = np.concatenate([np.geomspace(1e-30, 1e-2, 2000), -np.geomspace(1e-30, 1e-2, 2000)]).astype(np.float32)
    extremes = np.array([0.0, -0.0, f32.tiny, -f32.tiny, 1e-45, -1e-45, 7.9, -7.9, 8.0, -8.0, 16.0, -16.0,
                         1e4, -1e4, 1e30, -1e30, f32.max, -f32.max], np.float32)  # finite: fast-math kernel
    err_tanh, err_sig = max_abs_error_of_fast_activations(np.concatenate([dense, tiny, extremes]))
    assert err_tanh <= FAST_TANH_MAX_ABS_ERROR, err_tanh
    assert err_sig <= FAST_SIGMOID_MAX_ABS_ERROR, err_sig
    assert FAST_TANH_MAX_ABS_ERROR <= 5e-7 and FAST_SIGMOID_MAX_ABS_ERROR <= 3e-7


def test_the_kernel_takes_a_few_named_structures():
    """`run_streams` reads its weights, block, stepping state and bank as named tuples, not 95 loose arguments."""
    params = inspect.signature(kernel.run_streams.py_func).parameters
    assert len(params) <= 12, list(params)
    assert set(kernel.KernelWeights._fields) >= {"w_dil", "w_res", "w_skip", "w_h1", "w_h2"}
    assert set(rs.BankArrays._fields) >= set(rs.Schedule.FIELDS)
