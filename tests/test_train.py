"""Training: exact resume, DDP under torchrun, overfitting, non-finite handling, run-folder rules."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from midi2wave.checkpoint import load_checkpoint
from midi2wave.cli import main as cli_main
from midi2wave.config import DataConfig, ResonatorConfig, load_config
from midi2wave.conditioning.features import log_mel_spectrogram, mel_filterbank, valid_frames
from midi2wave.midi import Notes
from midi2wave.model import Midi2Wave
from midi2wave.training import loop
from midi2wave.training.loop import ResumableSampler, TrainingError, learning_rate_at, train
from store_fixture import make_store, synthetic_piece, write_store
from helpers import tiny_config

ROOT = Path(__file__).resolve().parents[1]
TINY = tiny_config()


@pytest.fixture(autouse=True)
def _one_thread():
    """2 shared cores: one intra-op thread keeps tiny steps fast and timings stable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """Short pieces: 2 x 0.4 s of train = 24 segments of 32 ms = 6 batches of 4 per epoch."""
    root = tmp_path_factory.mktemp("store")
    make_store(root, {"train": 2, "validation": 1}, seconds=0.4, seed=0)
    return root


tiny = tiny_config


def params_of(path: Path, key: str = "model") -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[key]


def metrics(run: Path, kind: str = "train") -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def subprocess_env(**extra) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    env.update({"OMP_NUM_THREADS": "1", **extra})
    return env


# ---------------------------------------------------------------------------------- schedule


def test_learning_rate_warms_up_then_decays_to_the_floor():
    tc = dataclasses.replace(TINY.train, learning_rate=1e-3, warmup_steps=10, lr_decay_half_life_steps=100,
                             min_learning_rate=1e-4)
    assert learning_rate_at(0, tc) == pytest.approx(1e-4)
    assert learning_rate_at(9, tc) == pytest.approx(1e-3)
    assert learning_rate_at(110, tc) == pytest.approx(5e-4)
    assert learning_rate_at(210, tc) == pytest.approx(2.5e-4)
    assert learning_rate_at(10_000, tc) == pytest.approx(1e-4)


def test_sampler_ranks_are_disjoint_and_resume_mid_epoch():
    data = list(range(40))
    a, b = ResumableSampler(data, 2, 0, seed=3), ResumableSampler(data, 2, 1, seed=3)
    a.set_epoch(1), b.set_epoch(1)
    ia, ib = list(a), list(b)
    assert not set(ia) & set(ib) and len(ia) == len(ib) == 20
    a.start_index = 8
    assert list(a) == ia[8:] and len(a) == 12
    a.start_index = 0
    a.set_epoch(2)
    assert list(a) != ia  # reshuffled per epoch


# -------------------------------------------------------------------------------- log-mel target


def test_log_mel_frames_are_centred_on_the_conditioning_frames():
    spf, sr = 64, 16000
    audio = torch.zeros(1, 40 * spf)
    f = 20
    t = torch.arange(spf) / sr
    audio[0, f * spf:(f + 1) * spf] = 0.5 * torch.sin(2 * torch.pi * 1000 * t)  # a burst inside frame 20
    mel = log_mel_spectrogram(audio, 16, spf, sr, n_fft=256)
    assert mel.shape == (1, 16, 40)
    energy = mel.exp().sum(1)[0]
    assert int(energy.argmax()) == f
    # the window is centred: frames f-1 and f+1 see the burst equally
    assert energy[f - 1].item() == pytest.approx(energy[f + 1].item(), rel=1e-3)
    assert mel.min() >= np.log(1e-5) - 1e-6
    fb = mel_filterbank(256, 16, sr)
    assert fb.shape == (16, 129) and (fb >= 0).all()
    assert valid_frames(40, spf, 1024) == slice(8, 32)  # windows of frames 8..31 lie inside 40 frames


# ------------------------------------------------------------------------------------ training


