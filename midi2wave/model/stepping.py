"""The weights a per-sample stepper needs, taken out of a `Midi2Wave` once, in one place.

The cached generation engines (torch and numba) and the nv-wavenet export all run the model one
sample at a time, so they want the same matrices the convolutions hold, laid out per layer rather
than as modules. `stepping_weights(model)` is the only code that reads the model's submodules for
them (`head`, `layers[l].dilated`, `.out`, the input layer); the steppers re-lay these tensors as
they need (transposed, padded, scaled) without knowing how the model stores them.

Shapes (L layers, R residual, G gate, H = G / 2, S skip, K kernel taps, Q mu-law classes, H1 the
head's hidden width, O output channels). Every tensor is a detached float32 copy on the model's
device; absent biases are zeros (exact: a bias-free layer adds nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


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
    embed_prev: torch.Tensor | None  # [Q, R] (mu-law input): row of the class of sample t-2
    embed_curr: torch.Tensor | None  # [Q, R]: row of the class of sample t-1
    input_weight: torch.Tensor | None  # [R, 2] (scalar input): columns for samples t-2, t-1
    input_bias: torch.Tensor  # [R]
    dilated_weight: torch.Tensor  # [L, G, R, K]
    dilated_bias: torch.Tensor  # [L, G]
    out_weight: torch.Tensor  # [L, R+S, H]
    out_bias: torch.Tensor  # [L, R+S]
    head_hidden_weight: torch.Tensor  # [H1, S] (after a ReLU of the skip sum)
    head_hidden_bias: torch.Tensor  # [H1]
    head_out_weight: torch.Tensor  # [O, H1] (after a ReLU)
    head_out_bias: torch.Tensor  # [O]
    excitation_weight: torch.Tensor | None  # [L, G]: gate term per unit of audio-rate excitation

    @property
    def n_layers(self) -> int:
        return len(self.dilations)

    @property
    def head_channels(self) -> int:
        return int(self.head_hidden_weight.shape[0])

    @property
    def output_channels(self) -> int:
        return int(self.head_out_weight.shape[0])


def _copy(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).clone()


def _bias(conv: torch.nn.Module, n: int, like: torch.Tensor) -> torch.Tensor:
    b = getattr(conv, "bias", None)
    return _copy(b) if b is not None else torch.zeros(n, dtype=torch.float32, device=like.device)


@torch.no_grad()
def stepping_weights(model: Any) -> SteppingWeights:  # a Midi2Wave; its submodules are reached by name
    """Copy the stepping weights out of a `Midi2Wave` (a snapshot: take them again after training)."""
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


__all__ = ["SteppingWeights", "stepping_weights", "ContextStepper"]


class ContextStepper:
    """A causal context stack run one frame at a time (the live engine), with the per-layer gate
    conditioning it gives: explicit, resettable state (each context layer's past inputs).

    `step(roll [C_in]) -> cond [L, G]` (float32): the model's `layer_conditioning` of the newest
    frame, i.e. `cond_proj(context(rolls))[:, :, f]` plus the year's embedding, given every roll
    frame since `reset()` (zeros before it, as the stack's zero padding). Every frame is computed
    the same way whatever else has been stepped, so a stream cut into blocks of any size gets the
    same numbers. Equal to the model's batched convolution within float rounding (tests). Only a
    causal context can be stepped: frame f may not depend on frames after it."""

    def __init__(self, model: Any, year_index: int | None = None) -> None:
        context = model.context
        if context is None or model.cond_proj is None or model.upsampler is not None:
            raise ValueError("the model has no frame-rate context stack with repeat upsampling to step")
        if not model.model_config.context_causal:
            raise ValueError("the model's context stack looks ahead (model.context_causal is false): "
                             "it cannot run as notes arrive")

        def f32(t: torch.Tensor) -> Any:
            return t.detach().to("cpu", torch.float32).numpy().copy()

        self.w_in = f32(context.input.weight[:, :, 0])  # [C, C_in]
        self.b_in = f32(context.input.bias)
        self.layers = []
        for layer in context.layers:
            w = f32(layer.conv.weight)  # [2C, C, K]: tap j reads frame f - (K-1-j) d
            self.layers.append((int(layer.conv.dilation[0]), [w[:, :, j].copy() for j in range(w.shape[2])],
                                f32(layer.conv.bias), f32(layer.out.weight[:, :, 0]), f32(layer.out.bias)))
        self.kernel_size = int(context.layers[0].conv.kernel_size[0]) if self.layers else 1
        self.w_proj = f32(model.cond_proj.weight[:, :, 0])  # [L*G, C]
        L, G = model.model_config.n_layers, model.model_config.gate_channels
        self.shape = (L, G)
        self.year_row = None
        if model.year_embed is not None and year_index is not None:
            self.year_row = f32(model.year_embed.weight[int(year_index)])
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
