"""Distributed-training helpers for runs launched with `torchrun` (DDP).

Outside torchrun (no WORLD_SIZE/RANK in the environment) every helper is a no-op for a single
process: rank 0 of a world of 1. Under torchrun the process group is initialised from torchrun's
environment (MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK), NCCL on CUDA and gloo on CPU, so
multi-node runs use torchrun's own options (--nnodes, --rdzv-endpoint ...), no home-made launcher.
"""

from __future__ import annotations

import functools
import os
import pickle
import time
import traceback
import weakref
from dataclasses import dataclass
from datetime import timedelta
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


def _env_int(name: str) -> int:
    try:
        return int(os.environ.get(name, "0") or 0)
    except ValueError:
        return 0


def restart_count() -> int:
    """How often this node's torchrun agent has restarted its workers after a failure
    (TORCHELASTIC_RESTART_COUNT; 0 outside torchrun). Per node: an agent that restarts its healthy
    workers because another node's failed does not count it."""
    return _env_int("TORCHELASTIC_RESTART_COUNT")


def max_restarts() -> int:
    """torchrun's --max-restarts (TORCHELASTIC_MAX_RESTARTS; 0 outside torchrun)."""
    return _env_int("TORCHELASTIC_MAX_RESTARTS")


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
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True):
        kwargs.update(store=_attempt_store(info), rank=info.rank, world_size=info.world_size)
    dist.init_process_group(backend=backend, **kwargs)
    return info, True


_HANDSHAKE_POLL_SECONDS = 0.01


def _attempt_store(info: DistInfo, timeout: timedelta = timedelta(minutes=30)) -> dist.Store:
    """The store of torchrun's agent, under a prefix that this start of the workers alone uses.

    Under torchrun with c10d rendezvous the workers share the agent's TCPStore, and it outlives a
    restart (--max-restarts): the new workers would read the gloo / NCCL addresses that the previous
    ones left there ("Connection refused" after a restart; pytorch/pytorch#135712). The restart count
    cannot tell the starts apart (it is counted per node), so rank 0 makes a fresh token and hands it
    to every other rank in a handshake that no key left by an earlier start can complete: rank r posts
    a fresh nonce, rank 0 answers (nonce, token) to the newest nonce it sees, rank r confirms that pair.
    """
    import uuid

    base = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), info.world_size,
                         is_master=False, timeout=timeout)
    deadline = time.monotonic() + timeout.total_seconds()

    def read(key: str) -> str:
        return base.get(f"midi2wave/{key}").decode()  # waits for the key (up to the store's timeout)

    def poll(what: str) -> None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"rank {info.rank}: no {what} within {timeout} (torchrun's store at "
                               f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']})")
        time.sleep(_HANDSHAKE_POLL_SECONDS)

    if info.rank == 0:
        token = uuid.uuid4().hex
        for rank in range(1, info.world_size):
            answered = None
            while True:
                nonce = read(f"hello/{rank}")  # an earlier start's at first, perhaps
                if nonce != answered:
                    base.set(f"midi2wave/ack/{rank}", f"{nonce}:{token}")
                    answered = nonce
                if base.check([f"midi2wave/confirm/{rank}"]) and read(f"confirm/{rank}") == f"{nonce}:{token}":
                    break
                poll(f"confirmation from rank {rank}")
    else:
        nonce = uuid.uuid4().hex
        base.set(f"midi2wave/hello/{info.rank}", nonce)
        while True:
            reply = read(f"ack/{info.rank}")
            if reply.startswith(nonce + ":"):
                token = reply[len(nonce) + 1:]
                base.set(f"midi2wave/confirm/{info.rank}", reply)
                break
            poll("answer from rank 0")
    return dist.PrefixStore(f"midi2wave/{token}/", base)


# Every tensor that Python knows and that this module hands to a collective is a copy of the
# module's own, remembered here (id -> weak reference) until the backend lets go of it. Why: gloo's
# worker threads free a finished work (and, through a barrier's weak references, the works before
# it) after the caller's wait has returned, and freeing a tensor that Python knows takes the GIL.
# A worker thread that asks for the GIL while the interpreter finalizes is ended inside a noexcept
# destructor: the process aborts ("terminate called without an active exception"), and under
# torchrun with several nodes the other node's agent then waits out its exit barrier. DDP keeps the
# process group and its threads alive past destroy_process_group, so nothing else joins them;
# `cleanup` waits (the GIL free) until every tensor lent here has been freed. DDP's own collectives
# (gradient buckets, broadcasts of parameters and buffers) hand gloo tensors that C++ made and
# Python never saw, which free without the GIL.
_lent: dict[int, weakref.ref] = {}