@pytest.mark.training
def test_resume_continues_exactly(store, tmp_path):
    """N steps straight == k steps, stop, resume to N (weights, EMA and optimizer state), across an
    epoch boundary, with input noise and dropout drawing random numbers."""
    cfg = tiny(input_noise_std=0.01, input_dropout=0.1, checkpoint_every_steps=3, keep_checkpoints=5,
               validation_batches=1, validate_every_steps=4)
    train(cfg, store, tmp_path / "straight", progress=False, max_steps=11)
    train(cfg, store, tmp_path / "resumed", progress=False, max_steps=7)
    data = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["data"]
    assert (data["epoch"], data["batch_in_epoch"]) == (1, 1)  # 6 batches per epoch: resume mid-epoch 1
    train(cfg, store, tmp_path / "resumed", progress=False, max_steps=11, resume=True)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 11
    for key in ("model", "ema"):
        for name in a[key]:
            torch.testing.assert_close(a[key][name], b[key][name], rtol=1e-6, atol=1e-7, msg=f"{key}.{name}")
    torch.testing.assert_close(a["optimizer"]["state"], b["optimizer"]["state"], rtol=1e-6, atol=1e-9)
    assert a["data"] == b["data"]
    # and the parameters did move
    c = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "step_000003.pt")
    assert any(not torch.equal(a["model"][n], c["model"][n]) for n in a["model"])


@pytest.mark.training
def test_resume_continues_exactly_with_workers(store, tmp_path):
    cfg = tiny(num_workers=2, input_noise_std=0.01, checkpoint_every_steps=100, validation_batches=0)
    train(cfg, store, tmp_path / "straight", progress=False, max_steps=9)
    train(cfg, store, tmp_path / "resumed", progress=False, max_steps=5)
    train(cfg, store, tmp_path / "resumed", progress=False, max_steps=9, resume=True)
    a, b = (params_of(tmp_path / r / "checkpoints" / "last.pt") for r in ("straight", "resumed"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-6, atol=1e-7)


def _train_and_signal(store: Path, tmp_path: Path, sig: int, n: int, **train) -> tuple[Path, int, str, list[str]]:
    """Start `midi2wave train` (DataLoader workers: num_workers 2) in a process group of its own, send
    `sig` to the whole group once it trains, as SLURM, Kubernetes' kubelet stop of a process group and
    `timeout` do; returns (run folder, exit status, stderr, command)."""
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(tiny(checkpoint_every_steps=1000, validation_batches=0, log_every_steps=1, num_workers=2,
                             **train).to_json())
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "midi2wave.cli", "train", "-c", str(cfg_path), "--data", str(store), "--out",
           str(run), "--max-steps", str(n), "--device", "cpu", "-q"]
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not ((run / "metrics.jsonl").exists() and metrics(run)):
        time.sleep(0.05)
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    assert out == "", out
    with pytest.raises(ProcessLookupError):  # the DataLoader workers were shut down with it
        os.killpg(proc.pid, 0)
    return run, proc.returncode, err, cmd


def _stop_line(run: Path, sig: str) -> tuple[int, list[str]]:
    """The step the run stopped at (its last checkpoint's), and the one line a stopped run prints."""
    stopped_at = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    return stopped_at, [f"midi2wave: stopped by {sig} at step {stopped_at}; checkpoint "
                        f"{run / 'checkpoints' / f'step_{stopped_at:06d}.pt'}; continue with --resume (exit status 75)"]


def _slow_worker_init(pid_file: str, worker_id: int) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(1.0)  # the moment between a worker's fork and its worker_init_fn, made long
    loop._worker_init(worker_id)


def test_a_stop_signal_while_dataloader_workers_start_does_not_kill_them(tmp_path):
    """Workers start with the stop signals blocked, so one sent to the group before their
    worker_init_fn ignores it is dropped, not fatal (epochs start new workers all the time)."""
    pid_file = tmp_path / "pid"
    loader = torch.utils.data.DataLoader(list(range(6)), batch_size=2, num_workers=1,
                                         worker_init_fn=functools.partial(_slow_worker_init, str(pid_file)))
    with loop._stop_signals_blocked(True):
        batches = iter(loader)
    deadline = time.time() + 30
    while time.time() < deadline and not (pid_file.exists() and pid_file.read_text()):
        time.sleep(0.01)
    os.kill(int(pid_file.read_text()), signal.SIGTERM)
    assert [b.tolist() for b in batches] == [[0, 1], [2, 3], [4, 5]]


