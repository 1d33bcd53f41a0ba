#!/usr/bin/env python3
"""The GPU check (issue 22): the GPU paths no CPU test reaches, in one short run on one GPU.

Sections, each in its own process(es) with a time budget, each timed and pass/fail with its numbers;
one failing (or hanging) section does not stop the others:

  a  paper-preset training steps under AMP, bf16 and fp16 (`training.loop.train` on a synthetic
     store): the loss falls (mean of the first vs the last window of steps); samples/s;
  b  DDP over NCCL with world size 1 (under `python -m torch.distributed.run --standalone
     --nproc-per-node 1`): a DDP-wrapped model and a plain replica take the same steps and must
     end with the same weights; all_reduce / all_gather_object / barrier answer;
  c  CUDA generation real-time factor, torch engine: the bundled model and the nv-wavenet-size
     preset (random weights), batch 1 and 16 (RTF = wall / audio seconds);
  d  the nv-wavenet export's reference check: nv-wavenet's algorithm (numpy) on the exported
     arrays reproduces the model's logits computed on the GPU (forward and torch engine).

Prints one summary table at the end and writes it as JSON (`--json PATH`); exit status 0 when every
section passed, 1 otherwise, 2 when it cannot start (a missing module, no CUDA). `--dry-run` runs
the same logic on the CPU with tiny sizes (tests/test_gpu_check.py). See docs/gpu-check.md.

    bash scripts/gpu-check.sh [--dry-run] [--json PATH] [--sections a,b,c,d] [--budget-seconds S]

MIDI2WAVE_GPU_CHECK_FAIL=<letters> makes those sections raise at their start (the tests use it to
see that the others still run and the exit status says so).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TITLES = {
    "a": "AMP training steps",
    "b": "DDP, world size 1",
    "c": "generation RTF (torch engine)",
    "d": "nv-wavenet export reference",
}
# share of the total budget each unit may use (the rest is process start-up and slack)
BUDGET_SHARES = {"a.bf16": 0.16, "a.fp16": 0.16, "b": 0.10, "c": 0.30, "d": 0.09}
UNITS = {"a": ("a.bf16", "a.fp16"), "b": ("b",), "c": ("c",), "d": ("d",)}
GRACE_SECONDS = 45.0  # a unit's start-up (imports, CUDA context, store) and teardown beyond its budget
FAIL_ENV = "MIDI2WAVE_GPU_CHECK_FAIL"
EXPORT_TOLERANCE = 1e-4  # max |logit difference|, as tests/test_export.py
DDP_TOLERANCE = 1e-4  # max |DDP grad - plain grad| / max |plain grad| (0 on the CPU; CUDA atomics differ)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What each section runs: the GPU sizes, or the dry run's tiny ones."""

    train_config: str = "paper"
    train_steps: int = 60
    train_window: int = 10  # steps per mean: the first and the last window are compared
    train_pieces: int = 8
    train_piece_seconds: float = 15.0  # 8 x 30 segments of 0.5 s: 30 batches of 8 per epoch
    ddp_steps: int = 6
    gen_seconds: float = 2.0  # audio per stream and cell
    gen_window_seconds: float = 0.256  # one generate() call; the budget is checked between calls
    gen_batches: tuple[int, ...] = (1, 16)
    export_batch: int = 2
    export_frames: int = 25  # 0.1 s at 250 frames/s
    total_budget_seconds: float = 450.0


DRY = Sizes(train_config="tiny", train_steps=8, train_window=2, train_pieces=2, train_piece_seconds=1.0,
            ddp_steps=2, gen_seconds=0.05, gen_window_seconds=0.05, export_batch=2, export_frames=2,
            total_budget_seconds=300.0)


def stamp(unit: str, message: str) -> None:
    """One progress line: UTC time, the unit, the message."""
    print(f"[{time.strftime('%H:%M:%S', time.gmtime())}] {unit}: {message}", flush=True)


def fail_line(message: str) -> str:
    return " ".join(str(message).split())[:300]


