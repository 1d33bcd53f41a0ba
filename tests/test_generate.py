"""Generation engines: cached torch and the fused numba kernel against the full forward pass and each other
(the bank step, the kernel cache guard and the fast activations: test_engines.py).

The tiny models have receptive fields of a few dozen samples; every check runs for far more samples
than that, so every ring buffer wraps many times. All numba checks at fp32 share one compiled
kernel signature (one compile on a cold cache, ~10 s; loaded from numba's disk cache afterwards).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from midi2wave import constants as C
from midi2wave.config import DataConfig, ModelConfig
from midi2wave.render.generate import (
    GenerationCache,
    generate,
    naive_generate,
    resolve_engine,
    teacher_forced_params,
)
from midi2wave.model import Midi2Wave
from midi2wave.model.distributions import quantize_pcm
from helpers import tiny_data_config, tiny_model_config

TINY = tiny_model_config()
DATA = tiny_data_config()
ATOL = 1e-4  # engines vs the full forward pass, on params of magnitude ~1

CASES = {
    "mulaw-in/mol-out, frame cond, year": ({}, {}),
    "scalar-in/mulaw-out": ({"input_kind": "scalar", "output_kind": "mulaw"}, {}),
    "audio-rate cond (transposed), kernel 3": ({"upsample": "transposed", "kernel_size": 3}, {}),
    "excitation, no bias": ({"bias": False}, {"excitation_partials": 3}),
    "year only (no roll), scalar-in": ({"input_kind": "scalar"}, {"conditioning": (), "excitation_partials": 2}),
}


def _model(model_over=None, data_over=None, seed=0) -> Midi2Wave:
    torch.manual_seed(seed)
    data = DataConfig(**{**DATA.__dict__, **(data_over or {})})
    model = Midi2Wave(ModelConfig(**{**TINY.__dict__, **(model_over or {})}), data).eval()
    with torch.no_grad():  # non-zero year embeddings, so the year path is exercised
        if model.year_embed is not None:
            model.year_embed.weight.normal_(0.0, 0.3)
    return model


def _inputs(model: Midi2Wave, batch: int, frames: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    T = frames * model.samples_per_frame
    audio = quantize_pcm(torch.rand(batch, T, generator=g) * 1.6 - 0.8)
    out = {"audio": audio, "year": torch.randint(0, C.N_YEAR_CLASSES, (batch,), generator=g)}
    if model.data_config.conditioning_channels:
        out["conditioning"] = torch.rand(batch, model.data_config.conditioning_channels,
                                         frames + 2 * model.context_margin_frames, generator=g)
    if model.excitation_weight is not None:
        out["excitation"] = torch.sin(torch.arange(T) / 7.0).repeat(batch, 1) * torch.rand(batch, 1, generator=g)
    out["uniforms"] = torch.rand(batch, T, 2, generator=g)
    return out


def _cond_kwargs(inputs: dict) -> dict:
    return {k: inputs[k] for k in ("conditioning", "year", "excitation") if k in inputs}


def _forward(model: Midi2Wave, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(inputs["audio"], inputs.get("conditioning"), inputs["year"], inputs.get("excitation"))


# --------------------------------------------------------------- cached steps == the full forward


@pytest.mark.parametrize("case", list(CASES))
def test_cached_params_equal_the_full_forward(case):
    model = _model(*CASES[case])
    assert model.model_config.receptive_field_samples < 100
    inputs = _inputs(model, batch=2, frames=4)  # 256 samples
    ref = _forward(model, inputs)
    for engine in ("torch", "numba"):
        # small blocks that do not align with frames: conditioning slicing across block boundaries
        got = teacher_forced_params(model, inputs["audio"], engine=engine, block_samples=100, **_cond_kwargs(inputs))
        assert got.shape == ref.shape
        err = (got - ref).abs().max().item()
        assert err <= ATOL, f"{engine}: max abs diff {err}"


def test_layer_cond_route_equals_conditioning_route():
    model = _model()
    inputs = _inputs(model, batch=2, frames=3)
    with torch.no_grad():
        layer_cond, step = model.layer_conditioning(inputs["conditioning"], inputs["year"])
    ref = _forward(model, inputs)
    got = teacher_forced_params(model, inputs["audio"], layer_cond, step, engine="numba")
    assert (got - ref).abs().max().item() <= ATOL


# --------------------------------------------------------------------- same randoms, same samples


@pytest.mark.parametrize("case", ["mulaw-in/mol-out, frame cond, year", "scalar-in/mulaw-out",
                                  "audio-rate cond (transposed), kernel 3", "excitation, no bias"])
def test_engines_make_the_same_samples_from_the_same_uniforms(case):
    model = _model(*CASES[case])
    inputs = _inputs(model, batch=2, frames=16)  # 1024 samples
    T = inputs["audio"].shape[1]
    kw = dict(uniforms=inputs["uniforms"], **_cond_kwargs(inputs))
    a_numba = generate(model, T, engine="numba", **kw)
    a_torch = generate(model, T, engine="torch", **kw)
    assert a_numba.dtype == torch.float32 and a_numba.shape == (2, T)
    # free-running: identical except for rare float-rounding flips at decision boundaries
    assert (a_numba == a_torch).float().mean().item() >= 0.99
    # sample by sample against the reference sampler on the full forward's params of the same history
    params = _forward(model, {**inputs, "audio": a_numba})
    flat = params.permute(0, 2, 1).reshape(-1, params.shape[1])
    u = inputs["uniforms"].reshape(-1, 2)
    ref = model.sample(flat, u[:, 0], u[:, 1]).view_as(a_numba)
    close = (ref - a_numba).abs() <= 1e-6
    assert close.float().mean().item() >= 0.99
    assert a_numba.abs().max() <= 1.0


def test_naive_reference_sampler_agrees():
    model = _model()
    inputs = _inputs(model, batch=1, frames=2)
    n = 96  # > receptive field: the window is cropped for the later samples
    assert n > model.model_config.receptive_field_samples
    with torch.no_grad():
        layer_cond, step = model.layer_conditioning(inputs["conditioning"], inputs["year"])
    u = inputs["uniforms"][:, :n]
    naive = naive_generate(model, n, layer_cond, step, u)
    fast = generate(model, n, layer_cond, step, uniforms=u, engine="numba")
    assert (naive == fast).float().mean().item() >= 0.97


def test_temperature_reaches_both_engines():
    model = _model()
    inputs = _inputs(model, batch=1, frames=4)
    T = inputs["audio"].shape[1]
    kw = dict(uniforms=inputs["uniforms"], **_cond_kwargs(inputs))
    cold_n = generate(model, T, engine="numba", temperature=0.3, **kw)
    cold_t = generate(model, T, engine="torch", temperature=0.3, **kw)
    warm = generate(model, T, engine="numba", **kw)
    assert (cold_n == cold_t).float().mean().item() >= 0.99
    assert not torch.equal(cold_n, warm)


@pytest.mark.parametrize("case", ["mulaw-in/mol-out, frame cond, year", "scalar-in/mulaw-out"])
def test_min_p_reaches_both_engines(case):
    """The tail cut changes the samples, the same way in both engines; a cut with nothing to cut
    gives the plain sampler's samples bit for bit in the kernel (its renormalisation sums as the
    softmax's; a random model's mu-law classes are near uniform: a low temperature gives them a
    tail to cut)."""
    model = _model(*CASES[case])
    inputs = _inputs(model, batch=2, frames=8)
    T = inputs["audio"].shape[1]
    kw = dict(uniforms=inputs["uniforms"], temperature=0.05, **_cond_kwargs(inputs))
    plain = generate(model, T, engine="numba", **kw)
    assert torch.equal(generate(model, T, engine="numba", min_p=1e-30, **kw), plain)
    cut_n = generate(model, T, engine="numba", min_p=0.2, **kw)
    cut_t = generate(model, T, engine="torch", min_p=0.2, **kw)
    assert not torch.equal(cut_n, plain)
    assert (cut_n == cut_t).float().mean().item() >= 0.99
    with pytest.raises(ValueError, match="min_p"):
        generate(model, T, engine="numba", min_p=1.0, **kw)


def test_per_sample_temperatures():
    """A [B, T] temperature track: a constant track equals the scalar; a track switching from 1 to
    0.3 equals the warm run before the switch and differs after it; both engines agree."""
    model = _model()
    inputs = _inputs(model, batch=2, frames=4)
    T = inputs["audio"].shape[1]
    kw = dict(uniforms=inputs["uniforms"], **_cond_kwargs(inputs))
    warm = generate(model, T, engine="numba", **kw)
    const = generate(model, T, engine="numba", temperature=torch.full((2, T), 0.3), **kw)
    assert torch.equal(const, generate(model, T, engine="numba", temperature=0.3, **kw))
    track = torch.ones(2, T)
    track[:, T // 2:] = 0.3
    mixed_n = generate(model, T, engine="numba", temperature=track, **kw)
    mixed_t = generate(model, T, engine="torch", temperature=track, **kw)
    assert torch.equal(mixed_n[:, :T // 2], warm[:, :T // 2])
    assert not torch.equal(mixed_n[:, T // 2:], warm[:, T // 2:])
    assert (mixed_n == mixed_t).float().mean().item() >= 0.99
    with pytest.raises(ValueError, match="temperatures"):
        generate(model, T, engine="numba", temperature=torch.ones(2, T - 1), **kw)


def test_temperature_track_is_hot_after_onsets_only():
    from midi2wave.config import SamplingOptions
    from midi2wave.render.synthesize import temperature_track

    opts = SamplingOptions(temperature=1.0, sustain_temperature=0.5, attack_seconds=0.01).resolve()
    track = temperature_track(np.array([0.0, 0.02, 0.5]), 160, 320, 16000, opts)  # samples 160..479
    expected = np.full(320, 0.5, np.float32)  # the onset at 0 s: its attack ends where the window starts
    expected[320 - 160:480 - 160] = 1.0  # the onset at 0.02 s = sample 320; the one at 0.5 s is past the end
    np.testing.assert_array_equal(track, expected)
    assert temperature_track(np.array([0.0]), 0, 10, 16000, SamplingOptions().resolve()) is None  # off by default
    with pytest.raises(ValueError, match="resolve"):  # settings left None: the caller forgot to resolve
        temperature_track(np.array([0.0]), 0, 10, 16000, SamplingOptions())


# ----------------------------------------------------------------------- state, batch and priming


@pytest.mark.parametrize("engine", ["numba", "torch"])
def test_cache_reset_and_continuation(engine):
    model = _model()
    inputs = _inputs(model, batch=2, frames=8)
    T = inputs["audio"].shape[1]
    kw = dict(uniforms=inputs["uniforms"], conditioning=inputs["conditioning"], year=inputs["year"])
    fresh = generate(model, T, engine=engine, **kw)
    cache = GenerationCache(model, 2, engine=engine)
    first = generate(model, T, engine=engine, cache=cache, **kw)
    assert cache.position == T
    cache.reset()
    assert cache.position == 0
    second = generate(model, T, engine=engine, cache=cache, **kw)
    assert torch.equal(first, fresh) and torch.equal(second, fresh)
    # the same piece in two calls, split inside a frame: the second call's conditioning starts at
    # the frame of its first sample
    cache.reset()
    cut = 3 * model.samples_per_frame + 17
    with torch.no_grad():
        layer_cond, step = model.layer_conditioning(inputs["conditioning"], inputs["year"])
    a = generate(model, cut, layer_cond, step, uniforms=inputs["uniforms"][:, :cut], cache=cache)
    b = generate(model, T - cut, layer_cond[..., cut // step:], step, uniforms=inputs["uniforms"][:, cut:],
                 cache=cache)
    assert torch.equal(torch.cat([a, b], 1), fresh)


@pytest.mark.parametrize("engine", ["numba", "torch"])
def test_continuation_from_rolls_with_audio_rate_conditioning(engine):
    """Two calls split inside a frame, each given the rolls from the frame of its first sample."""
    model = _model({"upsample": "transposed"})
    inputs = _inputs(model, batch=2, frames=6)
    audio, rolls, year = inputs["audio"], inputs["conditioning"], inputs["year"]
    ref = _forward(model, inputs)
    spf, cut = model.samples_per_frame, 2 * model.samples_per_frame + 37
    cache = GenerationCache(model, 2, engine=engine)
    a = teacher_forced_params(model, audio[:, :cut], conditioning=rolls, year=year, cache=cache)
    b = teacher_forced_params(model, audio[:, cut:], conditioning=rolls[..., cut // spf:], year=year, cache=cache)
    assert (torch.cat([a, b], 2) - ref).abs().max().item() <= ATOL


def test_batch_rows_equal_single_stream_runs():
    model = _model({"output_kind": "mulaw"})
    B = 7  # groups of 4, 2 and 1 streams in the kernel; two threads
    inputs = _inputs(model, batch=B, frames=6)
    T = inputs["audio"].shape[1]
    kw = dict(uniforms=inputs["uniforms"], conditioning=inputs["conditioning"], year=inputs["year"])
    batch = generate(model, T, engine="numba", threads=2, **kw)
    for b in range(B):
        one = generate(model, T, engine="numba", uniforms=inputs["uniforms"][b:b + 1],
                       conditioning=inputs["conditioning"][b:b + 1], year=inputs["year"][b:b + 1])
        assert torch.equal(batch[b:b + 1], one), f"row {b}"
    # the torch engine: same params for each row (matmul kernels may differ with the batch size)
    p_batch = teacher_forced_params(model, inputs["audio"][:3], conditioning=inputs["conditioning"][:3],
                                    year=inputs["year"][:3], engine="torch")
    p_one = teacher_forced_params(model, inputs["audio"][1:2], conditioning=inputs["conditioning"][1:2],
                                  year=inputs["year"][1:2], engine="torch")
    assert (p_batch[1:2] - p_one).abs().max().item() <= 1e-5


@pytest.mark.parametrize("engine", ["numba", "torch"])
def test_priming(engine):
    model = _model()
    inputs = _inputs(model, batch=2, frames=4)
    T, P = inputs["audio"].shape[1], 150
    prime = inputs["audio"][:, :P]
    kw = dict(uniforms=inputs["uniforms"], conditioning=inputs["conditioning"], year=inputs["year"])
    out = generate(model, T, engine=engine, prime=prime, block_samples=64, **kw)
    assert torch.equal(out[:, :P], prime)
    # the continuation is drawn from the params of the primed history
    params = _forward(model, {**inputs, "audio": out})
    flat = params[:, :, P:].permute(0, 2, 1).reshape(-1, params.shape[1])
    u = inputs["uniforms"][:, P:].reshape(-1, 2)
    ref = model.sample(flat, u[:, 0], u[:, 1]).view(2, T - P)
    assert (ref == out[:, P:]).float().mean().item() >= 0.99
    # generation without a prime differs
    assert not torch.equal(generate(model, T, engine=engine, **kw)[:, :P], prime)


def test_seeded_generation_is_reproducible_and_progress_is_reported():
    model = _model()
    inputs = _inputs(model, batch=2, frames=2)
    T = inputs["audio"].shape[1]
    calls = []
    threads_before = torch.get_num_threads()
    a = generate(model, T, conditioning=inputs["conditioning"], year=inputs["year"], seed=3, block_samples=50,
                 progress=lambda done, total: calls.append((done, total)))
    assert torch.get_num_threads() == threads_before  # generation runs torch single-threaded, then restores
    b = generate(model, T, conditioning=inputs["conditioning"], year=inputs["year"], seed=3)
    c = generate(model, T, conditioning=inputs["conditioning"], year=inputs["year"], seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert calls[-1] == (T, T) and len(calls) == -(-T // 50)
    assert model.training is False


# ----------------------------------------------------------------------------- reduced precision


@pytest.mark.parametrize("precision,bound", [("fp16", 5e-4), pytest.param("int8", 5e-3, marks=pytest.mark.slow)])
def test_reduced_precision_weights_error(precision, bound):
    """fp16 / int8 weight storage: params stay within `bound` of the fp32 kernel's (|params| ~ 0.3)."""
    model = _model()
    inputs = _inputs(model, batch=2, frames=4)
    ref = teacher_forced_params(model, inputs["audio"], engine="numba", **_cond_kwargs(inputs))
    got = teacher_forced_params(model, inputs["audio"], engine="numba", precision=precision, **_cond_kwargs(inputs))
    err = (got - ref).abs().max().item()
    assert 0 < err <= bound, err