RELEASE_WAIT_SECONDS = 10.0  # a collective that never finishes (a peer gone) stops the wait here


def _lend(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor`, remembered until it is freed. The caller drops its own references on the way out,
    also when a collective raises (an exception's traceback keeps the caller's frame)."""
    # the callback is C (a partial of dict.pop), not Python: the freeing thread must not hand the
    # GIL over between emptying the ledger and finishing the free
    _lent[id(tensor)] = weakref.ref(tensor, functools.partial(_lent.pop, id(tensor)))
    return tensor


def _clear_frames_below(error: BaseException) -> None:
    """Drop the locals of the finished frames in `error`'s traceback (torch's collective wrappers
    hold the lent tensors as arguments): the traceback lives on while the error propagates, past
    `cleanup`. The frame that calls this keeps its own; it drops them itself."""
    traceback.clear_frames(error.__traceback__)


def tensors_lent() -> int:
    """How many tensors handed to collectives by this module the backend still holds."""
    return len(_lent)


def await_release(timeout_seconds: float | None = None) -> bool:
    """Wait, with the GIL free, until the backend has freed every tensor lent to it (at most
    `timeout_seconds`, RELEASE_WAIT_SECONDS by default); True if it has."""
    deadline = time.monotonic() + (RELEASE_WAIT_SECONDS if timeout_seconds is None else timeout_seconds)
    while _lent and time.monotonic() < deadline:
        time.sleep(0.001)
    return not _lent


def cleanup(created: bool) -> None:
    """Destroy the process group made by `setup` (`created`), then wait until the backend has let go
    of every tensor lent to it: the interpreter may finalize right after."""
    try:
        if created and dist.is_initialized():
            dist.destroy_process_group()
    finally:
        if not await_release():
            from .metrics import warn

            warn(f"the process group still holds {tensors_lent()} tensor(s) after {RELEASE_WAIT_SECONDS:g} s "
                 f"(a collective that did not finish?); exiting without waiting longer")


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if active():
        dist.barrier()


def _collective_device() -> torch.device:
    """Where the backend wants its tensors: the current GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks in place (identity in a single process); returns the tensor."""
    if active():
        summed = _lend(tensor.clone())  # the backend may hold its copy after the wait
        try:
            dist.all_reduce(summed, op=dist.ReduceOp.SUM)
            tensor.copy_(summed)
        except BaseException as error:
            _clear_frames_below(error)
            raise
        finally:
            del summed
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    """[obj of rank 0, obj of rank 1, ...] on every rank ([obj] in a single process).

    Pickled, like torch.distributed.all_gather_object, but through tensors of this module's own
    (`_all_gather_bytes`).
    """
    if not active():
        return [obj]
    return [pickle.loads(blob) for blob in _all_gather_bytes(pickle.dumps(obj))]


def _all_gather_bytes(data: bytes) -> list[bytes]:
    """Every rank's `data`, through lent tensors: each rank's length, then every payload padded to
    the longest."""
    world, device = dist.get_world_size(), _collective_device()
    length: torch.Tensor | None = None
    lengths: list[torch.Tensor] = []
    mine: torch.Tensor | None = None
    gathered: list[torch.Tensor] = []
    try:
        length = _lend(torch.tensor([len(data)], dtype=torch.int64, device=device))
        lengths = [_lend(torch.zeros_like(length)) for _ in range(world)]
        dist.all_gather(lengths, length)
        sizes = [int(n.item()) for n in lengths]
        mine = _lend(torch.zeros(max(sizes), dtype=torch.uint8, device=device))
        mine[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)
        gathered = [_lend(torch.empty_like(mine)) for _ in range(world)]
        dist.all_gather(gathered, mine)
        return [g[:size].cpu().numpy().tobytes() for g, size in zip(gathered, sizes)]
    except BaseException as error:
        _clear_frames_below(error)
        raise
    finally:
        del length, lengths, mine, gathered  # see _lend
