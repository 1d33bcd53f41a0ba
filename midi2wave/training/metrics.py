"""What a training run reports: `metrics.jsonl` + TensorBoard scalars, and the windows of steps
whose means are logged every `train.log_every_steps` steps.

Every event is one JSON line (`kind`, `step`, `time` and the values; non-finite values as strings)
so a run can be read back without TensorBoard; TensorBoard is optional (imported lazily).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

__all__ = ["METRICS_FILE", "MetricWindow", "MetricsWriter", "warn"]

METRICS_FILE = "metrics.jsonl"

logger = logging.getLogger(__name__)


def warn(message: str) -> None:
    """One warning line (training goes on): logged, on stderr from the command line."""
    logger.warning("midi2wave: warning: %s", message)


class MetricsWriter:
    """metrics.jsonl plus TensorBoard (without tensorboard only metrics.jsonl); a no-op when not
    `enabled` (ranks other than 0). `tb` is the SummaryWriter or None."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.tb = None
        self.metrics = None
        if not enabled:
            return
        self.metrics = open(out_dir / METRICS_FILE, "a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(out_dir / "tensorboard"))
        except Exception as e:  # noqa: BLE001 - ImportError, or a broken tensorboard install
            warn(f"TensorBoard logging is off ({type(e).__name__}: {e}); metrics go to {METRICS_FILE} only")

    def scalars(self, step: int, values: dict[str, float], kind: str) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "time": round(time.time(), 3)}
        record.update({k: (float(v) if math.isfinite(v) else str(v)) for k, v in values.items()})
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        self.enabled = False


class MetricWindow:
    """The steps since the last log line: means of the finite steps' losses and gradient norms, and
    the training rate in audio samples per second over all of its steps (skipped ones included)."""

    KEYS = ("loss", "bits_per_sample", "aux_mel_loss", "grad_norm")

    def __init__(self, samples_per_step: int) -> None:
        self.samples_per_step = samples_per_step
        self._reset()

    def _reset(self) -> None:
        self.sums = {k: 0.0 for k in self.KEYS}
        self.n_finite = 0
        self.samples = 0
        self.started = time.perf_counter()

    def add_step(self, result: dict[str, Any] | None) -> None:
        """Count one step; `result` (train_step's dict) joins the means unless None (non-finite)."""
        self.samples += self.samples_per_step
        if result is not None:
            for k in self.KEYS:
                self.sums[k] += result[k]
            self.n_finite += 1

    def close(self, with_aux: bool) -> tuple[dict[str, float], float]:
        """(means of loss, bits_per_sample, grad_norm and with `with_aux` aux_mel_loss, empty when
        every step was non-finite; samples per second) of this window, then start a new one."""
        rate = self.samples / max(time.perf_counter() - self.started, 1e-9)
        means: dict[str, float] = {}
        if self.n_finite:
            means = {k: self.sums[k] / self.n_finite for k in ("loss", "bits_per_sample", "grad_norm")}
            if with_aux:
                means["aux_mel_loss"] = self.sums["aux_mel_loss"] / self.n_finite
        self._reset()
        return means, rate
