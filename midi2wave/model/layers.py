"""Building blocks of the audio WaveNet: the input layer and the gated residual layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .distributions import mulaw_encode


class InputLayer(nn.Module):
    """Causal kernel-2 convolution over the previous two input samples, R channels out.

    For mu-law input this is two embedding tables (nv-wavenet's embedding_prev and embedding_curr)
    indexed by the mu-law classes of samples t-1 and t; for scalar input, a Conv1d(1, R, 2).
    """

    def __init__(self, kind: str, residual_channels: int, mulaw_classes: int, bias: bool) -> None:
        super().__init__()
        self.kind = kind
        self.mulaw_classes = mulaw_classes
        if kind == "mulaw_embedding":
            self.embed_prev = nn.Embedding(mulaw_classes, residual_channels)
            self.embed_curr = nn.Embedding(mulaw_classes, residual_channels)
            nn.init.normal_(self.embed_prev.weight, std=0.5)
            nn.init.normal_(self.embed_curr.weight, std=0.5)
            self.bias = nn.Parameter(torch.zeros(residual_channels)) if bias else None
        else:
            self.conv = nn.Conv1d(1, residual_channels, kernel_size=2, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, T] floats in [-1, 1] (already shifted: x[t] is the sample before the target). -> [B, R, T]"""
        if self.kind == "mulaw_embedding":
            k = mulaw_encode(x, self.mulaw_classes)
            # the sample before the first one is silence (mu-law class of 0.0)
            k_prev = F.pad(k, (1, 0), value=int(mulaw_encode(torch.zeros(()), self.mulaw_classes)))[:, :-1]
            h = self.embed_curr(k) + self.embed_prev(k_prev)  # [B, T, R]
            if self.bias is not None:
                h = h + self.bias
            return h.transpose(1, 2)
        return self.conv(F.pad(x.unsqueeze(1), (1, 0)))


class ResidualLayer(nn.Module):
    """Dilated causal conv -> + conditioning -> tanh * sigmoid -> one 1x1 conv to residual and skip.

    The residual and skip projections are one matrix (R + S outputs) so each layer does a single
    matmul after the gate. The last layer's residual output is unused but kept for a uniform layout.
    """

    def __init__(self, residual_channels: int, gate_channels: int, skip_channels: int, kernel_size: int,
                 dilation: int, bias: bool) -> None:
        super().__init__()
        self.dilation = dilation
        self.kernel_size = kernel_size
        self.residual_channels = residual_channels
        self.dilated = nn.Conv1d(residual_channels, gate_channels, kernel_size, dilation=dilation, bias=bias)
        self.out = nn.Conv1d(gate_channels // 2, residual_channels + skip_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None, samples_per_cond: int = 1,
                audio_rate: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, R, T]; cond: [B, G, T // samples_per_cond] added to the gate pre-activation,
        each conditioning step covering `samples_per_cond` samples (1 at audio rate); audio_rate:
        an extra [B, G, T] (or broadcastable) term added as well (e.g. the excitation's).
        Returns (residual output [B, R, T], skip [B, S, T])."""
        h = self.dilated(F.pad(x, ((self.kernel_size - 1) * self.dilation, 0)))
        if audio_rate is not None:
            h = h + audio_rate
        if cond is not None:
            if samples_per_cond == 1:
                h = h + cond
            else:
                B, G, T = h.shape
                h = (h.view(B, G, T // samples_per_cond, samples_per_cond) + cond.unsqueeze(-1)).view(B, G, T)
        a, b = h.chunk(2, dim=1)
        z = torch.tanh(a) * torch.sigmoid(b)
        # split (not two slices): its backward concatenates the two gradients instead of zero-filling
        # and summing two full [B, R + S, T] buffers
        res, skip = self.out(z).split([self.residual_channels, self.out.out_channels - self.residual_channels], dim=1)
        return x + res, skip
