"""Fast autoregressive generation from a `Midi2Wave`: cached ("Fast WaveNet") PyTorch and a fused numba kernel.

Both engines keep, per layer, a ring buffer of the layer's past inputs (only the (k-1)*d samples a
kernel-k conv with dilation d reaches back), compute the gate conditioning of the whole call in
batched passes before the per-sample loop, and draw samples from the caller's uniform random
numbers, so the same uniforms give the same audio from either engine (up to rare decision-boundary
flips from float rounding).

API
---
``generate(model, n_samples, layer_cond=None, step=None, *, conditioning=None, year=None,
excitation=None, uniforms=None, seed=None, generator=None, temperature=1.0, min_p=0.0, prime=None,
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
``min_p`` cuts the distribution's tail after the temperature (min-p sampling,
`distributions.sample_mulaw`; 0: none).

Engines (`engines.py`: one interface, reset / launch a `Block` / wait; both built from the weights
`model.stepping.stepping_weights` extracts): "numba" (CPU; `kernel.run_streams`, one thread per group of streams), "torch"
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
here); see `kernel.pack_weights` and BENCHMARKS.md. The kernel compiles on its first use (~10 s) and
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
temperature=t, min_p=options.min_p, engine=options.engine, threads=options.threads or None)``; then
crossfade the rows.
All chunks run in one batch: B >= the number of cores keeps every core busy. ``progress(done,
total)`` is called after each block of samples.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable

import torch

from ..conditioning import resonators
from .engines import ENGINES, Block, Engine, available_cores, make_engine, numba_available, resolve_engine
from ..model.distributions import mulaw_encode
from ..model.wavenet import Midi2Wave

_BROADCAST_STEP = 1 << 40  # conditioning step of a time-constant (year-only) conditioning


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


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
            self.engine_impl: Engine = make_engine(model, self.engine, batch_size, self.device, precision)
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
        self.engine_impl.bank = self.bank
        return self

    def reset(self) -> "GenerationCache":
        """Back to silence at sample 0 (ring buffers, previous samples and resonator banks)."""
        self.engine_impl.reset()
        if self.bank is not None:
            self.bank.reset()
        self.position = 0
        return self

    def close(self) -> None:
        """Stop the worker threads (numba engine); the cache stays usable."""
        self.engine_impl.close()

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
         collect, schedules=None, min_p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    if not 0.0 <= min_p < 1.0:
        raise ValueError(f"min_p must be in [0, 1), got {min_p}")
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
            return _run_blocks(model, cache, n_samples, B, layer_cond=layer_cond, step=step,
                               conditioning=conditioning, year=year, excitation=excitation, uniforms=uniforms,
                               temperature=temperature, prime=prime, n_prime=n_prime, prime_cls=prime_cls,
                               threads=threads, block_samples=block_samples, progress=progress, collect=collect,
                               min_p=min_p)
    finally:
        if own_cache:
            cache.close()


def _run_blocks(model: Midi2Wave, cache: GenerationCache, n_samples: int, B: int, *, layer_cond, step, conditioning,
                year, excitation, uniforms, temperature, prime, n_prime: int, prime_cls, threads: int,
                block_samples, progress, collect: bool, min_p: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Cut the call into blocks and run them on the cache's engine; while the engine runs one block
    (the numba engine, off the GIL), this thread prepares the next one's conditioning."""
    engine = cache.engine_impl
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

    def prepare(done: int) -> Block:
        """Block inputs for samples done..done+nb-1 of the call (conditioning projected and laid out)."""
        nb = min(block_samples, n_samples - done)
        t0 = t_start + done
        if source.broadcast:
            cond_block, cond_n0, n_steps = source.block(0, 1), 0, 1
        else:
            s0, s1 = t0 // cstep - base_step, (t0 + nb - 1) // cstep - base_step + 1
            cond_block, cond_n0, n_steps = source.block(s0, s1), t0 // cstep, s1 - s0
        cond = engine.cond_layout(cond_block, n_steps)
        exc = excitation[:, done:done + nb] if excitation is not None else None
        u = uniforms[:, done:done + nb] if uniforms is not None else None
        np_block = min(max(n_prime - done, 0), nb)
        pr = prime[:, done:done + np_block] if np_block > 0 else None
        pk = prime_cls[:, done:done + np_block] if np_block > 0 else None
        temp = temperature[:, done:done + nb] if isinstance(temperature, torch.Tensor) else temperature
        return Block(t0=t0, n=nb, n_prime=np_block, collect=collect, temperature=temp, cond=cond, cond_step=cstep,
                     cond_n0=cond_n0, exc=exc, uniforms=u, prime=pr, prime_cls=pk, min_p=min_p)

    done = 0
    block = prepare(0) if n_samples > 0 else None
    while block is not None:
        nb = block.n
        wait = engine.launch(block, threads)
        try:
            block = prepare(done + nb) if done + nb < n_samples else None
        finally:
            audio, par = wait()
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
             temperature: "float | torch.Tensor" = 1.0, min_p: float = 0.0, prime: torch.Tensor | None = None,
             engine: str = "auto", cache: GenerationCache | None = None,
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
                            schedules=resonators, min_p=min_p)
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
                   prime: torch.Tensor | None = None, max_seconds: float | None = None,
                   min_p: float = 0.0) -> torch.Tensor:
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
            audio[:, t] = model.sample(params, uniforms[:, t, 0], uniforms[:, t, 1], temperature, min_p)
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
