"""Training: teacher-forced maximum likelihood (bits per sample) of the audio given the MIDI.

One process, or several under `torchrun` (DDP: NCCL on CUDA, gloo on CPU; each rank draws other
examples through a DistributedSampler; rank 0 alone logs and writes). A run folder holds::

    OUT/config.json                 the effective config
    OUT/checkpoints/step_000500.pt  self-describing checkpoints (see checkpoint.py), last N kept
    OUT/checkpoints/last.pt         hard link to (or copy of) the newest one
    OUT/metrics.jsonl               one JSON line per log / validation event
    OUT/tensorboard/                TensorBoard events (when tensorboard is installed)

`--resume` continues exactly: the model, optimizer, EMA, schedule position, RNG states and the
position in the data stream (epoch, batches done in it) are restored, so k steps + resume to N
gives the same parameters as N steps straight (to float tolerance; exact order of floating-point
reductions may differ across devices). All randomness of a step (input noise/dropout) is drawn from
a generator seeded by (seed, rank, step), so it does not depend on what ran before.

SIGTERM, SIGUSR1 and SIGINT (STOP_SIGNALS) stop a run between steps: every rank agrees on the step
(the flag rides on the step's all-reduce), a checkpoint is saved there, rank 0 prints one line and
the CLI exits STOPPED_EXIT_STATUS (75) for a scheduler's requeue. DataLoader workers ignore them.
Under torchrun with --max-restarts, restarted workers resume from the newest checkpoint by themselves.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from . import distributed as D
from ..checkpoint import checkpoint_config, load_checkpoint
from ..config import SYNTHESIS_ONLY_KEYS, Config, config_differences, load_config
from ..data.store import load_store_manifest
from ..errors import TrainingError
from ..conditioning.features import log_mel_spectrogram, valid_frames
from ..files import atomic_write_bytes
from ..model import Midi2Wave
from .checkpoints import (CHECKPOINT_DIR, RunCheckpoints, latest_checkpoint, load_initial_weights,
                                restore_training_state, rng_state, set_rng_state)
from .metrics import MetricsWriter, MetricWindow, warn
from .summaries import write_audio_summaries

logger = logging.getLogger(__name__)

__all__ = ["STOPPED_EXIT_STATUS", "STOP_SIGNALS", "TrainingError", "train", "train_from_cli", "learning_rate_at",
           "tune_cpu_allocator"]

MEL_N_FFT = 1024

# The signals that stop a run gracefully: finish the step, save a checkpoint there, exit
# STOPPED_EXIT_STATUS. SIGTERM: schedulers (SLURM, Kubernetes, `timeout`) and torchrun; SIGUSR1: SLURM's
# `--signal` warning before the time limit; SIGINT: Ctrl-C. DataLoader workers ignore all three.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name))
# EX_TEMPFAIL of sysexits.h: "try again later". A requeue rule can rely on it: a checkpoint at the step
# reached is saved, and `--resume` (or `--auto-resume`) continues exactly.
STOPPED_EXIT_STATUS = 75


# ----------------------------------------------------------------------------------- schedule


def learning_rate_at(step: int, cfg) -> float:
    """LR of optimizer step `step` (0-based): linear warm-up to learning_rate over warmup_steps,
    then exponential decay with half-life lr_decay_half_life_steps, never below min_learning_rate
    (nor above learning_rate)."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    decayed = cfg.learning_rate * 0.5 ** ((step - cfg.warmup_steps) / cfg.lr_decay_half_life_steps)
    return min(cfg.learning_rate, max(cfg.min_learning_rate, decayed))


