"""Output distributions over 16-bit audio: discretized mixture of logistics, and 256-way mu-law softmax.

Audio values are floats x = k / 32768 for integer PCM levels k in -32768..32767. The discretized
logistic gives level k the probability mass of the bin [x - h, x + h] with h = 1 / 65536 (half the
level spacing); the lowest level takes all mass below its upper edge and the highest all mass
above its lower edge, so the masses of the 65536 levels sum to one.

Sampling takes its uniform random numbers as arguments so that every engine (torch, numba) turns
the same random numbers into the same samples.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .. import constants as C

LOG2 = math.log(2.0)
_HALF_BIN = 1.0 / C.PCM_LEVELS  # half the spacing of PCM levels in [-1, 1) units
_LOWEST = -1.0
_HIGHEST = (C.PCM_SCALE - 1) / C.PCM_SCALE
# Below this bin width in units of the logistic scale, the mass is the density times the width:
# the midpoint rule's relative error (width^2 / 24) is then below 1e-5, and the exact difference
# of two nearly equal CDFs would lose more than that to rounding in float32.
_MIDPOINT_RULE_BELOW = 1e-2
LOG_SCALE_MIN = C.LOG_SCALE_MIN


def split_mol_params(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[..., 3K, T] or [..., 3K] -> (logits, means, log_scales), each with K in place of 3K.

    The channel dim is the second dim for [B, 3K, T] and the last dim for [B, 3K].
    """
    dim = 1 if params.dim() == 3 else -1
    logits, means, log_scales = params.chunk(3, dim=dim)
    return logits, means, log_scales.clamp(min=LOG_SCALE_MIN)


def _log_sigmoid_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(sigmoid(a) - sigmoid(b)) for a > b, accurate in both tails.

    For mid > 0 both sigmoids approach 1, so use sigmoid(a) - sigmoid(b) = sigmoid(-b) - sigmoid(-a).
    """
    flip = (a + b) > 0
    hi = torch.where(flip, -b, a)
    lo = torch.where(flip, -a, b)
    log_hi = F.logsigmoid(hi)
    log_lo = F.logsigmoid(lo)
    # log(e^log_hi - e^log_lo) = log_hi + log(-expm1(log_lo - log_hi))
    return log_hi + torch.log(-torch.expm1((log_lo - log_hi).clamp(max=-1e-12)))


def mol_log_prob(params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Log-probability (nats) of 16-bit audio under a discretized mixture of logistics.

    params: [B, 3K, T] (logits, means, log-scales); x: [B, T] in [-1, 1) on the PCM grid.
    Returns [B, T].
    """
    logits, means, log_scales = split_mol_params(params)
    x = x.unsqueeze(1)  # [B, 1, T]
    inv_scale = torch.exp(-log_scales)
    centered = x - means
    upper = inv_scale * (centered + _HALF_BIN)
    lower = inv_scale * (centered - _HALF_BIN)
    log_cdf_upper = F.logsigmoid(upper)  # mass of the lowest bin: everything below its upper edge
    log_one_minus_cdf_lower = F.logsigmoid(-lower)  # mass of the highest bin
    mid = inv_scale * centered
    log_pdf_mid = mid - log_scales - 2.0 * F.softplus(mid)
    log_mass_midpoint = log_pdf_mid + math.log(2 * _HALF_BIN)
    log_mass_exact = _log_sigmoid_difference(upper, lower)
    log_mass = torch.where(upper - lower < _MIDPOINT_RULE_BELOW, log_mass_midpoint, log_mass_exact)
    log_mass = torch.where(x <= _LOWEST + _HALF_BIN, log_cdf_upper, log_mass)
    log_mass = torch.where(x >= _HIGHEST - _HALF_BIN, log_one_minus_cdf_lower, log_mass)
    return torch.logsumexp(F.log_softmax(logits, dim=1) + log_mass, dim=1)


def mulaw_encode(x: torch.Tensor, classes: int = C.MU_LAW_CLASSES) -> torch.Tensor:
    """[-1, 1] floats -> mu-law class indices 0..classes-1 (long)."""
    mu = classes - 1
    y = torch.sign(x) * torch.log1p(mu * x.abs().clamp(max=1.0)) / math.log1p(mu)
    return ((y + 1) / 2 * mu + 0.5).floor().long().clamp(0, mu)


def mulaw_decode(k: torch.Tensor, classes: int = C.MU_LAW_CLASSES) -> torch.Tensor:
    """Mu-law class indices -> [-1, 1] floats (the centre of each class)."""
    mu = classes - 1
    y = 2 * k.to(torch.float32) / mu - 1
    return torch.sign(y) * ((1 + mu) ** y.abs() - 1) / mu


