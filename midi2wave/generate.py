"""Fast autoregressive generation from a `Midi2Wave`: cached ("Fast WaveNet") PyTorch and a fused numba kernel.

Both engines keep, per layer, a ring buffer of the layer's past inputs (only the (k-1)*d samples a
kernel-k conv with dilation d reaches back), compute the gate conditioning of the whole call in
batched passes before the per-sample loop, and draw samples from the caller's uniform random
numbers, so the same uniforms give the same audio from either engine (up to rare decision-boundary
flips from float rounding).

API
---
``generate(model, n_samples, layer_cond=None, step=None, *, conditioning=None, year=None,
excitation=None, uniforms=None, seed=None, generator=None, temperature=1.0, prime=None,
engine="auto", cache=None, batch_size=None, threads=None, precision="fp32", block_samples=None,
progress=None) -> torch.Tensor`` float32 ``[B, n_samples]`` in [-1, 1), on the model's device for
the torch engine and on the CPU for numba.

Conditioning, one of:
- ``conditioning`` ``[B, C, ceil(n_samples / samples_per_frame) + 2 * model.context_margin_frames]``
  piano-roll frames (frame 0 = the frame of the call's first sample, plus the context margins, as
  for `Midi2Wave.forward`) and/or ``year`` ``[B]`` long: the context stack runs once over the whole
  call, the per-layer projections (and the learned upsampler) block by block, so audio-rate
  conditioning never holds more than one block in memory;
- ``layer_cond, step`` as returned by ``model.layer_conditioning(conditioning, year)``
  (``[B, L, G, N]``; sample t uses step ``t // step``; N == 1 broadcasts over time);
- neither, for a model without conditioning.
``excitation`` ``[B, n_samples]``: the audio-rate excitation (models with data.excitation_partials).

Randomness: ``uniforms`` ``[B, n_samples, 2]`` (component choice, value) in [0, 1); otherwise
``torch.rand(B, n_samples, 2, generator=...)`` from ``generator``, or from
``torch.Generator().manual_seed(seed)``, or from torch's global generator.
``prime`` ``[B, P]``: the first P samples are teacher-forced (fed instead of sampled; the output
repeats them). ``temperature`` scales the logistic scale (MoL) or divides the logits (mu-law); a
``[B, n_samples]`` tensor gives every sample its own (e.g. `synthesize`'s sustain temperature).

Engines: "numba" (CPU; `generate_numba.run_streams`, one thread per group of streams), "torch"
(any device; cached steps of small matmuls, for CUDA), "auto" = numba on CPU (if numba imports),
torch otherwise. ``threads`` (numba): worker threads, default all available cores, at most B; each
thread runs a contiguous group of streams through the whole call without synchronising per sample,
and each weight is loaded once per sample for a block of up to 4 streams (2 on AVX2 / ARM
machines), so B = 4 x threads streams use the cores best; one stream uses one core. On the CPU the
torch engine runs with ``threads`` intra-op threads (default 1: its ops are too small to share).
``precision`` (numba): "fp32" (default; equals torch), "fp16" (half the weight bytes; params
within ~2e-4 of fp32 on random models; 1.2-1.4x faster for one stream of a big model, e.g.
nv-wavenet RTF 0.74 -> 0.59 on one core here; no gain with many streams: the better choice for
single-stream rendering) or "int8" (per-output scales, params within ~5e-3; no faster than fp16
here); see `generate_numba.pack_weights` and BENCHMARKS.md. The kernel compiles on its first use (~10 s) and
is cached on disk by numba (later processes load it in ~1-2 s).

State: ``cache`` (a `GenerationCache` for (model, batch size, device, engine, precision)) holds the
packed weights (a snapshot taken at creation), the ring buffers and the position. A call continues
from the cache's state (its conditioning / excitation / uniforms / prime cover the samples of this
call, conditioning step 0 being the step of the call's first sample): generating a piece in
several calls equals generating it in one. ``cache.reset()`` starts over (silence before sample 0);
without ``cache`` every call starts fresh.

``teacher_forced_params(model, audio, ...)`` runs given audio through the cached step of an engine
and returns the distribution parameters ``[B, out, T]`` of every sample (what `Midi2Wave.forward`
computes in one pass) - for tests and for checking an engine. ``naive_generate`` is the slow
reference sampler (a full forward over the receptive field per sample) used by the benchmark.
``GenerationCache.close()`` stops a cache's worker threads (generate() closes the caches it makes).

For `synthesize` (chunked pieces across cores): cut the piece into B chunks (with warm-up overlap),
stack their rolls ``[B, C, F_chunk + 2 * margin]``, years ``[B]`` and excitations ``[B, T_chunk]``,
and call ``generate(model, T_chunk, conditioning=rolls, year=years, excitation=exc, seed=seed,
temperature=t, engine=options.engine, threads=options.threads or None)``; then crossfade the rows.
All chunks run in one batch: B >= the number of cores keeps every core busy. ``progress(done,
total)`` is called after each block of samples.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch

from . import resonators
from .model.distributions import mulaw_decode, mulaw_encode
from .model.wavenet import Midi2Wave

ENGINES = ("auto", "torch", "numba")
_BROADCAST_STEP = 1 << 40  # conditioning step of a time-constant (year-only) conditioning


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def numba_available() -> bool:
    try:
        from . import generate_numba  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_engine(engine: str, device: torch.device | str) -> str:
    """"auto" -> "numba" on CPU when numba is importable, else "torch"."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    device = torch.device(device)
    if engine == "auto":
        return "numba" if device.type == "cpu" and numba_available() else "torch"
    if engine == "numba" and device.type != "cpu":
        raise ValueError(f"the numba engine runs on the CPU; the cache's device is {device}")
    return engine


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@functools.lru_cache(maxsize=4)
def mulaw_tables(classes: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(mu-law class of each 16-bit PCM level [65536] long (index level + 32768), value of each class
    [classes] float32, class of silence), from `mulaw_encode` / `mulaw_decode`: both engines use them,
    so their inputs agree bit for bit."""
    levels = torch.arange(-32768, 32768, dtype=torch.float32) / 32768.0
    return (mulaw_encode(levels, classes), mulaw_decode(torch.arange(classes), classes).to(torch.float32),
            int(mulaw_encode(torch.zeros(()), classes)))


# ------------------------------------------------------------------------------- torch engine


class _TorchEngine:
    """Cached single-sample steps in PyTorch: pre-split weight matrices, addmm per layer, ring buffers.

    The sigmoid half of each gate is pre-scaled by 1/2 so that one tanh serves both halves:
    tanh(a) * sigmoid(b) = tanh(a) * (1 + tanh(b / 2)) / 2; the final 1/2 is folded into the
    residual and skip weights. Each layer's gate output is stored with a trailing 1 so that the
    residual and skip biases ride in the matmuls.
    """

    def __init__(self, model: Midi2Wave, batch_size: int, device: torch.device) -> None:
        cfg = model.model_config
        self.cfg = cfg
        B, R, G, S, K = batch_size, cfg.residual_channels, cfg.gate_channels, cfg.skip_channels, cfg.kernel_size
        L, H = cfg.n_layers, cfg.gate_channels // 2
        self.B, self.R, self.G, self.H, self.L, self.K = B, R, G, H, L, K
        self.device = device
        self.model = model
        f32 = dict(device=device, dtype=torch.float32)

        def w(t):
            return t.detach().to(**f32)

        gate_scale = torch.cat([torch.ones(H), torch.full((H,), 0.5)]).to(**f32)
        self.gate_scale = gate_scale
        self.dil = [layer.dilation for layer in model.layers]
        self.sizes = [(K - 1) * d for d in self.dil]
        self.w_taps = []  # per layer: K matrices [R, G]; tap j multiplies x(t - (K-1-j) d)
        self.b_dil = torch.zeros(L, G, **f32)
        res, skip = [], []
        for l, layer in enumerate(model.layers):
            wd = w(layer.dilated.weight) * gate_scale.view(G, 1, 1)
            self.w_taps.append([wd[:, :, j].t().contiguous() for j in range(K)])
            if layer.dilated.bias is not None:
                self.b_dil[l] = w(layer.dilated.bias) * gate_scale
            wo = w(layer.out.weight[:, :, 0]) * 0.5  # [R+S, H]
            bo = w(layer.out.bias) if layer.out.bias is not None else torch.zeros(R + S, **f32)
            res.append(torch.cat([wo[:R].t(), bo[:R].view(1, R)], 0).contiguous())  # [H+1, R]
            skip.append(torch.cat([wo[R:].t(), bo[R:].view(1, S)], 0))  # [H+1, S]
        self.w_res = res
        self.w_skip = torch.cat(skip, 0).contiguous()  # [L*(H+1), S]
        conv1, conv2 = model.head[1], model.head[3]
        self.w_h1 = w(conv1.weight[:, :, 0]).t().contiguous()
        self.b_h1 = w(conv1.bias) if conv1.bias is not None else torch.zeros(conv1.out_channels, **f32)
        self.w_h2 = w(conv2.weight[:, :, 0]).t().contiguous()
        self.b_h2 = w(conv2.bias) if conv2.bias is not None else torch.zeros(conv2.out_channels, **f32)
        self.exc_w = None
        if model.excitation_weight is not None:
            self.exc_w = (w(model.excitation_weight) * gate_scale).view(L, 1, G)
        inl = model.input_layer
        self.mulaw_input = cfg.input_kind == "mulaw_embedding"
        Q = cfg.mulaw_classes
        if self.mulaw_input:
            bias = w(inl.bias) if inl.bias is not None else torch.zeros(R, **f32)
            self.emb_curr = (w(inl.embed_curr.weight) + bias).contiguous()
            self.emb_prev = w(inl.embed_prev.weight).contiguous()
        else:
            self.in_w = w(inl.conv.weight[:, 0, :]).t().contiguous()  # [2, R]: rows for t-2, t-1
            self.in_b = w(inl.conv.bias) if inl.conv.bias is not None else torch.zeros(R, **f32)
        pcm_to_class, class_to_value, self.silence_class = mulaw_tables(Q)
        self.pcm_to_class = pcm_to_class.to(device)
        self.class_to_value = class_to_value.to(**f32)
        # state
        self.rings = [torch.zeros(max(s, 1), B, R, **f32) for s in self.sizes]
        self.ring_slots = [list(ring.unbind(0)) for ring in self.rings]  # views made once, not per step
        self.h = torch.zeros(B, G, **f32)
        self.xbuf = (torch.zeros(B, R, **f32), torch.zeros(B, R, **f32))
        self.z = torch.zeros(B, L, H + 1, **f32)
        self.z_layers = [self.z[:, l, :H] for l in range(L)]
        self.z_aug = [self.z[:, l, :] for l in range(L)]
        self.z_flat = self.z.view(B, L * (H + 1))
        self.th = torch.zeros(B, G, **f32)
        self.th_a, self.th_b = self.th[:, :H], self.th[:, H:]
        self.bank = None  # resonators.BankBatch, set by GenerationCache.set_resonators
        self.innovation_input = model.data_config.network_reads_innovation
        self.reset()

    def reset(self) -> None:
        for ring in self.rings:
            ring.zero_()
        self.z.zero_()
        self.z[:, :, self.H] = 1.0
        B = self.B
        self.a1 = torch.zeros(B, device=self.device)  # sample t-1
        self.a2 = torch.zeros(B, device=self.device)  # sample t-2
        self.k1 = torch.full((B,), self.silence_class, dtype=torch.long, device=self.device)
        self.k2 = self.k1.clone()

    def cond_layout(self, layer_cond: torch.Tensor | None, n_steps: int) -> torch.Tensor:
        """[B, L, G, N] model conditioning -> [N, L, B, G] with the dilated biases, sigmoid half scaled."""
        b = self.b_dil.view(1, self.L, 1, self.G)
        if layer_cond is None:
            return b.expand(n_steps, self.L, self.B, self.G).contiguous()
        c = layer_cond.to(self.device, torch.float32).permute(3, 1, 0, 2) * self.gate_scale
        return (c + b).contiguous()

    def run(self, t0: int, n: int, n_prime: int, collect: bool, temperature: float, cond: torch.Tensor,
            cond_step: int, cond_n0: int, exc: torch.Tensor | None, uniforms: torch.Tensor | None,
            prime: torch.Tensor | None, prime_cls: torch.Tensor | None):
        """Samples t0..t0+n-1; cond from `cond_layout`; exc [B, n]; uniforms [B, n, 2];
        prime / prime_cls [B, >= n_prime]. Returns (audio [B, n], params [B, out, n] or None)."""
        model, L, H, K = self.model, self.L, self.H, self.K
        slots, sizes, dil, w_taps, w_res = self.ring_slots, self.sizes, self.dil, self.w_taps, self.w_res
        h, xbuf = self.h, self.xbuf
        z_layers, z_aug, th, th_a, th_b = self.z_layers, self.z_aug, self.th, self.th_a, self.th_b
        mulaw_input, mol = self.mulaw_input, self.cfg.output_kind == "mol"
        exc_t = None
        if exc is not None and self.exc_w is not None:
            exc_t = exc.to(self.device, torch.float32).t().contiguous().view(n, 1, self.B, 1)
        if uniforms is not None:
            u = uniforms.to(self.device, torch.float32).permute(1, 2, 0).contiguous()  # [n, 2, B]
        if prime is not None and n_prime > 0:
            pv = prime[:, :n_prime].to(self.device, torch.float32).t().contiguous()
            pk = prime_cls[:, :n_prime].to(self.device).t().contiguous()
        a1, a2, k1, k2 = self.a1, self.a2, self.k1, self.k2
        bank = self.bank
        temps_t = None
        if isinstance(temperature, torch.Tensor):  # [B, n] per-sample temperatures
            temps_t = temperature.to(self.device, torch.float32).t().contiguous()
        outs, params_out = [], []
        ci_prev, cn = None, None
        for tt in range(n):
            t = t0 + tt
            ci = t // cond_step - cond_n0
            if ci != ci_prev:
                cn, ci_prev = cond[ci], ci
            c = cn if exc_t is None else torch.addcmul(cn, self.exc_w, exc_t[tt])
            if mulaw_input:
                x = torch.index_select(self.emb_curr, 0, k1).add_(torch.index_select(self.emb_prev, 0, k2))
            else:
                x = torch.addmm(self.in_b, torch.stack([a2, a1], 1), self.in_w)
            for l in range(L):
                taps = w_taps[l]
                torch.addmm(c[l], x, taps[K - 1], out=h)
                ring, size, d = slots[l], sizes[l], dil[l]
                for m in range(K - 1, 0, -1):
                    h.addmm_(ring[(t - m * d) % size], taps[K - 1 - m])
                ring[t % size].copy_(x)
                torch.tanh(h, out=th)
                torch.addcmul(th_a, th_a, th_b, out=z_layers[l])
                if l < L - 1:
                    x = torch.addmm(x, z_aug[l], w_res[l], out=xbuf[l % 2])
            primed = tt < n_prime
            if collect or not primed:
                s = torch.mm(self.z_flat, self.w_skip).relu_()
                hid = torch.addmm(self.b_h1, s, self.w_h1).relu_()
                params = torch.addmm(self.b_h2, hid, self.w_h2)
                if collect:
                    params_out.append(params)
            if bank is not None:
                p_bank = bank.predict(t)
            if primed:
                v, k = pv[tt], pk[tt]
            else:
                v = model.sample(params, u[tt, 0], u[tt, 1], temperature if temps_t is None else temps_t[tt])
                if not mol:  # the class's value from the same table as the numba engine (bit-equal outputs)
                    k = mulaw_encode(v, self.cfg.mulaw_classes)
                    v = self.class_to_value[k]
                elif mulaw_input:
                    k = self.pcm_to_class[(v * 32768.0).long() + 32768]
            if bank is not None:
                # the sample is the innovation over the gain: audio = prediction + gain * sample, on the
                # 16-bit grid (the same float64 arithmetic as the numba kernel)
                g_bank = bank.g
                if not primed:
                    level = np.clip(np.floor((p_bank + v.cpu().numpy().astype(np.float64) * g_bank) * 32768.0),
                                    -32768, 32767).astype(np.int64)
                    v = torch.from_numpy((level.astype(np.float32) / np.float32(32768.0))).to(self.device)
                    k = self.pcm_to_class[torch.from_numpy(level + 32768).to(self.device)]
                innovation = v.cpu().numpy().astype(np.float64) - p_bank
                bank.update(t, innovation)
            outs.append(v)
            if bank is not None and self.innovation_input:  # the network reads innovation / gain, on the 16-bit grid
                level_e = np.clip(np.floor(np.clip(innovation / g_bank, -1.0, 1.0) * 32768.0),
                                  -32768, 32767).astype(np.int64)
                v = torch.from_numpy((level_e.astype(np.float32) / np.float32(32768.0))).to(self.device)
                k = self.pcm_to_class[torch.from_numpy(level_e + 32768).to(self.device)]
            a2, a1 = a1, v
            if mulaw_input:
                k2, k1 = k1, k
        self.a1, self.a2, self.k1, self.k2 = a1, a2, k1, k2
        audio = torch.stack(outs, 1) if outs else torch.zeros(self.B, 0, device=self.device)
        params = torch.stack(params_out, 2) if collect and params_out else None
        return audio, params


# ------------------------------------------------------------------------------- numba engine


class _NumbaEngine:
    def __init__(self, model: Midi2Wave, batch_size: int, precision: str) -> None:
        from . import generate_numba as gn

        self.gn = gn
        self.packed = gn.pack_weights(model, precision)
        self.state = gn.NumbaState(self.packed, batch_size)
        self.state.innovation_input = model.data_config.network_reads_innovation
        self.B = batch_size
        self.bank = None  # resonators.BankBatch, set by GenerationCache.set_resonators
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0

    def reset(self) -> None:
        self.state.reset()

    def cond_layout(self, layer_cond: torch.Tensor | None, n_steps: int) -> np.ndarray:
        p = self.packed
        if layer_cond is None:
            return np.ascontiguousarray(np.broadcast_to(p.b_dil, (self.B, n_steps) + p.b_dil.shape))
        c = layer_cond.detach().to("cpu", torch.float32).permute(0, 3, 1, 2).numpy()
        return np.ascontiguousarray(c + p.b_dil)

    def _groups(self, threads: int) -> list[tuple[int, int]]:
        threads = max(1, min(threads, self.B))
        edges = np.linspace(0, self.B, threads + 1).round().astype(int)
        return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]

    def start(self, t0, n, n_prime, collect, temperature, cond, cond_step, cond_n0, exc, uniforms, prime,
              prime_cls, threads: int) -> Callable[[], tuple[torch.Tensor, torch.Tensor | None]]:
        """Launch samples t0..t0+n-1 on the worker threads (one per group of streams) and return at
        once; the returned function waits and gives (audio [B, n], params [B, out, n] or None)."""
        B, p = self.B, self.packed
        out = np.zeros((B, n), np.float32)
        params = np.zeros((B, n, p.n_out) if collect else (1, 1, 1), np.float32)
        exc_np = None
        if exc is not None:
            exc_np = np.ascontiguousarray(exc.detach().to("cpu", torch.float32).numpy())
        u = (np.ascontiguousarray(uniforms.detach().to("cpu", torch.float32).numpy())
             if uniforms is not None else np.zeros((B, n, 2), np.float32))
        if prime is not None and n_prime > 0:
            pv = np.ascontiguousarray(prime[:, :n_prime].detach().to("cpu", torch.float32).numpy())
            pk = np.ascontiguousarray(prime_cls[:, :n_prime].to("cpu").numpy().astype(np.int64))
        else:
            pv, pk = np.zeros((B, 1), np.float32), np.zeros((B, 1), np.int64)

        temps = None
        if isinstance(temperature, torch.Tensor):  # [B, n] per-sample temperatures
            temps = np.ascontiguousarray(temperature.detach().to("cpu", torch.float32).numpy())
            temperature = 1.0

        def work(group):
            self.state.run(group[0], group[1], t0, n, n_prime, collect, temperature, cond, cond_step, cond_n0,
                           exc_np, u, pv, pk, out, params, self.bank, temps)

        groups = self._groups(threads)
        if self._pool is None or self._pool_size != len(groups):
            if self._pool is not None:
                self._pool.shutdown()
            self._pool = ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="midi2wave-gen")
            self._pool_size = len(groups)
        futures = [self._pool.submit(work, g) for g in groups]

        def wait():
            for f in futures:
                f.result()
            audio = torch.from_numpy(out)
            return audio, (torch.from_numpy(params).permute(0, 2, 1) if collect else None)

        return wait

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


# ------------------------------------------------------------------------------------ the cache


class GenerationCache:
    """Generation state of a batch of streams for one model: packed weights, ring buffers, position.

    Created for (model, batch size, device, engine, precision); `reset()` returns it to silence at
    sample 0. The weights are a snapshot taken here: make a new cache after changing the model.
    """

    def __init__(self, model: Midi2Wave, batch_size: int = 1, device: torch.device | str | None = None,
                 engine: str = "auto", precision: str = "fp32") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else _model_device(model)
        self.engine = resolve_engine(engine, self.device)
        self.precision = precision
        with torch.no_grad():
            if self.engine == "numba":
                self._impl = _NumbaEngine(model, batch_size, precision)
            else:
                if precision != "fp32":
                    raise ValueError(f"the torch engine runs in fp32; precision {precision!r} is numba-only")
                self._impl = _TorchEngine(model, batch_size, self.device)
        self.position = 0
        self.has_bank = resonators.from_data_config(model.data_config) is not None
        self.bank: resonators.BankBatch | None = None

    def set_resonators(self, schedules) -> "GenerationCache":
        """Give each stream its resonator schedule (`resonators.schedule`, times relative to the
        stream's sample 0, i.e. this cache's position 0); needed before sampling from a model with
        the bank. The banks start silent."""
        schedules = list(schedules)
        if self.position != 0:
            raise ValueError("resonator schedules are set at sample 0 (reset() the cache first)")
        if len(schedules) != self.batch_size:
            raise ValueError(f"{len(schedules)} resonator schedules for {self.batch_size} streams")
        self.bank = resonators.BankBatch(schedules)
        self._impl.bank = self.bank
        return self

    def reset(self) -> "GenerationCache":
        """Back to silence at sample 0 (ring buffers, previous samples and resonator banks)."""
        self._impl.reset()
        if self.bank is not None:
            self.bank.reset()
        self.position = 0
        return self

    def close(self) -> None:
        """Stop the worker threads (numba engine); the cache stays usable."""
        if isinstance(self._impl, _NumbaEngine):
            self._impl.close()

    def __repr__(self) -> str:
        return (f"GenerationCache(engine={self.engine!r}, batch_size={self.batch_size}, device={self.device}, "
                f"precision={self.precision!r}, position={self.position})")


# ------------------------------------------------------------------------------- conditioning


class _CondSource:
    """Per-block layer conditioning: slices of a given `layer_cond`, or computed from context features."""

    def __init__(self, model: Midi2Wave, layer_cond, step, conditioning, year, batch_size: int,
                 t_start: int = 0) -> None:
        self.model = model
        # learned upsampler: the call's sample 0 sits at this phase of the rolls' frame 0
        self.phase = t_start % model.samples_per_frame
        device = _model_device(model)
        conditioning = conditioning.to(device, torch.float32) if conditioning is not None else None
        year = year.to(device) if year is not None else None
        self.features = None
        self.year = year
        self.layer_cond = None
        if layer_cond is not None:
            if conditioning is not None:
                raise ValueError("pass either layer_cond or conditioning, not both")
            self.layer_cond = layer_cond
            self.step = int(step) if step is not None else model.samples_per_frame
            self.broadcast = layer_cond.shape[-1] == 1
        elif model.cond_proj is not None:
            if conditioning is None:
                raise ValueError("this model is conditioned on a piano roll: pass conditioning (or layer_cond)")
            self.features = model.context_features(conditioning)  # the whole call in one pass
            self.step = 1 if model.upsampler is not None else model.samples_per_frame
            self.broadcast = False
        else:
            self.step = _BROADCAST_STEP
            self.broadcast = True
            if model.year_embed is not None and year is not None:
                self.layer_cond, _ = model.layer_conditioning(None, year)
        if self.broadcast:
            self.step = _BROADCAST_STEP
        self.n_available = (None if self.broadcast else
                            self.layer_cond.shape[-1] if self.layer_cond is not None else
                            self.features.shape[-1] * model.samples_per_frame - self.phase if self.step == 1 else
                            self.features.shape[-1])

    def block(self, s0: int, s1: int) -> torch.Tensor | None:
        """Conditioning steps s0..s1-1 (relative to the call's first step) -> [B, L, G, s1 - s0] or None."""
        if self.broadcast:
            return self.layer_cond
        if self.n_available is not None and s1 > self.n_available:
            raise ValueError(f"conditioning covers {self.n_available} steps of {self.step} samples; "
                             f"the call needs {s1}")
        if self.layer_cond is not None:
            return self.layer_cond[..., s0:s1]
        if self.step == 1:  # learned upsampler: frames covering samples s0..s1-1
            spf = self.model.samples_per_frame
            u0, u1 = s0 + self.phase, s1 + self.phase
            f0, f1 = u0 // spf, -(-u1 // spf)
            cond, _ = self.model.layer_conditioning(None, self.year, self.features[..., f0:f1])
            return cond[..., u0 - f0 * spf: u1 - f0 * spf]
        cond, _ = self.model.layer_conditioning(None, self.year, self.features[..., s0:s1])
        return cond


def _batch_size(*tensors_and_dims, default=None) -> int:
    sizes = {int(t.shape[0]) for t in tensors_and_dims if t is not None}
    if len(sizes) > 1:
        raise ValueError(f"inconsistent batch sizes {sorted(sizes)} among the inputs")
    if sizes:
        return sizes.pop()
    return default if default is not None else 1


# ---------------------------------------------------------------------------------------- API

_threads_lock = threading.Lock()
_threads_users = 0
_threads_saved = 1


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """torch intra-op threads = n (None: unchanged) while inside; the setting before the first of
    any concurrent generate() calls is restored when the last one leaves."""
    global _threads_users, _threads_saved
    if n is None:
        yield
        return
    with _threads_lock:
        if _threads_users == 0:
            _threads_saved = torch.get_num_threads()
        _threads_users += 1
        torch.set_num_threads(n)
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_saved)


def _run(model: Midi2Wave, n_samples: int, *, layer_cond, step, conditioning, year, excitation, uniforms,
         temperature, prime, engine, cache, batch_size, threads, precision, block_samples, progress,
         collect, schedules=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    if isinstance(temperature, torch.Tensor):
        if temperature.dim() != 2 or temperature.shape[1] != n_samples:
            raise ValueError(f"per-sample temperatures must be [B, n_samples], got {list(temperature.shape)}")
        if not bool((temperature > 0).all()):
            raise ValueError("temperatures must be > 0")
    elif not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    B = _batch_size(layer_cond if layer_cond is not None and layer_cond.shape[0] > 1 else None,
                    conditioning, year if year is not None and year.dim() > 0 and year.shape[0] > 1 else None,
                    excitation, uniforms, prime,
                    default=cache.batch_size if cache is not None else batch_size)
    own_cache = cache is None
    if own_cache:
        cache = GenerationCache(model, B, engine=engine, precision=precision)
    else:
        if cache.model is not model:
            raise ValueError("the cache was made for another model")
        if engine != "auto" and resolve_engine(engine, cache.device) != cache.engine:
            raise ValueError(f"the cache runs the {cache.engine} engine, not {engine}")
        if cache.batch_size != B:
            raise ValueError(f"the cache holds {cache.batch_size} streams, the inputs {B}")
    if schedules is not None:
        cache.set_resonators(schedules)
    if cache.has_bank and cache.bank is None and not collect:
        if own_cache:
            cache.close()
        raise ValueError("this model predicts the innovation of a MIDI resonator bank: pass resonators= "
                         "(one resonators.schedule per stream)")
    if uniforms is not None and tuple(uniforms.shape) != (B, n_samples, 2):
        raise ValueError(f"uniforms must be [B, n_samples, 2] = {[B, n_samples, 2]}, got {list(uniforms.shape)}")
    if excitation is not None and (excitation.shape[0] != B or excitation.shape[1] < n_samples):
        raise ValueError(f"excitation must be [B, >= n_samples] = [{B}, {n_samples}], got {list(excitation.shape)}")
    n_prime = 0
    prime_cls = None
    if prime is not None:
        n_prime = int(prime.shape[1])
        if n_prime > n_samples:
            raise ValueError(f"prime has {n_prime} samples, more than n_samples = {n_samples}")
        prime = prime.to(torch.float32)
        prime_cls = mulaw_encode(prime, model.model_config.mulaw_classes)
    if year is not None and year.dim() == 1 and year.shape[0] == 1 and B > 1:
        year = year.expand(B)
    if layer_cond is not None and layer_cond.shape[0] == 1 and B > 1:
        layer_cond = layer_cond.expand(B, *layer_cond.shape[1:])
    # The torch work here is small (the conditioning projections of a block; the torch engine's
    # per-sample ops): intra-op threads only add synchronisation, fight the numba worker threads
    # and stall badly on a busy machine (10-30x slower on the shared 2-core box). So torch runs
    # single-threaded during generation, except the torch engine when given `threads`.
    torch_threads = (int(threads) if threads and cache.engine == "torch" else 1) if cache.device.type == "cpu" else None
    threads = available_cores() if threads in (None, 0) else int(threads)
    try:
        with _torch_threads(torch_threads):
            return _run_blocks(model, cache, n_samples, B, layer_cond, step, conditioning, year, excitation,
                               uniforms, temperature, prime, n_prime, prime_cls, threads, block_samples, progress,
                               collect)
    finally:
        if own_cache:
            cache.close()


def _run_blocks(model, cache, n_samples, B, layer_cond, step, conditioning, year, excitation, uniforms, temperature,
                prime, n_prime, prime_cls, threads, block_samples, progress, collect):
    impl = cache._impl
    source = _CondSource(model, layer_cond, step, conditioning, year, B, cache.position)
    cstep = source.step
    t_start = cache.position
    base_step = t_start // cstep
    if n_samples > 0 and not source.broadcast and source.n_available is not None:
        needed = (t_start + n_samples - 1) // cstep - base_step + 1
        if needed > source.n_available:
            raise ValueError(f"the conditioning covers {source.n_available} steps of {cstep} samples; "
                             f"{n_samples} samples from sample {t_start} need {needed}")
    if uniforms is None and n_prime < n_samples:
        raise ValueError("uniforms are needed for the samples that are not primed")
    if block_samples is None:
        block_samples = 1024 if cstep == 1 else 8192
    block_samples = max(1, int(block_samples))
    outs, params = [], []

    def prepare(done: int) -> tuple:
        """Block inputs for samples done..done+nb-1 of the call (conditioning projected and laid out)."""
        nb = min(block_samples, n_samples - done)
        t0 = t_start + done
        if source.broadcast:
            cond_block, cond_n0, n_steps = source.block(0, 1), 0, 1
        else:
            s0, s1 = t0 // cstep - base_step, (t0 + nb - 1) // cstep - base_step + 1
            cond_block, cond_n0, n_steps = source.block(s0, s1), t0 // cstep, s1 - s0
        cond = impl.cond_layout(cond_block, n_steps)
        exc = excitation[:, done:done + nb] if excitation is not None else None
        u = uniforms[:, done:done + nb] if uniforms is not None else None
        np_block = min(max(n_prime - done, 0), nb)
        pr = prime[:, done:done + np_block] if np_block > 0 else None
        pk = prime_cls[:, done:done + np_block] if np_block > 0 else None
        temp = temperature[:, done:done + nb] if isinstance(temperature, torch.Tensor) else temperature
        return (t0, nb, np_block, collect, temp, cond, cstep, cond_n0, exc, u, pr, pk)

    done = 0
    job = prepare(0) if n_samples > 0 else None
    while job is not None:
        nb = job[1]
        if cache.engine == "numba":
            # the kernel runs on worker threads without the GIL: meanwhile this thread projects the
            # conditioning of the next block
            wait = impl.start(*job, threads)
            try:
                job = prepare(done + nb) if done + nb < n_samples else None
            finally:
                audio, par = wait()
        else:
            audio, par = impl.run(*job)
            job = prepare(done + nb) if done + nb < n_samples else None
        outs.append(audio)
        if collect:
            params.append(par)
        done += nb
        cache.position += nb
        if progress is not None:
            progress(done, n_samples)
    device = cache.device if cache.engine == "torch" else torch.device("cpu")
    audio = torch.cat(outs, 1) if outs else torch.zeros(B, 0, device=device)
    return audio, (torch.cat(params, 2) if collect and params else None)


def generate(model: Midi2Wave, n_samples: int, layer_cond: torch.Tensor | None = None, step: int | None = None, *,
             conditioning: torch.Tensor | None = None, year: torch.Tensor | None = None,
             excitation: torch.Tensor | None = None, uniforms: torch.Tensor | None = None,
             seed: int | None = None, generator: torch.Generator | None = None,
             temperature: "float | torch.Tensor" = 1.0, prime: torch.Tensor | None = None, engine: str = "auto", cache: GenerationCache | None = None,
             batch_size: int | None = None, threads: int | None = None, precision: str = "fp32",
             block_samples: int | None = None,
             progress: Callable[[int, int], None] | None = None,
             resonators: "list | None" = None) -> torch.Tensor:
    """Sample `n_samples` of audio autoregressively; see the module docstring. Returns float32 [B, n_samples]."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if uniforms is None:
                B = _batch_size(layer_cond if layer_cond is not None and layer_cond.shape[0] > 1 else None,
                                conditioning,
                                year if year is not None and year.dim() > 0 and year.shape[0] > 1 else None,
                                excitation, prime,
                                default=cache.batch_size if cache is not None else batch_size)
                if generator is None and seed is not None:
                    generator = torch.Generator().manual_seed(int(seed))
                uniforms = torch.rand(B, n_samples, 2, generator=generator)
            audio, _ = _run(model, n_samples, layer_cond=layer_cond, step=step, conditioning=conditioning, year=year,
                            excitation=excitation, uniforms=uniforms, temperature=temperature, prime=prime,
                            engine=engine, cache=cache, batch_size=batch_size, threads=threads,
                            precision=precision, block_samples=block_samples, progress=progress, collect=False,
                            schedules=resonators)
            return audio
    finally:
        model.train(was_training)


def teacher_forced_params(model: Midi2Wave, audio: torch.Tensor, layer_cond: torch.Tensor | None = None,
                          step: int | None = None, *, conditioning: torch.Tensor | None = None,
                          year: torch.Tensor | None = None, excitation: torch.Tensor | None = None,
                          engine: str = "auto", cache: GenerationCache | None = None, threads: int | None = None,
                          precision: str = "fp32", block_samples: int | None = None) -> torch.Tensor:
    """Feed `audio` [B, T] through an engine's cached step; returns params [B, out, T] like `model.forward`."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _, params = _run(model, audio.shape[1], layer_cond=layer_cond, step=step, conditioning=conditioning,
                             year=year, excitation=excitation, uniforms=None, temperature=1.0, prime=audio,
                             engine=engine, cache=cache, batch_size=audio.shape[0], threads=threads,
                             precision=precision, block_samples=block_samples, progress=None, collect=True)
            return params
    finally:
        model.train(was_training)


def naive_generate(model: Midi2Wave, n_samples: int, layer_cond: torch.Tensor | None, step: int,
                   uniforms: torch.Tensor, temperature: float = 1.0, excitation: torch.Tensor | None = None,
                   prime: torch.Tensor | None = None, max_seconds: float | None = None) -> torch.Tensor:
    """Reference (slow) sampler: per sample, the full forward over the receptive-field window.

    For benchmarks and tests only; conditioning as `layer_cond` [B, L, G, N] with `step`. `prime`
    [B, P] fixes the first P samples; with `max_seconds` it stops once that much time is spent and
    returns the samples made so far ([B, <= n_samples]).
    """
    import time

    cfg = model.model_config
    rf = cfg.receptive_field_samples
    B = uniforms.shape[0]
    audio = torch.zeros(B, n_samples)
    P = 0 if prime is None else prime.shape[1]
    if P:
        audio[:, :P] = prime
    start = time.perf_counter()
    with torch.no_grad():
        for t in range(P, n_samples):
            lo = max(0, t - rf)
            window = audio[:, lo:t + 1]  # the output at the last position is the distribution of sample t
            params = _window_forward(model, window, layer_cond, step, lo, excitation)
            audio[:, t] = model.sample(params, uniforms[:, t, 0], uniforms[:, t, 1], temperature)
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                return audio[:, :t + 1]
    return audio


def _window_forward(model: Midi2Wave, window: torch.Tensor, layer_cond, step: int, t0: int,
                    excitation: torch.Tensor | None) -> torch.Tensor:
    """Params of the last position of `window` (samples t0..t0+W-1, the last one being predicted).

    Positions before the window are taken as silence: exact when the window starts at sample 0 or
    reaches back a whole receptive field.
    """
    import torch.nn.functional as F

    W = window.shape[1]
    x = model.input_layer(F.pad(window, (1, 0))[:, :-1])
    skip = None
    t = torch.arange(t0, t0 + W)
    for i, layer in enumerate(model.layers):
        c = None
        if layer_cond is not None:
            idx = (t // step).clamp(max=layer_cond.shape[-1] - 1) if layer_cond.shape[-1] > 1 else t * 0
            c = layer_cond[:, i][..., idx]
        if model.excitation_weight is not None and excitation is not None:
            e = model.excitation_weight[i].view(1, -1, 1) * excitation[:, t0:t0 + W].unsqueeze(1)
            c = e if c is None else c + e
        x, sk = layer(x, c, 1)
        skip = sk[..., -1:] if skip is None else skip + sk[..., -1:]
    return model.head(skip)[..., 0]


__all__ = ["ENGINES", "GenerationCache", "generate", "teacher_forced_params", "naive_generate", "resolve_engine",
           "available_cores", "numba_available"]
