"""Many machines: `torchrun --nnodes 2` with c10d rendezvous on loopback (two launches on this machine
stand for two nodes; gloo on CPU), and an elastic restart after a worker is killed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import pytest

from midi2wave.checkpoint import load_checkpoint
from helpers import free_port, tiny_config
from store_fixture import make_store

pytestmark = pytest.mark.training

ROOT = Path(__file__).resolve().parents[1]
STEPS = 8  # 4 checkpoints apart: the elastic restart resumes from step 4
NODES_TIMEOUT_SECONDS = 240


def _env(**extra) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    env.update({"OMP_NUM_THREADS": "1", **extra})
    return env


def _losses(run: Path) -> dict[int, float]:
    """Loss per step (rank 0's metrics.jsonl; a step logged again after a restart: the later row)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["kind"] == "train"}


def _steps_logged(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _train_args(setup: dict, out: Path) -> list[str]:
    return ["train", "-c", str(setup["config"]), "--data", str(setup["store"]), "--out", str(out),
            "--max-steps", str(STEPS), "--device", "cpu", "-q"]


def _descendants(pid: int) -> list[int]:
    """The processes below `pid` (torchrun starts its workers in sessions of their own)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found, frontier = [], {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found += sorted(frontier)
    return found


def _kill_with_workers(proc: subprocess.Popen) -> None:
    for pid in [*_descendants(proc.pid), proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _launch_nodes(script: list[str], args: list[str], rdzv_id: str, *extra: str, env=None) -> list[subprocess.CompletedProcess]:
    """Two torchrun launches of one process each, meeting at a c10d rendezvous on 127.0.0.1.

    Both are drained at once and share one deadline. A node that fails leaves the other one's agent
    in torchrun's exit barrier (300 s), so on a timeout both agents and their workers are killed and
    both nodes' stderr shown.
    """
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", rdzv_id,
                *extra]
    procs = [subprocess.Popen(torchrun + script + args, env=env or _env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    pool = ThreadPoolExecutor(len(procs))
    try:
        outputs = [pool.submit(proc.communicate) for proc in procs]
        finished, _ = wait(outputs, timeout=NODES_TIMEOUT_SECONDS)
        if len(finished) < len(procs):
            for proc in procs:
                _kill_with_workers(proc)
            tails = [f"node {i} (exit {proc.wait()}): {output.result(timeout=60)[1][-2000:]}"
                     for i, (proc, output) in enumerate(zip(procs, outputs))]
            pytest.fail(f"the two nodes did not both finish in {NODES_TIMEOUT_SECONDS} s\n" + "\n".join(tails))
        return [subprocess.CompletedProcess(proc.args, proc.returncode, *output.result())
                for proc, output in zip(procs, outputs)]
    finally:
        for proc in procs:  # an interrupted test leaves no node behind
            if proc.poll() is None:
                _kill_with_workers(proc)
        pool.shutdown(wait=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A store, a config checkpointing every 4 steps, and the reference: one node, two processes."""
    root = tmp_path_factory.mktemp("torchrun")
    make_store(root / "store", {"train": 2}, seconds=0.4, seed=0)
    config = root / "cfg.json"
    config.write_text(tiny_config(checkpoint_every_steps=4, validation_batches=0, log_every_steps=1).to_json())
    setup = {"root": root, "store": root / "store", "config": config}
    one_node = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "midi2wave.cli", *_train_args(setup, root / "one_node")]
    done = subprocess.run(one_node, env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    setup["reference"] = _losses(root / "one_node")
    assert sorted(setup["reference"]) == list(range(1, STEPS + 1))
    return setup


def test_two_nodes_train_checkpoint_and_match_one_node(setup, tmp_path):
    run = tmp_path / "two_nodes"
    done = _launch_nodes(["-m", "midi2wave.cli"], _train_args(setup, run), "two-nodes")
    for node in done:
        assert node.returncode == 0, node.stderr[-3000:]
    assert "step 8: train" in done[0].stdout + done[1].stdout  # rank 0's summary line, on one node
    checkpoints = run / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.pt", "step_000004.pt", "step_000008.pt"]
    assert load_checkpoint(checkpoints / "last.pt")["data"]["world_size"] == 2
    losses = _losses(run)
    assert sorted(losses) == list(range(1, STEPS + 1))
    for step, loss in losses.items():
        assert loss == pytest.approx(setup["reference"][step], rel=1e-6), step


KILL_ONE_WORKER = textwrap.dedent("""
    # rank 1 kills itself (SIGKILL) as it starts step 7, once: the job's last checkpoint is step 4's
    import os, signal, sys
    from pathlib import Path
    from midi2wave.training import loop
    from midi2wave.cli import main

    marker = Path(os.environ["KILLED_MARKER"])
    original = loop._Trainer.train_step

    def train_step(self, batch, stop_requested):
        if self.info.rank == 1 and self.step == 6 and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, batch, stop_requested)

    loop._Trainer.train_step = train_step
    sys.exit(main())
""")


@pytest.mark.parametrize("nodes", [1, 2], ids=["one_node", "two_nodes"])
def test_elastic_restart_after_a_worker_is_killed_resumes_and_finishes(setup, tmp_path, nodes):
    """--max-restarts 1, two workers (on one node, or one on each of two): one is killed after step 6;
    torchrun restarts the workers (on two nodes it counts the restart on the failed node only), they
    resume from step 4's checkpoint by themselves (same command line) and finish with the losses of
    an uninterrupted run. One node: the restarted workers share the agent's store with the killed
    ones (stale addresses in it); two nodes: the healthy node's workers restart uncounted."""
    script = tmp_path / "kill_one_worker.py"
    script.write_text(KILL_ONE_WORKER)
    run = tmp_path / "elastic"
    marker = tmp_path / "killed"
    env = _env(KILLED_MARKER=str(marker))
    if nodes == 2:
        done = _launch_nodes([str(script)], _train_args(setup, run), "elastic", "--max-restarts", "1", env=env)
    else:
        done = [subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                                "2", "--max-restarts", "1", str(script), *_train_args(setup, run)],
                               env=env, capture_output=True, text=True, timeout=240)]
    for node in done:
        assert node.returncode == 0, node.stderr[-3000:]
    assert marker.exists()  # a worker was killed
    stderr = "".join(node.stderr for node in done)
    assert f"resuming from {run / 'checkpoints' / 'step_000004.pt'}" in stderr
    assert "midi2wave: error" not in stderr  # no start of the workers failed on its own
    assert _steps_logged(run) == [1, 2, 3, 4, 5, 6, 5, 6, 7, 8]  # killed at 6, resumed at 4
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == STEPS
    losses = _losses(run)
    for step, loss in losses.items():
        assert loss == pytest.approx(setup["reference"][step], rel=1e-6), step