def _mix_seed(*values: int) -> int:
    """A 63-bit seed from a few ints (splitmix-style; stable across runs and platforms)."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h ^= (int(v) + 0x9E3779B97F4A7C15 + ((h << 6) & ((1 << 64) - 1)) + (h >> 2)) & ((1 << 64) - 1)
        h = (h * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
        h ^= h >> 31
    return h & ((1 << 63) - 1)


# ---------------------------------------------------------------------------------- data order


class ResumableSampler(DistributedSampler):
    """A DistributedSampler (shuffled per epoch, disjoint per rank) that can start mid-epoch."""

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start_index = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start_index:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start_index)


# ------------------------------------------------------------------------------------- helpers


def _check_store(data_dir: Any) -> tuple[Path, dict[str, int]]:
    """The store path and its piece count per split; clear errors for a missing or bad store."""
    if data_dir is None:
        raise TrainingError("--data: a dataset store is required (make one with `midi2wave prepare`)")
    store = Path(data_dir)
    pieces = load_store_manifest(store)
    counts: dict[str, int] = {}
    for record in pieces:
        counts[str(record["split"])] = counts.get(str(record["split"]), 0) + 1
    return store, counts


# ------------------------------------------------------------------------------------- trainer


class _Stop:
    """Graceful stop on STOP_SIGNALS: finish the step, save, exit (a second SIGINT interrupts).
    `signal_name`: the first stop signal received (None: none)."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not self.requested:
            self.signal_name = signal.Signals(signum).name
        self.requested = True

    def __enter__(self) -> "_Stop":
        for sig in STOP_SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _Trainer:
    def __init__(self, config: Config, store: Path, split_counts: dict[str, int], out_dir: Path,
                 device: torch.device, info: D.DistInfo, progress: bool, resume_from: Path | None,
                 init_from: Path | None = None) -> None:
        from ..data.dataset import SegmentDataset

        self.config = config
        self.tc = tc = config.train
        self.out_dir = out_dir
        self.checkpoints = RunCheckpoints(out_dir / CHECKPOINT_DIR, tc.keep_checkpoints)
        self.device = device
        self.info = info
        self.main = info.is_main
        self.progress = progress and self.main

        # ---- precision
        amp = tc.amp
        self.amp_dtype: torch.dtype | None = None
        if device.type == "cuda":
            if amp == "auto":
                amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        elif amp in ("bf16", "fp16") and self.main:
            warn(f"train.amp = {amp!r} applies to CUDA only; training in fp32 on {device.type}")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        # ---- model (same seed on every rank; DDP also broadcasts rank 0's parameters)
        torch.manual_seed(tc.seed)
        self.model = Midi2Wave(config.model, config.data).to(device)
        self.ema: torch.nn.Module | None = None
        if tc.ema_decay > 0:
            self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.use_aux = config.model.aux_mel_bands > 0 and tc.aux_mel_loss_weight > 0
        if config.model.aux_mel_bands > 0 and tc.aux_mel_loss_weight == 0 and self.main:
            warn("model.aux_mel_bands > 0 but train.aux_mel_loss_weight = 0: the mel head is not trained")
        if tc.aux_mel_loss_weight > 0 and config.model.aux_mel_bands == 0 and self.main:
            warn("train.aux_mel_loss_weight > 0 but model.aux_mel_bands = 0: no aux mel loss")
        self.ddp: torch.nn.Module = self.model
        if info.is_distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=self.model.mel_head is not None and not self.use_aux,
            )
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=learning_rate_at(0, tc), betas=tuple(tc.adam_betas),
            weight_decay=tc.weight_decay, fused=device.type == "cuda" or None,
        )

        # ---- data
        margin = self.model.context_margin_frames
        self.train_set = SegmentDataset(store, "train", config.data, margin_frames=margin, seed=tc.seed)
        self.sampler = ResumableSampler(self.train_set, info.world_size, info.rank, tc.seed)
        if self.sampler.num_samples < tc.batch_size:
            raise TrainingError(f"{store}: the train split gives {len(self.train_set)} examples per epoch, "
                                f"fewer than batch_size x processes = {tc.batch_size * info.world_size}")
        self.val_set = None
        if tc.validation_batches > 0:
            if split_counts.get("validation", 0) == 0:
                if self.main:
                    warn(f"{store}: no validation pieces; validation is skipped")
            else:
                self.val_set = SegmentDataset(store, "validation", config.data, margin_frames=margin,
                                              seed=_mix_seed(tc.seed, 1),
                                              examples_per_epoch=tc.validation_batches * tc.batch_size)
        self._val_batches: list[dict[str, torch.Tensor]] | None = None

        # ---- state
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.nonfinite_total = 0
        self.consecutive_nonfinite = 0
        self.last_checkpoint: Path | None = None
        self.last_saved_step = -1
        self.metrics: dict[str, float] = {}
        if resume_from is not None:
            self._restore(resume_from)
        elif init_from is not None:
            self._initialize(init_from)
        self.writer = MetricsWriter(out_dir, self.main)

    # ------------------------------------------------------------------------------ checkpoint

    def _initialize(self, path: Path) -> None:
        """Start from another run's weights (its EMA weights where saved, for model and EMA alike) or
        a released model (safetensors); step, optimizer, schedule and data stream start fresh. The
        network must have the same shape."""
        load_initial_weights(path, self.model, self.ema, self.device)

    def _restore(self, path: Path) -> None:
        state = restore_training_state(path, self.model, self.ema, self.optimizer, self.scaler, self.device)
        self.step = state.step
        data = state.data
        self.epoch = int(data.get("epoch", 0))
        self.batch_in_epoch = int(data.get("batch_in_epoch", 0))
        self.nonfinite_total = int(data.get("nonfinite_total", 0))
        self.consecutive_nonfinite = int(data.get("consecutive_nonfinite", 0))
        saved_world = int(data.get("world_size", 1))
        if (saved_world != self.info.world_size or int(data.get("batch_size", self.tc.batch_size)) != self.tc.batch_size) \
                and self.main:
            warn(f"{path}: saved with {saved_world} process(es) x batch {data.get('batch_size')}; resuming with "
                 f"{self.info.world_size} x {self.tc.batch_size}: the data stream will not continue exactly")
        if state.rng:
            set_rng_state(state.rng[self.info.rank] if self.info.rank < len(state.rng) else state.rng[0], self.device)
        self.metrics = state.metrics
        self.last_checkpoint = path
        self.last_saved_step = self.step

    def _save(self) -> None:
        rng = D.all_gather_object(rng_state(self.device))  # every rank takes part
        if not self.main:
            self.last_saved_step = self.step
            return
        self.last_checkpoint = self.checkpoints.save(
            self.step, self.config, self.model, ema=self.ema,
            optimizer=self.optimizer.state_dict(),
            scheduler={"name": "warmup_exponential_decay", "last_step": self.step,
                       "last_lr": learning_rate_at(max(self.step - 1, 0), self.tc)},
            grad_scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None,
            rng=rng,
            data={"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "world_size": self.info.world_size,
                  "batch_size": self.tc.batch_size, "nonfinite_total": self.nonfinite_total,
                  "consecutive_nonfinite": self.consecutive_nonfinite},
            metrics={k: float(v) for k, v in self.metrics.items()},
        )
        self.last_saved_step = self.step

    # ------------------------------------------------------------------------------------ data

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        tc = self.tc
        while True:
            self.train_set.set_epoch(self.epoch)
            self.sampler.set_epoch(self.epoch)
            self.sampler.start_index = self.batch_in_epoch * tc.batch_size
            loader = DataLoader(
                self.train_set, batch_size=tc.batch_size, sampler=self.sampler, drop_last=True,
                num_workers=tc.num_workers, pin_memory=self.device.type == "cuda",
                generator=torch.Generator().manual_seed(_mix_seed(tc.seed, self.info.rank, self.epoch)),
                persistent_workers=False, prefetch_factor=4 if tc.num_workers > 0 else None,
                worker_init_fn=_worker_init if tc.num_workers > 0 else None,
            )
            with _stop_signals_blocked(tc.num_workers > 0):  # the workers start (fork) with them blocked
                batches = iter(loader)
            for batch in batches:
                self.batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------------------------ step

    def _corrupt_input(self, audio: torch.Tensor) -> torch.Tensor:
        tc = self.tc
        if tc.input_noise_std <= 0 and tc.input_dropout <= 0:
            return audio
        g = torch.Generator(device=audio.device).manual_seed(_mix_seed(tc.seed, self.info.rank, self.step, 7))
        x = audio
        if tc.input_noise_std > 0:
            noise = torch.randn(audio.shape, generator=g, device=audio.device, dtype=audio.dtype)
            x = (x + tc.input_noise_std * noise).clamp(-1.0, 1.0 - 1.0 / 32768)
        if tc.input_dropout > 0:
            keep = torch.rand(audio.shape, generator=g, device=audio.device) >= tc.input_dropout
            x = x * keep
        return x

    def _network_input(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the network reads of the past: the audio, or the bank's innovation."""
        return batch["target"] if self.config.data.network_reads_innovation else batch["audio"]

    def _losses(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], audio_in: torch.Tensor,
                with_aux: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(total loss, bits per sample, aux mel loss or None)."""
        audio = batch["audio"]
        with self._autocast():
            out = model(audio_in, batch["conditioning"], batch["year"], batch.get("excitation"),
                        return_aux=with_aux)
        params, mel = out if with_aux else (out, None)
        # With the resonator bank the network predicts the innovation, not the audio itself.
        bits = self.model.bits_per_sample(params, batch.get("target", audio))
        if mel is None:
            return bits, bits, None
        target = log_mel_spectrogram(audio, mel.shape[1], self.config.data.samples_per_frame,
                                     self.config.data.sample_rate_hz, MEL_N_FFT)
        keep = valid_frames(target.shape[-1], self.config.data.samples_per_frame, MEL_N_FFT)
        if keep.stop <= keep.start:  # segment shorter than one STFT window: use every frame
            keep = slice(None)
        mel_loss = F.l1_loss(mel.float()[..., keep], target[..., keep])
        return bits + self.tc.aux_mel_loss_weight * mel_loss, bits, mel_loss

    def train_step(self, batch: dict[str, torch.Tensor],
                   stop_requested: Callable[[], bool] | bool = False) -> dict[str, Any]:
        """One optimizer step. `stop_requested` is read once the gradients are in (a callable: then),
        so a stop signal that arrives during the step is shared by every rank with this step's stats."""
        tc = self.tc
        lr = learning_rate_at(self.step, tc)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self._to_device(batch)
        self.model.train()
        loss, bits, mel_loss = self._losses(self.ddp, batch, self._corrupt_input(self._network_input(batch)),
                                            self.use_aux)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip_norm)
        # one all-reduce for the logged means and the stop flag; every rank then decides alike
        stats = torch.stack([loss.detach().float(), bits.detach().float(),
                             (mel_loss.detach().float() if mel_loss is not None else loss.new_zeros(())),
                             torch.tensor(float(stop_requested() if callable(stop_requested) else stop_requested),
                                          device=loss.device)])
        D.all_reduce_sum(stats)
        stats = (stats / self.info.world_size).tolist()
        grad_norm = float(grad_norm)
        loss_finite = math.isfinite(stats[0])
        if self.scaler.is_enabled():  # fp16: the scaler skips steps with inf/nan gradients itself
            scale_before = self.scaler.get_scale()
            if loss_finite:
                self.scaler.step(self.optimizer)
            self.scaler.update()
            stepped = loss_finite and self.scaler.get_scale() >= scale_before
            counted_nonfinite = not loss_finite
        else:
            stepped = loss_finite and math.isfinite(grad_norm)
            if stepped:
                self.optimizer.step()
            counted_nonfinite = not stepped
        self.optimizer.zero_grad(set_to_none=True)
        if stepped and self.ema is not None:
            self._update_ema()
        return {"loss": stats[0], "bits_per_sample": stats[1], "aux_mel_loss": stats[2],
                "stop": stats[3] > 0, "grad_norm": grad_norm, "lr": lr, "stepped": stepped,
                "nonfinite": counted_nonfinite}

    @torch.no_grad()
    def _update_ema(self) -> None:
        # the usual warm-up of the decay, so that early EMA weights are not dominated by the init
        decay = min(self.tc.ema_decay, (1 + self.step) / (10 + self.step))
        ema_params = [p for p in self.ema.parameters()]
        params = [p.detach() for p in self.model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        for b_ema, b in zip(self.ema.buffers(), self.model.buffers()):
            b_ema.copy_(b)

    # ------------------------------------------------------------------------------ validation

    def _validation_batches(self) -> list[dict[str, torch.Tensor]]:
        if self._val_batches is None:
            n = len(self.val_set)
            mine = list(range(self.info.rank, n, self.info.world_size))
            self.val_set.set_epoch(0)
            loader = DataLoader(self.val_set, batch_size=self.tc.batch_size, sampler=mine, num_workers=0)
            self._val_batches = list(loader)
        return self._val_batches

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        if self.val_set is None:
            return {}
        results = {}
        for name, model in (("bits_per_sample", self.model), ("bits_per_sample_ema", self.ema)):
            if model is None:
                continue
            was_training = model.training
            model.eval()
            total = torch.zeros(2, dtype=torch.float64, device=self.device)
            for batch in self._validation_batches():
                batch = self._to_device(batch)
                _, bits, _ = self._losses(model, batch, self._network_input(batch), False)
                n = batch["audio"].shape[0]
                total += torch.stack([bits.double() * n, torch.tensor(float(n), dtype=torch.float64,
                                                                      device=self.device)])
            D.all_reduce_sum(total)
            model.train(was_training)
            if total[1] > 0:
                results[name] = float(total[0] / total[1])
        return results

    # --------------------------------------------------------------------------- audio summaries

    def audio_summaries(self) -> None:
        """Teacher-forced and short free-running samples, with a piano roll over spectrograms (rank 0)."""
        if not self.main or self.writer.tb is None:
            return
        model = self.ema if self.ema is not None else self.model
        source = self._validation_batches()[0] if self.val_set is not None else next(iter(DataLoader(
            self.train_set, batch_size=1, sampler=[0])))
        batch = {k: v[:1].to(self.device) for k, v in source.items()}
        write_audio_summaries(self.writer.tb, model, batch, self.config, self.step,
                              seed=_mix_seed(self.tc.seed, self.step, 11))
        model.train(self.ema is None)

    # ------------------------------------------------------------------------------------- run

    def run(self, max_steps: int, stop: "_Stop") -> dict[str, Any]:
        tc = self.tc
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=max_steps, initial=self.step, unit="step", dynamic_ncols=True, desc="train")
        window = MetricWindow(tc.batch_size * self.config.data.segment_samples * self.info.world_size)
        started, start_step = time.perf_counter(), self.step
        stopped = False
        last_rate = 0.0
        batches = self._batches()
        try:
            while self.step < max_steps:
                batch = next(batches)
                result = self.train_step(batch, lambda: stop.requested)  # read after backward: a signal
                # that came during this step stops the run after it
                self.step += 1
                window.add_step(None if result["nonfinite"] else result)
                if bar is not None:
                    bar.update(1)
                if result["nonfinite"]:
                    self.nonfinite_total += 1
                    self.consecutive_nonfinite += 1
                    if self.main:
                        logger.warning("step %d: non-finite loss or gradient (loss %s, grad norm %s); step skipped",
                                       self.step, result['loss'], result['grad_norm'])
                    if self.consecutive_nonfinite >= tc.max_consecutive_nonfinite:
                        first = self.step - self.consecutive_nonfinite + 1
                        raise TrainingError(
                            f"training stopped at step {self.step}: {self.consecutive_nonfinite} consecutive "
                            f"non-finite losses (steps {first}..{self.step}; train.max_consecutive_nonfinite = "
                            f"{tc.max_consecutive_nonfinite}). Last checkpoint: "
                            f"{self.last_checkpoint or 'none'}. Try a lower train.learning_rate or "
                            f"train.grad_clip_norm, or train.amp = 'none'")
                else:
                    self.consecutive_nonfinite = 0
                if self.step % tc.log_every_steps == 0 or self.step == max_steps:
                    means, last_rate = window.close(self.use_aux)
                    values = {"lr": result["lr"], "samples_per_second": last_rate,
                              "nonfinite_steps": float(self.nonfinite_total), **means}
                    if means:
                        self.metrics["train_bits_per_sample"] = means["bits_per_sample"]
                    self.writer.scalars(self.step, values, "train")
                    if bar is not None and means:
                        bar.set_postfix(bits=f"{values['bits_per_sample']:.3f}", lr=f"{result['lr']:.2e}",
                                        ksps=f"{last_rate / 1000:.1f}")
                if result["stop"]:  # no validation or audio summaries first: the save must fit the grace time
                    stopped = True
                    break
                if self.step % tc.validate_every_steps == 0:
                    self._validate_and_log()
                if tc.audio_samples_every_steps and self.step % tc.audio_samples_every_steps == 0:
                    self.audio_summaries()
                if self.step % tc.checkpoint_every_steps == 0:
                    self._save()
        except BaseException:
            self.writer.close()
            raise
        finally:
            batches.close()  # drops the DataLoader iterator: its workers are shut down now, before the save
            if bar is not None:
                bar.close()
        if self.step % tc.validate_every_steps != 0 and not stopped:
            self._validate_and_log()
        if self.last_saved_step != self.step:
            self._save()
        if stopped and self.main:  # the one line of a stopped run
            logger.warning("midi2wave: stopped by %s at step %d; checkpoint %s; continue with --resume (exit status %d)",
                           stop.signal_name or "a signal", self.step, self.last_checkpoint, STOPPED_EXIT_STATUS)
        self.writer.close()
        return {
            "step": self.step,
            "out_dir": str(self.out_dir),
            "checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
            "train_bits_per_sample": self.metrics.get("train_bits_per_sample", float("nan")),
            "val_bits_per_sample": self.metrics.get("val_bits_per_sample", float("nan")),
            "val_bits_per_sample_ema": self.metrics.get("val_bits_per_sample_ema", float("nan")),
            "nonfinite_steps": self.nonfinite_total,
            "samples_per_second": last_rate,
            "steps_per_second": (self.step - start_step) / max(time.perf_counter() - started, 1e-9),
            "stopped_early": stopped,
            "stop_signal": stop.signal_name if stopped else None,
        }

    def _validate_and_log(self) -> None:
        results = self.validate()
        if results:
            self.metrics.update({f"val_{k}": v for k, v in results.items()})
            self.writer.scalars(self.step, results, "validation")


