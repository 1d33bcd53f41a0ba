"""Shared test helpers: the tiny configs every fast test builds its models from.

Tests that need a variant say how it differs (`tiny_model_config(n_stacks=1, ...)`), so the
difference is the point of the test and not an accident of a private copy. `configs/tiny.json` is
the tiny preset that trains in seconds (train, checkpoint and CLI tests).
Importable as `from conftest import ...` (pytest puts tests/ on sys.path, as for store_fixture.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from midi2wave.config import Config, DataConfig, ModelConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
TINY_JSON = ROOT / "configs" / "tiny.json"

# A two-stack network of a few hundred parameters per layer: every code path, milliseconds per call.
_TINY_MODEL = dict(residual_channels=8, gate_channels=16, skip_channels=8, n_stacks=2, layers_per_stack=3,
                   n_mixtures=3, context_channels=8, context_stacks=1, context_layers_per_stack=2)
# Two conditioning kinds (notes and pedals) and one 32 ms segment (8 frames).
_TINY_DATA = dict(conditioning=("onset_velocity", "pedals"), segment_seconds=0.032)


def tiny_model_config(**overrides) -> ModelConfig:
    """The tiny network, with `overrides` (ModelConfig fields)."""
    return ModelConfig(**{**_TINY_MODEL, **overrides})


def tiny_data_config(**overrides) -> DataConfig:
    """The tiny data settings, with `overrides` (DataConfig fields)."""
    return DataConfig(**{**_TINY_DATA, **overrides})


def tiny_config(**train_overrides) -> Config:
    """`configs/tiny.json`, with `train_overrides` (TrainConfig fields)."""
    config = load_config(TINY_JSON)
    return config.replace(train=dataclasses.replace(config.train, **train_overrides))


@pytest.fixture
def tiny_model() -> ModelConfig:
    return tiny_model_config()


@pytest.fixture
def tiny_data() -> DataConfig:
    return tiny_data_config()