def write_json(path: Path, data: Any) -> None:
    """Write JSON to `path` through a temporary name and a rename (never a half-written file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def check(name: str, passed: bool, seconds: float, numbers: dict[str, Any], note: str | None = None,
          error: str | None = None) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "seconds": round(float(seconds), 2), "numbers": numbers,
            "note": note, "error": error}


# ================================================================================ the sections
# Each unit is a generator of check dicts, run in a child process (`--unit`); `ctx` says the sizes,
# the device, the working folder and when the unit's budget ends.


@dataclasses.dataclass
class Context:
    unit: str
    dry_run: bool
    sizes: Sizes
    workdir: Path
    deadline: float  # time.perf_counter() at which the unit's budget ends

    @property
    def device(self):
        import torch

        return torch.device("cpu" if self.dry_run else "cuda")

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def log(self, message: str) -> None:
        stamp(self.unit, message)


def _config(name: str):
    from midi2wave.config import load_config

    return load_config(ROOT / "configs" / f"{name}.json")


def _store(ctx: Context, name: str, pieces: int, seconds: float) -> Path:
    """A synthetic dataset store (tests/store_fixture.py) of `pieces` train pieces."""
    sys.path.insert(0, str(ROOT / "tests"))
    from store_fixture import make_store

    path = ctx.workdir / name
    make_store(path, {"train": pieces}, seconds=seconds, seed=0)
    return path


def _strict_fp32() -> None:
    """No TF32 and deterministic cuDNN: comparisons at float32 precision."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


# ------------------------------------------------------------------------------ a: AMP training


