"""Training: teacher-forced maximum likelihood of the audio given the MIDI, on one process or many (training/).

Owns: the training run (`loop.py`: `train`, the `_Trainer` with precision, model/EMA/DDP, data
order, the step, validation and the run loop; `train_from_cli`, the `midi2wave train` command),
what a run keeps (`checkpoints.py`), what it reports (`metrics.py`, `summaries.py`) and the
process group under `torchrun` (`distributed.py`). It reads stores through `data/`, builds models
from `model/` and writes checkpoints in `checkpoint`'s format; only `cli` calls it. Units: steps,
samples per second over all processes, NLL in bits per audio sample.

Entry points (`__all__`, imported on first use: this package imports nothing heavy):
- `train(config, data_dir, out_dir, resume=False, device=None, progress=True, max_steps=None,
  init_from=None) -> summary dict` (loop.py); `learning_rate_at(step, train_config)`;
- `RunCheckpoints`, `restore_training_state -> TrainingState`, `latest_checkpoint`,
  `load_initial_weights` (checkpoints.py);
- `MetricsWriter`, `MetricWindow` (metrics.py); `write_audio_summaries` (summaries.py);
- `env_info() -> DistInfo`, `resolve_device` (distributed.py).

A run folder
------------
```
OUT/config.json                 the effective config
OUT/checkpoints/step_000500.pt  self-describing checkpoints (checkpoint.py's format), the newest `keep_checkpoints` kept
OUT/checkpoints/last.pt         hard link to (or copy of) the newest one, replaced in one rename
OUT/metrics.jsonl               one JSON line per log / validation event
OUT/tensorboard/                TensorBoard events (when tensorboard is installed)
```
`--resume` continues exactly: model, optimizer, EMA, schedule position, every rank's RNG states and
the position in the data stream (epoch, batches done in it) are restored. All randomness of a step
is drawn from a generator seeded by (seed, rank, step), so it does not depend on what ran before.
Under `torchrun` (DDP: NCCL on CUDA, gloo on CPU; multi-node through torchrun's own rendezvous
options) each rank reads its own batch of `train.batch_size` through a `DistributedSampler`, and
rank 0 alone logs and writes. A stop signal makes the run finish its step, save and exit with one
line; `docs/training.md` has the cluster recipes.

What a run keeps and reports
----------------------------
- `checkpoints.py`: `RunCheckpoints` (step_NNNNNN.pt, `last.pt` linked in one rename, the newest
  `keep_checkpoints` kept), `restore_training_state` (weights, EMA, optimizer, scaler; returns the
  step, data position, every rank's RNG states and metrics as a `TrainingState`),
  `rng_state`/`set_rng_state`, `load_initial_weights` (`--init-from`), `latest_checkpoint`.
- `metrics.py`: `MetricsWriter` (metrics.jsonl + optional TensorBoard), `MetricWindow` (means of
  the finite steps since the last log line, samples per second over all of them), `warn`.
- `summaries.py`: `write_audio_summaries` (target, teacher-forced and free-running audio, roll over
  spectrograms) for TensorBoard.
- `distributed.py`: `env_info` (rank 0 of a world of 1 outside torchrun), `setup` / `cleanup` of
  the process group, `resolve_device`, and the collectives the loop uses. The collectives hand the
  backend copies of their own, and `cleanup` returns once it has freed them all (docs/training.md,
  "The end of a run").
"""

from __future__ import annotations

from ..lazy import entry_points

# entry point -> the module that defines it (never a submodule's own name)
_ENTRY_POINTS = {
    "train": "loop", "train_from_cli": "loop", "learning_rate_at": "loop",
    "RunCheckpoints": "checkpoints", "TrainingState": "checkpoints",
    "restore_training_state": "checkpoints", "latest_checkpoint": "checkpoints",
    "load_initial_weights": "checkpoints",
    "MetricsWriter": "metrics", "MetricWindow": "metrics",
    "write_audio_summaries": "summaries",
    "DistInfo": "distributed", "env_info": "distributed", "resolve_device": "distributed",
}

__all__ = list(_ENTRY_POINTS)


__getattr__, __dir__ = entry_points(__name__, _ENTRY_POINTS)
