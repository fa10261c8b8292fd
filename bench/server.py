"""Server benchmarks (`make bench`, not tests).

1. Layer hand-off: the time from `Engine.generate` returning a 1024² layer to a client holding
   its pixels, through the raw RGBA path (`?format=rgba`, target ≤ 50 ms) and through PNG (fast
   compression level), plus the PSD's first (lazy) request. The server runs in a thread of this
   process with the real engine on the tiny models; the first result is generated for real and
   then replayed, so every run measures the hand-off and not the CPU-bound sampling.
2. Load: 50 concurrent WebSocket clients submitting tiny jobs and polling for 60 s against an
   `acetate serve` subprocess: every job must complete without error, and the server's resident
   memory is sampled to show it stays flat.

    python bench/server.py [--runs 10] [--clients 50] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from PIL import Image
from provenance import commit

from acetate.api.app import create_app
from acetate.api.config import ServerConfig
from acetate.client import AcetateClient
from acetate.engine.engine import Engine
from acetate.engine.options import EngineOptions
from acetate.engine.outputs import LayerImage
from acetate.engine.resolve import Prepared
from acetate.engine.store.models import ModelStore
from acetate.engine.tiny.bases import ensure_tiny_models
from acetate.protocol import JobEvent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ReplayingEngine:
    """The real engine for the first request; later requests replay its layers, stamping the
    moment the last one is yielded (the pipeline's hand-off to the server)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.layers: list[LayerImage] | None = None
        self.returned_at: list[float] = []

    @property
    def device_name(self) -> str:
        return self.engine.device_name

    def prepare(self, params: Any, images: Mapping[str, np.ndarray]) -> Prepared:
        return self.engine.prepare(params, images)

    def stream(
        self,
        prepared: Prepared,
        images: Mapping[str, np.ndarray],
        callback: Any = None,
        cancel: Any = None,
    ) -> Iterator[LayerImage]:
        if self.layers is None:
            self.layers = list(self.engine.stream(prepared, images, callback, cancel))
        self.returned_at.append(time.perf_counter())
        yield from self.layers

    def release(self) -> None:
        self.engine.release()


def start_in_thread(app: web.Application, port: int) -> tuple[asyncio.AbstractEventLoop, Any]:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def start() -> web.AppRunner:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    return loop, asyncio.run_coroutine_threadsafe(start(), loop).result(60)


async def hand_off(url: str, engine: ReplayingEngine, runs: int) -> dict[str, list[float]]:
    request = {
        "prompt": "a glass apple",
        "width": 1024,
        "height": 1024,
        "steps": 1,
        "decode": "fast",
        "seed": 1,
    }
    timings: dict[str, list[float]] = {"raw": [], "png": [], "png_bytes": [], "psd_first": []}
    async with AcetateClient(url) as client:
        for run in range(runs + 1):  # run 0 generates for real and warms up
            for path in ("raw", "png"):
                created = await client.submit(request)
                async for message in client.events([created.id]):
                    if message.type is not JobEvent.layer_ready:
                        continue
                    file = message.fields["layer"]["file"]
                    if path == "raw":
                        pixels = (await client.layer_rgba(created.id, file)).pixels
                        held = time.perf_counter()
                    else:
                        data = await client.layer_png(created.id, file)
                        got_bytes = time.perf_counter()
                        with Image.open(io.BytesIO(data)) as image:
                            pixels = np.asarray(image.convert("RGBA"))
                        held = time.perf_counter()
                    assert pixels.shape == (1024, 1024, 4)
                    if run:
                        timings[path].append(held - engine.returned_at[-1])
                        if path == "png":
                            timings["png_bytes"].append(got_bytes - engine.returned_at[-1])
                if run and path == "png":
                    start = time.perf_counter()
                    await client.psd(created.id)
                    timings["psd_first"].append(time.perf_counter() - start)
    return timings


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def load(url: str, pid: int, clients: int, seconds: float) -> dict[str, Any]:
    request = {"prompt": "tiny", "width": 64, "height": 64, "steps": 1, "decode": "fast"}
    stats: dict[str, Any] = {"done": 0, "failed": [], "latency": []}
    deadline = time.monotonic() + seconds
    samples: list[tuple[float, int]] = []

    running = True
    start = time.monotonic()

    async def sample_memory() -> None:
        while running:
            samples.append((time.monotonic() - start, rss_kib(pid)))
            await asyncio.sleep(1.0)

    async def one_client(index: int) -> None:
        async with AcetateClient(url) as client:
            while time.monotonic() < deadline:
                start = time.monotonic()
                created = await client.submit({**request, "client_id": f"c{index}"})
                async for message in client.events([created.id]):
                    if message.type is JobEvent.error:
                        stats["failed"].append(message.fields)
                record = await client.job(created.id)  # and poll the record, as plugins do
                if record.status != "done" or record.result is None:
                    stats["failed"].append(record.status)
                    continue
                await client.layer_rgba(created.id, record.result.layers[0].file)
                stats["done"] += 1
                stats["latency"].append(time.monotonic() - start)

    sampler = asyncio.create_task(sample_memory())
    await asyncio.gather(*(one_client(i) for i in range(clients)))
    running = False
    await sampler
    samples.append((time.monotonic() - start, rss_kib(pid)))
    stats["memory"] = samples
    stats["elapsed"] = time.monotonic() - start
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="acetate-bench-server-"))
    models = work / "models"
    ensure_tiny_models(models)
    print(
        f"acetate server bench — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, commit {commit()}, device cpu, tiny models"
    )

    # 1. Hand-off latency, in-process
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    engine = ReplayingEngine(Engine(ModelStore(models), EngineOptions(device="cpu")))
    port = free_port()
    config = ServerConfig(output_dir=work / "out", port=port)
    loop, runner = start_in_thread(create_app(config, engine, engine.engine.store), port)
    timings = asyncio.run(hand_off(f"http://127.0.0.1:{port}", engine, args.runs))
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(60)

    def ms(values: list[float]) -> str:
        return (
            f"median {statistics.median(values) * 1000:6.1f} ms, "
            f"min {min(values) * 1000:6.1f}, max {max(values) * 1000:6.1f}"
        )

    print(f"1024² layer, generate() returned → client holds pixels ({args.runs} runs):")
    print(f"  raw RGBA (?format=rgba)     {ms(timings['raw'])}   (target ≤ 50 ms)")
    print(f"  PNG bytes (fast level)      {ms(timings['png_bytes'])}")
    print(f"  PNG bytes + client decode   {ms(timings['png'])}")
    print(f"  PSD, first (lazy) request   {ms(timings['psd_first'])}")
    if args.skip_load:
        return

    # 2. Load: 50 WebSocket clients against `acetate serve`
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 shared cores: no OpenMP oversubscription
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "acetate",
            "serve",
            "--port",
            str(port),
            "--models-dir",
            str(models),
            "--output-dir",
            str(work / "load"),
            "--max-queued",
            "4",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(work / "serve.log").open("w"),
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        async def wait_up() -> None:
            for _ in range(300):
                try:
                    async with AcetateClient(url) as client:
                        await client.health()
                        return
                except OSError:
                    await asyncio.sleep(0.2)
            raise RuntimeError("server did not start")

        asyncio.run(wait_up())
        stats = asyncio.run(load(url, server.pid, args.clients, args.seconds))
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
    print(f"  (server log: {work / 'serve.log'})")
    memory: list[tuple[float, int]] = stats["memory"]
    print(
        f"{args.clients} WebSocket clients submitting for {args.seconds:.0f} s on tiny models "
        "(server with OMP_NUM_THREADS=1):"
    )
    failed = stats["failed"]
    examples = f" {failed[:3]}" if failed else ""
    print(
        f"  jobs done {stats['done']}, failed {len(failed)}{examples}"
        f"; all finished after {stats['elapsed']:.0f} s ({stats['done'] / stats['elapsed']:.1f} "
        "jobs/s)"
    )
    if stats["latency"]:
        latency = sorted(stats["latency"])
        print(
            f"  submit → done → layer held: median {statistics.median(latency):.2f} s, "
            f"p95 {latency[int(len(latency) * 0.95) - 1]:.2f} s"
        )
    series = [f"{t:.0f}s {kib / 1024:.0f}" for t, kib in memory[:: max(1, len(memory) // 10)]]
    series.append(f"end {memory[-1][1] / 1024:.0f}")
    print(f"  server RSS MiB over time: {', '.join(series)}")


if __name__ == "__main__":
    main()
