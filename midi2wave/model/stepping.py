"""The weights a per-sample stepper needs, taken out of a `Midi2Wave` once, in one place.

The cached generation engines (torch and numba) and the nv-wavenet export all run the model one
sample at a time, so they want the same matrices the convolutions hold, laid out per layer rather
than as modules. `stepping_weights(model)` is the only code that reads the model's submodules for
them (`head`, `layers[l].dilated`, `.out`, the input layer); the steppers re-lay these tensors as
they need (transposed, padded, scaled) without knowing how the model stores them.

Shapes (L layers, R residual, G gate, H = G / 2, S skip, K kernel taps, Q mu-law classes, H1 the
head's hidden width, O output channels). Every tensor is a detached float32 copy on the model's
device; absent biases are zeros (exact: a bias-free layer adds nothing). `SteppingWeights.numpy()`
and `context_weights(model)` give the same as numpy arrays: the live engine's snapshot
(`render/livemodel.py`) is made of them, so `midi2wave play` and `live` start without torch.

torch is imported only by the functions that read a model, so the numpy side of this module (and
the numba kernel and live engine that use it) loads without it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class SteppingWeights:
    """Per-layer matrices of a `Midi2Wave` for sample-by-sample stepping (see the module docstring).

    dilated_weight [L, G, R, K]: tap j multiplies the layer input x(t - (K-1-j) d_l); rows 0..H-1
    feed the tanh half of the gate, H..G-1 the sigmoid half. out_weight [L, R+S, H]: rows 0..R-1
    are the residual projection, R..R+S-1 the skip projection.
    """

    input_kind: str  # "mulaw_embedding" | "scalar" (as ModelConfig.input_kind)
    output_kind: str  # "mol" | "mulaw"
    mulaw_classes: int
    n_mixtures: int
    kernel_size: int
    dilations: list[int]  # [L]
    residual_channels: int
    gate_channels: int
    skip_channels: int
    # torch tensors from `stepping_weights(model)`, numpy float32 arrays after `.numpy()`
    embed_prev: Any  # [Q, R] (mu-law input): row of the class of sample t-2; None for scalar input
    embed_curr: Any  # [Q, R]: row of the class of sample t-1
    input_weight: Any  # [R, 2] (scalar input): columns for samples t-2, t-1; None for mu-law input
    input_bias: Any  # [R]
    dilated_weight: Any  # [L, G, R, K]
    dilated_bias: Any  # [L, G]
    out_weight: Any  # [L, R+S, H]
    out_bias: Any  # [L, R+S]
    head_hidden_weight: Any  # [H1, S] (after a ReLU of the skip sum)
    head_hidden_bias: Any  # [H1]
    head_out_weight: Any  # [O, H1] (after a ReLU)
    head_out_bias: Any  # [O]
    excitation_weight: Any  # [L, G]: gate term per unit of audio-rate excitation; None without

    ARRAYS = ("embed_prev", "embed_curr", "input_weight", "input_bias", "dilated_weight", "dilated_bias",
              "out_weight", "out_bias", "head_hidden_weight", "head_hidden_bias", "head_out_weight",
              "head_out_bias", "excitation_weight")

    @property
    def n_layers(self) -> int:
        return len(self.dilations)

    @property
    def head_channels(self) -> int:
        return int(self.head_hidden_weight.shape[0])

    @property
    def output_channels(self) -> int:
        return int(self.head_out_weight.shape[0])

    def numpy(self) -> "SteppingWeights":
        """The same weights as C-contiguous float32 numpy arrays (on the CPU)."""
        arrays: dict[str, Any] = {name: None if (a := getattr(self, name)) is None else as_f32(a)
                                  for name in self.ARRAYS}
        return dataclasses.replace(self, dilations=[int(d) for d in self.dilations], **arrays)


def as_f32(t: Any) -> np.ndarray:
    """A torch tensor or array as a C-contiguous float32 numpy array (a tensor is copied: the
    array must not change when the model trains on)."""
    if hasattr(t, "detach"):
        return np.array(t.detach().to("cpu").float().numpy(), dtype=np.float32, order="C", copy=True)
    return np.ascontiguousarray(t, dtype=np.float32)


def _copy(t: Any) -> Any:
    return t.detach().float().clone()


def _bias(conv: Any, n: int, like: Any) -> Any:
    import torch

    b = getattr(conv, "bias", None)
    return _copy(b) if b is not None else torch.zeros(n, dtype=torch.float32, device=like.device)


def stepping_weights(model: Any) -> SteppingWeights:  # a Midi2Wave; its submodules are reached by name
    """Copy the stepping weights out of a `Midi2Wave` (a snapshot: take them again after training)."""
    import torch

    with torch.no_grad():
        return _stepping_weights(model)


def _stepping_weights(model: Any) -> SteppingWeights:
    import torch

    cfg = model.model_config
    R, G, S = cfg.residual_channels, cfg.gate_channels, cfg.skip_channels
    layers = list(model.layers)
    inl = model.input_layer
    first = next(model.parameters())
    embed_prev = embed_curr = input_weight = None
    if cfg.input_kind == "mulaw_embedding":
        embed_prev, embed_curr = _copy(inl.embed_prev.weight), _copy(inl.embed_curr.weight)
        input_bias = _copy(inl.bias) if inl.bias is not None else torch.zeros(R, device=first.device)
    else:
        input_weight = _copy(inl.conv.weight[:, 0, :])
        input_bias = _bias(inl.conv, R, first)
    hidden, out = model.head[1], model.head[3]
    return SteppingWeights(
        input_kind=cfg.input_kind, output_kind=cfg.output_kind, mulaw_classes=cfg.mulaw_classes,
        n_mixtures=cfg.n_mixtures, kernel_size=cfg.kernel_size, dilations=[int(l.dilation) for l in layers],
        residual_channels=R, gate_channels=G, skip_channels=S,
        embed_prev=embed_prev, embed_curr=embed_curr, input_weight=input_weight, input_bias=input_bias,
        dilated_weight=torch.stack([_copy(l.dilated.weight) for l in layers]),
        dilated_bias=torch.stack([_bias(l.dilated, G, first) for l in layers]),
        out_weight=torch.stack([_copy(l.out.weight[:, :, 0]) for l in layers]),
        out_bias=torch.stack([_bias(l.out, R + S, first) for l in layers]),
        head_hidden_weight=_copy(hidden.weight[:, :, 0]), head_hidden_bias=_bias(hidden, hidden.out_channels, first),
        head_out_weight=_copy(out.weight[:, :, 0]), head_out_bias=_bias(out, out.out_channels, first),
        excitation_weight=_copy(model.excitation_weight) if model.excitation_weight is not None else None,
    )


__all__ = ["SteppingWeights", "stepping_weights", "ContextWeights", "ContextLayer", "context_weights",
           "ContextStepper", "as_f32"]


@dataclass
class ContextLayer:
    """One gated residual layer of the context stack: conv [2C, C, K] (tap j reads frame
    f - (K-1-j) d), its bias [2C], the 1x1 output [C, C] and its bias [C]."""

    dilation: int
    conv_weight: np.ndarray
    conv_bias: np.ndarray
    out_weight: np.ndarray
    out_bias: np.ndarray


@dataclass
class ContextWeights:
    """A causal context stack and its projection to the gates, as float32 numpy arrays:
    input 1x1 conv `in_weight` [C, C_in] + `in_bias` [C], the layers, the projection `proj_weight`
    [L*G, C] (bias-free) and the year embeddings `year_table` [Y, L*G] (None: no year input);
    `gates` = (L, G)."""

    in_weight: np.ndarray
    in_bias: np.ndarray
    layers: list[ContextLayer]
    proj_weight: np.ndarray
    year_table: np.ndarray | None
    gates: tuple[int, int]


def context_weights(model: Any) -> ContextWeights:
    """The context stack of a `Midi2Wave`, for `ContextStepper`. ValueError when it cannot be
    stepped frame by frame (no frame-rate stack with repeat upsampling, or one that looks ahead)."""
    context = model.context
    if context is None or model.cond_proj is None or model.upsampler is not None:
        raise ValueError("the model has no frame-rate context stack with repeat upsampling to step")
    if not model.model_config.context_causal:
        raise ValueError("the model's context stack looks ahead (model.context_causal is false): "
                         "it cannot run as notes arrive")
    layers = [ContextLayer(int(layer.conv.dilation[0]), as_f32(layer.conv.weight), as_f32(layer.conv.bias),
                           as_f32(layer.out.weight[:, :, 0]), as_f32(layer.out.bias)) for layer in context.layers]
    return ContextWeights(
        in_weight=as_f32(context.input.weight[:, :, 0]), in_bias=as_f32(context.input.bias), layers=layers,
        proj_weight=as_f32(model.cond_proj.weight[:, :, 0]),
        year_table=as_f32(model.year_embed.weight) if model.year_embed is not None else None,
        gates=(model.model_config.n_layers, model.model_config.gate_channels))


class ContextStepper:
    """A causal context stack run one frame at a time (the live engine), with the per-layer gate
    conditioning it gives: explicit, resettable state (each context layer's past inputs).

    `step(roll [C_in]) -> cond [L, G]` (float32): the model's `layer_conditioning` of the newest
    frame, i.e. `cond_proj(context(rolls))[:, :, f]` plus the year's embedding, given every roll
    frame since `reset()` (zeros before it, as the stack's zero padding). Every frame is computed
    the same way whatever else has been stepped, so a stream cut into blocks of any size gets the
    same numbers. Equal to the model's batched convolution within float rounding (tests). Only a
    causal context can be stepped: frame f may not depend on frames after it."""

    def __init__(self, weights: Any, year_index: int | None = None) -> None:
        if not isinstance(weights, ContextWeights):  # a Midi2Wave
            weights = context_weights(weights)
        self.w_in, self.b_in = weights.in_weight, weights.in_bias
        self.layers = [(layer.dilation, [layer.conv_weight[:, :, j].copy() for j in range(layer.conv_weight.shape[2])],
                        layer.conv_bias, layer.out_weight, layer.out_bias) for layer in weights.layers]
        self.kernel_size = int(weights.layers[0].conv_weight.shape[2]) if weights.layers else 1
        self.w_proj = weights.proj_weight
        self.shape = weights.gates
        self.year_row = None
        if weights.year_table is not None and year_index is not None:
            self.year_row = weights.year_table[int(year_index)].copy()
        C = self.w_in.shape[0]
        # history[l]: layer l's inputs of the last (K-1) d + 1 frames, newest at position frame % size
        self.history = [np.zeros(((self.kernel_size - 1) * d + 1, C), np.float32) for d, *_ in self.layers]
        self.frame = 0

    def reset(self) -> None:
        for h in self.history:
            h.fill(0.0)
        self.frame = 0

    def step(self, roll: Any) -> Any:
        f = self.frame
        h = self.w_in @ np.asarray(roll, np.float32) + self.b_in
        K = self.kernel_size
        for (d, taps, bias, w_out, b_out), hist in zip(self.layers, self.history):
            size = hist.shape[0]
            hist[f % size] = h
            acc = bias.copy()
            for j, w in enumerate(taps):
                acc += w @ hist[(f - (K - 1 - j) * d) % size]
            half = acc.shape[0] // 2
            gate = np.tanh(acc[:half]) * (0.5 + 0.5 * np.tanh(0.5 * acc[half:]))  # sigmoid, no overflow
            h = h + (w_out @ gate + b_out)
        self.frame = f + 1
        cond = self.w_proj @ h
        if self.year_row is not None:
            cond = cond + self.year_row
        return cond.reshape(self.shape)
