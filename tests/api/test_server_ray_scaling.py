"""The Ray backend's cluster life: warm replicas across deploys, the version check, a real
front restart against a running cluster, and autoscaling with the queue.

Uses the session's local Ray cluster (`ray_support.shared_cluster`, shared with
`test_server_ray.py`: one Ray connection per process). The front that dies is a real second
process connected to that cluster as an external one; the scaling test switches the
deployment to `--min-replicas 1 --max-replicas 2` with short delays and puts it back after.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from server_helpers import final, follow, free_port, start_server

from acetate.api.config import ServerConfig
from acetate.api.keys import BACKEND
from acetate.client import AcetateClient
from acetate.errors import InputError
from acetate.protocol import JobEvent

if importlib.util.find_spec("ray") is None:
    pytest.skip("ray[serve] is not installed (pip install 'acetate[ray]')", allow_module_level=True)

from ray_support import (
    SLOW,
    SMALL,
    VERY_SLOW,
    deploy_standard,
    eventually,
    ongoing_requests,
    ray_factory,
    replica_actors,
    settle,
    shared_cluster,
)

from acetate.backends import ray_cluster as ray_cluster_module
from acetate.backends.ray_backend import RayBackend
from acetate.backends.ray_cluster import Cluster, RaySettings, version_tag

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="session")
def ray_cluster(tiny_models_dir: Path) -> Iterator[Cluster]:
    yield from shared_cluster(tiny_models_dir)


def test_scale_down_after_is_a_serve_flag() -> None:
    from acetate.cli import build_parser
    from acetate.cli.serve_options import check_backend_flags, ray_settings

    parser = build_parser()
    flags = ["--backend", "ray", "--min-replicas", "1", "--max-replicas", "3", "--device", "cpu"]
    args = parser.parse_args(["serve", *flags, "--scale-down-after", "45"])
    settings = ray_settings(args)
    scaling = settings.deployment_options()["autoscaling_config"]
    assert (scaling["downscale_delay_s"], scaling["upscale_delay_s"]) == (45, 5)
    assert "metrics_interval_s" not in scaling  # Serve's default unless a test asks
    fixed = parser.parse_args(["serve", "--backend", "ray", "--replicas", "2"])
    fixed.scale_down_after = 45.0
    with pytest.raises(InputError, match="needs --min-replicas/--max-replicas"):
        ray_settings(fixed)
    alone = parser.parse_args(["serve", "--scale-down-after", "45"])
    with pytest.raises(InputError, match="--scale-down-after needs --backend ray"):
        check_backend_flags(alone)


# -- warm replicas and the version check --------------------------------------------------


def test_a_second_deploy_keeps_the_replicas_warm(ray_cluster: Cluster) -> None:
    """A front that restarts with the same settings redeploys: the replicas (and their loaded
    models) must survive it. Serve 2.60 would restart them without a stable version."""
    settle(ray_cluster)
    before = replica_actors()
    deploy_standard(ray_cluster, ray_cluster.models_dir)  # type: ignore[attr-defined]
    assert replica_actors() == before


def test_a_version_mismatch_is_one_line_naming_both_versions(
    ray_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The front asks a replica for its Acetate and API versions at start (`deploy` calls
    `check_version`). The replicas run this checkout's version, so the test gives the *front*
    another one: the check compares the same two strings either way round."""
    handle = ray_cluster.handle()
    ray_cluster.check_version(handle)  # the same version: accepted
    theirs = version_tag()
    monkeypatch.setattr(ray_cluster_module, "__version__", "0.0.0-other")
    with pytest.raises(InputError) as caught:
        ray_cluster.check_version(handle)
    message = caught.value.message
    assert "\n" not in message
    assert f"replicas run Acetate {theirs}" in message, message
    assert "this server Acetate 0.0.0-other (API " in message, message
    assert caught.value.field == "ray_address"


# -- a real front restart -------------------------------------------------------------------

