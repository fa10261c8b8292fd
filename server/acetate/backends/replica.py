"""The Ray Serve replica: one warm `Engine` per replica, streaming a job's events back.

Runs inside Ray worker processes (imported by name there, so `acetate` must be installed on
every node). The engine is blocking torch code: it runs on one thread per replica and its
events cross to the replica's event loop through an `asyncio.Queue`. A cancelled request (the
front closed the stream) sets the engine's cancel flag, so it stops at its next step.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from ray import serve

from acetate import __version__
from acetate.backends.base import (
    Cancelled,
    Failed,
    LayerDone,
    Preview,
    Progress,
    RemoteEvent,
    Started,
)
from acetate.engine.options import EngineOptions
from acetate.errors import GenerationCancelled, InputError, OutOfMemory, error_field
from acetate.public import public_message

if TYPE_CHECKING:
    from acetate.engine.resolve import Prepared

_END = object()
#: How often a replica checks that the front server that sent a job is still alive.
LEASE_CHECK_S = 2.0


class FrontLease:
    """A tiny actor owned by the front server's process. Ray ends an actor when the process
    that created it dies, so a replica that can no longer reach it knows its job is orphaned
    (the front restarted or crashed) and cancels it: no GPU keeps working for nobody."""

    def ping(self) -> bool:
        return True


def bind_replica_servers_to_loopback() -> None:
    """Serve starts each replica's inter-deployment gRPC server on `[::]:0` (all
    interfaces). On a cluster Acetate started on loopback, nothing may listen beyond it: the
    replica binds that server to 127.0.0.1 instead (it is started after `__init__`)."""
    from ray.serve._private import replica as replica_module

    original = replica_module.add_port_to_grpc_server

    def loopback(server: Any, address: str) -> int:
        if address.startswith("[::]:"):
            address = "127.0.0.1:" + address.rsplit(":", 1)[1]
        return int(original(server, address))

    replica_module.add_port_to_grpc_server = loopback


class EngineReplica:
    """A Serve deployment class: `generate` streams one job's `RemoteEvent`s."""

    def __init__(
        self,
        models_dir: str,
        extra_models_dirs: list[str],
        options: EngineOptions,
        loopback_only: bool,
        preview_interval_s: float = 0.25,
        preview_max_side: int = 256,
    ) -> None:
        if loopback_only:
            bind_replica_servers_to_loopback()
        import torch

        from acetate.engine.engine import Engine
        from acetate.engine.store.models import ModelStore

        if options.device == "cpu":
            # CPU replicas share the machine: one intra-op thread each, not one per core each.
            torch.set_num_threads(1)
        store = ModelStore(Path(models_dir), [Path(path) for path in extra_models_dirs])
        self.engine = Engine(store, options)
        self.preview_interval_s = preview_interval_s
        self.preview_max_side = preview_max_side
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="acetate-replica")
        context = serve.get_replica_context()
        self.replica_id = context.replica_id.unique_id if context is not None else "?"
        self.actor_name = _actor_name()

    def version(self) -> str:
        """This replica's Acetate and API versions (the front refuses a mismatch)."""
        from acetate.backends.ray_cluster import version_tag

        return version_tag()

    @serve.multiplexed(max_num_models_per_replica=2)  # type: ignore[misc]
    async def use_model(self, model_id: str) -> str:
        """Model affinity: Serve prefers replicas that already hold `model_id` (the base and
        its layer files); the engine itself keeps the pipelines warm."""
        return model_id

    async def generate(
        self,
        job_id: str,
        prepared: Prepared,
        images: Mapping[str, np.ndarray],
        lease: Any = None,
    ) -> AsyncIterator[RemoteEvent]:
        """Run one job; every event until the end (or `Failed` / `Cancelled`). `lease`: the
        front's `FrontLease` actor; the job is cancelled when it is gone."""
        await self.use_model(serve.get_multiplexed_model_id())
        yield Started(replica=self.actor_name, version=__version__)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()

        def put(item: object) -> None:
            loop.call_soon_threadsafe(events.put_nowait, item)

        future = loop.run_in_executor(self.executor, self._run, prepared, images, cancel, put)
        watchdog = asyncio.create_task(_watch_front(lease, cancel)) if lease is not None else None
        try:
            while True:
                item = await events.get()
                if item is _END:
                    break
                yield cast(RemoteEvent, item)
        finally:
            # The front cancelled (or went away): stop at the next step, then let the thread end
            # so the next request starts on a free engine.
            cancel.set()
            if watchdog is not None:
                watchdog.cancel()
            await asyncio.shield(future)

    # -- on the engine thread ----------------------------------------------------------------

    def _run(
        self,
        prepared: Prepared,
        images: Mapping[str, np.ndarray],
        cancel: threading.Event,
        put: Callable[[object], None],
    ) -> None:
        from acetate.jobs.worker import encode_jpeg

        last_preview = 0.0

        def on_step(info: Any) -> None:
            nonlocal last_preview
            put(Progress(int(info.step), int(info.total), info.eta_s))
            now = time.monotonic()
            if now - last_preview >= self.preview_interval_s:
                last_preview = now
                rgb = info.preview(self.preview_max_side)
                if rgb is not None:
                    height, width = rgb.shape[:2]
                    put(Preview(int(width), int(height), encode_jpeg(rgb)))

        try:
            for layer in self.engine.stream(prepared, images, on_step, cancel):
                put(LayerDone(layer))
        except GenerationCancelled:
            put(Cancelled())
        except (InputError, OutOfMemory) as error:
            if isinstance(error, OutOfMemory):
                self.engine.release()
            put(Failed(error.code, error.message, error.field))
        except Exception as error:
            self.engine.release()
            message = public_message(f"the worker failed: {type(error).__name__}: {error}")
            put(Failed("internal_error", message, error_field(error)))
        finally:
            put(_END)


async def _watch_front(lease: Any, cancel: threading.Event) -> None:
    """Cancel the job when the front server's lease actor has died."""
    from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

    while not cancel.is_set():
        await asyncio.sleep(LEASE_CHECK_S)
        try:
            await asyncio.wait_for(lease.ping.remote(), timeout=30)
        except (TimeoutError, GetTimeoutError, ActorUnavailableError):
            continue  # a slow or briefly unreachable front is not a dead one
        except RayActorError:
            cancel.set()
            return


def _actor_name() -> str:
    """This replica's Ray actor name (tests kill it by name to simulate a dead GPU box)."""
    import ray

    try:
        return str(ray.get_runtime_context().get_actor_name() or "")
    except Exception:
        return ""
