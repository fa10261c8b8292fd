"""Fault injection: a worker exception and an out-of-memory fail only their own job.

The one place a fake is used: `FaultyEngine` wraps the real engine and raises on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pytest
from server_helpers import FAST, final, follow, start_server

from acetate.api.config import ServerConfig
from acetate.errors import OutOfMemory
from acetate.protocol import JobEvent

pytestmark = pytest.mark.asyncio


class FaultyEngine:
    """The real engine, except that queued faults are raised instead of generating."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.faults: list[BaseException] = []
        self.released = 0

    @property
    def device_name(self) -> str:
        return str(self.engine.device_name)

    def prepare(self, params: Any, images: Mapping[str, np.ndarray]) -> Any:
        return self.engine.prepare(params, images)

    def stream(
        self,
        prepared: Any,
        images: Mapping[str, np.ndarray],
        callback: Any = None,
        cancel: Any = None,
    ) -> Iterator[Any]:
        if self.faults:
            raise self.faults.pop(0)
        yield from self.engine.stream(prepared, images, callback, cancel)

    def release(self) -> None:
        self.released += 1
        self.engine.release()


async def test_worker_exception_and_out_of_memory_fail_only_their_job(
    make_config: Callable[..., ServerConfig], engine: Any, model_store: Any
) -> None:
    faulty = FaultyEngine(engine)
    faulty.faults = [
        ZeroDivisionError("division by zero in a bug"),
        OutOfMemory("out of device memory: CUDA error"),
    ]
    live = await start_server(make_config(), faulty, model_store)
    try:
        client = live.client()
        request = {"prompt": "x", **FAST, "width": 64, "height": 64}
        jobs = [await client.submit(request) for _ in range(3)]
        crashed, oom, fine = [final(await follow(client, job.id)) for job in jobs]

        assert crashed.type is JobEvent.error and crashed.fields["code"] == "internal_error"
        assert "ZeroDivisionError" in crashed.fields["message"]
        assert oom.type is JobEvent.error and oom.fields["code"] == "out_of_memory"
        assert oom.fields["message"] == "out of device memory: CUDA error"
        assert fine.type is JobEvent.done
        assert faulty.released == 2  # memory released after each failure

        records = [await client.job(job.id) for job in jobs]
        assert [r.status for r in records] == ["error", "error", "done"]
        assert records[1].error is not None and records[1].error.code == "out_of_memory"
        health = await client.health()
        assert health["queue_length"] == 0 and health["running"] is None
    finally:
        await live.stop()
