"""Shared fixtures; the helpers they use live in helpers.py (`from helpers import ...` in test files)."""

from __future__ import annotations

import os

import pytest
from helpers import tiny_data_config, tiny_model_config

from midi2wave.config import DataConfig, ModelConfig

# The tests call `play` and `live` in this process: kernels a developer built ahead of time must
# not switch it off numba's JIT (tests/test_native.py runs them in subprocesses, explicitly).
os.environ["MIDI2WAVE_KERNELS"] = "jit"


@pytest.fixture
def tiny_model() -> ModelConfig:
    return tiny_model_config()


@pytest.fixture
def tiny_data() -> DataConfig:
    return tiny_data_config()