def _worker_init(_: int) -> None:
    """DataLoader workers ignore the stop signals (a scheduler signals the whole process group): the
    main process stops gracefully and shuts them down. They start with these signals blocked
    (`_stop_signals_blocked`); one that arrived meanwhile is discarded once ignored."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextlib.contextmanager
def _stop_signals_blocked(enabled: bool) -> Iterator[None]:
    """Block STOP_SIGNALS in this thread while DataLoader workers start: a forked worker inherits the
    mask, so a signal sent to the group then cannot kill it before `_worker_init` ignores it. One
    that reaches this process meanwhile is delivered when the block ends."""
    if not enabled or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# ------------------------------------------------------------------------------------------ API


# what a run writes into its folder: a started run without a checkpoint yet holds nothing else
_RUN_ENTRIES = frozenset({"config.json", "metrics.jsonl", "tensorboard", CHECKPOINT_DIR})


def _resolve_resume(resume: bool | str, out: Path) -> tuple[bool, bool]:
    """(resume, auto): `resume` False / True / "auto". "auto" resumes when the run folder has a
    checkpoint, else starts the run there (`auto`: a started run's folder is not refused as not
    empty). Under torchrun with --max-restarts > 0, False means "auto": torchrun restarts the workers
    with the same command line (and on a healthy node without counting a restart), so every start
    of every worker decides alike from the shared run folder."""
    if resume not in (False, True, "auto"):
        raise ValueError(f"resume must be False, True or 'auto', got {resume!r}")
    if resume is True or (resume is False and D.max_restarts() == 0):
        return resume, False
    return latest_checkpoint(out / CHECKPOINT_DIR) is not None, True


def _prepare_run(config: Config | None, data_dir: Any, out_dir: Any, resume: bool,
                 auto: bool = False) -> tuple[Config, Path, dict, Path, Path | None]:
    store, counts = _check_store(data_dir)
    if counts.get("train", 0) == 0:
        raise TrainingError(f"{store}: no pieces in split 'train' (splits: {sorted(counts) or 'none'})")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TrainingError(f"{out}: exists and is not a folder")
    resume_from = None
    if resume:
        resume_from = latest_checkpoint(out / CHECKPOINT_DIR)
        if resume_from is None:
            raise TrainingError(f"{out}: nothing to resume (no {CHECKPOINT_DIR}/last.pt or step_*.pt)")
        saved = checkpoint_config(load_checkpoint(resume_from), str(resume_from))
        if config is None:
            config = saved
        else:
            # the synthesis-only settings (partial levels) may change: training never reads them
            changed = (config_differences(config, saved, "model")
                       + config_differences(config, saved, "data", ignore=SYNTHESIS_ONLY_KEYS))
            if changed:
                raise TrainingError(f"{resume_from}: cannot resume with a different model or data config "
                                    f"({'; '.join(changed)})")
            changed = [c for c in config_differences(config, saved, "train") if not c.startswith("train.max_steps:")]
            if changed and D.env_info().is_main:
                warn(f"resuming with changed training settings: {'; '.join(changed)}")
    elif out.exists() and any(not (auto and p.name in _RUN_ENTRIES) for p in out.iterdir()):
        raise TrainingError(f"{out}: run folder exists and is not empty (use --resume to continue it, "
                            f"or choose another --out)")
    if config is None:
        raise TrainingError("a config is required to start a new run")
    return config, store, counts, out, resume_from


def _check_init_weights(path: Path, config: Config) -> None:
    load_initial_weights(path, Midi2Wave(config.model, config.data))


def train(config: Config | None, data_dir: Any, out_dir: Any, resume: bool | str = False,
          device: str | torch.device | None = None, progress: bool = True,
          max_steps: int | None = None, init_from: Any = None) -> dict[str, Any]:
    """Train (or with `resume`, continue) a model on a dataset store; returns a summary dict:
    step, out_dir, checkpoint, train/val bits per sample, nonfinite_steps, samples_per_second,
    steps_per_second, stopped_early, stop_signal (the signal's name when stopped early).

    Under torchrun the process group is set up here (and torn down if created here). `config` may
    be None with `resume` (the checkpoint's config is used). `resume="auto"`: resume when the run
    folder has a checkpoint, else start the run there (jobs that a scheduler requeues); under torchrun
    with --max-restarts > 0, False means "auto" too. `max_steps` overrides train.max_steps.
    `init_from`: a checkpoint whose (EMA) weights a new run starts from (fine-tuning; not with
    `resume=True`; with "auto" only when the run starts). Raises TrainingError / InputError /
    CheckpointError with one-line messages.
    """
    if init_from is not None and resume is True:
        raise TrainingError("--init-from starts a new run: it cannot be combined with --resume")
    info = D.env_info()
    dev = D.resolve_device(device, info)  # a device missing here is refused before anything else
    resume, auto = _resolve_resume(resume, Path(out_dir))
    if resume and auto:
        init_from = None  # the run started from it already
    if init_from is not None:
        from ..checkpoint import find_checkpoint

        init_from = find_checkpoint(init_from)
    config, store, counts, out, resume_from = _prepare_run(config, data_dir, out_dir, resume, auto)
    if init_from is not None:  # a bad starting point is reported before the run folder is made
        _check_init_weights(init_from, config)
    if max_steps is not None:
        config = config.replace(train=dataclasses.replace(config.train, max_steps=int(max_steps)))
    if auto and info.is_main:
        restart = f"torchrun restart {D.restart_count()}: " if D.restart_count() > 0 else ""
        if resume_from is not None:
            warn(f"{restart}resuming from {resume_from}")
        elif restart or (out.is_dir() and any(out.iterdir())):
            warn(f"{restart}no checkpoint in {out} yet; starting the run there")
    info, created = D.setup(dev, info)
    try:
        # every rank has checked the run folder before rank 0 writes into it
        D.barrier()
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out / "config.json", (config.to_json() + "\n").encode())
        with _Stop() as stop:
            trainer = _Trainer(config, store, counts, out, dev, info, progress, resume_from, init_from)
            if trainer.step >= config.train.max_steps and info.is_main:
                warn(f"{resume_from}: already at step {trainer.step} >= max_steps {config.train.max_steps}; "
                      f"nothing to do (raise --max-steps to train further)")
            summary = trainer.run(config.train.max_steps, stop)
        D.barrier()
        return summary
    finally:
        D.cleanup(created)


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process (glibc only): no mmap for big blocks, no trimming.

    By default glibc hands every block over 32 MB back to the OS when freed, so each training step
    page-faults its big activations back in and spends a large share of its CPU time in the kernel
    (measured in BENCHMARKS.md). Process-wide, so only the `midi2wave train` CLI does it, on CPU;
    MIDI2WAVE_MALLOC_TUNING=0 turns it off. Returns whether it was applied.
    """
    import ctypes
    import platform

    if os.environ.get("MIDI2WAVE_MALLOC_TUNING", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, -1))


def train_from_cli(args) -> int:
    """`midi2wave train -c CONFIG --data STORE [--out RUN] [--resume | --auto-resume] [--max-steps N]
    [--device D] [-q]`. Exit status 0, or STOPPED_EXIT_STATUS when a stop signal ended the run (after
    its one line on stderr; the checkpoint at the step reached is saved)."""
    config = load_config(args.config)  # first: a bad config is reported before anything starts
    out = args.out if args.out is not None else Path("runs") / Path(args.config).stem
    if D.resolve_device(args.device, D.env_info()).type == "cpu":
        tune_cpu_allocator()
    if args.resume and getattr(args, "auto_resume", False):
        raise TrainingError("--resume and --auto-resume exclude each other (--auto-resume also resumes)")
    resume = "auto" if getattr(args, "auto_resume", False) else args.resume
    summary = train(config, args.data, out, resume=resume, device=args.device,
                    progress=not args.quiet, max_steps=args.max_steps, init_from=args.init_from)
    if summary["stopped_early"]:
        return STOPPED_EXIT_STATUS
    if D.env_info().is_main:
        val = summary["val_bits_per_sample"]
        print(f"step {summary['step']}: train {summary['train_bits_per_sample']:.4f} bits/sample"
              + (f", validation {val:.4f}" if math.isfinite(val) else "")
              + f"; checkpoint {summary['checkpoint']}")
    return 0
