"""Benchmark the cost of the MIDI resonator bank in generation: the same network (same weights)
rendered with and without the bank, one stream on one core, in the same run.

The piece is examples/example.mid (its first `--seconds`); the models have the sizes of the given
presets with random weights (speed does not depend on the weights), the bank with
`--partials` partials per note, sampled with the preset's own `sampling` section. Each figure is the best of `--repeats` runs, alternating
with/without so that a busy spell of the shared machine does not fall on one row only.

    python bench/resonators.py [--configs configs/study/k-resonators.json configs/nv-wavenet.json]
                               [--seconds 10] [--partials 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", type=Path, nargs="+",
                        default=[ROOT / "configs" / "study" / "k-resonators.json", ROOT / "configs" / "nv-wavenet.json"])
    parser.add_argument("--midi", type=Path, default=ROOT / "examples" / "example.mid")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--partials", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from midi2wave.conditioning import resonators
    from midi2wave.config import SamplingOptions, load_config
    from midi2wave.model import Midi2Wave
    from midi2wave.render.synthesize import read_piece, render_notes

    torch.set_num_threads(1)
    print(f"# {platform.processor() or platform.machine()}, one stream, 1 thread, numba fp32, "
          f"{args.seconds:g} s of {args.midi.name}; load average {os.getloadavg()[0]:.1f}")
    print()
    print("| preset | oscillators alive (mean / max) | RTF without bank | RTF with bank | with / without |")
    print("|---|---:|---:|---:|---:|")
    options = SamplingOptions(engine="numba", threads=1, chunk_seconds=0.0)
    for path in args.configs:
        config = load_config(path)
        bank = config.data.resonators
        plain_data = dataclasses.replace(config.data, resonators=dataclasses.replace(
            bank, partials=0, synthesis_partials=0, gain=0.0, pre_emphasis=0.0, noise_lowpass=0.0, level_pitches=(),
            levels_db=(), level_velocity_slope_table=(),
            level_velocity_slopes=(), prompt_levels_db=(), prompt_velocity_slope_table=(), prompt_seconds=0.0,
            room_tone_hz=(), room_tone_db=(),
            velocity_tone_velocities=(), velocity_tone_hz=(), velocity_tone_db=(), prompt_velocity_tone_db=(),
            aftersound_pitches=(), aftersound_knee_s=(), aftersound_decay_db_per_s=(),
            aftersound_hold_decay_db_per_s=(), undamped_from_pitch=0, undamped_release_db_per_s=0.0,
            damper_level_db=0.0))
        # --partials: the analysis's; a config's synthesis-only partials stay (at least as many)
        more = {"synthesis_partials": max(args.partials, bank.synthesis_partials)} if bank.synthesis_partials else {}
        bank_data = dataclasses.replace(config.data, resonators=dataclasses.replace(bank, partials=args.partials, **more))
        torch.manual_seed(0)
        plain = Midi2Wave(config.model, plain_data).eval()
        banked = Midi2Wave(config.model, bank_data).eval()
        banked.load_state_dict(plain.state_dict())
        opts = options.resolve(config)  # the preset's own sampling (e.g. its sustain innovation share)
        sampling = {"plain": dataclasses.replace(opts, partial_levels=0.0), "bank": opts}  # no bank, no levels
        notes, pedals = read_piece(args.midi, config.data.sustain_threshold)
        sr = config.data.sample_rate_hz
        n = int(args.seconds * sr)
        sched = resonators.schedule(notes, 0, n, sr, resonators.from_data_config(bank_data))
        alive = [((sched.start <= t) & (sched.stop > t)).sum() for t in range(0, n, sr // 100)]
        best = {}
        for name, model in (("plain", plain), ("bank", banked)):  # warm-up (compile / cache load)
            render_notes(model, notes, pedals, sampling[name], end_s=0.05, progress=False)
        for _ in range(args.repeats):
            for name, model in (("plain", plain), ("bank", banked)):
                t0 = time.perf_counter()
                render_notes(model, notes, pedals, sampling[name], end_s=args.seconds, progress=False)
                wall = time.perf_counter() - t0
                best[name] = min(best.get(name, float("inf")), wall)
        rtf_plain, rtf_bank = best["plain"] / args.seconds, best["bank"] / args.seconds
        print(f"| {path.name} | {sum(alive) / len(alive):.0f} / {max(alive)} | {rtf_plain:.3f} | {rtf_bank:.3f} "
              f"| {rtf_bank / rtf_plain:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