# ---------------------------------------------------------------------------- engines and errors


def test_engine_resolution_and_errors():
    assert resolve_engine("auto", "cpu") == "numba"
    assert resolve_engine("auto", "cuda") == "torch"
    assert resolve_engine("torch", "cpu") == "torch"
    with pytest.raises(ValueError, match="engine"):
        resolve_engine("fast", "cpu")
    with pytest.raises(ValueError, match="numba engine runs on the CPU"):
        resolve_engine("numba", "cuda")
    model = _model()
    inputs = _inputs(model, batch=2, frames=2)
    T = inputs["audio"].shape[1]
    kw = dict(conditioning=inputs["conditioning"], year=inputs["year"])
    with pytest.raises(ValueError, match="uniforms must be"):
        generate(model, T, uniforms=torch.rand(2, T - 1, 2), **kw)
    with pytest.raises(ValueError, match="prime has"):
        generate(model, 10, prime=inputs["audio"][:, :11], seed=0, **kw)
    with pytest.raises(ValueError, match="conditioning covers"):
        generate(model, T + 1, seed=0, **kw)
    with pytest.raises(ValueError, match="piano roll"):
        generate(model, 10, seed=0, year=inputs["year"])
    with pytest.raises(ValueError, match="precision"):
        GenerationCache(model, 1, engine="torch", precision="fp16")
    cache = GenerationCache(model, 3, engine="numba")
    with pytest.raises(ValueError, match="streams"):
        generate(model, 10, seed=0, cache=cache, **kw)
    assert generate(model, 0, seed=0, **kw).shape == (2, 0)


