"""Distributed-training helpers for runs launched with `torchrun` (DDP).

Outside torchrun (no WORLD_SIZE/RANK in the environment) every helper is a no-op for a single
process: rank 0 of a world of 1. Under torchrun the process group is initialised from torchrun's
environment (MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK), NCCL on CUDA and gloo on CPU, so
multi-node runs use torchrun's own options (--nnodes, --rdzv-endpoint ...), no home-made launcher.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..devices import check_device, default_device
from ..errors import InputError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Rank, world size and local rank from torchrun's environment (0, 1, 0 outside torchrun)."""

    def read(name: str, default: int) -> int:
        value = os.environ.get(name)
        try:
            return int(value) if value not in (None, "") else default
        except ValueError:
            return default

    return DistInfo(read("RANK", 0), read("WORLD_SIZE", 1), read("LOCAL_RANK", 0))


def resolve_device(requested: str | torch.device | None, info: DistInfo) -> torch.device:
    """The device this process trains on (InputError, one line, for one that does not exist here).

    None: cuda (this process's LOCAL_RANK GPU) if available, else cpu. Under torchrun with several
    processes, a plain 'cuda' (or any cuda index) means the GPU of LOCAL_RANK: one GPU per process.
    """
    device = check_device(requested) if requested is not None else default_device()
    if device.type == "cuda":
        if info.is_distributed or device.index is None:
            index = info.local_rank if info.is_distributed else (device.index or 0)
            count = torch.cuda.device_count()
            if index >= count:
                raise InputError(f"device {requested or 'cuda'}: LOCAL_RANK {info.local_rank} needs cuda:{index}, "
                                 f"but {count} CUDA device(s) are visible (one GPU per process: "
                                 f"torchrun --nproc-per-node at most {count})")
            device = torch.device("cuda", index)
    return device


def restart_count() -> int:
    """How often torchrun has restarted this job's workers (TORCHELASTIC_RESTART_COUNT; 0 outside
    torchrun or on the first attempt)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    except ValueError:
        return 0


def setup(device: torch.device, info: DistInfo | None = None) -> tuple[DistInfo, bool]:
    """Initialise the process group when running under torchrun with more than one process.

    Returns (info, created): `created` is True when this call created the group (call `cleanup`).
    """
    info = info or env_info()
    if not info.is_distributed:
        return info, False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if dist.is_initialized():
        return info, False
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs: dict[str, Any] = {}
    if device.type == "cuda":
        kwargs["device_id"] = device  # lets NCCL bind eagerly to this GPU
    dist.init_process_group(backend=backend, **kwargs)
    return info, True


def cleanup(created: bool) -> None:
    if created and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if active():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks in place (identity in a single process); returns the tensor."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    """[obj of rank 0, obj of rank 1, ...] on every rank ([obj] in a single process)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
