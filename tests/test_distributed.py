"""midi2wave.training.distributed's collectives and teardown: two processes in a gloo group on
loopback (no torchrun), and the ledger of tensors lent to the backend."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import torch

from midi2wave.training import distributed as D

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
    lent_before = D.tensors_lent()
    D.cleanup(created)
    print(json.dumps({"rank": info.rank, "summed": summed.tolist(), "lent_before": lent_before,
                      "handed": handed[0], "unlent": unlent[0],
                      "lent_after": D.tensors_lent(),
                      "gathered": [[g["rank"], len(g["text"]), g["tensor"].tolist()] for g in gathered]}))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_ranks(*args: str) -> list[dict]:
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2",
               OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
    procs = [subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, *args], env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            proc.kill()
    return results


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