#: A front server process against the session's cluster as an external one (what
#: `acetate serve --ray-address` runs, less the deploy: the replicas are the session's).
FRONT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from aiohttp import web

    from acetate.api.app import create_app
    from acetate.api.config import ServerConfig
    from acetate.backends.ray_backend import RayBackend, ServeExecutor
    from acetate.backends.ray_cluster import Cluster, RaySettings
    from acetate.engine.engine import Engine
    from acetate.engine.options import EngineOptions
    from acetate.engine.store.models import ModelStore

    address, models, out, port = sys.argv[1:5]
    cluster = Cluster(RaySettings(address=address))
    cluster.connect()
    store = ModelStore(Path(models))
    engine = Engine(store, EngineOptions(device="cpu"))


    def factory(queue, cache, config):
        executor = ServeExecutor(cluster.handle(), cluster.lease())
        return RayBackend(queue, cache, executor, slots=2, cluster=cluster, owns_cluster=False)


    config = ServerConfig(output_dir=Path(out), port=int(port))
    app = create_app(config, engine, store, factory)
    web.run_app(app, host="127.0.0.1", port=int(port), print=None)
    """
)


async def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        while time.monotonic() - started < timeout:
            assert process.poll() is None, "the front process exited"
            try:
                async with session.get(f"{url}/api/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.25)
    raise AssertionError(f"the front did not answer within {timeout:.0f} s")


async def test_after_a_front_restart_its_running_job_stops_and_shows_interrupted(
    ray_cluster: Cluster,
    make_config: Callable[..., ServerConfig],
    engine: Any,
    model_store: Any,
    tmp_path: Path,
) -> None:
    import ray

    await asyncio.to_thread(settle, ray_cluster)
    config = make_config()
    address = ray.get_runtime_context().gcs_address
    token = ray_cluster.token_path
    assert token is not None
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    port = free_port()
    models = str(ray_cluster.models_dir)  # type: ignore[attr-defined]
    command = [sys.executable, "-c", FRONT, address, models, str(config.output_dir), str(port)]
    log = (tmp_path / "front_a.log").open("wb")
    front = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_until_up(url, front, timeout=120)
        async with AcetateClient(url) as client_a:
            job = await client_a.submit(VERY_SLOW)
            async for message in client_a.events([job.id]):
                if message.type is JobEvent.progress:
                    break
        assert await asyncio.to_thread(ongoing_requests) == 1
        front.send_signal(signal.SIGKILL)  # a crash: nothing of the front's shutdown runs
        front.wait(timeout=30)
        # Ray ends the dead front's lease actor; the replica sees it and stops the job.
        took = await eventually(lambda: ongoing_requests() == 0, 30, "the orphan stopped")
        assert took < 20, took
    finally:
        if front.poll() is None:
            front.kill()
            front.wait(timeout=30)
        log.close()
    # Front B: the same results folder, the same cluster.
    live = await start_server(config, engine, model_store, ray_factory(ray_cluster))
    try:
        client_b = live.client()
        record = await client_b.job(job.id)
        assert record.status == "error" and record.error is not None, record
        assert record.error.code == "interrupted", record.error
        assert job.id in {entry.id for entry in await client_b.jobs()}
        # Both replicas serve the new front at once.
        jobs = [await client_b.submit({**SMALL, "seed": seed}) for seed in range(2)]
        for submitted in jobs:
            assert final(await follow(client_b, submitted.id)).type is JobEvent.done
    finally:
        await live.stop()


# -- autoscaling with the queue ------------------------------------------------------------


async def test_replicas_scale_between_the_bounds_with_the_queue(
    ray_cluster: Cluster,
    make_config: Callable[..., ServerConfig],
    engine: Any,
    model_store: Any,
) -> None:
    """`--min-replicas 1 --max-replicas 2`: idle, one replica; jobs queued, a second one comes
    up and both run jobs; idle again, back to one. Serve's delays are shortened (the front
    reports its load every 0.5 s instead of 10 s) so this takes seconds, not minutes."""
    await asyncio.to_thread(settle, ray_cluster)
    standard = ray_cluster.settings
    scaling = RaySettings(
        min_replicas=1,
        max_replicas=2,
        num_cpus=standard.num_cpus,
        cpus_per_replica=standard.cpus_per_replica,
        temp_dir=standard.temp_dir,
        upscale_delay_s=1.0,
        downscale_delay_s=2.0,
        metrics_interval_s=0.5,
        look_back_period_s=1.0,
    )
    models = ray_cluster.models_dir  # type: ignore[attr-defined]
    ray_cluster.settings = scaling
    live = None
    try:
        # Same replica arguments: only the scaling changes (no restart).
        await asyncio.to_thread(deploy_standard, ray_cluster, models)
        await eventually(lambda: ray_cluster.running_replicas() == 1, 60, "idle: down to 1")
        live = await start_server(
            make_config(), engine, model_store, ray_factory(ray_cluster, slots=scaling.slots)
        )
        backend = live.app[BACKEND]
        assert isinstance(backend, RayBackend)
        client = live.client()
        submitted = []
        started = time.monotonic()
        # Keep jobs waiting in the queue until the second replica is up and has run one.
        while len(backend.jobs_by_replica) < 2:
            assert time.monotonic() - started < 120, ("no second replica", backend.jobs_by_replica)
            pending = [job for job in submitted if job.id in backend.queue.jobs]
            waiting = [job for job in pending if not backend.queue.jobs[job.id].final]
            if len(waiting) < 4:
                submitted.append(await client.submit({**SLOW, "seed": len(submitted)}))
            await asyncio.sleep(0.5)
        assert ray_cluster.running_replicas() == 2
        assert len(backend.jobs_by_replica) == 2, backend.jobs_by_replica
        for job in submitted:
            await client.cancel(job.id)  # running ones stop; queued ones are dropped
        await eventually(lambda: ongoing_requests() == 0, 30, "the replicas are idle")
        await eventually(lambda: ray_cluster.running_replicas() == 1, 60, "idle: back to 1")
    finally:
        if live is not None:
            await live.stop()
        ray_cluster.settings = standard
        await asyncio.to_thread(deploy_standard, ray_cluster, models)
        await eventually(lambda: ray_cluster.running_replicas() == 2, 120, "fixed 2 again")
