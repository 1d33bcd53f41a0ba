"""`midi2wave info PATH`: describe a checkpoint, an exported model, a config JSON or a dataset store."""

from __future__ import annotations

import json
from pathlib import Path
from .config import Config, load_config
from .data.store import MANIFEST, STORE_FORMAT, read_manifest
from .errors import InputError


def _count_parameters(config: Config) -> tuple[int, int]:
    """(total, context stack + conditioning) parameters of the model a config describes (no memory used)."""
    import torch

    from .model import Midi2Wave

    with torch.device("meta"):
        model = Midi2Wave(config.model, config.data)
    total = sum(p.numel() for p in model.parameters())
    conditioning = sum(p.numel() for n, p in model.named_parameters()
                       if n.split(".")[0] in ("context", "upsampler", "cond_proj", "year_embed", "mel_head",
                                              "excitation_weight"))
    return total, conditioning


def describe_config(config: Config) -> list[str]:
    m, d, t, r = config.model, config.data, config.train, config.data.resonators
    total, cond = _count_parameters(config)
    rf = m.receptive_field_samples
    output = f"MoL x{m.n_mixtures} (16-bit)" if m.output_kind == "mol" else f"mu-law softmax x{m.mulaw_classes}"
    context = (f"{m.context_stacks}x{m.context_layers_per_stack} layers, {m.context_channels} ch, kernel "
               f"{m.context_kernel_size}, {'causal' if m.context_causal else 'non-causal'}, upsample {m.upsample}")
    extras = []
    if m.year_embedding and d.use_year:
        extras.append("year embedding")
    if d.excitation_partials:
        extras.append(f"excitation ({d.excitation_partials} partials)")
    if m.aux_mel_bands:
        extras.append(f"aux mel head ({m.aux_mel_bands} bands)")
    return [
        f"model:      {m.n_stacks}x{m.layers_per_stack} layers (dilations 1..{2 ** (m.layers_per_stack - 1)}), "
        f"R={m.residual_channels} G={m.gate_channels} S={m.skip_channels}, kernel {m.kernel_size}, "
        f"input {m.input_kind}, output {output}",
        f"context:    {context}",
        f"condition:  {', '.join(d.conditioning) or '-'} ({d.conditioning_channels} rows at {d.frame_rate_hz} Hz)"
        + (f"; {', '.join(extras)}" if extras else ""),
        *([f"resonators: {r.partials} partials per note below {r.max_hz:g} Hz, kappa "
           f"{r.kappa:g}" + (f" (then {r.sustain_kappa:g} after {r.attack_s:g} s)" if r.sustain_kappa else "")
           + f"; the network reads the {r.input}"
           + (f"; partial levels fitted at {len(r.level_pitches)} pitches" if r.levels_db else "")
           + (f", with a prompt sound over {r.prompt_seconds:g} s" if r.prompt_levels_db else "")
           + (f", bent by velocity (a tone at {len(r.velocity_tone_velocities)} velocities)"
              if r.velocity_tone_db else "")
           + (f"; rooms of {len(r.room_years)} years" if r.room_years else "")
           + (" with their tones" if r.room_tone_db else "")] if r.enabled else []),
        f"parameters: {total:,} ({cond:,} in conditioning paths)",
        f"receptive:  {rf} samples = {1000 * rf / d.sample_rate_hz:.1f} ms at {d.sample_rate_hz} Hz",
        f"training:   batch {t.batch_size} x {d.segment_seconds:g} s, lr {t.learning_rate:g}, "
        f"{t.max_steps:,} steps, amp {t.amp}, ema {t.ema_decay:g}",
    ]


def describe_checkpoint(path: Path) -> list[str]:
    from .checkpoint import checkpoint_config, find_checkpoint, load_checkpoint, load_state

    file = find_checkpoint(path)
    if file.suffix == ".safetensors":
        weights, config, _ = load_state(file)
        n = sum(v.numel() for v in weights.values())
        return [f"{file}: exported model ({n:,} weights)"] + describe_config(config)
    state = load_checkpoint(file)
    config = checkpoint_config(state, str(file))
    lines = [f"{file}: checkpoint at step {state['step']:,}"
             + (" (with EMA weights)" if state.get("ema") else "")]
    lines += describe_config(config)
    metrics = state.get("metrics") or {}
    shown = [f"{k.replace('_', ' ')} {v:.4f}" for k, v in sorted(metrics.items()) if isinstance(v, float)]
    if shown:
        lines.append(f"metrics:    {', '.join(shown)}")
    data = state.get("data") or {}
    if data:
        lines.append(f"data:       epoch {data.get('epoch')}, batch {data.get('batch_in_epoch')} of it, "
                     f"{data.get('world_size', 1)} process(es)")
    return lines


def describe_store(path: Path) -> list[str]:
    manifest = read_manifest(path)
    pieces = manifest["pieces"]
    splits: dict[str, list[float]] = {}
    for record in pieces:
        seconds = float(record.get("duration_seconds") or int(record["n_samples"]) / manifest.get("sample_rate_hz", 1))
        splits.setdefault(str(record["split"]), []).append(seconds)
    lines = [f"{path}: dataset store, {len(pieces)} pieces at {manifest.get('sample_rate_hz')} Hz"]
    for split in sorted(splits, key=lambda s: ({"train": 0, "validation": 1, "test": 2}.get(s, 3), s)):
        durations = splits[split]
        lines.append(f"  {split:<11} {len(durations):6d} pieces  {_duration(sum(durations)):>10}")
    return lines


def describe(path: str | Path | None) -> str:
    """A few lines describing `path` (None: the bundled model)."""
    from .checkpoint import bundled_model_path

    if path is None:
        return "\n".join(describe_checkpoint(bundled_model_path()))
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / MANIFEST).is_file():
            return "\n".join(describe_store(path))
        return "\n".join(describe_checkpoint(path))
    if path.suffix == ".json":
        try:
            values = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            values = None
        if isinstance(values, dict) and values.get("format") == STORE_FORMAT:
            return "\n".join(describe_store(path.parent))
        return "\n".join([f"{path}: config"] + describe_config(load_config(path)))
    return "\n".join(describe_checkpoint(path))


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def info_from_cli(args) -> int:
    print(describe(args.path))
    return 0
