"""Fixtures shared across the suite: the tiny model store, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tiny models gain nothing from threads, and servers/Krita started by tests share the cores:
# oversubscribed OpenMP spinning made single steps 10-100x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# The user's own settings file (linked model folders…) must not change what tests see.
os.environ.setdefault("ACETATE_CONFIG", "")
# No decoder export in the suite (slow); tests of preparing turn it on for themselves.
os.environ.setdefault("ACETATE_DECODER_PREPARE", "0")


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store holding only the tiny test models (built in a few seconds)."""
    from acetate.engine.tiny.bases import ensure_tiny_models

    models = tmp_path_factory.mktemp("models")
    ensure_tiny_models(models)
    return models
