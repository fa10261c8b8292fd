"""Ray backend benchmark (`make bench`, not tests): replica scaling and per-job overhead.

1. Throughput: `--jobs` tiny jobs through an Acetate server on a local Ray cluster of two CPU
   replicas, dispatching one job at a time (one replica busy) and then two (both busy).
   Goal: ≥ 1.5× with two.
2. Overhead: the smallest job (1 step, 64²), submit → `done`, through `LocalBackend` (the
   engine thread in this process) and through the Ray backend (one replica); the difference of
   the medians is what Ray costs per job. Goal: ≤ 100 ms.

Both servers run in this process with the real engine on the tiny models; torch uses one thread
in this process and in each replica, so the comparison is one core against one core.

    python bench/ray.py [--jobs 8] [--runs 15]
"""

# Imports of acetate come after the sys.path fix below (this file's name shadows `ray`).
# ruff: noqa: E402

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from provenance import commit

# This file is named like the `ray` package: its folder must not shadow it from here on.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

from acetate.api.app import BackendFactory, create_app
from acetate.api.config import ServerConfig
from acetate.backends.ray_backend import RayBackend, ServeExecutor
from acetate.backends.ray_cluster import Cluster, RaySettings
from acetate.client import AcetateClient
from acetate.engine.engine import Engine
from acetate.engine.options import EngineOptions
from acetate.engine.store.models import ModelStore
from acetate.engine.tiny.bases import ensure_tiny_models
from acetate.protocol import JobEvent

#: A job long enough that scaling shows (the tiny models are fast), and the smallest job.
WORK = {"prompt": "bench", "steps": 12, "width": 192, "height": 192, "decode": "fast"}
SMALLEST = {"prompt": "bench", "steps": 1, "width": 64, "height": 64, "decode": "fast"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def serve(
    output: Path, engine: Engine, store: ModelStore, backend: BackendFactory | None
) -> tuple[web.AppRunner, str]:
    config = ServerConfig(output_dir=output, port=free_port())
    runner = web.AppRunner(create_app(config, engine, store, backend), shutdown_timeout=5.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", config.port).start()
    return runner, f"http://127.0.0.1:{config.port}"


async def run_jobs(url: str, request: dict[str, Any], count: int) -> float:
    """Submit `count` jobs at once and wait for all; seconds from first submit to last done."""
    async with AcetateClient(url) as client:
        started = time.perf_counter()
        jobs = [await client.submit({**request, "seed": seed}) for seed in range(count)]

        async def finish(job_id: str) -> None:
            async for message in client.events([job_id]):
                if message.type in (JobEvent.error, JobEvent.cancelled):
                    raise RuntimeError(f"job {job_id} ended with {message.type.value}")
                if message.type is JobEvent.done:
                    return

        await asyncio.gather(*(finish(job.id) for job in jobs))
        return time.perf_counter() - started


async def latencies(url: str, runs: int) -> list[float]:
    """Submit → `done` of the smallest job, one at a time (after one warm-up)."""
    found = []
    for run in range(runs + 1):
        took = await run_jobs(url, {**SMALLEST, "seed": run}, 1)
        if run:
            found.append(took)
    return found


def ray_backend(cluster: Cluster, slots: int) -> BackendFactory:
    def factory(queue: Any, cache: Any, config: ServerConfig) -> RayBackend:
        executor = ServeExecutor(cluster.handle())
        return RayBackend(queue, cache, executor, slots=slots, cluster=cluster, owns_cluster=False)

    return factory


async def measure(
    args: argparse.Namespace,
    work: Path,
    engine: Engine,
    store: ModelStore,
    cluster: Cluster,
) -> dict[str, Any]:
    results: dict[str, Any] = {}

    async def with_server(
        name: str, backend: BackendFactory | None, body: Callable[[str], Any]
    ) -> Any:
        runner, url = await serve(work / name, engine, store, backend)
        try:
            return await body(url)
        finally:
            await runner.cleanup()

    for slots in (1, 2):
        # Warm both replicas (first job per replica loads the pipelines), then time.
        await with_server(f"warm{slots}", ray_backend(cluster, 2), lambda u: run_jobs(u, WORK, 2))
        results[f"throughput_{slots}"] = await with_server(
            f"ray{slots}", ray_backend(cluster, slots), lambda u: run_jobs(u, WORK, args.jobs)
        )
    results["local"] = await with_server("local", None, lambda u: latencies(u, args.runs))
    results["ray"] = await with_server(
        "ray", ray_backend(cluster, 1), lambda u: latencies(u, args.runs)
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8, help="jobs per throughput run")
    parser.add_argument("--runs", type=int, default=15, help="timed smallest jobs per backend")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="acb", dir="/tmp"))
    try:
        models = work / "models"
        ensure_tiny_models(models)
        store = ModelStore(models)
        options = EngineOptions(device="cpu")
        engine = Engine(store, options)
        print(
            f"Ray backend benchmark — commit {commit()}, {platform.processor() or 'cpu'}, "
            f"{os.cpu_count()} CPUs, tiny models, torch threads 1 per process"
        )
        started = time.perf_counter()
        settings = RaySettings(replicas=2, num_cpus=2, temp_dir=work / "ray")
        cluster = Cluster(settings)
        cluster.connect()
        try:
            cluster.deploy(models, [], options, preview_interval_s=0.25, preview_max_side=256)
            print(f"  local cluster + 2 replicas up in {time.perf_counter() - started:.1f} s")
            results = asyncio.run(measure(args, work, engine, store, cluster))
        finally:
            cluster.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    one, two = results["throughput_1"], results["throughput_2"]
    steps, side = WORK["steps"], WORK["width"]
    print(f"Throughput, {args.jobs} jobs of {steps} steps at {side}²:")
    print(f"  1 replica busy   {one:6.2f} s   {args.jobs / one:5.2f} jobs/s")
    print(f"  2 replicas busy  {two:6.2f} s   {args.jobs / two:5.2f} jobs/s")
    print(f"  speed-up         {one / two:5.2f}×   (goal ≥ 1.5×)")
    local, ray = statistics.median(results["local"]), statistics.median(results["ray"])
    print(f"Smallest job (1 step, 64²), submit → done, median of {args.runs}:")
    print(f"  LocalBackend     {local * 1000:7.1f} ms")
    print(f"  RayBackend       {ray * 1000:7.1f} ms")
    print(f"  Ray overhead     {(ray - local) * 1000:7.1f} ms per job   (goal ≤ 100 ms)")


if __name__ == "__main__":
    main()
