"""A real Acetate server on a free port, with the real engine on the tiny models."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from server_helpers import LiveServer, free_port, start_server

from acetate.api.config import ServerConfig


@pytest.fixture(scope="session")
def model_store(tiny_models_dir: Path) -> Any:
    from acetate.engine.store.models import ModelStore

    return ModelStore(tiny_models_dir)


@pytest.fixture(scope="session")
def engine(model_store: Any) -> Any:
    import torch

    from acetate.engine.engine import Engine
    from acetate.engine.options import EngineOptions

    torch.set_num_threads(1)
    return Engine(model_store, EngineOptions(device="cpu"))


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., ServerConfig]:
    def make(**overrides: Any) -> ServerConfig:
        fields: dict[str, Any] = {"output_dir": tmp_path / "out", "port": free_port()}
        fields.update(overrides)
        return ServerConfig(**fields)

    return make


@pytest_asyncio.fixture
async def server(
    make_config: Callable[..., ServerConfig], engine: Any, model_store: Any
) -> AsyncIterator[LiveServer]:
    live = await start_server(make_config(), engine, model_store)
    yield live
    await live.stop()
