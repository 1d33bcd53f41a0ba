"""Benchmark a training step of midi2wave against r9y9's WaveNet (wavenet_vocoder 0.1.1) at the
closest matching configuration, in the same run.

A step is forward + loss + backward + Adam step on one batch (batch and segment from the preset),
on random PCM-grid audio and a sparse random piano roll. Each measurement runs in a fresh
subprocess (torch.set_num_threads(N), OMP_NUM_THREADS=N) so that peak memory is that process's
ru_maxrss growth over its state after imports and input creation.

Matching r9y9's `WaveNet` to a preset: same layers, stacks, R, G, S, kernel 2, bias; MoL presets
use scalar_input=True, out_channels=3K and their discretized_mix_logistic_loss (num_classes=65536,
log_scale_min=-16, like our 16-bit MoL); mu-law presets a one-hot input (their first_conv is a 1x1
conv over the one-hot, the equivalent of our two embedding tables), 256 outputs and cross-entropy.
Their local conditioning is the piano roll repeated to audio rate (cin_channels = our conditioning
rows), their global conditioning a speaker embedding with 11 ids (our year classes, gin_channels
16). Their inputs (one-hot, audio-rate roll) are built outside the timed step, which favours them.
Two variants of theirs: their defaults (weight_normalization=True, dropout 0.05) and a stripped one
(no weight norm, no dropout) that does strictly the same kind of work as ours.

Throughput is audio samples per second of a step's median over --steps timed steps, best of
--repeats fresh processes, run interleaved so that load from other users hits every variant alike.
With one thread the step time is the process's CPU time (user + system, so page faults count):
on a shared machine that is what the step costs, independent of waiting for a core. With several
threads it is wall time, which on a shared machine is noisy.

Usage:
    python bench/train.py [--presets demo nv-wavenet] [--threads 1 2] [--steps 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IMPLS = ("ours", "r9y9", "r9y9-lean")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def worker(spec: dict) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    if spec.get("malloc_tuning"):
        from midi2wave.training.loop import tune_cpu_allocator

        assert tune_cpu_allocator()
    from midi2wave import constants as C
    from midi2wave.config import load_config
    from midi2wave.model import Midi2Wave

    config = load_config(ROOT / "configs" / f"{spec['preset']}.json")
    m, d = config.model, config.data
    B = spec["batch"] or config.train.batch_size
    seconds = spec["segment"] or d.segment_seconds
    frames = max(1, round(seconds * d.frame_rate_hz))
    T = frames * d.samples_per_frame
    g = torch.Generator().manual_seed(0)
    audio = torch.round((torch.rand(B, T, generator=g) - 0.5) * 0.6 * 32768) / 32768
    year = torch.randint(0, C.N_YEAR_CLASSES, (B,), generator=g)
    rows = d.conditioning_channels

    if spec["impl"] == "ours":
        model = Midi2Wave(m, d)
        margin = model.context_margin_frames
        cond = (torch.rand(B, rows, frames + 2 * margin, generator=g) < 0.02).float()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            params = model(audio, cond, year)
            loss = model.bits_per_sample(params, audio)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss
    else:
        import warnings

        warnings.filterwarnings("ignore")
        from wavenet_vocoder import WaveNet
        from wavenet_vocoder.mixture import discretized_mix_logistic_loss

        lean = spec["impl"] == "r9y9-lean"
        mol = m.output_kind == "mol"
        model = WaveNet(
            out_channels=m.output_channels, layers=m.n_layers, stacks=m.n_stacks,
            residual_channels=m.residual_channels, gate_channels=m.gate_channels,
            skip_out_channels=m.skip_channels, kernel_size=m.kernel_size,
            dropout=0.0 if lean else 1 - 0.95, cin_channels=rows, gin_channels=16, n_speakers=C.N_YEAR_CLASSES,
            weight_normalization=not lean, scalar_input=mol,
        )
        cond = (torch.rand(B, rows, frames, generator=g) < 0.02).float().repeat_interleave(d.samples_per_frame, -1)
        speakers = year.view(B, 1)
        if mol:
            x = audio.unsqueeze(1)
            target = audio[:, 1:].unsqueeze(-1)
        else:
            from midi2wave.model.distributions import mulaw_encode

            k = mulaw_encode(audio, m.mulaw_classes)
            x = torch.nn.functional.one_hot(k, m.mulaw_classes).transpose(1, 2).float()
            target = k[:, 1:]
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        model.train()

        def step():
            y_hat = model(x, cond, speakers)[:, :, :-1]
            if mol:
                loss = discretized_mix_logistic_loss(y_hat, target, num_classes=65536, log_scale_min=-16.0)
                loss = loss / target.numel()
            else:
                loss = torch.nn.functional.cross_entropy(y_hat, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss

    n_params = sum(p.numel() for p in model.parameters())
    base = _rss_mb()
    for _ in range(spec["warmup"]):
        step()
    wall, cpu = [], []
    for _ in range(spec["steps"]):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    assert np.isfinite(float(loss))
    # one thread: CPU time of the process (user + system, page faults included) is what a step costs,
    # whatever else runs on the machine; several threads: wall time (their CPU time adds up)
    seconds = float(np.median(cpu)) if spec["threads"] == 1 else float(np.median(wall))
    return {"samples_per_second": B * T / seconds, "step_seconds": seconds, "peak_mb": _rss_mb() - base,
            "params": n_params, "batch": B, "samples": T}


def measure(spec: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), MKL_NUM_THREADS=str(spec["threads"]))
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["demo", "nv-wavenet"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per measurement (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many fresh processes")
    parser.add_argument("--batch", type=int, default=0, help="override the preset's batch size")
    parser.add_argument("--segment", type=float, default=0.0, help="override the preset's segment seconds")
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--malloc-tuning", action="store_true",
                        help="apply midi2wave.training.loop.tune_cpu_allocator() (as `midi2wave train` does on CPU) in "
                             "every variant's process")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    best: dict[tuple, dict] = {}
    for _ in range(args.repeats):  # interleaved, so that load from others hits every variant alike
        for preset in args.presets:
            for threads in args.threads:
                for impl in args.impls:
                    spec = {"preset": preset, "impl": impl, "threads": threads, "steps": args.steps,
                            "warmup": args.warmup, "batch": args.batch, "segment": args.segment,
                            "malloc_tuning": args.malloc_tuning}
                    r = measure(spec)
                    key = (preset, threads, impl)
                    if key not in best or r["samples_per_second"] > best[key]["samples_per_second"]:
                        best[key] = {**r, "peak_mb": min(r["peak_mb"], best.get(key, r)["peak_mb"])}
                    print(f"  {preset:<11} {threads}T {impl:<10} {r['samples_per_second'] / 1000:8.1f} k samples/s  "
                          f"{r['peak_mb']:7.0f} MB", file=sys.stderr, flush=True)

    header = ("| preset | threads (time) | batch x samples | ours k samples/s (peak MB) | r9y9 default k samples/s "
              "(peak MB) | ours/r9y9 | r9y9 lean k samples/s (peak MB) | ours/lean |")
    print(header)
    print("|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        for threads in args.threads:
            ours = best.get((preset, threads, "ours"))
            row = [preset, f"{threads} ({'CPU' if threads == 1 else 'wall'})"]
            if ours is None:
                continue
            row.append(f"{ours['batch']} x {ours['samples']}")
            row.append(f"{ours['samples_per_second'] / 1000:.1f} ({ours['peak_mb']:.0f})")
            for impl in ("r9y9", "r9y9-lean"):
                theirs = best.get((preset, threads, impl))
                if theirs is None:
                    row += ["-", "-"]
                    continue
                row.append(f"{theirs['samples_per_second'] / 1000:.1f} ({theirs['peak_mb']:.0f})")
                row.append(f"{ours['samples_per_second'] / theirs['samples_per_second']:.2f}x")
            print("| " + " | ".join(row) + " |")
    params = {p: {impl: best[(p, args.threads[0], impl)]["params"] for impl in args.impls
                  if (p, args.threads[0], impl) in best} for p in args.presets}
    print(f"\nparameters: {json.dumps(params)}")


if __name__ == "__main__":
    main()
