"""The Ray backend against a real local Ray cluster (CPU, tiny models, two replicas).

One cluster for the whole session (starting Ray and two engine replicas is the expensive part);
each test runs a real Acetate server in front of it. Skipped with a reason when `ray[serve]`
is not installed (`pip install 'acetate[ray]'`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from server_helpers import FAST, LiveServer, final, follow, free_port, start_server
from test_server_modes import CASES as MODE_CASES

from acetate.api.config import ServerConfig
from acetate.api.keys import BACKEND
from acetate.protocol import JobEvent, JobMessage

if importlib.util.find_spec("ray") is None:
    pytest.skip("ray[serve] is not installed (pip install 'acetate[ray]')", allow_module_level=True)

from ray_support import (
    SLOW,
    SMALL,
    VERY_SLOW,
    family,
    listening_sockets,
    ray_factory,
    shared_cluster,
    wait_for,
)

from acetate.backends.ray_backend import RayBackend
from acetate.backends.ray_cluster import Cluster

pytestmark = pytest.mark.asyncio


def is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip in ("::1", "localhost") or ip.startswith("::ffff:127.")


@pytest.fixture(scope="session")
def ray_cluster(tiny_models_dir: Path) -> Iterator[Cluster]:
    yield from shared_cluster(tiny_models_dir)


@pytest_asyncio.fixture
async def ray_server(
    ray_cluster: Cluster, make_config: Callable[..., ServerConfig], engine: Any, model_store: Any
) -> AsyncIterator[LiveServer]:
    live = await start_server(make_config(), engine, model_store, ray_factory(ray_cluster))
    yield live
    await live.stop()


def kill_replica_of(server: LiveServer, job_id: str) -> RayBackend:
    """Kill the replica running `job_id` (a dead GPU box, as Ray sees it); the backend."""
    import ray

    backend = server.app[BACKEND]
    assert isinstance(backend, RayBackend)
    ray.kill(ray.get_actor(backend.replica_of[job_id], namespace="serve"), no_restart=True)
    return backend


async def run_one(
    server: LiveServer, mode: str = "fg"
) -> tuple[list[JobMessage], dict[str, np.ndarray]]:
    client = server.client()
    fields, images, encoding = MODE_CASES[mode]
    if mode == "fg":
        fields = {**fields, "width": 64, "height": 64}
    request = {"mode": mode, "prompt": "a glass bottle", **FAST, **fields}
    job = await client.submit(request, images, encoding=encoding)  # type: ignore[arg-type]
    events = await follow(client, job.id)
    done = final(events)
    assert done.type is JobEvent.done and done.result is not None, events
    pixels = {}
    for layer in done.result.layers:
        pixels[layer.file] = (await client.layer_rgba(job.id, layer.file)).pixels
    return events, pixels


@pytest.mark.parametrize("mode", list(MODE_CASES))
async def test_every_mode_gives_the_same_events_and_pixels_as_the_local_backend(
    ray_server: LiveServer, server: LiveServer, mode: str
) -> None:
    ray_events, ray_pixels = await run_one(ray_server, mode)
    local_events, local_pixels = await run_one(server, mode)

    def shape(events: list[JobMessage]) -> list[str]:
        """Event kinds in order, repeats folded, previews left out (they are throttled by
        time, so how many arrive depends on speed)."""
        kinds = [m.type.value for m in events if m.type not in (JobEvent.queued, JobEvent.preview)]
        return [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]

    assert shape(ray_events) == shape(local_events)
    assert shape(ray_events)[:2] == ["started", "progress"]
    assert shape(ray_events)[-2:] == ["layer_ready", "done"]
    previews = [m for m in ray_events if m.type is JobEvent.preview]
    assert previews and all(m.binary for m in previews)  # each with its JPEG frame
    # The same request on the same tiny weights: the same layers, bit for bit.
    assert ray_pixels.keys() == local_pixels.keys()
    for name, data in ray_pixels.items():
        assert np.array_equal(data, local_pixels[name]), name


async def test_two_replicas_share_jobs_of_several_owners_fairly(
    ray_cluster: Cluster,
    make_config: Callable[..., ServerConfig],
    engine: Any,
    model_store: Any,
    tmp_path: Path,
) -> None:
    tokens = {name: secrets.token_urlsafe(32) for name in ("anna", "ben", "cleo")}
    path = tmp_path / "tokens.txt"
    path.write_text("".join(f"{name} {token}\n" for name, token in tokens.items()))
    path.chmod(0o600)
    live = await start_server(
        make_config(tokens_file=path), engine, model_store, ray_factory(ray_cluster)
    )
    try:
        anna, ben, cleo = (live.client(tokens[name]) for name in ("anna", "ben", "cleo"))
        # Two slow jobs fill both replicas; then anna queues three and ben and cleo one each.
        first = [await anna.submit({**SLOW, "seed": i}) for i in range(2)]
        for job in first:
            await wait_for(live, job.id, JobEvent.started)
        queued = [await anna.submit({**SMALL, "seed": i}) for i in range(3)]
        queued.append(await ben.submit(SMALL))
        queued.append(await cleo.submit(SMALL))
        positions = {job.id: (await anna.job(job.id)).position for job in queued[:3]}
        # Round-robin across owners: ben's and cleo's jobs wait behind one of anna's, not three.
        assert (await ben.job(queued[3].id)).position == 1
        assert (await cleo.job(queued[4].id)).position == 2
        assert sorted(positions.values()) == [0, 3, 4]
        for job in first:
            await anna.cancel(job.id)
        for client, job in zip([anna, anna, anna, ben, cleo], queued, strict=True):
            assert final(await follow(client, job.id)).type is JobEvent.done
        backend = live.app[BACKEND]
        assert isinstance(backend, RayBackend)
        assert len(backend.jobs_by_replica) == 2, backend.jobs_by_replica
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {tokens['anna']}"}
            async with session.get(f"{live.url}/metrics", headers=headers) as response:
                assert response.status == 403  # owners and load: admins only
        metrics = await asyncio.to_thread(lambda: backend.replicas)
        assert metrics == 2
    finally:
        await live.stop()


async def test_cancel_running_and_queued_jobs(ray_server: LiveServer) -> None:
    client = ray_server.client()
    running = [await client.submit({**SLOW, "seed": i}) for i in range(2)]
    queued = await client.submit(SLOW)
    assert queued.position == 0
    for job in running:
        await wait_for(ray_server, job.id, JobEvent.progress)
    record = await client.cancel(queued.id)
    assert record is not None and record.status == "cancelled"
    started = asyncio.get_running_loop().time()
    await client.cancel(running[0].id)
    assert final(await follow(client, running[0].id)).type is JobEvent.cancelled
    assert asyncio.get_running_loop().time() - started < 20
    await client.cancel(running[1].id)
    assert final(await follow(client, running[1].id)).type is JobEvent.cancelled
    # Both replicas are free again.
    _, pixels = await run_one(ray_server)
    assert pixels


async def test_no_new_listening_socket_beyond_loopback(ray_cluster: Cluster) -> None:
    before: set[tuple[str, int, int]] = ray_cluster.sockets_before  # type: ignore[attr-defined]
    new = listening_sockets(family()) - before
    assert new, "the Ray cluster should listen somewhere (on loopback)"
    exposed = [entry for entry in new if not is_loopback(entry[0])]
    assert not exposed, exposed
    token = ray_cluster.token_path
    assert token is not None and token.stat().st_mode & 0o077 == 0
    assert token.parent.stat().st_mode & 0o077 == 0


def test_unreachable_cluster_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "acetate", "serve", "--backend", "ray"]
    command += ["--ray-address", f"127.0.0.1:{port}", "--output-dir", str(tmp_path)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ACETATE_TOKEN": ""},
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--ray-address" in lines[0], done.stderr


async def test_a_replica_killed_mid_job_is_retried_once(
    ray_server: LiveServer, ray_cluster: Cluster
) -> None:

    client = ray_server.client()
    job = await client.submit(SLOW)
    await wait_for(ray_server, job.id, JobEvent.progress)
    backend = kill_replica_of(ray_server, job.id)
    events = await follow(client, job.id)
    assert final(events).type is JobEvent.done, events[-1]
    assert backend.retried == 1


async def test_a_replica_killed_without_retries_fails_clearly(
    ray_cluster: Cluster, make_config: Callable[..., ServerConfig], engine: Any, model_store: Any
) -> None:

    live = await start_server(make_config(), engine, model_store, ray_factory(ray_cluster, 0))
    try:
        client = live.client()
        job = await client.submit(SLOW)
        await wait_for(live, job.id, JobEvent.progress, timeout=120)
        kill_replica_of(live, job.id)
        last = final(await follow(client, job.id))
        assert last.type is JobEvent.error and last.fields["code"] == "worker_lost", last
        assert "submit it again" in last.fields["message"]
    finally:
        await live.stop()


async def test_jobs_of_a_dead_front_are_cancelled_on_the_replica(
    ray_cluster: Cluster, make_config: Callable[..., ServerConfig], engine: Any, model_store: Any
) -> None:
    """A front that dies (or restarts) takes its `FrontLease` actor with it; the replica sees
    the lease gone and stops the orphaned job at its next step."""
    import ray

    from acetate.backends.replica import FrontLease

    lease = ray.remote(num_cpus=0)(FrontLease).remote()
    factory = ray_factory(ray_cluster, 0, lease)
    live = await start_server(make_config(), engine, model_store, factory)
    try:
        client = live.client()
        job = await client.submit(VERY_SLOW)
        await wait_for(live, job.id, JobEvent.progress, timeout=120)
        ray.kill(lease)
        started = asyncio.get_running_loop().time()
        assert final(await follow(client, job.id)).type is JobEvent.cancelled
        assert asyncio.get_running_loop().time() - started < 30
    finally:
        await live.stop()


async def test_layers_announced_before_a_replica_dies_are_kept(ray_server: LiveServer) -> None:
    """No retry once a layer is out (clients already hold it): the job fails with
    `worker_lost`, and its finished layers stay a downloadable partial result."""
    from test_scene_api import OBJECTS, scene

    client = ray_server.client()
    job = await client.submit(scene(steps=40, objects=OBJECTS[:2]))
    await wait_for(ray_server, job.id, JobEvent.layer_ready, timeout=120)
    kill_replica_of(ray_server, job.id)
    last = final(await follow(client, job.id))
    assert last.type is JobEvent.error and last.fields["code"] == "worker_lost", last
    record = await client.job(job.id)
    assert record.result is not None and record.result.layers
    for layer in record.result.layers:
        assert (await client.layer_png(job.id, layer.file)).startswith(b"\x89PNG")