@pytest.mark.training
def test_sigterm_to_the_process_group_stops_with_a_checkpoint_and_resume_matches(store, tmp_path):
    """SIGTERM to the whole group (the trainer and its DataLoader workers): the trainer saves the step
    it reached, prints one line and exits 75 (no traceback, no worker killed mid-batch); --resume then
    logs the same losses at the later steps as an uninterrupted run and ends with the same weights."""
    n = 150
    run, status, err, cmd = _train_and_signal(store, tmp_path, signal.SIGTERM, n, input_noise_std=0.01)
    stopped_at, line = _stop_line(run, "SIGTERM")
    assert status == 75 and err.strip().splitlines() == line, err
    assert 0 < stopped_at < n
    assert metrics(run)[-1]["step"] == stopped_at  # the checkpoint is at the step reached, none lost
    done = subprocess.run(cmd + ["--resume"], env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    train(load_config(tmp_path / "cfg.json"), store, tmp_path / "straight", progress=False, max_steps=n)
    straight = {r["step"]: r["loss"] for r in metrics(tmp_path / "straight")}
    resumed = metrics(run)[stopped_at:]
    assert [r["step"] for r in resumed] == list(range(stopped_at + 1, n + 1))
    for row in resumed:
        assert row["loss"] == pytest.approx(straight[row["step"]], rel=1e-6, abs=1e-7), row["step"]
    a, b = (params_of(tmp_path / r / "checkpoints" / "last.pt") for r in ("straight", "killed"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-6, atol=1e-7)


@pytest.mark.training
@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGINT], ids=["SIGUSR1", "SIGINT"])
def test_sigusr1_and_ctrl_c_to_the_process_group_stop_alike(store, tmp_path, sig):
    """SLURM's --signal=USR1 warning and a terminal's Ctrl-C (SIGINT to the foreground group)."""
    run, status, err, _ = _train_and_signal(store, tmp_path, sig, 150)
    stopped_at, line = _stop_line(run, sig.name)
    assert status == 75 and err.strip().splitlines() == line, err
    assert 0 < stopped_at < 150 and metrics(run)[-1]["step"] == stopped_at


DDP_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    from midi2wave.training import loop as T
    from midi2wave.config import load_config

    original_run = T._Trainer.run
    def run(self, max_steps, stop):
        out = original_run(self, max_steps, stop)
        assert isinstance(self.ddp, torch.nn.parallel.DistributedDataParallel)
        torch.save(self.model.state_dict(), os.path.join(sys.argv[3], f"rank{self.info.rank}.pt"))
        first = next(iter(self.sampler))  # each rank reads other examples
        torch.save(torch.tensor([first]), os.path.join(sys.argv[3], f"first{self.info.rank}.pt"))
        return out
    T._Trainer.run = run
    T.train(load_config(sys.argv[1]), sys.argv[2], sys.argv[3] + "/run", progress=False)