def test_fp32_kernel_has_one_compiled_signature():
    """All model variants above share one fp32 specialisation of the kernel (compile time is paid once)."""
    from midi2wave.render.kernel import KernelWeights, run_streams

    for case in CASES:
        model = _model(*CASES[case])
        inputs = _inputs(model, batch=1, frames=1)
        generate(model, 8, engine="numba", seed=0, **_cond_kwargs(inputs))
    w_dil = KernelWeights._fields.index("w_dil")
    fp32 = [sig for sig in run_streams.signatures if str(sig[2].types[w_dil].dtype) == "float32"]
    assert len(fp32) == 1


def test_stepping_weights_are_the_one_reader_of_the_model_layout():
    """The engines, the numba packer and the nv-wavenet export take the per-layer matrices from
    `model.stepping` only, and the kernel module does not import the API module (no import circle)."""
    import ast
    import inspect

    from midi2wave.render import engines, export, kernel
    from midi2wave.model.stepping import stepping_weights

    for module in (engines, kernel, export):
        source = inspect.getsource(module)
        for reach in ("model.head", ".dilated.", "layer.out.", "model.input_layer", "model.layers"):
            assert reach not in source, (module.__name__, reach)
    imported = {node.module for node in ast.walk(ast.parse(inspect.getsource(kernel)))
                if isinstance(node, ast.ImportFrom)}
    assert "generate" not in imported and "midi2wave.render.generate" not in imported
    # the extracted matrices are the model's own
    model = _model(*CASES["excitation, no bias"])
    sw = stepping_weights(model)
    assert torch.equal(sw.dilated_weight[1], model.layers[1].dilated.weight)
    assert torch.equal(sw.out_bias, torch.zeros_like(sw.out_bias))  # bias-free layers: zeros
    assert torch.equal(sw.head_out_weight, model.head[3].weight[:, :, 0])
    assert sw.excitation_weight is not None and sw.dilations == [l.dilation for l in model.layers]
