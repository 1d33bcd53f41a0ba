"""Checkpoints: self-describing, safe to load, written atomically.

A training checkpoint is a `torch.save`d dict of plain data only — tensors, dicts, lists, ints,
floats, strings, None — so that it loads with `torch.load(weights_only=True)`; a file holding any
other pickled object is refused (`CheckpointError`), never executed. Keys::

    format "midi2wave-checkpoint", version 1, config (the Config as a JSON string), step,
    model (state dict), ema (state dict or None), optimizer, scheduler, grad_scaler (state dicts or
    None), rng (per-rank RNG states), data (the data-stream position), metrics (dict of floats)

The bundled/exported model format is a pair in one folder: `model.safetensors` (weights; its
metadata holds the Config JSON under "config") and `config.json` (the same Config, for humans and
other tools). `load_model` accepts either format, or a run/checkpoint folder.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from .config import Config, ConfigError, config_from_dict
from .errors import CheckpointError
from .files import (ASSETS_DIR, LIVE_ASSETS_DIR, SAFETENSORS_NAME, atomic_write_bytes, find_checkpoint,  # noqa: F401
                    step_checkpoints)  # re-exported: callers import them from here

FORMAT = "midi2wave-checkpoint"
VERSION = 1
CONFIG_NAME = "config.json"
# what torch's weights_only unpickler says when a file asks for anything but plain data
_REFUSAL_MARKERS = ("Unsupported global", "Unsupported operand", "Unsupported class", "unrecognized function",
                    "allowlisted", "Can only build", "Can only create")

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "checkpoint_config",
    "find_checkpoint",
    "step_checkpoints",
    "load_model",
    "load_state",
    "export_safetensors",
    "bundled_model_path",
    "LIVE_ASSETS_DIR",
]


# ------------------------------------------------------------------------------------- writing


def _check_plain(obj: Any, where: str) -> None:
    """Reject anything torch.load(weights_only=True) would refuse, before writing it."""
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is not a string or int")
            _check_plain(v, f"{where}.{k}")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where}: {type(obj).__name__} is not plain checkpoint data")


def _state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    if obj is None:
        return None
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    return {k: v.detach().cpu().clone() if v.device.type != "cpu" else v.detach().clone() for k, v in obj.items()}


def save_checkpoint(path: str | os.PathLike, config: Config, model: Any, step: int = 0, *,
                    ema: Any = None, optimizer: dict | None = None, scheduler: dict | None = None,
                    grad_scaler: dict | None = None, rng: Any = None, data: dict | None = None,
                    metrics: dict | None = None) -> Path:
    """Write a training checkpoint atomically (temp file + os.replace). Returns the path.

    model/ema: modules or state dicts (copied to CPU); optimizer/scheduler/grad_scaler: their
    state_dict()s; rng, data, metrics: plain data. Raises TypeError if anything is not plain data.
    """
    state = {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_json(),
        "step": int(step),
        "model": _state_dict(model),
        "ema": _state_dict(ema),
        "optimizer": optimizer,
        "scheduler": scheduler,
        "grad_scaler": grad_scaler,
        "rng": rng,
        "data": data or {},
        "metrics": metrics or {},
    }
    _check_plain(state, "checkpoint")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


# ------------------------------------------------------------------------------------- reading


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a training checkpoint with torch.load(weights_only=True).

    Raises CheckpointError naming the file if it is missing, corrupt, not a midi2wave checkpoint,
    or holds pickled objects other than plain tensors and containers (those are refused unrun).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: file not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError (zip), EOFError, ...
        text = " ".join(str(e).split())
        if any(marker in text for marker in _REFUSAL_MARKERS):
            raise CheckpointError(
                f"{path}: refused: the file holds pickled objects other than plain tensors and containers "
                f"(not loaded; a midi2wave checkpoint never does)"
            ) from None
        if isinstance(e, EOFError) or "EOF" in text:
            raise CheckpointError(f"{path}: not a readable checkpoint (empty or truncated)") from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {text[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a midi2wave checkpoint (no format marker '{FORMAT}')")
    if int(state.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')} is newer than this "
                              f"midi2wave understands ({VERSION}); upgrade midi2wave")
    for key in ("config", "model", "step"):
        if key not in state:
            raise CheckpointError(f"{path}: checkpoint has no '{key}'")
    return state


def _config_from_json(text: Any, where: str) -> Config:
    try:
        values = json.loads(text) if isinstance(text, (str, bytes)) else text
        return config_from_dict(values)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{where}: stored config is not valid JSON ({e.msg})") from None
    except ConfigError as e:
        raise CheckpointError(f"{where}: stored config is invalid ({e})") from None


def checkpoint_config(state: dict, where: str = "checkpoint") -> Config:
    """The Config stored in a loaded checkpoint."""
    return _config_from_json(state["config"], where)


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], Config]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({' '.join(str(e).split())[:200]})") from None
    if "config" in metadata:
        config = _config_from_json(metadata["config"], str(path))
    else:
        sibling = path.with_name(CONFIG_NAME)
        if not sibling.is_file():
            raise CheckpointError(f"{path}: no config in its metadata and no {CONFIG_NAME} beside it")
        try:
            text = sibling.read_text()
        except OSError as e:
            raise CheckpointError(f"{sibling}: cannot read ({e.strerror or e})") from None
        config = _config_from_json(text, str(sibling))
    return tensors, config


def load_state(path: str | os.PathLike, use_ema: bool = True) -> tuple[dict[str, torch.Tensor], Config, dict]:
    """(weights, Config, checkpoint dict or {} for safetensors) from a checkpoint or safetensors file."""
    path = find_checkpoint(path)
    if path.suffix == ".safetensors":
        tensors, config = _load_safetensors(path)
        return tensors, config, {}
    state = load_checkpoint(path)
    config = checkpoint_config(state, str(path))
    weights = state["ema"] if use_ema and state.get("ema") else state["model"]
    return weights, config, state


def bundled_model_path() -> Path:
    """midi2wave/assets/model.safetensors; CheckpointError if this installation has no bundled model."""
    path = ASSETS_DIR / SAFETENSORS_NAME
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no bundled model in this installation; pass a checkpoint path "
            f"(e.g. runs/NAME/checkpoints/last.pt)"
        )
    return path


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
               use_ema: bool = True) -> tuple[Any, Config]:
    """Rebuild a model from a checkpoint (or safetensors pair, or run folder) alone.

    path None: the bundled model in midi2wave/assets/. use_ema: the EMA weights when the checkpoint
    has them. Returns (Midi2Wave in eval mode on `device`, Config); the model carries the config's
    sampling defaults (`Midi2Wave.sampling_defaults`), so it renders as its config says.
    """
    from .devices import check_device
    from .model import Midi2Wave

    device = check_device(device)
    path = bundled_model_path() if path is None else Path(path)
    weights, config, _ = load_state(path, use_ema=use_ema)
    model = Midi2Wave(config.model, config.data, config.sampling)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:300]
        raise CheckpointError(f"{path}: weights do not match the model its config describes ({first})") from None
    return model.to(device).eval(), config


# ------------------------------------------------------------------------------------- export


def export_safetensors(checkpoint: str | os.PathLike | dict, out_dir: str | os.PathLike,
                       use_ema: bool = True, force: bool = False, synthesis_from: Config | None = None) -> Path:
    """Write `out_dir/model.safetensors` (Config JSON in its metadata) and `out_dir/config.json`
    from a training checkpoint (path or loaded dict); the EMA weights when present and `use_ema`.
    `synthesis_from`: a config whose synthesis-only settings (sampling defaults, partial levels:
    `Config.with_synthesis_settings_from`) the released model gets instead of the checkpoint's.
    Existing files are refused unless `force`. Returns the safetensors path. (`midi2wave export`
    adds the live engine's snapshot for a causal model: `render.livemodel.export_live_snapshot`.)"""
    from safetensors.torch import save

    if isinstance(checkpoint, dict):
        state = checkpoint
        config = checkpoint_config(state)
        weights = state["ema"] if use_ema and state.get("ema") else state["model"]
    else:
        weights, config, _ = load_state(checkpoint, use_ema=use_ema)
    if synthesis_from is not None:
        config = config.with_synthesis_settings_from(synthesis_from)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target, config_path = out_dir / SAFETENSORS_NAME, out_dir / CONFIG_NAME
    if not force:
        for p in (target, config_path):
            if p.exists():
                raise CheckpointError(f"{p}: already exists (use force=True / --force to overwrite)")
    tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    blob = save(tensors, metadata={"format": "midi2wave", "config": config.to_json()})
    atomic_write_bytes(target, blob)
    atomic_write_bytes(config_path, (config.to_json() + "\n").encode())
    return target