def unit_train(ctx: Context, amp: str) -> Iterator[dict]:
    import torch

    from midi2wave.training.loop import train

    sizes = ctx.sizes
    config = _config(sizes.train_config)
    tc = config.train
    steps = sizes.train_steps
    tc = dataclasses.replace(
        tc, amp=amp, max_steps=steps, warmup_steps=min(tc.warmup_steps, max(1, steps // 4)), log_every_steps=1,
        validation_batches=0, validate_every_steps=10 ** 9, checkpoint_every_steps=10 ** 9,
        audio_samples_every_steps=0, num_workers=0 if ctx.dry_run else tc.num_workers)
    config = config.replace(train=tc)
    store = _store(ctx, f"store-{ctx.unit}", sizes.train_pieces, sizes.train_piece_seconds)
    out = ctx.workdir / f"run-{ctx.unit}"
    note = []
    if ctx.device.type != "cuda":
        note.append(f"AMP is CUDA-only in the training loop: {amp} ran as fp32 on {ctx.device.type}")
    budget = max(1.0, ctx.left())
    ctx.log(f"{sizes.train_config} preset, batch {tc.batch_size}, {steps} steps, amp {amp}, "
            f"{tc.num_workers} workers, budget {budget:.0f} s")
    # at the budget: SIGTERM to this process, which the training loop answers by stopping after the step
    timer = threading.Timer(budget, lambda: os.kill(os.getpid(), signal.SIGTERM))
    started = time.perf_counter()
    timer.start()
    try:
        summary = train(config, store, out, device=str(ctx.device), progress=False)
    finally:
        timer.cancel()
    seconds = time.perf_counter() - started
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if r.get("kind") == "train" and "bits_per_sample" in r]
    bits = [float(r["bits_per_sample"]) for r in records]
    rates = [float(r["samples_per_second"]) for r in records]
    w = sizes.train_window
    numbers: dict[str, Any] = {"steps": int(summary["step"]), "batch": tc.batch_size,
                               "nonfinite_steps": int(summary["nonfinite_steps"])}
    if summary["stopped_early"]:
        note.append(f"stopped at the budget after {summary['step']} of {steps} steps")
    passed = len(bits) >= 2 * w and all(math.isfinite(b) for b in bits)
    if len(bits) >= 2 * w:
        first, last = sum(bits[:w]) / w, sum(bits[-w:]) / w
        numbers.update(loss_first=round(first, 4), loss_last=round(last, 4))
        passed = passed and last < first
    else:
        note.append(f"{len(bits)} finite logged steps: fewer than two windows of {w}")
    steady = sorted(rates[w:] or rates)  # past the first window: cuDNN autotuning, worker start-up
    numbers["samples_per_second"] = round(steady[len(steady) // 2]) if steady else None
    numbers["train_seconds"] = round(seconds, 1)
    if ctx.device.type == "cuda":
        numbers["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    yield check(amp, passed and numbers["nonfinite_steps"] < max(1, len(bits)) / 2, seconds, numbers,
                "; ".join(note) or None)


# ------------------------------------------------------------------------------------- b: DDP


def _loss(model, batch: dict, reads_innovation: bool):
    audio = batch["audio"]
    params = model(batch["target"] if reads_innovation else audio, batch["conditioning"], batch["year"],
                   batch.get("excitation"))
    inner = model.module if hasattr(model, "module") else model
    return inner.bits_per_sample(params, batch.get("target", audio))


def unit_ddp(ctx: Context) -> Iterator[dict]:
    import copy

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader

    from midi2wave.data.dataset import SegmentDataset
    from midi2wave.model import Midi2Wave
    from midi2wave.training import distributed as D

    info = D.env_info()
    if "LOCAL_RANK" not in os.environ:
        raise RuntimeError("the DDP section runs under torch.distributed.run (no LOCAL_RANK in the environment)")
    cuda = ctx.device.type == "cuda"
    device = torch.device("cuda", info.local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
        _strict_fp32()
    backend = "nccl" if cuda else "gloo"
    started = time.perf_counter()
    dist.init_process_group(backend=backend, **({"device_id": device} if cuda else {}))
    try:
        config = _config(ctx.sizes.train_config)
        store = _store(ctx, "store-b", ctx.sizes.train_pieces, ctx.sizes.train_piece_seconds)
        torch.manual_seed(0)
        model = Midi2Wave(config.model, config.data).to(device)
        replica = copy.deepcopy(model)
        ddp = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
        # plain SGD: the weights follow the gradients linearly, so run-to-run noise of CUDA atomics
        # (the embedding's backward) stays at its own size instead of being amplified as by Adam
        opt_ddp = torch.optim.SGD(model.parameters(), lr=1e-2)
        opt_plain = torch.optim.SGD(replica.parameters(), lr=1e-2)
        data = SegmentDataset(store, "train", config.data, margin_frames=model.context_margin_frames, seed=0)
        loader = DataLoader(data, batch_size=config.train.batch_size, shuffle=False, drop_last=True)
        reads = config.data.network_reads_innovation
        losses, ddp_seconds, steps, grad_diff = [], 0.0, 0, 0.0
        for batch in loader:
            if steps >= ctx.sizes.ddp_steps or (steps > 0 and ctx.left() < 0):
                break  # (the store holds more batches than ddp_steps: 30 on the GPU, 15 dry)
            batch = {k: v.to(device) for k, v in batch.items()}
            for net, opt in ((ddp, opt_ddp), (replica, opt_plain)):
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                loss = _loss(net, batch, reads)
                loss.backward()  # DDP: the gradients are all-reduced over the ranks here
                if cuda:
                    torch.cuda.synchronize()
                if net is ddp:
                    ddp_seconds += time.perf_counter() - t0
                    losses.append(float(loss.detach()))
            # DDP's averaged gradients of one rank are that rank's own: compare before stepping
            pairs = [(a.grad, b.grad) for a, b in zip(model.parameters(), replica.parameters())]
            if any((a is None) != (b is None) for a, b in pairs):
                raise RuntimeError("DDP and the plain replica disagree on which parameters have gradients")
            scale = max(float(b.abs().max()) for a, b in pairs if b is not None)
            grad_diff = max(grad_diff, max(float((a - b).abs().max()) for a, b in pairs if b is not None)
                            / max(scale, 1e-30))
            opt_ddp.step()
            opt_plain.step()
            steps += 1
        diff = max(float((a.detach() - b.detach()).abs().max()) for a, b in zip(model.parameters(),
                                                                                 replica.parameters()))
        probe = torch.full((4,), float(info.rank + 1), device=device)
        dist.all_reduce(probe)
        expected = info.world_size * (info.world_size + 1) / 2
        gathered: list[Any] = [None] * info.world_size
        dist.all_gather_object(gathered, {"rank": info.rank})
        dist.barrier()
        samples = steps * config.train.batch_size * config.data.segment_samples
        numbers = {"backend": dist.get_backend(), "world_size": dist.get_world_size(), "steps": steps,
                   "loss_first": round(losses[0], 4) if losses else None,
                   "loss_last": round(losses[-1], 4) if losses else None,
                   "max_grad_rel_diff": grad_diff, "max_param_diff": diff,
                   "all_reduce_ok": bool(torch.all(probe == expected)),
                   "samples_per_second": round(samples / max(ddp_seconds, 1e-9))}
        passed = (steps >= 1 and grad_diff <= DDP_TOLERANCE and numbers["all_reduce_ok"]
                  and gathered == [{"rank": info.rank}] and numbers["backend"] == backend
                  and all(math.isfinite(x) for x in losses))
        if info.is_main:
            yield check(f"{backend} x{info.world_size}", passed, time.perf_counter() - started, numbers,
                        f"{config.data.segment_samples * config.train.batch_size} samples/step, "
                        f"{ctx.sizes.train_config} preset, fp32, SGD")
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------------------------------ c: generation RTF


def _nv_wavenet_model(device):
    import torch

    from midi2wave.model import Midi2Wave

    config = _config("nv-wavenet")
    torch.manual_seed(0)
    model = Midi2Wave(config.model, config.data).eval()
    with torch.no_grad():  # as bench/generate.py: the year table matters
        if model.year_embed is not None:
            model.year_embed.weight.normal_(0.0, 0.1)
    return model.to(device), config


def _rtf_cell(ctx: Context, model, config, batch: int, deadline: float) -> tuple[bool, dict, str | None]:
    """Generate `sizes.gen_seconds` per stream for `batch` streams (or until `deadline`); numbers."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from store_fixture import random_notes

    from midi2wave.conditioning import resonators
    from midi2wave.config import SamplingOptions
    from midi2wave.midi import PedalEvents, apply_sustain
    from midi2wave.render.generate import GenerationCache, generate
    from midi2wave.render.rows import sampled_schedules
    from midi2wave.render.synthesize import model_inputs

    data = model.data_config
    sr, spf = data.sample_rate_hz, data.samples_per_frame
    device = ctx.device

    def frames(seconds: float) -> int:
        return max(1, math.ceil(seconds * sr / spf)) * spf

    length, window = frames(ctx.sizes.gen_seconds), frames(ctx.sizes.gen_window_seconds)
    starts = [k * length for k in range(batch)]
    pedals = PedalEvents.empty()
    notes = apply_sustain(random_notes(np.random.default_rng(batch), batch * length / sr + 0.5, sample_rate_hz=sr),
                          pedals, data.sustain_threshold)
    bank = resonators.from_data_config(data)
    options = SamplingOptions(engine="torch").resolve(config)
    cache = GenerationCache(model, batch, device=device, engine="torch")

    def run(n_total: int, stop_at: float) -> tuple[int, float, list]:
        cache.reset()
        if bank is not None:
            cache.set_resonators(sampled_schedules([resonators.schedule(notes, s, n_total, sr, bank) for s in starts],
                                                   options, bank, sr))  # as renders sample them
        g = torch.Generator().manual_seed(0)
        done, wall, outs = 0, 0.0, []
        while done < n_total and (done == 0 or time.perf_counter() < stop_at):
            w = min(window, n_total - done)
            inputs = model_inputs(model, notes, pedals, [s + done for s in starts], w, device=device)
            uniforms = torch.rand(batch, w, 2, generator=g)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            audio = generate(model, w, conditioning=inputs.rolls, year=inputs.year, excitation=inputs.excitation,
                             uniforms=uniforms, engine="torch", cache=cache)
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall += time.perf_counter() - t0
            outs.append(audio.detach().cpu())
            done += w
        return done, wall, outs

    try:
        t0 = time.perf_counter()
        run(min(4 * spf, length), math.inf)  # warm-up: CUDA kernels, cuBLAS handles
        warm = time.perf_counter() - t0
        done, wall, outs = run(length, deadline)
    finally:
        cache.close()
    audio = torch.cat(outs, 1)
    seconds = done / sr
    numbers = {"streams": batch, "audio_seconds": round(seconds * batch, 3), "wall_seconds": round(wall, 2),
               "rtf": round(wall / (seconds * batch), 3), "rtf_per_stream": round(wall / seconds, 3),
               "warmup_seconds": round(warm, 2), "peak": round(float(audio.abs().max()), 4)}
    ok = bool(torch.isfinite(audio).all()) and float(audio.abs().max()) <= 1.0 and done > 0
    note = None if done >= length else f"stopped at the budget after {seconds:.2f} of {length / sr:.2f} s per stream"
    return ok, numbers, note


def unit_generation(ctx: Context) -> Iterator[dict]:
    from midi2wave.checkpoint import load_model

    models: list[tuple[str, Callable[[], Any]]] = [
        ("bundled", lambda: load_model(None, device=str(ctx.device))),
        ("nv-wavenet", lambda: _nv_wavenet_model(ctx.device)),
    ]
    cells = [(name, build, b) for name, build in models for b in ctx.sizes.gen_batches]
    loaded: dict[str, Any] = {}
    for i, (name, build, batch) in enumerate(cells):
        label = f"{name} B={batch}"
        started = time.perf_counter()
        try:
            if name not in loaded:
                loaded[name] = build()
            model, config = loaded[name]
            share = ctx.left() / (len(cells) - i)  # what is left, shared among the cells still to run
            ctx.log(f"{label}: {ctx.sizes.gen_seconds} s per stream, budget {share:.0f} s")
            ok, numbers, note = _rtf_cell(ctx, model.eval(), config, batch,
                                          time.perf_counter() + share)
            if model.data_config.resonators.enabled:
                from midi2wave.render.engines import numba_available

                note = "; ".join(filter(None, [note, None if numba_available() else
                                               "numba missing: the resonator bank ran in pure Python"]))
            ctx.log(f"{label}: RTF {numbers['rtf']} over {numbers['audio_seconds']} s of audio")
            yield check(label, ok, time.perf_counter() - started, numbers, note or None)
        except Exception as e:  # noqa: BLE001 - one cell's failure is reported, the others run
            traceback.print_exc()
            yield check(label, False, time.perf_counter() - started, {}, error=fail_line(f"{type(e).__name__}: {e}"))


# ------------------------------------------------------------------------- d: export reference


def unit_export(ctx: Context) -> Iterator[dict]:
    import numpy as np
    import torch

    from midi2wave.model import Midi2Wave
    from midi2wave.model.distributions import mulaw_encode, quantize_pcm
    from midi2wave.render.export import export_nv_wavenet, nv_wavenet_conditioning, reference_logits
    from midi2wave.render.generate import teacher_forced_params

    started = time.perf_counter()
    config = _config("nv-wavenet")
    torch.manual_seed(0)
    model = Midi2Wave(config.model, config.data).eval()
    with torch.no_grad():  # as tests/test_export.py: every bias and the year table matter
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = ctx.workdir / "nv-wavenet.pt"
    export_nv_wavenet(model, path)  # the export runs on the CPU, as `midi2wave export` does
    exported = torch.load(path, weights_only=True)
    B, F = ctx.sizes.export_batch, ctx.sizes.export_frames
    T = F * model.samples_per_frame
    g = torch.Generator().manual_seed(1)
    rolls = torch.rand(B, config.data.conditioning_channels, F + 2 * model.context_margin_frames, generator=g)
    year = torch.arange(B, dtype=torch.long) % 3
    audio = quantize_pcm(torch.rand(B, T, generator=g) * 1.2 - 0.6)
    cond = nv_wavenet_conditioning(model, rolls, year if config.data.use_year else None, None, T)
    t0 = time.perf_counter()
    reference = reference_logits(exported, mulaw_encode(audio).numpy(), cond)
    reference_seconds = time.perf_counter() - t0
    device = ctx.device
    if device.type == "cuda":
        _strict_fp32()
    model = model.to(device)
    on = {k: (v.to(device) if v is not None else None) for k, v in
          {"audio": audio, "rolls": rolls, "year": year if config.data.use_year else None}.items()}
    with torch.no_grad():
        logits = model(on["audio"], on["rolls"], on["year"]).double().cpu().numpy()
    engine = teacher_forced_params(model, on["audio"], conditioning=on["rolls"], year=on["year"],
                                   engine="torch").double().cpu().numpy()
    diff_forward = float(np.abs(reference - logits).max())
    diff_engine = float(np.abs(reference - engine).max())
    scale = float(np.abs(logits).max())
    numbers = {"samples": T, "streams": B, "max_abs_diff_forward": diff_forward,
               "max_abs_diff_engine": diff_engine, "max_abs_logit": round(scale, 3),
               "tolerance": EXPORT_TOLERANCE, "reference_seconds": round(reference_seconds, 2)}
    passed = diff_forward <= EXPORT_TOLERANCE and diff_engine <= EXPORT_TOLERANCE and scale > 0.5
    yield check("logits", passed, time.perf_counter() - started, numbers,
                f"nv-wavenet preset, random weights; model on {device.type}")


UNIT_RUNNERS: dict[str, Callable[[Context], Iterator[dict]]] = {
    "a.bf16": lambda ctx: unit_train(ctx, "bf16"),
    "a.fp16": lambda ctx: unit_train(ctx, "fp16"),
    "b": unit_ddp,
    "c": unit_generation,
    "d": unit_export,
}


def child_main(args: argparse.Namespace) -> int:
    """Run one unit; its checks go to `args.result` as they finish (a killed unit keeps the earlier)."""
    ctx = Context(args.unit, args.dry_run, DRY if args.dry_run else Sizes(), Path(args.workdir),
                  time.perf_counter() + args.budget_seconds)
    results: list[dict] = []
    started = time.perf_counter()
    try:
        if args.unit[0] in os.environ.get(FAIL_ENV, ""):
            raise RuntimeError(f"failure injected by {FAIL_ENV}")
        for result in UNIT_RUNNERS[args.unit](ctx):
            results.append(result)
            write_json(Path(args.result), results)
            ctx.log(f"{result['name']}: {'pass' if result['passed'] else 'FAIL'} ({result['seconds']:.1f} s)")
    except ModuleNotFoundError as e:
        results.append(check(args.unit, False, time.perf_counter() - started, {},
                             error=f"Python module {e.name!r} is missing ({e})"))
    except BaseException as e:  # noqa: BLE001 - reported in the summary; the traceback goes to stderr
        traceback.print_exc()
        results.append(check(args.unit, False, time.perf_counter() - started, {},
                             error=fail_line(f"{type(e).__name__}: {e}")))
    if results or "LOCAL_RANK" not in os.environ or os.environ.get("RANK", "0") == "0":
        write_json(Path(args.result), results)
    return 0 if results and all(r["passed"] for r in results) else 1


# ================================================================================== the runner


def unit_command(unit: str, args: argparse.Namespace, result: Path, workdir: Path, budget: float) -> list[str]:
    own = [str(Path(__file__).resolve()), "--unit", unit, "--result", str(result), "--workdir", str(workdir),
           "--budget-seconds", f"{budget:.1f}"] + (["--dry-run"] if args.dry_run else [])
    if unit == "b":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1"] + own
    return [sys.executable] + own


def run_unit(unit: str, args: argparse.Namespace, workdir: Path, budget: float,
             hard: float) -> tuple[list[dict], float]:
    """Run a unit in its own process group; (its checks, wall seconds). A unit that exits without
    checks, fails without saying why, or outlives `hard` seconds gets a failed check that says so."""
    result = workdir / f"result-{unit}.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    started = time.perf_counter()
    proc = subprocess.Popen(unit_command(unit, args, result, workdir, budget), cwd=ROOT, env=env,
                            start_new_session=True)
    error = None
    try:
        rc = proc.wait(timeout=hard)
    except subprocess.TimeoutExpired:
        error = f"timed out after {hard:.0f} s (budget {budget:.0f} s); killed"
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        rc = proc.returncode
    seconds = time.perf_counter() - started
    checks: list[dict] = []
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        checks = json.loads(result.read_text())
    if error is None and rc != 0 and all(c["passed"] for c in checks):
        error = f"exit status {rc}"
    if error is not None or not checks:
        checks.append(check(unit, False, seconds, {}, error=error or f"exit status {rc}, no result"))
    return checks, seconds


def environment(dry_run: bool) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cuda": torch.version.cuda, "device": "cpu (dry run)" if dry_run else None}
    if not dry_run and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["device"] = f"{props.name}, {props.total_memory / 2 ** 30:.0f} GiB"
    for name in ("numpy", "numba", "soundfile", "safetensors", "tensorboard"):
        try:
            info[name] = getattr(importlib.import_module(name), "__version__", "installed")
        except Exception:  # noqa: BLE001 - absent or broken: reported as missing
            info[name] = None
    with contextlib.suppress(Exception):
        info["commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                        text=True, timeout=10, check=False).stdout.strip() or None
    return info


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.2e}"
        return f"{value:.4g}"
    return str(value)


def summary_table(report: dict[str, Any]) -> str:
    rows = [("section", "check", "result", "seconds", "numbers")]
    for letter, section in report["sections"].items():
        for c in section["checks"]:
            numbers = ", ".join(f"{k}={_fmt(v)}" for k, v in c["numbers"].items())
            extra = "; ".join(filter(None, [c.get("error"), c.get("note")]))
            rows.append((f"{letter} {section['title']}", c["name"], "pass" if c["passed"] else "FAIL",
                         f"{c['seconds']:.1f}", numbers + (f"  [{extra}]" if extra else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
    lines.insert(1, "-" * min(140, max(len(line) for line in lines)))
    verdict = "PASSED" if report["passed"] else "FAILED"
    env = report["environment"]
    lines.append(f"gpu-check {verdict}: {sum(s['passed'] for s in report['sections'].values())} of "
                 f"{len(report['sections'])} sections passed in {report['seconds']:.0f} s "
                 f"({env.get('device')}, torch {env.get('torch')}, CUDA {env.get('cuda')})")
    return "\n".join(lines)


def preflight(args: argparse.Namespace) -> str | None:
    """Why the check cannot start (one line), or None."""
    for name, why in (("numpy", "midi2wave"), ("torch", "every section"), ("midi2wave", "every section")):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            where = f" (PYTHONPATH={ROOT})" if name == "midi2wave" else ""
            return f"Python module {e.name!r} is missing, needed by {why}{where}"
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        return f"CUDA is not available to torch {torch.__version__} (use --dry-run for the CPU run)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="the same logic on the CPU with tiny sizes")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON here")
    parser.add_argument("--sections", default="a,b,c,d", help="comma-separated subset of a,b,c,d")
    parser.add_argument("--budget-seconds", type=float, default=None,
                        help="total time budget (default 450 on the GPU, 300 dry), shared among the sections")
    parser.add_argument("--workdir", type=Path, help="keep the runs, stores and exports here (default: a temp dir)")
    parser.add_argument("--unit", choices=sorted(UNIT_RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.unit:
        return child_main(args)

    def error(message: str) -> int:
        print(f"gpu-check: error: {message}", file=sys.stderr)
        return 2

    letters = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in letters if s not in TITLES]
    if bad or not letters:
        return error(f"--sections {args.sections!r}: choose from a,b,c,d")
    if args.json is not None and not args.json.parent.is_dir():
        return error(f"--json {args.json}: folder {args.json.parent} does not exist")
    if args.budget_seconds is not None and not args.budget_seconds > 0:
        return error(f"--budget-seconds {args.budget_seconds:g}: must be > 0")
    problem = preflight(args)
    if problem:
        return error(problem)
    sizes = DRY if args.dry_run else Sizes()
    total = args.budget_seconds if args.budget_seconds is not None else sizes.total_budget_seconds
    started = time.perf_counter()
    report: dict[str, Any] = {"dry_run": args.dry_run,
                              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "budget_seconds": total, "environment": environment(args.dry_run), "sections": {}}
    stamp("gpu-check", f"sections {','.join(letters)}, budget {total:.0f} s"
          + (" (dry run on the CPU)" if args.dry_run else f" on {report['environment']['device']}"))
    with contextlib.ExitStack() as stack:
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)
            workdir = args.workdir
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu-check-")))
        for letter in sorted(dict.fromkeys(letters)):
            section = {"title": TITLES[letter], "passed": False, "seconds": 0.0, "checks": []}
            report["sections"][letter] = section
            for unit in UNITS[letter]:
                left = total - (time.perf_counter() - started)
                if left < 20:
                    section["checks"].append(check(unit, False, 0, {}, error="not run: the total budget is spent"))
                    continue
                budget = max(5.0, min(BUDGET_SHARES[unit] * total, left - GRACE_SECONDS))
                hard = min(budget + GRACE_SECONDS, left)
                stamp("gpu-check", f"{unit} starts (budget {budget:.0f} s, killed after {hard:.0f} s)")
                checks, seconds = run_unit(unit, args, workdir, budget, hard)
                section["checks"] += checks
                section["seconds"] = round(section["seconds"] + seconds, 1)
            section["passed"] = bool(section["checks"]) and all(c["passed"] for c in section["checks"])
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["passed"] = all(s["passed"] for s in report["sections"].values())
    print("\n" + summary_table(report), flush=True)
    if args.json is not None:
        write_json(args.json, report)
        stamp("gpu-check", f"wrote {args.json}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
