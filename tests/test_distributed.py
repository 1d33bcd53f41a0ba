"""midi2wave.training.distributed's collectives and teardown: two processes in a gloo group on
loopback (no torchrun), and the ledger of tensors lent to the backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

from midi2wave.training import distributed as D
from helpers import free_port

ROOT = Path(__file__).resolve().parents[1]

RANK_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    import torch.distributed as dist
    import torch.distributed.distributed_c10d as c10d
    from midi2wave.training import distributed as D

    # every tensor handed to a collective (by this module, or by torch's helpers under it) is checked
    # against the ledger of lent tensors
    handed, unlent = [0], [0]
    def checked(collective):
        def call(first, *args, **kwargs):
            tensors = list(first) if isinstance(first, (list, tuple)) else [first]
            tensors += [a for a in args if isinstance(a, torch.Tensor)]
            handed[0] += len(tensors)
            unlent[0] += sum(id(t) not in D._lent for t in tensors)
            return collective(first, *args, **kwargs)
        return call
    for name in ("all_reduce", "all_gather", "broadcast", "all_gather_into_tensor"):
        setattr(dist, name, checked(getattr(c10d, name)))
        setattr(c10d, name, getattr(dist, name))

    info, created = D.setup(torch.device("cpu"))
    summed = torch.full((3,), float(info.rank + 1))
    D.all_reduce_sum(summed)
    # payloads of different lengths: the shorter one is padded to the longer one
    gathered = D.all_gather_object({"rank": info.rank, "text": "x" * (10 + 5000 * info.rank),
                                    "tensor": torch.arange(info.rank + 2)})
    if "--barrier" in sys.argv:
        D.barrier()
    # from here on the interpreter hands the GIL to no other thread of itself (a 10 s switch
    # interval); only a wait that blocks (cleanup's) lets gloo's worker threads free their works
    sys.setswitchinterval(10)
    D.cleanup(created)
    print(json.dumps({"rank": info.rank, "summed": summed.tolist(), "handed": handed[0], "unlent": unlent[0],
                      "lent_after": D.tensors_lent(),
                      "gathered": [[g["rank"], len(g["text"]), g["tensor"].tolist()] for g in gathered]}))
""")


def _run_two_ranks(*args: str) -> list[dict]:
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE="2",
               OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
    procs = [subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, *args], env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    try:
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate()
    errors = [f"rank {r} (exit {proc.returncode}): {err[-2000:]}"
              for r, (proc, (_, err)) in enumerate(zip(procs, outputs)) if proc.returncode != 0]
    assert not errors, "\n".join(errors)
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def test_two_ranks_sum_gather_and_free_every_lent_tensor_before_teardown_returns():
    for args in ([], ["--barrier"]):
        results = _run_two_ranks(*args)
        for rank, result in enumerate(results):
            assert result["rank"] == rank
            assert result["summed"] == [3.0, 3.0, 3.0]
            assert result["gathered"] == [[0, 10, [0, 1]], [1, 5010, [0, 1, 2]]]
            # the backend is handed no tensor of Python's but the module's own lent copies
            assert result["handed"] >= 5 and result["unlent"] == 0, result
            # cleanup returns only once gloo's threads have freed every tensor lent to them
            assert result["lent_after"] == 0, (args, result)


def test_the_ledger_keeps_a_tensor_until_it_is_freed_and_the_wait_gives_up_at_its_timeout():
    before = D.tensors_lent()
    held = D._lend(torch.ones(2))
    assert D.tensors_lent() == before + 1
    assert not D.await_release(timeout_seconds=0.02)  # still referenced: the wait gives up
    del held
    assert D.await_release(timeout_seconds=0.02)
    assert D.tensors_lent() == 0


def test_one_process_collectives_are_identities_and_lend_nothing():
    tensor = torch.arange(3.0)
    assert D.all_reduce_sum(tensor) is tensor and tensor.tolist() == [0.0, 1.0, 2.0]
    assert D.all_gather_object({"a": 1}) == [{"a": 1}]
    assert D.tensors_lent() == 0


def test_teardown_returns_only_once_the_backend_has_freed_what_it_was_lent(monkeypatch):
    """As gloo's worker thread does after a wait has returned: another thread holds the last
    reference to a lent tensor for a while; the group's teardown waits for it (the GIL free)."""
    destroyed = []
    monkeypatch.setattr(D.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(D.dist, "destroy_process_group", lambda: destroyed.append(True))
    worker_holds = [D._lend(torch.ones(4))]
    threading.Timer(0.2, worker_holds.clear).start()
    D.cleanup(created=True)
    assert destroyed == [True]
    assert D.tensors_lent() == 0 and worker_holds == []


def test_a_lent_tensor_stays_lent_while_only_cpp_holds_it():
    """The premise of the ledger: the weak reference dies when C++ lets go, not when Python does
    (torch keeps the Python object of a tensor that C++ still holds)."""
    owner = torch.zeros(2, requires_grad=True)
    owner.grad = D._lend(torch.ones(2))  # held by the autograd metadata (C++), by nothing in Python
    assert D.tensors_lent() == 1
    owner.grad = None
    assert D.tensors_lent() == 0


def test_teardown_warns_when_the_backend_keeps_a_tensor_past_the_wait(monkeypatch, caplog):
    monkeypatch.setattr(D, "RELEASE_WAIT_SECONDS", 0.05)
    stuck = D._lend(torch.ones(1))  # as a collective that never finishes holds its tensors
    D.cleanup(created=False)
    assert "still holds 1 tensor(s) after 0.05 s" in caplog.text
    del stuck
    assert D.tensors_lent() == 0


def test_a_collective_that_raises_leaves_nothing_lent_though_its_traceback_is_kept(monkeypatch):
    """A peer gone: the collective raises, and the traceback (kept while the error propagates, and by
    pytest here) holds the frames; they hold no lent tensor, so teardown does not wait in vain."""
    def fails(*args, **kwargs):
        raise RuntimeError("Connection closed by peer")

    monkeypatch.setattr(D, "active", lambda: True)
    monkeypatch.setattr(D, "_collective_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(D.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(D.dist, "all_reduce", fails)
    monkeypatch.setattr(D.dist, "all_gather", fails)
    with pytest.raises(RuntimeError) as reduced:
        D.all_reduce_sum(torch.ones(3))
    with pytest.raises(RuntimeError) as gathered:
        D.all_gather_object({"a": 1})
    assert reduced.traceback and gathered.traceback
    assert D.tensors_lent() == 0
