"""The two generation engines behind `generate.generate`, with one interface.

An engine holds a batch of streams' stepping state for one model (ring buffers, previous samples)
and runs blocks of samples:

- ``reset()``: back to silence at sample 0;
- ``cond_layout(layer_cond [B, L, G, N] | None, n_steps)``: a block's gate conditioning in the
  engine's own layout (dilated biases folded in), made while the previous block runs;
- ``launch(block: Block, threads) -> wait``: start the samples of `block`; ``wait()`` returns
  (audio [B, n], params [B, out, n] or None). The numba engine returns at once and runs the block
  on worker threads without the GIL (so the caller prepares the next block meanwhile); the torch
  engine runs it before returning;
- ``close()``: stop worker threads; ``bank``: the streams' `resonators.BankBatch` (or None).

Both read the model through `model.stepping.stepping_weights` only.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np
import torch

from ..model.distributions import mulaw_encode, mulaw_tables
from ..model.stepping import SteppingWeights, stepping_weights
from ..model.wavenet import Midi2Wave

ENGINES = ("auto", "torch", "numba")


@dataclass
class Block:
    """Samples t0 .. t0+n-1 of a call, with their inputs (B streams).

    n_prime: how many of the first samples are teacher-forced (prime / prime_cls [B, >= n_prime]:
    values and mu-law classes); collect: also return the distribution parameters; temperature: a
    float or [B, n] per-sample temperatures; cond: from the engine's `cond_layout`, step i of it
    serving samples with t // cond_step == cond_n0 + i; exc [B, n] or None; uniforms [B, n, 2] or None;
    min_p: the sampler's tail cut (`distributions.sample_mulaw`; 0: none).
    """

    t0: int
    n: int
    n_prime: int
    collect: bool
    temperature: Any
    cond: Any
    cond_step: int
    cond_n0: int
    exc: torch.Tensor | None
    uniforms: torch.Tensor | None
    prime: torch.Tensor | None
    prime_cls: torch.Tensor | None
    min_p: float = 0.0


Wait = Callable[[], "tuple[torch.Tensor, torch.Tensor | None]"]


class Engine(Protocol):
    bank: Any

    def reset(self) -> None: ...

    def cond_layout(self, layer_cond: torch.Tensor | None, n_steps: int) -> Any: ...

    def launch(self, block: Block, threads: int) -> Wait: ...

    def close(self) -> None: ...




def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def numba_available() -> bool:
    try:
        from . import kernel  # noqa: F401
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


# ------------------------------------------------------------------------------- torch engine


class TorchEngine:
    """Cached single-sample steps in PyTorch: pre-split weight matrices, addmm per layer, ring buffers.

    The sigmoid half of each gate is pre-scaled by 1/2 so that one tanh serves both halves:
    tanh(a) * sigmoid(b) = tanh(a) * (1 + tanh(b / 2)) / 2; the final 1/2 is folded into the
    residual and skip weights. Each layer's gate output is stored with a trailing 1 so that the
    residual and skip biases ride in the matmuls.
    """

    def __init__(self, model: Midi2Wave, batch_size: int, device: torch.device,
                 weights: SteppingWeights | None = None) -> None:
        sw = weights if weights is not None else stepping_weights(model)
        B, R, G, S, K = batch_size, sw.residual_channels, sw.gate_channels, sw.skip_channels, sw.kernel_size
        L, H = sw.n_layers, G // 2
        self.B, self.R, self.G, self.H, self.L, self.K = B, R, G, H, L, K
        self.device = device
        self.model = model
        self.output_kind, self.mulaw_classes = sw.output_kind, sw.mulaw_classes
        f32 = dict(device=device, dtype=torch.float32)

        def w(t):
            return t.to(**f32)

        gate_scale = torch.cat([torch.ones(H), torch.full((H,), 0.5)]).to(**f32)
        self.gate_scale = gate_scale
        self.dil = list(sw.dilations)
        self.sizes = [(K - 1) * d for d in self.dil]
        wd_all = w(sw.dilated_weight) * gate_scale.view(1, G, 1, 1)  # [L, G, R, K]
        # per layer: K matrices [R, G]; tap j multiplies x(t - (K-1-j) d)
        self.w_taps = [[wd_all[l, :, :, j].t().contiguous() for j in range(K)] for l in range(L)]
        self.b_dil = w(sw.dilated_bias) * gate_scale
        res, skip = [], []
        for l in range(L):
            wo = w(sw.out_weight[l]) * 0.5  # [R+S, H]
            bo = w(sw.out_bias[l])
            res.append(torch.cat([wo[:R].t(), bo[:R].view(1, R)], 0).contiguous())  # [H+1, R]
            skip.append(torch.cat([wo[R:].t(), bo[R:].view(1, S)], 0))  # [H+1, S]
        self.w_res = res
        self.w_skip = torch.cat(skip, 0).contiguous()  # [L*(H+1), S]
        self.w_h1, self.b_h1 = w(sw.head_hidden_weight).t().contiguous(), w(sw.head_hidden_bias)
        self.w_h2, self.b_h2 = w(sw.head_out_weight).t().contiguous(), w(sw.head_out_bias)
        self.exc_w = None
        if sw.excitation_weight is not None:
            self.exc_w = (w(sw.excitation_weight) * gate_scale).view(L, 1, G)
        self.mulaw_input = sw.input_kind == "mulaw_embedding"
        Q = sw.mulaw_classes
        if self.mulaw_input:
            self.emb_curr = (w(sw.embed_curr) + w(sw.input_bias)).contiguous()
            self.emb_prev = w(sw.embed_prev).contiguous()
        else:
            self.in_w = w(sw.input_weight).t().contiguous()  # [2, R]: rows for t-2, t-1
            self.in_b = w(sw.input_bias)
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

    def close(self) -> None:
        """Nothing to stop (no worker threads)."""

    def launch(self, block: Block, threads: int) -> Wait:
        """Run the block now (the cached steps are small ops on this thread); `wait` returns its result."""
        result = self._run(block)
        return lambda: result

    def _run(self, block: Block):
        """Samples t0..t0+n-1 of `block`; returns (audio [B, n], params [B, out, n] or None)."""
        t0, n, n_prime, collect, temperature = block.t0, block.n, block.n_prime, block.collect, block.temperature
        cond, cond_step, cond_n0, exc = block.cond, block.cond_step, block.cond_n0, block.exc
        uniforms, prime, prime_cls = block.uniforms, block.prime, block.prime_cls
        model, L, K = self.model, self.L, self.K
        slots, sizes, dil, w_taps, w_res = self.ring_slots, self.sizes, self.dil, self.w_taps, self.w_res
        h, xbuf = self.h, self.xbuf
        z_layers, z_aug, th, th_a, th_b = self.z_layers, self.z_aug, self.th, self.th_a, self.th_b
        mulaw_input, mol = self.mulaw_input, self.output_kind == "mol"
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
            if primed:
                v, k = pv[tt], pk[tt]
            else:
                v = model.sample(params, u[tt, 0], u[tt, 1], temperature if temps_t is None else temps_t[tt],
                                 block.min_p)
                if not mol:  # the class's value from the same table as the numba engine (bit-equal outputs)
                    k = mulaw_encode(v, self.mulaw_classes)
                    v = self.class_to_value[k]
                elif mulaw_input:
                    k = self.pcm_to_class[(v * 32768.0).long() + 32768]
            if bank is not None:  # the sample is the innovation: the bank step shared with the numba kernel
                step = bank.step(t, primed, self.innovation_input, v.cpu().numpy())
                if not primed:
                    v = torch.from_numpy(step.value).to(self.device)
                    k = self.pcm_to_class[torch.from_numpy(step.level + 32768).to(self.device)]
            outs.append(v)
            if bank is not None and self.innovation_input:  # the network reads u_t (innovation / gain, shaped)
                v = torch.from_numpy(step.read).to(self.device)
                k = self.pcm_to_class[torch.from_numpy(step.read_level + 32768).to(self.device)]
            a2, a1 = a1, v
            if mulaw_input:
                k2, k1 = k1, k
        self.a1, self.a2, self.k1, self.k2 = a1, a2, k1, k2
        audio = torch.stack(outs, 1) if outs else torch.zeros(self.B, 0, device=self.device)
        params = torch.stack(params_out, 2) if collect and params_out else None
        return audio, params


# ------------------------------------------------------------------------------- numba engine


class NumbaEngine:
    """The fused numba kernel (`kernel.run_streams`) on a pool of threads, one per group of streams."""

    def __init__(self, model: Midi2Wave, batch_size: int, precision: str,
                 weights: SteppingWeights | None = None) -> None:
        from . import kernel as gn

        self.gn = gn
        self.packed = gn.pack_weights(weights if weights is not None else stepping_weights(model), precision)
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

    def launch(self, block: Block, threads: int) -> Wait:
        """Launch the block's samples on the worker threads (one per group of streams) and return at
        once; the returned function waits and gives (audio [B, n], params [B, out, n] or None)."""
        t0, n, n_prime, collect, temperature = block.t0, block.n, block.n_prime, block.collect, block.temperature
        cond, cond_step, cond_n0, exc = block.cond, block.cond_step, block.cond_n0, block.exc
        uniforms, prime, prime_cls = block.uniforms, block.prime, block.prime_cls
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
                           exc_np, u, pv, pk, out, params, self.bank, temps, block.min_p)

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


def make_engine(model: Midi2Wave, engine: str, batch_size: int, device: torch.device, precision: str) -> Engine:
    """The engine `engine` ("torch" | "numba", already resolved) for `batch_size` streams."""
    weights = stepping_weights(model)
    if engine == "numba":
        return NumbaEngine(model, batch_size, precision, weights)
    if precision != "fp32":
        raise ValueError(f"the torch engine runs in fp32; precision {precision!r} is numba-only")
    return TorchEngine(model, batch_size, device, weights)


__all__ = ["ENGINES", "Block", "Engine", "TorchEngine", "NumbaEngine", "make_engine", "resolve_engine",
           "available_cores", "numba_available"]
