"""Audio features in torch: the log-mel spectrogram target of the model's auxiliary mel head.

Frames follow the conditioning frames (docs/DESIGN.md): frame f covers samples
[f * hop, (f + 1) * hop) and its STFT window (n_fft long, Hann) is centred on that span, at sample
f * hop + hop / 2. Audio outside the segment is zero; `valid_frames` says which frames' windows lie
wholly inside it.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

LOG_MEL_FLOOR = 1e-5


def _hz_to_mel(hz: torch.Tensor | float) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@functools.lru_cache(maxsize=16)
def mel_filterbank(n_fft: int, n_mels: int, sample_rate_hz: int, fmin_hz: float = 30.0,
                   fmax_hz: float | None = None) -> torch.Tensor:
    """[n_mels, n_fft // 2 + 1] triangular HTK-mel filters, each normalised to unit area (Slaney)."""
    fmax_hz = sample_rate_hz / 2 if fmax_hz is None else fmax_hz
    freqs = torch.linspace(0, sample_rate_hz / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = _mel_to_hz(torch.linspace(float(_hz_to_mel(fmin_hz)), float(_hz_to_mel(fmax_hz)), n_mels + 2,
                                      dtype=torch.float64))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    fb = torch.clamp(torch.minimum(rising, falling), min=0.0)
    fb = fb * (2.0 / (upper - lower))  # Slaney normalisation: equal area per band
    return fb.to(torch.float32)


def log_mel_spectrogram(audio: torch.Tensor, n_mels: int, hop: int, sample_rate_hz: int,
                        n_fft: int = 1024) -> torch.Tensor:
    """[B, T] audio (T a multiple of hop) -> [B, n_mels, T // hop] log(max(mel magnitude, 1e-5)).

    Computed in float32 whatever the autocast state, so it can serve as a fixed target.
    """
    if audio.shape[-1] % hop:
        raise ValueError(f"audio length {audio.shape[-1]} is not a multiple of hop {hop}")
    n_frames = audio.shape[-1] // hop
    x = audio.float()
    # window of frame f starts at f*hop + hop/2 - n_fft/2 (centred on the frame's span)
    left = n_fft // 2 - hop // 2
    right = (n_frames - 1) * hop + n_fft - left - x.shape[-1]
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = F.pad(x, (left, max(right, 0)))
        window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
        spec = torch.stft(x, n_fft=n_fft, hop_length=hop, win_length=n_fft, window=window, center=False,
                          return_complex=True)[..., :n_frames]
        magnitude = spec.abs()
        fb = mel_filterbank(n_fft, n_mels, sample_rate_hz).to(x.device)
        mel = torch.matmul(fb, magnitude)
        return torch.log(mel.clamp(min=LOG_MEL_FLOOR))


def valid_frames(n_frames: int, hop: int, n_fft: int = 1024) -> slice:
    """The frames of a segment whose STFT windows lie wholly inside it (may be empty)."""
    reach = math.ceil(max(n_fft // 2 - hop // 2, 0) / hop)
    return slice(reach, max(n_frames - reach, reach))
