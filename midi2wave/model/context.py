"""The context stack: dilated convolutions over the frame-rate piano roll, then upsampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ContextLayer(nn.Module):
    """Gated residual dilated conv at frame rate; causal or centred (may look ahead)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, causal: bool) -> None:
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.causal = causal
        self.conv = nn.Conv1d(channels, 2 * channels, kernel_size, dilation=dilation)
        self.out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.pad, 0) if self.causal else (self.pad // 2, self.pad - self.pad // 2)
        a, b = self.conv(F.pad(x, pad)).chunk(2, dim=1)
        return x + self.out(torch.tanh(a) * torch.sigmoid(b))


class ContextStack(nn.Module):
    """[B, C_in, F] frame-rate conditioning -> [B, C_ctx, F] features (same length; zero padded)."""

    def __init__(self, in_channels: int, channels: int, n_stacks: int, layers_per_stack: int,
                 kernel_size: int, causal: bool) -> None:
        super().__init__()
        self.input = nn.Conv1d(in_channels, channels, 1)
        layers = [ContextLayer(channels, kernel_size, 2**i, causal)
                  for _ in range(n_stacks) for i in range(layers_per_stack)]
        self.layers = nn.ModuleList(layers)
        # how far (frames) an output reaches: back only when causal, up to ceil(pad/2) each way otherwise
        self.margin_frames = sum(layer.pad if causal else (layer.pad + 1) // 2 for layer in layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.input(x)
        for layer in self.layers:
            h = layer(h)
        return h


class TransposedUpsampler(nn.Module):
    """Learned frame -> audio rate upsampling: [B, C, F] -> [B, C, F * factor] (no overlap between frames)."""

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose1d(channels, channels, kernel_size=factor, stride=factor)
        with torch.no_grad():  # start as nearest-neighbour repetition
            self.conv.weight.zero_()
            self.conv.weight[torch.arange(channels), torch.arange(channels)] = 1.0
            assert self.conv.bias is not None  # ConvTranspose1d's default bias=True
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
