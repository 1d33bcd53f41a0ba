"""A/B of generation speed against an earlier commit, in one process: the commit's package is
extracted (`git archive`) as `midi2wave_base` into a temporary folder, and both packages render the
same seconds of examples/example.mid with the same weights (the presets' sizes, random weights, the
bank with `--partials` partials, the preset's own sampling; numba, one stream, one thread), with and
without the bank, interleaved round by round (best of `--repeats`), so that a busy spell of the
shared machine falls on both. Also says whether the two render bit-identical audio.

    python bench/kernel_ab.py --base d628d7f [--configs configs/study/y-partial-levels.json configs/default.json]
                              [--seconds 10] [--partials 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PACKAGES = ("midi2wave_base", "midi2wave")


def extract_base(commit: str, into: Path) -> None:
    """The package of `commit` as `into/midi2wave_base` (its imports inside the package are relative)."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "midi2wave"], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            member.name = "midi2wave_base" + member.name[len("midi2wave"):]
            tar.extract(member, into, filter="data")


def known_settings(cfgm, config_path: Path) -> Path:
    """`config_path`, or a copy without the sampling and bank settings that `cfgm` (the base's
    config module, which may predate them) does not know: they are this tree's additions."""
    raw = json.loads(Path(config_path).read_text())
    known = {"sampling": {f.name for f in dataclasses.fields(cfgm.ModelSampling)},
             "resonators": {f.name for f in dataclasses.fields(cfgm.ResonatorConfig)}}
    sections = [(raw.get("sampling"), known["sampling"]), (raw.get("data", {}).get("resonators"), known["resonators"])]
    dropped = [key for section, names in sections if section for key in list(section) if key not in names]
    if not dropped:
        return Path(config_path)
    for section, names in sections:
        for key in [k for k in (section or {}) if k not in names]:
            del section[key]
    print(f"{cfgm.__name__}: without {', '.join(dropped)} (unknown there)", file=sys.stderr)
    out = Path(tempfile.mkdtemp()) / Path(config_path).name
    out.write_text(json.dumps(raw))
    return out


def setup(package: str, config_path: Path, partials: int):
    """(render function, {name: (model, options)}, notes, pedals) of `package` for a preset."""
    cfgm = importlib.import_module(package + ".config")
    mdl = importlib.import_module(package + ".model")
    syn = importlib.import_module(package + ".render.synthesize")
    config = cfgm.load_config(known_settings(cfgm, config_path))
    bank = config.data.resonators
    # the bank off: only the fields this tree's ResonatorConfig has (the base may predate some)
    fields = {f.name for f in dataclasses.fields(bank)}
    off = dict(partials=0, synthesis_partials=0, gain=0.0, pre_emphasis=0.0, noise_lowpass=0.0, level_pitches=(),
               levels_db=(), level_velocity_slope_table=(), level_velocity_slopes=(), prompt_levels_db=(),
               prompt_velocity_slope_table=(), prompt_seconds=0.0, room_tone_hz=(), room_tone_db=(),
               velocity_tone_velocities=(), velocity_tone_hz=(), velocity_tone_db=(), prompt_velocity_tone_db=(),
               aftersound_pitches=(), aftersound_knee_s=(), aftersound_decay_db_per_s=(), aftersound_hold_decay_db_per_s=(),
               undamped_from_pitch=0, undamped_release_db_per_s=0.0, damper_level_db=0.0)
    plain_data = dataclasses.replace(config.data, resonators=dataclasses.replace(
        bank, **{k: v for k, v in off.items() if k in fields}))
    more = {"synthesis_partials": max(partials, bank.synthesis_partials)} if getattr(bank, "synthesis_partials", 0) else {}
    bank_data = dataclasses.replace(config.data, resonators=dataclasses.replace(bank, partials=partials, **more))
    import torch

    torch.manual_seed(0)
    plain = mdl.Midi2Wave(config.model, plain_data).eval()
    banked = mdl.Midi2Wave(config.model, bank_data).eval()
    banked.load_state_dict(plain.state_dict())
    opts = cfgm.SamplingOptions(engine="numba", threads=1, chunk_seconds=0.0)
    # resolved against the model's defaults: `resolve` from this commit on, `for_model` before it
    opts = opts.resolve(config) if hasattr(opts, "resolve") else opts.for_model(config.sampling)
    runs = {"plain": (plain, dataclasses.replace(opts, partial_levels=0.0)), "bank": (banked, opts)}
    notes, pedals = syn.read_piece(ROOT / "examples" / "example.mid", config.data.sustain_threshold)
    for model, options in runs.values():  # warm-up (compile / cache load)
        syn.render_notes(model, notes, pedals, options, end_s=0.05, progress=False)
    return syn.render_notes, runs, notes, pedals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--configs", type=Path, nargs="+",
                        default=[ROOT / "configs" / "study" / "y-partial-levels.json", ROOT / "configs" / "default.json"])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--partials", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(1)
    tmp = tempfile.TemporaryDirectory()
    extract_base(args.base, Path(tmp.name))
    sys.path.insert(0, tmp.name)
    print(f"# base {args.base}, one stream, 1 thread, numba fp32, {args.seconds:g} s of example.mid, "
          f"{args.partials} partials, best of {args.repeats}; load average {os.getloadavg()[0]:.1f}")
    print()
    print("| preset | RTF base without / with bank | RTF now without / with bank | now / base without | "
          "now / base with bank | same audio |")
    print("|---|---:|---:|---:|---:|---|")
    for path in args.configs:
        setups = {p: setup(p, path, args.partials) for p in PACKAGES}
        best, audio = {}, {}
        for r in range(args.repeats):
            for what in ("bank", "plain"):
                for package in (PACKAGES if r % 2 == 0 else PACKAGES[::-1]):
                    render, runs, notes, pedals = setups[package]
                    model, options = runs[what]
                    t0 = time.perf_counter()
                    out = render(model, notes, pedals, options, end_s=args.seconds, progress=False)
                    wall = time.perf_counter() - t0
                    best[package, what] = min(best.get((package, what), float("inf")), wall)
                    audio[package, what] = np.asarray(out[0] if isinstance(out, tuple) else out)
        rtf = {k: v / args.seconds for k, v in best.items()}
        same = all(np.array_equal(audio["midi2wave_base", w], audio["midi2wave", w]) for w in ("plain", "bank"))
        print(f"| {path.name} | {rtf['midi2wave_base', 'plain']:.3f} / {rtf['midi2wave_base', 'bank']:.3f} "
              f"| {rtf['midi2wave', 'plain']:.3f} / {rtf['midi2wave', 'bank']:.3f} "
              f"| {rtf['midi2wave', 'plain'] / rtf['midi2wave_base', 'plain']:.2f}x "
              f"| {rtf['midi2wave', 'bank'] / rtf['midi2wave_base', 'bank']:.2f}x | {'yes' if same else 'NO'} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
