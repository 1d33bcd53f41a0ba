"""Shared fixtures; the helpers they use live in helpers.py (`from helpers import ...` in test files)."""

from __future__ import annotations

import pytest
from helpers import tiny_data_config, tiny_model_config

from midi2wave.config import DataConfig, ModelConfig


@pytest.fixture
def tiny_model() -> ModelConfig:
    return tiny_model_config()


@pytest.fixture
def tiny_data() -> DataConfig:
    return tiny_data_config()
