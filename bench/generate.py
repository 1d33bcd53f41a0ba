"""Benchmark autoregressive generation: naive recompute, r9y9's WaveNet, cached PyTorch and the numba kernel.

For each preset (configs/demo.json, nv-wavenet.json, paper.json; random weights: speed does not
depend on them) and each engine, generate a short run from random conditioning and report
samples/s over all streams and the real-time factor RTF = wall seconds / seconds of audio produced
(all streams together; below 1 is faster than real time), at batch 1 and 8, on 1 and 2 threads,
and the process CPU seconds per audio second with "cores used" = CPU time / wall time (on the
shared machine a second thread only helps when the second core is free: this column shows whether
it was).
All cells run in the same process, back to back, and the ratios compare with the baselines
measured in this run:

- naive: per sample, `Midi2Wave`'s full forward over the receptive-field window (`naive_generate`);
  time-capped, a few to a few hundred samples.
- r9y9: `wavenet_vocoder.WaveNet.incremental_forward` (0.1.1) at the matching size: same layers,
  stacks, residual / gate / skip channels, kernel 2, output channels; mu-law one-hot input for
  mu-law presets, scalar input for MoL presets; local conditioning of `context_channels` rows at
  audio rate (it projects them in every layer at every step); weight norm removed
  (`make_generation_fast_`). Batch 8 runs without its per-sample numpy sampling (quantize=False).
- torch: `generate(engine="torch")`, the cached engine (torch intra-op threads = threads).
- numba: `generate(engine="numba", precision=...)`, streams split over `threads` threads.

Timing: wall clock, best of `--repeats` for the fast engines; numba compilation (or its disk-cache
load) happens in a warm-up outside the timings and is measured separately in fresh processes:
cold (empty cache dir) and warm (cache written by the cold run). The machine is shared: the load
average is printed. Usage:

    python bench/generate.py [--presets demo nv-wavenet paper] [--seconds 0.5] [--repeats 2]
                             [--quick] [--skip-compile]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from midi2wave import constants as C  # noqa: E402
from midi2wave.config import load_config  # noqa: E402
from midi2wave.render.generate import GenerationCache, generate, naive_generate  # noqa: E402
from midi2wave.model import Midi2Wave  # noqa: E402

SR = C.SAMPLE_RATE_HZ


def build(preset: str) -> Midi2Wave:
    config = load_config(ROOT / "configs" / f"{preset}.json")
    torch.manual_seed(0)
    model = Midi2Wave(config.model, config.data).eval()
    with torch.no_grad():
        if model.year_embed is not None:
            model.year_embed.weight.normal_(0.0, 0.1)
    return model


def layer_cond_for(model: Midi2Wave, B: int, n: int):
    spf = model.samples_per_frame
    frames = -(-n // spf)
    g = torch.Generator().manual_seed(1)
    rolls = (torch.rand(B, model.data_config.conditioning_channels, frames + 2 * model.context_margin_frames,
                        generator=g) < 0.05).float()
    year = torch.full((B,), 3, dtype=torch.long)
    with torch.no_grad():
        return model.layer_conditioning(rolls, year)


def r9y9_model(model: Midi2Wave):
    from wavenet_vocoder import WaveNet

    cfg = model.model_config
    mulaw = cfg.output_kind == "mulaw"
    torch.manual_seed(0)
    net = WaveNet(out_channels=cfg.output_channels, layers=cfg.n_layers, stacks=cfg.n_stacks,
                  residual_channels=cfg.residual_channels, gate_channels=cfg.gate_channels,
                  skip_out_channels=cfg.skip_channels, kernel_size=cfg.kernel_size,
                  cin_channels=cfg.context_channels, gin_channels=-1, scalar_input=not mulaw,
                  upsample_conditional_features=False).eval()
    net.make_generation_fast_()
    return net, mulaw


def time_r9y9(model: Midi2Wave, B: int, n: int, threads: int) -> tuple[float, float]:
    net, mulaw = r9y9_model(model)
    c = torch.randn(B, model.model_config.context_channels, n) * 0.1
    first = torch.zeros(B, 1, 1) if not mulaw else torch.zeros(B, model.model_config.output_channels, 1)
    if mulaw:
        first[:, 127] = 1.0
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            t, cpu = time.perf_counter(), time.process_time()
            net.incremental_forward(first if B == 1 else None, c=c, T=n, test_inputs=first if B > 1 else None,
                                    softmax=True, quantize=(B == 1))
            return time.perf_counter() - t, time.process_time() - cpu
    finally:
        torch.set_num_threads(old)


def time_naive(model: Midi2Wave, budget_s: float, max_n: int) -> tuple[float, float, int]:
    """`naive_generate` past a primed receptive field (every window full), until the time budget is spent."""
    rf = model.model_config.receptive_field_samples
    n_total = rf + max_n
    lc, step = layer_cond_for(model, 1, n_total)
    u = torch.rand(1, n_total, 2, generator=torch.Generator().manual_seed(3))
    prime = torch.rand(1, rf, generator=torch.Generator().manual_seed(4)) * 0.2 - 0.1
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t, cpu = time.perf_counter(), time.process_time()
        out = naive_generate(model, n_total, lc, step, u, prime=prime, max_seconds=budget_s)
        return time.perf_counter() - t, time.process_time() - cpu, out.shape[1] - rf
    finally:
        torch.set_num_threads(old)


def time_engine(model: Midi2Wave, engine: str, B: int, n: int, threads: int, precision: str,
                repeats: int) -> tuple[float, float]:
    lc, step = layer_cond_for(model, B, n)
    u = torch.rand(B, n, 2, generator=torch.Generator().manual_seed(2))
    cache = GenerationCache(model, B, engine=engine, precision=precision)
    generate(model, min(n, 256), lc, step, uniforms=u[:, :min(n, 256)], cache=cache, threads=threads)  # warm-up
    best = (float("inf"), 0.0)
    for _ in range(repeats):
        cache.reset()
        t, cpu = time.perf_counter(), time.process_time()
        generate(model, n, lc, step, uniforms=u, cache=cache, threads=threads)
        best = min(best, (time.perf_counter() - t, time.process_time() - cpu))
    cache.close()
    return best


COMPILE_SNIPPET = """
import time, torch
t0 = time.perf_counter()
from midi2wave.config import load_config
from midi2wave.model import Midi2Wave
from midi2wave.render.generate import generate
cfg = load_config("configs/tiny.json")
model = Midi2Wave(cfg.model, cfg.data).eval()
rolls = torch.zeros(1, cfg.data.conditioning_channels, 1 + 2 * model.context_margin_frames)
t1 = time.perf_counter()
generate(model, 16, conditioning=rolls, year=torch.zeros(1, dtype=torch.long), seed=0, engine="numba")
t2 = time.perf_counter()
generate(model, 16, conditioning=rolls, year=torch.zeros(1, dtype=torch.long), seed=0, engine="numba")
t3 = time.perf_counter()
print(t2 - t1, t3 - t2)
"""


def compile_times() -> tuple[float, float, float]:
    """(cold first call, warm-cache first call, second call) seconds in fresh processes."""
    with tempfile.TemporaryDirectory() as cache_dir:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir, "PYTHONPATH": str(ROOT)}
        runs = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", COMPILE_SNIPPET], cwd=ROOT, env=env, capture_output=True,
                                 text=True, check=True)
            runs.append([float(v) for v in out.stdout.split()])
    return runs[0][0], runs[1][0], runs[1][1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["demo", "nv-wavenet", "paper"])
    parser.add_argument("--seconds", type=float, default=0.5, help="audio per stream for the numba cells")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer cells (batch 1 and 8 on 1 and 2 threads, fp32)")
    parser.add_argument("--skip-compile", action="store_true", help="skip the compile-time measurement")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    if not args.skip_compile:
        cold, warm, again = compile_times()
        print(f"# numba kernel, first call in a fresh process (tiny model): cold cache {cold:.1f} s "
              f"(compile), warm cache {warm:.2f} s (load), then {again * 1e3:.1f} ms", flush=True)

    rows = []
    have_r9y9 = importlib.util.find_spec("wavenet_vocoder") is not None
    if not have_r9y9:
        print("# wavenet_vocoder (r9y9) is not installed: its cells are skipped", flush=True)

    def add(preset, engine, B, threads, timing, n, note=""):
        wall, cpu = timing
        sps = B * n / wall
        rows.append(dict(preset=preset, engine=engine, batch=B, threads=threads, samples=n, wall_s=wall, cpu_s=cpu,
                         samples_per_s=sps, rtf=SR / sps, cpu_rtf=cpu * SR / (B * n), note=note,
                         load=os.getloadavg()[0]))
        print(f"{preset:10s} {engine:14s} B={B} T={threads} n={n:6d} {wall:7.3f} s  {sps:10.0f} samples/s  "
              f"RTF {SR / sps:8.3f}  CPU-s per audio-s {cpu * SR / (B * n):8.3f}  cores used {cpu / wall:.2f}  "
              f"(load {os.getloadavg()[0]:.1f}) {note}", flush=True)

    for preset in args.presets:
        model = build(preset)
        cfg = model.model_config
        layers = cfg.n_layers
        scale = 20 / layers  # shorter runs for deeper models
        n_fast = max(1000, int(args.seconds * SR * min(1.0, scale)))
        n_torch = max(100, int(600 * scale))
        n_r9y9 = max(100, int(400 * scale))
        wall, cpu, n = time_naive(model, budget_s=2.0, max_n=300)
        add(preset, "naive", 1, 1, (wall, cpu), n, f"window {cfg.receptive_field_samples} samples")
        if have_r9y9:
            add(preset, "r9y9", 1, 1, time_r9y9(model, 1, n_r9y9, 1), n_r9y9)
            add(preset, "r9y9", 8, 1, time_r9y9(model, 8, n_r9y9, 1), n_r9y9, "no sampling")
        add(preset, "torch", 1, 1, time_engine(model, "torch", 1, n_torch, 1, "fp32", 1), n_torch)
        add(preset, "torch", 8, 1, time_engine(model, "torch", 8, n_torch, 1, "fp32", 1), n_torch)
        cells = [(1, 1, "fp32"), (8, 1, "fp32"), (8, 2, "fp32"), (1, 1, "fp16"), (8, 2, "fp16"), (1, 1, "int8"),
                 (2, 2, "fp32")]
        if args.quick:
            cells = cells[:3]
        for B, threads, precision in cells:
            add(preset, f"numba {precision}", B, threads,
                time_engine(model, "numba", B, n_fast, threads, precision, args.repeats), n_fast)

    print()
    print("| preset | engine | batch | threads | samples/s (all streams) | RTF | CPU-s / audio-s | cores used "
          "| x naive | x r9y9 (same batch) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        naive = next(x for x in rows if x["preset"] == r["preset"] and x["engine"] == "naive")
        r9 = [x for x in rows if x["preset"] == r["preset"] and x["engine"] == "r9y9" and x["batch"] == r["batch"]]
        vs_r9 = f"{r['samples_per_s'] / r9[0]['samples_per_s']:.1f}x" if r9 else "-"
        print(f"| {r['preset']} | {r['engine']} | {r['batch']} | {r['threads']} | {r['samples_per_s']:.0f} | "
              f"{r['rtf']:.3f} | {r['cpu_rtf']:.3f} | {r['cpu_s'] / r['wall_s']:.2f} | "
              f"{r['samples_per_s'] / naive['samples_per_s']:.0f}x | {vs_r9} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