@functools.lru_cache(maxsize=4)
def mulaw_tables(classes: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(mu-law class of each 16-bit PCM level [65536] long (index level + 32768), value of each class
    [classes] float32, class of silence), from `mulaw_encode` / `mulaw_decode`: both generation
    engines use them, so their inputs agree bit for bit."""
    levels = torch.arange(-32768, 32768, dtype=torch.float32) / 32768.0
    return (mulaw_encode(levels, classes), mulaw_decode(torch.arange(classes), classes).to(torch.float32),
            int(mulaw_encode(torch.zeros(()), classes)))


def mulaw_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Log-probability (nats) of the mu-law class of x. logits: [B, Q, T]; x: [B, T]. Returns [B, T]."""
    target = mulaw_encode(x, logits.shape[1])
    return -F.cross_entropy(logits, target, reduction="none")


def quantize_pcm(x: torch.Tensor) -> torch.Tensor:
    """Snap floats to the 16-bit PCM grid k / 32768 (clipping to the representable range)."""
    return (torch.round(x * C.PCM_SCALE).clamp(-C.PCM_SCALE, C.PCM_SCALE - 1)) / C.PCM_SCALE


def _select(cumulative: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Index of the first entry of the last-dim cumulative sum exceeding u (inverse-CDF sampling)."""
    index = (cumulative <= u.unsqueeze(-1)).sum(dim=-1)
    return index.clamp(max=cumulative.shape[-1] - 1)


def _cut_tail(probs: torch.Tensor, min_p: float) -> torch.Tensor:
    """`probs` [..., Q] without the entries below `min_p` times the row's largest, renormalised
    (min-p sampling); unchanged for min_p 0."""
    if not min_p:
        return probs
    kept = torch.where(probs < min_p * probs.amax(dim=-1, keepdim=True), torch.zeros_like(probs), probs)
    return kept / kept.sum(dim=-1, keepdim=True)


@functools.lru_cache(maxsize=8)
def _logistic_tail(min_p: float) -> torch.Tensor:
    """u0 with 4 u0 (1 - u0) = min_p, in float32 as the numba kernel computes it (once per min_p:
    the samplers run once per sample)."""
    return (1.0 - torch.sqrt(1.0 - torch.tensor(min_p, dtype=torch.float32))) / 2.0


def sample_mol(params: torch.Tensor, u_component: torch.Tensor, u_value: torch.Tensor,
               temperature: float = 1.0, min_p: float = 0.0) -> torch.Tensor:
    """Draw one sample per row. params: [B, 3K]; u_*: [B] uniform in (0, 1). Returns [B] on the PCM grid.

    The component is chosen by inverse CDF of softmax(logits); the logistic scale is multiplied by
    `temperature` (a float or [B]; below 1: less noise, closer to the component means). `min_p`:
    no component weighing less than min_p times the heaviest, and no value where the chosen
    logistic's density is under min_p of its peak (see `sample_mulaw`): u_value is mapped onto
    [u0, 1 - u0], where 4 u0 (1 - u0) = min_p.
    """
    logits, means, log_scales = split_mol_params(params)
    probs = _cut_tail(torch.softmax(logits.float(), dim=-1), min_p)
    k = _select(torch.cumsum(probs, dim=-1), u_component)
    mean = means.gather(-1, k.unsqueeze(-1)).squeeze(-1)
    log_scale = log_scales.gather(-1, k.unsqueeze(-1)).squeeze(-1)
    if min_p:
        u0 = _logistic_tail(float(min_p))
        u_value = u0 + (1.0 - 2.0 * u0) * u_value
    u = u_value.clamp(1e-7, 1 - 1e-7)
    x = mean + temperature * torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
    return quantize_pcm(x.clamp(-1.0, 1.0))


def sample_mulaw(logits: torch.Tensor, u_component: torch.Tensor, temperature: float = 1.0,
                 min_p: float = 0.0) -> torch.Tensor:
    """Draw one sample per row from softmax(logits / temperature). logits: [B, Q]; temperature: a
    float or [B]; returns [B] floats. `min_p` (min-p sampling): no class whose probability is below
    min_p times the most likely one's. Why: a class far out in the tail, drawn now and then at any
    temperature, is one sample off the waveform, which a listener hears as a tick."""
    if isinstance(temperature, torch.Tensor) and temperature.dim() == 1:  # one per row
        temperature = temperature.unsqueeze(-1)
    probs = _cut_tail(torch.softmax(logits.float() / temperature, dim=-1), min_p)
    k = _select(torch.cumsum(probs, dim=-1), u_component)
    return mulaw_decode(k, logits.shape[-1])
