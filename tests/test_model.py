"""The model: causality, receptive field, conditioning paths, and the output distributions' numerics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from midi2wave import constants as C
from midi2wave.config import DataConfig, ModelConfig
from midi2wave.model import Midi2Wave
from midi2wave.model.distributions import (
    mol_log_prob,
    mulaw_decode,
    mulaw_encode,
    mulaw_log_prob,
    quantize_pcm,
    sample_mol,
    sample_mulaw,
)
from helpers import tiny_data_config, tiny_model_config

TINY = tiny_model_config()
DATA = tiny_data_config()


def _random_pcm(shape, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return quantize_pcm(torch.rand(shape, generator=g) * 1.6 - 0.8)


def _inputs(model: Midi2Wave, batch: int, frames: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    T = frames * model.samples_per_frame
    audio = _random_pcm((batch, T), seed)
    cond = torch.rand(batch, DATA.conditioning_channels, frames + 2 * model.context_margin_frames, generator=g)
    year = torch.randint(0, C.N_YEAR_CLASSES, (batch,), generator=g)
    return audio, cond, year


@pytest.mark.parametrize("overrides", [
    {},
    {"input_kind": "scalar", "output_kind": "mulaw"},
    {"upsample": "transposed", "context_causal": True},
    {"kernel_size": 3},
])
def test_output_at_t_ignores_audio_at_and_after_t(overrides):
    torch.manual_seed(0)
    model = Midi2Wave(ModelConfig(**{**TINY.__dict__, **overrides}), DATA).eval()
    audio, cond, year = _inputs(model, 1, 4)
    t = 150
    with torch.no_grad():
        ref = model(audio, cond, year)
        changed = audio.clone()
        changed[:, t:] = _random_pcm(changed[:, t:].shape, seed=7)
        out = model(changed, cond, year)
    torch.testing.assert_close(out[..., :t], ref[..., :t], rtol=0, atol=0)
    assert not torch.allclose(out[..., t + 1], ref[..., t + 1]), "sample t+1 must depend on sample t"


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_receptive_field_matches_formula(kernel_size):
    torch.manual_seed(0)
    cfg = ModelConfig(**{**TINY.__dict__, "kernel_size": kernel_size, "input_kind": "scalar"})
    model = Midi2Wave(cfg, DATA).double().eval()
    expected = (kernel_size - 1) * sum(cfg.dilations) + 2
    assert cfg.receptive_field_samples == expected
    frames = 8
    T = frames * model.samples_per_frame
    assert T > expected + 10
    cond = torch.zeros(1, DATA.conditioning_channels, frames + 2 * model.context_margin_frames, dtype=torch.float64)
    year = torch.zeros(1, dtype=torch.long)
    audio = torch.zeros(1, T, dtype=torch.float64, requires_grad=True)
    out = model(audio, cond, year)
    t = T - 1
    out[0, :, t].sum().backward()
    depends = torch.nonzero(audio.grad[0]).flatten()
    assert depends.max().item() == t - 1
    assert depends.min().item() == t - expected
    assert len(depends) == expected


def test_conditioning_and_year_reach_the_output():
    torch.manual_seed(0)
    model = Midi2Wave(TINY, DATA).eval()
    audio, cond, year = _inputs(model, 2, 4)
    with torch.no_grad():
        nn_year = model.year_embed.weight
        nn_year.normal_()
        ref = model(audio, cond, year)
        other_year = model(audio, cond, (year + 1) % C.N_YEAR_CLASSES)
        cond2 = cond.clone()
        m = model.context_margin_frames
        cond2[:, :, m + 2] += 1.0  # frame 2 of the segment: samples 128..191
        other_cond = model(audio, cond2, year)
    assert not torch.allclose(ref, other_year)
    assert not torch.allclose(ref, other_cond)


def test_non_causal_context_looks_ahead_within_its_margin():
    torch.manual_seed(0)
    model = Midi2Wave(TINY, DATA).eval()
    audio, cond, year = _inputs(model, 1, 4)
    m = model.context_margin_frames
    assert m > 0
    with torch.no_grad():
        ref = model(audio, cond, year)
        ahead = cond.clone()
        ahead[:, :, m + 3] += 1.0  # a frame later than the first one
        out = model(audio, ahead, year)
        beyond = cond.clone()
        beyond[:, :, -1] += 1.0  # the far end of the right margin: within reach of the last frame only
        out_beyond = model(audio, beyond, year)
    assert not torch.allclose(out[..., :64], ref[..., :64]), "frame 0 should see frame 3 (non-causal)"
    torch.testing.assert_close(out_beyond[..., :64], ref[..., :64], rtol=0, atol=0)


def test_shapes_errors_and_aux_head():
    cfg = ModelConfig(**{**TINY.__dict__, "aux_mel_bands": 16})
    model = Midi2Wave(cfg, DATA)
    audio, cond, year = _inputs(model, 2, 3)
    params, mel = model(audio, cond, year, return_aux=True)
    assert params.shape == (2, cfg.output_channels, audio.shape[1])
    assert mel.shape == (2, 16, 3)
    with pytest.raises(ValueError, match="conditioning covers"):
        model(audio, cond[..., :-1], year)


def test_excitation_channel_is_used():
    data = DataConfig(conditioning=("onset_velocity",), excitation_partials=4)
    torch.manual_seed(0)
    model = Midi2Wave(TINY, data).eval()
    T = 4 * 64
    audio = _random_pcm((1, T))
    cond = torch.zeros(1, 88, 4 + 2 * model.context_margin_frames)
    year = torch.zeros(1, dtype=torch.long)
    exc = torch.sin(torch.arange(T) / 5.0).unsqueeze(0)
    with torch.no_grad():
        a = model(audio, cond, year, excitation=exc)
        b = model(audio, cond, year, excitation=torch.zeros_like(exc))
    assert not torch.allclose(a, b)


# ------------------------------------------------------------------------------- distributions


def _logistic_cdf(x, mu, s):
    z = (x - mu) / s
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _direct_mol_prob(level: int, logits, means, scales) -> float:
    """Mass of PCM level k directly from the logistic CDF, in float64 (edge bins open-ended)."""
    x = level / C.PCM_SCALE
    h = 1.0 / C.PCM_LEVELS
    w = np.exp(logits - np.max(logits))
    w /= w.sum()
    total = 0.0
    for wk, mu, s in zip(w, means, scales):
        hi = 1.0 if level == C.PCM_SCALE - 1 else _logistic_cdf(x + h, mu, s)
        lo = 0.0 if level == -C.PCM_SCALE else _logistic_cdf(x - h, mu, s)
        total += wk * (hi - lo)
    return total


@pytest.mark.parametrize("level", [-32768, -32767, -20000, -1, 0, 1, 123, 20000, 32766, 32767])
@pytest.mark.parametrize("log_scale", [-12.0, -8.0, -3.0, 0.0])
def test_mol_log_prob_matches_direct_computation(level, log_scale):
    logits = np.array([0.3, -1.0, 0.8])
    means = np.array([level / C.PCM_SCALE + 2e-4, -0.5, 0.9])
    scales = np.exp(np.array([log_scale, log_scale + 1.0, -2.0]))
    params = torch.tensor(np.concatenate([logits, means, np.log(scales)]), dtype=torch.float32).view(1, 9, 1)
    got = mol_log_prob(params, torch.tensor([[level / C.PCM_SCALE]], dtype=torch.float32)).item()
    want = math.log(_direct_mol_prob(level, logits, means, scales))
    assert got == pytest.approx(want, abs=2e-3, rel=1e-4)


def test_mol_masses_sum_to_one_over_all_levels():
    params = torch.tensor([0.1, 0.5, -0.2, 0.999, -0.3, 0.0, -6.0, -4.0, -1.0]).view(1, 9, 1)
    levels = torch.arange(-32768, 32768, dtype=torch.float32) / C.PCM_SCALE
    lp = mol_log_prob(params.expand(1, 9, levels.numel()).contiguous(), levels.view(1, -1))
    assert torch.isfinite(lp).all()
    assert lp.double().exp().sum().item() == pytest.approx(1.0, abs=2e-3)


def test_mol_log_prob_is_stable_at_extremes():
    params = torch.tensor([0.0, 5.0, 10.0, -16.0]).view(1, 4, 1).repeat(1, 3, 1)[:, :3]  # K=1
    params = torch.tensor([[[0.0], [0.9], [-16.0]]])
    for x in (-1.0, 0.0, 0.9, 0.999969482421875):
        lp = mol_log_prob(params, torch.tensor([[x]]))
        assert torch.isfinite(lp).all()
    # a collapsed component on its level has probability ~1
    assert mol_log_prob(params, torch.tensor([[round(0.9 * 32768) / 32768]])).item() > -1e-3
    # gradients are finite everywhere, including far tails
    p = params.clone().requires_grad_(True)
    mol_log_prob(p, torch.tensor([[-1.0]])).sum().backward()
    assert torch.isfinite(p.grad).all()


def test_mol_sampling_moments_match_the_distribution():
    n = 200_000
    logits = torch.tensor([0.0, math.log(3.0)])  # weights 1/4, 3/4
    means = torch.tensor([-0.3, 0.2])
    scales = torch.tensor([0.02, 0.05])
    params = torch.cat([logits, means, scales.log()]).expand(n, 6)
    g = torch.Generator().manual_seed(0)
    x = sample_mol(params, torch.rand(n, generator=g), torch.rand(n, generator=g)).double()
    w = torch.tensor([0.25, 0.75], dtype=torch.float64)
    mean = (w * means.double()).sum()
    var_components = (math.pi**2 / 3) * scales.double() ** 2
    var = (w * (var_components + means.double() ** 2)).sum() - mean**2
    assert x.mean().item() == pytest.approx(mean.item(), abs=4 * math.sqrt(var / n))
    assert x.var().item() == pytest.approx(var.item(), rel=0.02)
    p_negative = sum(wk * _logistic_cdf(0.0, mu, s) for wk, mu, s in zip((0.25, 0.75), (-0.3, 0.2), (0.02, 0.05)))
    assert (x < 0).double().mean().item() == pytest.approx(p_negative, abs=0.005)
    assert torch.equal(x, torch.round(x * 32768) / 32768), "samples lie on the PCM grid"
    # temperature scales the spread of each component
    cold = sample_mol(params, torch.rand(n, generator=g), torch.rand(n, generator=g), temperature=0.5).double()
    assert cold[cold > -0.1].std().item() == pytest.approx(0.5 * x[x > -0.1].std().item(), rel=0.03)


def test_mulaw_round_trip_and_sampling():
    k = torch.arange(256)
    assert torch.equal(mulaw_encode(mulaw_decode(k)), k)
    x = torch.linspace(-1, 1, 10001)
    err = (mulaw_decode(mulaw_encode(x)) - x).abs()
    assert err.max().item() < 0.035 and err[4900:5101].max().item() < 1e-3  # fine near zero, coarse at the ends
    logits = torch.full((50_000, 256), -30.0)
    logits[:, 10] = 0.0
    logits[:, 200] = math.log(4.0)
    g = torch.Generator().manual_seed(1)
    s = sample_mulaw(logits, torch.rand(50_000, generator=g))
    frac = (mulaw_encode(s) == 200).double().mean().item()
    assert frac == pytest.approx(0.8, abs=0.01)
    lp = mulaw_log_prob(logits[:1].T.unsqueeze(0).transpose(1, 2).transpose(1, 2).reshape(1, 256, 1),
                        mulaw_decode(torch.tensor([[200]])))
    assert lp.item() == pytest.approx(math.log(0.8), abs=1e-4)


def test_min_p_cuts_the_tail_and_keeps_the_rest_in_proportion():
    """Mu-law: classes under min_p of the most likely one's are never drawn, the others keep their
    ratios. MoL: a light component is never chosen, and a value never lands where the logistic's
    density is under min_p of its peak. min_p 0 is the inverse CDF of the softmax (broken once:
    the cut compared with the row's sum instead of its largest, the class of 0.04 was cut too)."""
    n = 100_000
    g = torch.Generator().manual_seed(2)
    u = torch.rand(n, generator=g)
    logits = torch.full((n, 256), -30.0)
    for k, p in ((100, 0.02), (110, 0.04), (128, 0.34), (130, 0.6)):
        logits[:, k] = math.log(p)
    plain = mulaw_encode(sample_mulaw(logits, u))
    assert (plain == 100).double().mean().item() == pytest.approx(0.02, abs=0.003)  # the tail is drawn
    cut = mulaw_encode(sample_mulaw(logits, u, min_p=0.05))  # 0.02 < 0.05 * 0.6 <= 0.04
    assert not (cut == 100).any()
    for k, p in ((110, 0.04), (130, 0.6)):
        assert (cut == k).double().mean().item() == pytest.approx(p / 0.98, abs=0.005)
    plain = mulaw_decode((torch.softmax(logits, -1).cumsum(-1) <= u[:, None]).sum(-1).clamp(max=255), 256)
    assert torch.equal(sample_mulaw(logits, u, min_p=0.0), plain)  # 0: the inverse CDF of the softmax itself
    params = torch.cat([torch.tensor([math.log(0.01), 0.0]), torch.tensor([-0.5, 0.1]),
                        torch.tensor([0.01, 0.01]).log()]).expand(n, 6)
    u2 = torch.rand(n, generator=g)
    x = sample_mol(params, u, u2, min_p=0.1).double()
    assert (x > -0.2).all()  # the component of weight 0.01 is cut
    # a logistic's density is 4 u (1 - u) of its peak at quantile u: under 0.1 beyond z = ln(u0 / (1 - u0))
    u0 = (1 - math.sqrt(1 - 0.1)) / 2
    bound = 0.01 * math.log((1 - u0) / u0) + 1.0 / 32768
    assert (x - 0.1).abs().max().item() <= bound
    assert (x - 0.1).abs().max().item() > 0.9 * bound  # it reaches the cut


def test_loss_in_bits_per_sample_of_uniform_model():
    """A model with flat logits over 256 mu-law classes costs exactly 8 bits per sample."""
    cfg = ModelConfig(**{**TINY.__dict__, "output_kind": "mulaw"})
    model = Midi2Wave(cfg, DATA)
    audio = _random_pcm((2, 64))
    params = torch.zeros(2, 256, 64)
    assert model.bits_per_sample(params, audio).item() == pytest.approx(8.0, abs=1e-5)


def test_the_head_runs_in_float32_under_autocast():
    """bfloat16 mixture parameters are coarser than the 16-bit grid they place (the GPU check saw the
    paper preset's loss rise under bf16 AMP until the head ran in float32)."""
    torch.manual_seed(0)
    model = Midi2Wave(TINY, DATA).eval()
    audio, cond, year = _inputs(model, 2, 4)
    with torch.no_grad():
        ref = model(audio, cond, year)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            params = model(audio, cond, year)
    assert params.dtype == torch.float32
    assert torch.allclose(params, ref, atol=0.5)  # the body in bf16 still moves them a little
