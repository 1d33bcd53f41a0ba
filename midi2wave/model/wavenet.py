"""The midi2wave model: an audio WaveNet conditioned on a context stack over the piano roll and the year.

Shapes: B batch, T audio samples, F = T / samples_per_frame frames, C conditioning rows, L layers,
R residual, G gate (2 x R by default), S skip channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import constants as C
from ..config import DataConfig, ModelConfig, ModelSampling
from .context import ContextStack, TransposedUpsampler
from .distributions import LOG2, mol_log_prob, mulaw_log_prob, sample_mol, sample_mulaw
from .layers import InputLayer, ResidualLayer


class Midi2Wave(nn.Module):
    """WaveNet over 16 kHz audio; local conditioning from the MIDI, global from the recording year."""

    def __init__(self, model: ModelConfig, data: DataConfig, sampling: ModelSampling | None = None) -> None:
        super().__init__()
        self.model_config = model
        self.data_config = data
        # How the model samples best when a render does not say (its config's `sampling` section, given
        # by `checkpoint.load_model`; else the built-in defaults). Not a weight: the checkpoint's config
        # holds it.
        self.sampling_defaults = sampling if sampling is not None else ModelSampling()
        R, G, S, L = model.residual_channels, model.gate_channels, model.skip_channels, model.n_layers
        self.samples_per_frame = data.samples_per_frame
        self.input_layer = InputLayer(model.input_kind, R, model.mulaw_classes, model.bias)
        self.layers = nn.ModuleList(
            ResidualLayer(R, G, S, model.kernel_size, d, model.bias) for d in model.dilations
        )
        head_channels = model.mulaw_classes if model.output_kind == "mulaw" else S
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv1d(S, head_channels, 1, bias=model.bias),
            nn.ReLU(), nn.Conv1d(head_channels, model.output_channels, 1, bias=model.bias),
        )

        self.context: ContextStack | None = None
        self.upsampler: TransposedUpsampler | None = None
        self.cond_proj: nn.Conv1d | None = None
        if data.conditioning_channels > 0:
            self.context = ContextStack(data.conditioning_channels, model.context_channels, model.context_stacks,
                                        model.context_layers_per_stack, model.context_kernel_size,
                                        model.context_causal)
            if model.upsample == "transposed":
                self.upsampler = TransposedUpsampler(model.context_channels, data.samples_per_frame)
            # all layers' 1x1 conditioning projections as one matrix (the dilated convs carry the biases)
            self.cond_proj = nn.Conv1d(model.context_channels, L * G, 1, bias=False)
        self.year_embed: nn.Embedding | None = None
        if model.year_embedding and data.use_year:
            self.year_embed = nn.Embedding(C.N_YEAR_CLASSES, L * G)
            nn.init.zeros_(self.year_embed.weight)
        self.excitation_weight: nn.Parameter | None = None
        if data.excitation_partials > 0:
            self.excitation_weight = nn.Parameter(torch.randn(L, G) / math.sqrt(G))
        self.mel_head: nn.Conv1d | None = None
        if model.aux_mel_bands > 0:
            if self.context is None:
                raise ValueError("model.aux_mel_bands needs frame-rate conditioning (data.conditioning)")
            self.mel_head = nn.Conv1d(model.context_channels, model.aux_mel_bands, 1)

    # ------------------------------------------------------------------------------ conditioning

    @property
    def context_margin_frames(self) -> int:
        """Frames of conditioning wanted on each side of the audio segment (see `forward`)."""
        return self.context.margin_frames if self.context is not None else 0

    def context_features(self, conditioning: torch.Tensor | None) -> torch.Tensor:
        """[B, C, F + 2 * margin] rolls -> [B, C_ctx, F] context-stack features (margins cropped)."""
        assert self.context is not None and conditioning is not None
        h = self.context(conditioning)
        m = self.context_margin_frames
        return h[:, :, m: h.shape[-1] - m] if m else h

    def layer_conditioning(self, conditioning: torch.Tensor | None, year: torch.Tensor | None,
                           features: torch.Tensor | None = None) -> tuple[torch.Tensor | None, int]:
        """Per-layer additive conditioning of the gates, all layers in one batched pass.

        Returns (cond [B, L, G, N], samples_per_step): N = F steps of `samples_per_frame` samples
        each with repeat upsampling (the projection commutes with repetition, so it is done at frame
        rate), or N = T audio-rate steps of 1 sample with the learned upsampler. The year embedding
        is folded in. `features` may pass precomputed `context_features`.
        """
        L, G = self.model_config.n_layers, self.model_config.gate_channels
        cond, step = None, self.samples_per_frame
        if self.cond_proj is not None:
            if features is None:
                features = self.context_features(conditioning)
            if self.upsampler is not None:
                features, step = self.upsampler(features), 1
            B, _, N = features.shape
            cond = self.cond_proj(features).view(B, L, G, N)
        if self.year_embed is not None and year is not None:
            y = self.year_embed(year).view(-1, L, G, 1)
            cond = y if cond is None else cond + y
        return cond, step

    # ----------------------------------------------------------------------------------- forward

    def forward(self, audio: torch.Tensor, conditioning: torch.Tensor | None = None,
                year: torch.Tensor | None = None, excitation: torch.Tensor | None = None,
                return_aux: bool = False):
        """Teacher-forced distribution parameters.

        audio: [B, T] floats in [-1, 1), T a multiple of samples_per_frame; the output at t is the
        distribution of audio[t] given audio[:t] (the input is shifted right by one inside).
        conditioning: [B, C, T / samples_per_frame + 2 * context_margin_frames] rolls.
        year: [B] long year indices; excitation: [B, T] audio-rate excitation (if configured).
        Returns params [B, output_channels, T]; with return_aux, (params, mel [B, bands, F] or None).
        """
        B, T = audio.shape
        features = self.context_features(conditioning) if self.context is not None else None
        cond, step = self.layer_conditioning(conditioning, year, features)
        if cond is not None and cond.shape[-1] not in (1, T // step):
            raise ValueError(f"conditioning covers {cond.shape[-1] * step} samples, audio has {T}")
        x = self.input_layer(F.pad(audio, (1, 0))[:, :-1])
        skip = None
        # unbind (not cond[:, i] per layer): one stacked gradient instead of a zero-filled [B, L, G, N] per layer
        layer_cond = cond.unbind(1) if cond is not None else (None,) * len(self.layers)
        for i, layer in enumerate(self.layers):
            c = layer_cond[i]
            s = 1 if c is None or c.shape[-1] == 1 else step  # a lone year term broadcasts over time
            e = None
            if self.excitation_weight is not None and excitation is not None:
                e = self.excitation_weight[i].view(1, -1, 1) * excitation.unsqueeze(1)  # [B, G, T]
            x, sk = layer(x, c, s, audio_rate=e)
            skip = sk if skip is None else skip + sk
        # the head in float32 even under autocast: bfloat16 keeps 8 bits of a mixture's means and log
        # scales, far coarser than the 16-bit grid they place (the GPU check in BENCHMARKS.md); on
        # float32 inputs (CPU training, generation) this changes nothing
        assert skip is not None  # a model has at least one layer
        with torch.autocast(device_type=skip.device.type, enabled=False):
            params = self.head(skip.float() if skip.dtype in (torch.float16, torch.bfloat16) else skip)
        if not return_aux:
            return params
        mel = self.mel_head(features) if self.mel_head is not None else None
        return params, mel

    # ------------------------------------------------------------------------------ likelihood

    def log_prob(self, params: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """[B, out, T] params, [B, T] target audio -> [B, T] log-probabilities in nats."""
        params = params.float()
        if self.model_config.output_kind == "mol":
            return mol_log_prob(params, audio)
        return mulaw_log_prob(params, audio)

    def bits_per_sample(self, params: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood in bits per sample (a scalar)."""
        return -self.log_prob(params, audio).mean() / LOG2

    def sample(self, params: torch.Tensor, u_component: torch.Tensor, u_value: torch.Tensor,
               temperature: float = 1.0, min_p: float = 0.0) -> torch.Tensor:
        """[B, out] params of one step + uniforms [B] -> [B] audio samples in [-1, 1). `min_p`: the
        tail cut of `distributions.sample_mulaw` / `sample_mol`."""
        if self.model_config.output_kind == "mol":
            return sample_mol(params, u_component, u_value, temperature, min_p)
        return sample_mulaw(params, u_component, temperature, min_p)
