"""A training run's checkpoints: what a step checkpoint holds, so that `--resume` continues exactly.

A run's `checkpoints/` folder holds `step_NNNNNN.pt` (the newest `keep` of them) and `last.pt`, a
hard link to (or copy of) the newest one, replaced in one rename. Besides the weights, EMA, optimizer
and grad scaler, a checkpoint holds every rank's RNG states (plain tensors and ints, so it loads with
`weights_only=True`) and the position in the data stream; the trainer (train.py) owns that position
and restores it from `TrainingState.data`.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import load_checkpoint, load_state, save_checkpoint, step_checkpoints
from ..config import Config
from ..errors import TrainingError
from ..files import atomic_path

__all__ = ["CHECKPOINT_DIR", "LAST_CHECKPOINT", "RunCheckpoints", "TrainingState", "latest_checkpoint",
           "load_initial_weights", "restore_training_state", "rng_state", "set_rng_state"]

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"


# ----------------------------------------------------------------------------------------- RNG


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's RNG states as plain data (tensors, ints, floats) for a weights_only checkpoint."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss_next": gauss_next},
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Inverse of `rng_state`."""
    torch.set_rng_state(state["torch"].cpu().to(torch.uint8))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].cpu().numpy().astype(np.uint32), int(n["pos"]),
                         int(n["has_gauss"]), float(n["cached_gaussian"])))
    p = state["python"]
    random.setstate((int(p["version"]), tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"].cpu().to(torch.uint8), device)


# ------------------------------------------------------------------------------------ writing


class RunCheckpoints:
    """The `checkpoints/` folder of a run: writes step checkpoints, points `last.pt` at the newest
    and keeps the newest `keep` (rank 0 only; the other ranks never write)."""

    def __init__(self, folder: Path, keep: int) -> None:
        self.folder = Path(folder)
        self.keep = keep

    def save(self, step: int, config: Config, model: torch.nn.Module, *, ema: torch.nn.Module | None,
             optimizer: dict, scheduler: dict, grad_scaler: dict | None, rng: list, data: dict[str, int],
             metrics: dict[str, float]) -> Path:
        """Write `step_NNNNNN.pt`, point `last.pt` at it, drop the oldest; returns its path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"step_{step:06d}.pt"
        save_checkpoint(path, config, model, step, ema=ema, optimizer=optimizer, scheduler=scheduler,
                        grad_scaler=grad_scaler, rng=rng, data=data, metrics=metrics)
        self._link_last(path)
        self._rotate()
        return path

    def _link_last(self, path: Path) -> None:
        with atomic_path(self.folder / LAST_CHECKPOINT, force=True) as tmp:
            try:
                os.link(path, tmp)
            except OSError:  # filesystem without hard links
                shutil.copyfile(path, tmp)

    def _rotate(self) -> None:
        steps = step_checkpoints(self.folder)
        for old in steps[: max(0, len(steps) - self.keep)]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()


def latest_checkpoint(folder: Path) -> Path | None:
    """The highest `step_*.pt`, else `last.pt`, else None. The step file first: `last.pt` is linked
    to it after it is written, so a run killed in between has a newer step file than `last.pt`."""
    steps = step_checkpoints(folder)
    if steps:
        return steps[-1]
    return folder / LAST_CHECKPOINT if (folder / LAST_CHECKPOINT).is_file() else None


# ------------------------------------------------------------------------------------ reading


@dataclass
class TrainingState:
    """What a checkpoint restores beyond the modules: the step, the data position (`epoch`,
    `batch_in_epoch`, non-finite counters, world size and batch size it was saved with), every
    rank's RNG states and the last logged metrics."""

    step: int
    data: dict[str, Any] = field(default_factory=dict)
    rng: list = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def restore_training_state(path: Path, model: torch.nn.Module, ema: torch.nn.Module | None,
                           optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                           device: torch.device) -> TrainingState:
    """Load a training checkpoint into the model, EMA (the model's weights when it saved none),
    optimizer and (when enabled) grad scaler; returns the rest."""
    state = load_checkpoint(path, map_location=device)
    model.load_state_dict(state["model"])
    if ema is not None:
        ema.load_state_dict(state["ema"] if state.get("ema") else state["model"])
    if state.get("optimizer"):
        optimizer.load_state_dict(state["optimizer"])
    if state.get("grad_scaler") and scaler.is_enabled():
        scaler.load_state_dict(state["grad_scaler"])
    rng = state.get("rng")
    return TrainingState(step=int(state["step"]), data=dict(state.get("data") or {}),
                         rng=rng if isinstance(rng, list) else [], metrics=dict(state.get("metrics") or {}))


def load_initial_weights(path: Path, model: torch.nn.Module, ema: torch.nn.Module | None = None,
                         device: torch.device | str = "cpu") -> None:
    """Load another run's (EMA) weights, or a released model's, into `model` and `ema` (fine-tuning
    starts there); TrainingError when they do not fit the network's shape."""
    weights, _, _ = load_state(path, use_ema=True)
    weights = {k: v.to(device) for k, v in weights.items()}
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise TrainingError(f"{path}: its weights do not fit this config's network "
                            f"({' '.join(str(e).split())[:200]})") from None
    if ema is not None:
        ema.load_state_dict(weights)
