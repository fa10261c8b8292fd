"""Shared by the Ray backend tests: one real local Ray cluster per test session.

Ray allows one cluster connection per process, so every test file that needs the cluster uses
`shared_cluster` (a process-wide singleton behind each file's session fixture) instead of
starting its own. The cluster runs two CPU engine replicas on the tiny models; a test that
changes the deployment (scaling settings) puts it back with `deploy_standard`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from server_helpers import FAST, LiveServer

from acetate.api.config import ServerConfig
from acetate.api.keys import QUEUE
from acetate.backends.ray_backend import RayBackend, ServeExecutor
from acetate.backends.ray_cluster import Cluster, RaySettings
from acetate.engine.options import EngineOptions
from acetate.protocol import JobEvent, JobMessage

SMALL = {"prompt": "a cat", **FAST, "width": 64, "height": 64}
#: Enough steps to still be running when the test acts on it.
SLOW = {"prompt": "slow", "steps": 40, "width": 256, "height": 256, "decode": "fast", "seed": 1}
#: Long enough to outlive a front process that is killed mid-job.
VERY_SLOW = {**SLOW, "steps": 150, "width": 512, "height": 512}


def listening_sockets(pids: set[int]) -> set[tuple[str, int, int]]:
    import psutil

    found = set()
    for conn in psutil.net_connections("inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            found.add((conn.laddr.ip, conn.laddr.port, conn.pid))
    return found


def family() -> set[int]:
    """This process and every process it started (Ray's GCS, raylet, workers, replicas)."""
    import psutil

    me = psutil.Process(os.getpid())
    return {me.pid, *(child.pid for child in me.children(recursive=True))}


def standard_settings(temp: Path) -> RaySettings:
    return RaySettings(replicas=2, num_cpus=2, cpus_per_replica=1, temp_dir=temp)


def deploy_standard(cluster: Cluster, models_dir: Path) -> Any:
    """Deploy (or update) the replicas with the session's arguments and `cluster.settings`."""
    return cluster.deploy(
        models_dir,
        [],
        EngineOptions(device="cpu"),
        preview_interval_s=0.0,
        preview_max_side=64,
    )


_shared: dict[str, Any] = {}


def shared_cluster(tiny_models_dir: Path) -> Iterator[Cluster]:
    """The body of each file's session fixture: the first user starts the cluster, the last
    one to finish (at the end of the session) shuts it down."""
    if not _shared:
        temp = Path(tempfile.mkdtemp(prefix="acr", dir="/tmp"))  # Ray's socket paths are short
        before = listening_sockets(family())
        cluster = Cluster(standard_settings(temp))
        cluster.connect()
        try:
            deploy_standard(cluster, tiny_models_dir)
        except BaseException:
            cluster.close()
            shutil.rmtree(temp, ignore_errors=True)
            raise
        cluster.sockets_before = before  # type: ignore[attr-defined]
        cluster.models_dir = tiny_models_dir  # type: ignore[attr-defined]
        _shared.update(cluster=cluster, temp=temp, users=0)
    _shared["users"] += 1
    try:
        yield _shared["cluster"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0:
            _shared["cluster"].close()
            shutil.rmtree(_shared["temp"], ignore_errors=True)
            _shared.clear()


def ray_factory(
    cluster: Cluster, retries: int = 1, lease: Any = None, slots: int = 2
) -> Callable[..., RayBackend]:
    def factory(queue: Any, cache: Any, config: ServerConfig) -> RayBackend:
        return RayBackend(
            queue,
            cache,
            ServeExecutor(cluster.handle(), lease if lease is not None else cluster.lease()),
            slots=slots,
            cluster=cluster,
            owns_cluster=False,
            retries=retries,
            shutdown_timeout_s=5.0,
        )

    return factory


async def wait_for(server: LiveServer, job_id: str, kind: JobEvent, timeout: float = 60) -> None:
    seen = asyncio.get_running_loop().create_future()
    queue = server.app[QUEUE]

    def listener(message: JobMessage) -> None:
        if message.job_id == job_id and message.type is kind and not seen.done():
            seen.set_result(None)

    queue.add_listener(listener)
    for message in queue.state_messages(queue.jobs[job_id]):
        listener(message)
    try:
        await asyncio.wait_for(seen, timeout)
    finally:
        queue.remove_listener(listener)


async def eventually(
    check: Callable[[], Any], timeout: float, what: str, interval: float = 0.25
) -> float:
    """Poll `check` (run on a thread: it may block on Ray) until true; seconds it took."""
    started = time.monotonic()
    while not await asyncio.to_thread(check):
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(interval)
    return time.monotonic() - started


def settle(cluster: Cluster, replicas: int = 2, timeout: float = 120) -> None:
    """Wait until exactly `replicas` replicas run (an earlier test may have killed one, which
    Serve replaces)."""
    started = time.monotonic()
    while cluster.running_replicas() != replicas or len(replica_actors()) != replicas:
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not {replicas} running replicas within {timeout:.0f} s")
        time.sleep(0.25)


def replica_actors() -> list[str]:
    """Names of the live engine replica actors (namespace `serve`)."""
    import ray

    names = ray.util.list_named_actors(all_namespaces=True)
    return sorted(
        entry["name"]
        for entry in names
        if entry["namespace"] == "serve" and "EngineReplica" in entry["name"]
    )


def ongoing_requests() -> int:
    """Requests the replicas are running right now (asked of each replica actor directly:
    Serve answers this on its own thread, even while the engine is busy)."""
    import ray

    total = 0
    for name in replica_actors():
        try:
            actor = ray.get_actor(name, namespace="serve")
            total += int(ray.get(actor.get_num_ongoing_requests.remote(), timeout=10))
        except (ValueError, ray.exceptions.RayError):
            continue  # a replica going away meanwhile runs nothing
    return total