""")


@pytest.mark.training
def test_ddp_two_processes_keep_identical_parameters_and_learn(store, tmp_path):
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(tiny(max_steps=40, log_every_steps=5,
                             validate_every_steps=40, checkpoint_every_steps=40).to_json())
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(cfg_path), str(store), str(tmp_path)]
    done = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for name in r0:
        assert torch.equal(r0[name], r1[name]), name
    saved = params_of(tmp_path / "run" / "checkpoints" / "last.pt")
    assert all(torch.equal(saved[n], r0[n]) for n in r0)
    f0, f1 = (torch.load(tmp_path / f"first{r}.pt", weights_only=True) for r in (0, 1))
    assert f0.item() != f1.item()
    rows = metrics(tmp_path / "run")
    assert rows[-1]["bits_per_sample"] < rows[0]["bits_per_sample"] - 1.0, rows
    assert rows[-1]["samples_per_second"] > 0
    assert metrics(tmp_path / "run", "validation")  # validation ran (all ranks, reduced)
    assert not list(tmp_path.glob("run/checkpoints/*.tmp"))


@pytest.mark.training
def test_tiny_model_overfits_one_segment(tmp_path):
    """One piece exactly one segment long: every example is the same 32 ms. From ~17 bits/sample at
    init the tiny model (1.6k parameters) must get below 10 bits/sample in 500 steps."""
    notes = Notes(np.array([0.0]), np.array([0.032]), np.array([60]), np.array([100]))
    write_store(tmp_path / "one", [synthetic_piece("a", "train", notes, seconds=0.032)])
    cfg = tiny(batch_size=1, learning_rate=0.003, warmup_steps=5, grad_clip_norm=1e6, ema_decay=0,
               validation_batches=0, log_every_steps=25, checkpoint_every_steps=1000)
    summary = train(cfg, tmp_path / "one", tmp_path / "run", progress=False, max_steps=500)
    rows = metrics(tmp_path / "run")
    assert rows[0]["bits_per_sample"] > 14.0
    assert summary["train_bits_per_sample"] < 10.0, rows
    assert summary["val_bits_per_sample"] != summary["val_bits_per_sample"]  # nan: no validation split


@pytest.mark.training
def test_nonfinite_losses_are_skipped_then_stop_the_run(store, tmp_path, monkeypatch):
    original = Midi2Wave.bits_per_sample
    calls = {"n": 0}
    bad_steps = {3, 4}

    def flaky(self, params, audio):
        calls["n"] += 1
        bits = original(self, params, audio)
        return bits * float("nan") if calls["n"] in bad_steps else bits

    monkeypatch.setattr(Midi2Wave, "bits_per_sample", flaky)
    cfg = tiny(validation_batches=0, checkpoint_every_steps=1000, max_consecutive_nonfinite=3)
    summary = train(cfg, store, tmp_path / "skip", progress=False, max_steps=8)
    assert summary["nonfinite_steps"] == 2
    state = load_checkpoint(tmp_path / "skip" / "checkpoints" / "last.pt")
    adam_steps = {int(s["step"]) for s in state["optimizer"]["state"].values()}
    assert adam_steps == {6}, "the two non-finite steps must not update the parameters"
    assert all(torch.isfinite(v).all() for v in state["model"].values())

    bad_steps.update(range(3, 100))  # from step 3 on every loss is NaN
    calls["n"] = 0
    with pytest.raises(TrainingError, match=r"stopped at step 5: 3 consecutive non-finite losses \(steps 3\.\.5"):
        train(cfg, store, tmp_path / "stop", progress=False, max_steps=8)


@pytest.mark.training
def test_checkpoint_rotation_keeps_the_newest(store, tmp_path):
    train(tiny(checkpoint_every_steps=2, keep_checkpoints=2, validation_batches=0), store, tmp_path / "r",
          progress=False, max_steps=9)
    ckpts = tmp_path / "r" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.pt", "step_000008.pt", "step_000009.pt"]
    assert load_checkpoint(ckpts / "last.pt")["step"] == 9
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["max_steps"] == 9


@pytest.mark.training
def test_run_folder_rules(store, tmp_path, capsys):
    cfg = tiny(validation_batches=0)
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(cfg, store, tmp_path / "new", resume=True, progress=False)
    train(cfg, store, tmp_path / "run", progress=False, max_steps=2)
    with pytest.raises(TrainingError, match="not empty"):
        train(cfg, store, tmp_path / "run", progress=False, max_steps=4)
    other = cfg.replace(model=dataclasses.replace(cfg.model, residual_channels=6))
    with pytest.raises(TrainingError, match="model.residual_channels"):
        train(other, store, tmp_path / "run", resume=True, progress=False, max_steps=4)
    summary = train(cfg, store, tmp_path / "run", resume=True, progress=False, max_steps=4)
    assert summary["step"] == 4
    # CLI: one-line errors, exit 2, nothing created
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(cfg.to_json())
    assert cli_main(["train", "-c", str(cfg_path), "--out", str(tmp_path / "x"), "-q"]) == 2
    assert "--data" in capsys.readouterr().err
    assert cli_main(["train", "-c", str(cfg_path), "--data", str(tmp_path / "nostore"), "--out",
                     str(tmp_path / "x"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "nostore" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_train_help_documents_the_stop_exit_status_and_the_guide(capsys):
    from midi2wave.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"the exit status is {loop.STOPPED_EXIT_STATUS} (EX_TEMPFAIL)" in text
    assert "--auto-resume" in text and "docs/training.md" in text
    assert (ROOT / "docs" / "training.md").is_file()


def test_auto_resume_continues_a_run_or_starts_it(store, tmp_path, capsys, caplog, monkeypatch):
    """--auto-resume (and torchrun --max-restarts, whose restarts rerun the same command): resume when
    the run has a checkpoint, else start it there, even in a started run's folder; never in a
    folder with other files."""
    cfg = tiny(validation_batches=0, checkpoint_every_steps=2)
    run = tmp_path / "run"
    assert train(cfg, store, run, resume="auto", progress=False, max_steps=2)["step"] == 2  # a new run
    assert train(cfg, store, run, resume="auto", progress=False, max_steps=4)["step"] == 4  # resumed
    assert f"resuming from {run / 'checkpoints' / 'step_000002.pt'}" in caplog.text
    caplog.clear()
    started = tmp_path / "started"  # a run stopped before its first checkpoint
    started.mkdir()
    (started / "config.json").write_text(cfg.to_json())
    (started / "metrics.jsonl").write_text("")
    assert train(cfg, store, started, resume="auto", progress=False, max_steps=1)["step"] == 1
    assert "starting the run there" in caplog.text
    caplog.clear()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(TrainingError, match="not empty"):
        train(cfg, store, other, resume="auto", progress=False, max_steps=1)
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "1")  # torchrun --max-restarts 1: as --auto-resume
    assert train(cfg, store, run, progress=False, max_steps=6)["step"] == 6
    assert "resuming from" in caplog.text
    monkeypatch.delenv("TORCHELASTIC_MAX_RESTARTS")
    with pytest.raises(TrainingError, match="not empty"):
        train(cfg, store, run, progress=False, max_steps=8)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(cfg.to_json())
    assert cli_main(["train", "-c", str(cfg_path), "--data", str(store), "--out", str(run), "--resume",
                     "--auto-resume", "-q"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "midi2wave: error: --resume and --auto-resume exclude each other (--auto-resume also resumes)"]


@pytest.mark.training
def test_no_validation_split_and_no_tensorboard_warn_and_train(tmp_path, caplog, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    make_store(tmp_path / "s", {"train": 1}, seconds=0.4)
    summary = train(tiny(log_every_steps=1), tmp_path / "s", tmp_path / "r", progress=False, max_steps=3)
    assert summary["step"] == 3
    err = caplog.text
    assert "no validation pieces" in err and "TensorBoard logging is off" in err
    assert len(metrics(tmp_path / "r")) == 3 and not (tmp_path / "r" / "tensorboard").exists()


@pytest.mark.training
def test_aux_mel_loss_excitation_and_summaries(tmp_path):
    """The aux mel head is trained (weights move) and logged; the excitation path trains; audio
    summaries (teacher-forced + free-running + figure) are written to TensorBoard."""
    make_store(tmp_path / "s", {"train": 1, "validation": 1}, seconds=0.4)
    cfg = tiny(aux_mel_loss_weight=0.5, audio_samples_every_steps=3, validation_batches=1)
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, aux_mel_bands=8),
                      data=dataclasses.replace(cfg.data, excitation_partials=2))
    torch.manual_seed(cfg.train.seed)
    init = Midi2Wave(cfg.model, cfg.data).state_dict()
    train(cfg, tmp_path / "s", tmp_path / "r", progress=False, max_steps=3)
    rows = metrics(tmp_path / "r")
    assert rows[-1]["aux_mel_loss"] > 0
    trained = params_of(tmp_path / "r" / "checkpoints" / "last.pt")
    assert not torch.equal(trained["mel_head.weight"], init["mel_head.weight"])
    assert not torch.equal(trained["excitation_weight"], init["excitation_weight"])
    events = list((tmp_path / "r" / "tensorboard").glob("events.*"))
    assert events and events[0].stat().st_size > 20_000  # audio + image summaries, not just scalars


def test_every_parameter_gets_a_gradient():
    """DDP (without find_unused_parameters) needs every parameter in the graph of a training step."""
    cfg = TINY.replace(model=dataclasses.replace(TINY.model, aux_mel_bands=4),
                       data=dataclasses.replace(TINY.data, excitation_partials=1))
    model = Midi2Wave(cfg.model, cfg.data)
    d: DataConfig = cfg.data
    audio = torch.rand(2, d.segment_samples) * 0.5
    cond = torch.rand(2, d.conditioning_channels, d.segment_frames + 2 * model.context_margin_frames)
    params, mel = model(audio, cond, torch.tensor([1, 2]), torch.rand(2, d.segment_samples), return_aux=True)
    (model.bits_per_sample(params, audio) + mel.mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.training
def test_init_from_starts_a_new_run_from_another_runs_weights(store, tmp_path):
    from midi2wave.training.loop import TrainingError

    cfg = tiny(validation_batches=0, checkpoint_every_steps=3)
    train(cfg, store, tmp_path / "a", progress=False, max_steps=3)
    source = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    # the new run starts at step 0 from the source's EMA weights: with a negligible learning rate one step
    # leaves them (model and EMA) as they were
    still = cfg.replace(train=dataclasses.replace(cfg.train, learning_rate=1e-12, min_learning_rate=1e-12))
    train(still, store, tmp_path / "b", progress=False, max_steps=1, init_from=tmp_path / "a")
    started = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert started["step"] == 1
    for name in source["ema"]:
        torch.testing.assert_close(started["model"][name], source["ema"][name], msg=name)
        torch.testing.assert_close(started["ema"][name], source["ema"][name], msg=name)
    assert any(not torch.equal(source["model"][n], source["ema"][n]) for n in source["model"])
    # a bank config fine-tunes from a plain run: same network, different targets
    bank = cfg.replace(data=dataclasses.replace(cfg.data, resonators=ResonatorConfig(
        partials=2, input="innovation", sustain_kappa=0.005)))
    summary = train(bank, store, tmp_path / "c", progress=False, max_steps=2, init_from=tmp_path / "a")
    assert summary["step"] == 2 and math.isfinite(summary["train_bits_per_sample"])
    # a released model (safetensors folder, e.g. the bundled one) is a starting point too
    from midi2wave.checkpoint import export_safetensors

    export_safetensors(tmp_path / "a" / "checkpoints" / "last.pt", tmp_path / "released")
    train(still, store, tmp_path / "e", progress=False, max_steps=1, init_from=tmp_path / "released")
    from_release = load_checkpoint(tmp_path / "e" / "checkpoints" / "last.pt")
    for name in source["ema"]:
        torch.testing.assert_close(from_release["model"][name], source["ema"][name], msg=name)
    with pytest.raises(TrainingError, match="--resume"):
        train(cfg, store, tmp_path / "c", progress=False, max_steps=4, resume=True, init_from=tmp_path / "a")
    wider = cfg.replace(model=dataclasses.replace(cfg.model, residual_channels=cfg.model.residual_channels + 2))
    with pytest.raises(TrainingError, match="do not fit"):
        train(wider, store, tmp_path / "d", progress=False, max_steps=1, init_from=tmp_path / "a")
    assert not (tmp_path / "d").exists()  # refused before the run folder was made


def test_resume_takes_a_step_checkpoint_newer_than_last_pt(tmp_path):
    """A run killed between writing step_N.pt and linking last.pt resumes from step N."""
    from midi2wave.training.checkpoints import latest_checkpoint

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    assert latest_checkpoint(folder) is None
    (folder / "last.pt").write_bytes(b"released")
    assert latest_checkpoint(folder) == folder / "last.pt"  # a folder with last.pt alone
    for step in (4, 8):
        (folder / f"step_{step:06d}.pt").write_bytes(b"x")
    assert latest_checkpoint(folder) == folder / "step_000008.pt"


@pytest.mark.training
def test_a_signal_during_a_step_stops_after_it_before_validation(store, tmp_path, monkeypatch):
    """A stop signal that arrives while step 3 runs stops the run at step 3, and step 3's validation
    (due then) is skipped: the checkpoint must fit the scheduler's grace time."""
    validations = []
    train_step = loop._Trainer.train_step

    def signalled_step(self, batch, stop_requested=False):
        if self.step == 2:  # step 3 is running
            os.kill(os.getpid(), signal.SIGUSR1)
        return train_step(self, batch, stop_requested)

    monkeypatch.setattr(loop._Trainer, "train_step", signalled_step)
    monkeypatch.setattr(loop._Trainer, "_validate_and_log", lambda self: validations.append(self.step))
    summary = train(tiny(validate_every_steps=3, checkpoint_every_steps=100), store, tmp_path / "r", progress=False,
                    max_steps=10)
    assert summary["step"] == 3 and validations == []
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["step"] == 3
