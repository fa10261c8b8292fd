"""Soak (`make soak`, not a test): N clients submitting, following, downloading, cancelling and
deleting tiny jobs for a long time against a real server process; the server's resident memory,
open file descriptors, asyncio tasks and threads are sampled and must stay flat.

    python bench/soak.py [--minutes 30] [--clients 8] [--sample-s 60]

The server runs in a child process (this script with `--serve`) that prints one `STATS` line per
sample; the series (start, every sample, end) and the job counts are printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the server process ----------------------------------------------------------------------


def process_stats() -> dict[str, Any]:
    status = Path("/proc/self/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return {
        "rss_mb": round(rss_kb / 1024, 1),
        "fds": len(os.listdir("/proc/self/fd")),
        "tasks": len(asyncio.all_tasks()),
        "threads": threading.active_count(),
    }


def serve(port: int, output: Path, sample_s: float) -> None:
    import logging

    from aiohttp import web

    from acetate.api.app import create_app, runner_options
    from acetate.api.config import ServerConfig
    from acetate.api.keys import HUB, QUEUE
    from acetate.engine.engine import Engine
    from acetate.engine.options import EngineOptions
    from acetate.engine.store.models import ModelStore
    from acetate.engine.tiny.bases import ensure_tiny_models

    logging.basicConfig(level=logging.WARNING)
    models = output / "models"
    ensure_tiny_models(models)
    config = ServerConfig(
        output_dir=output / "results", port=port, max_queued_per_client=64, max_age_s=3600
    )
    app = create_app(
        config, Engine(ModelStore(models), EngineOptions(device="cpu")), ModelStore(models)
    )

    async def report(app: web.Application) -> Any:
        async def loop() -> None:
            while True:
                stats = process_stats()
                stats["jobs_known"] = len(app[QUEUE].jobs)
                stats["sockets"] = len(app[HUB].connections)
                print("STATS " + json.dumps(stats), flush=True)
                await asyncio.sleep(sample_s)

        task = asyncio.create_task(loop())
        yield
        task.cancel()

    app.cleanup_ctx.append(report)
    web.run_app(app, host="127.0.0.1", port=port, print=None, **runner_options(config))


# -- the clients -----------------------------------------------------------------------------


class Counts:
    def __init__(self) -> None:
        self.submitted = self.done = self.cancelled = self.errors = self.downloads = 0
        self.refused = self.deleted = 0
        self.failures: list[str] = []


async def client_loop(index: int, url: str, stop_at: float, counts: Counts) -> None:
    rng = random.Random(index)
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < stop_at:
            body = {"prompt": "soak", "steps": rng.choice([1, 2, 3]), "decode": "fast",
                    "width": 64, "height": 64, "seed": rng.randrange(2**31),
                    "client_id": f"soak-{index}"}  # fmt: skip
            async with http.post(f"{url}/api/jobs", json=body) as response:
                if response.status == 429:
                    counts.refused += 1
                    await asyncio.sleep(0.5)
                    continue
                if response.status != 202:
                    counts.failures.append(f"submit {response.status}: {await response.text()}")
                    continue
                job_id = (await response.json())["id"]
            counts.submitted += 1
            cancel = rng.random() < 0.4
            async with http.ws_connect(f"{url}/api/ws") as ws:
                await ws.send_json({"type": "subscribe", "jobs": [job_id]})
                if cancel:
                    await asyncio.sleep(rng.random() * 0.5)
                    async with http.delete(f"{url}/api/jobs/{job_id}"):
                        pass
                final = None
                async for message in ws:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        continue
                    data = json.loads(message.data)
                    if data.get("type") in ("done", "error", "cancelled"):
                        final = data["type"]
                        break
                if rng.random() < 0.5:
                    await ws.close()  # else dropped with the session: both must be fine
            if final == "done":
                counts.done += 1
                if rng.random() < 0.5:
                    path = "result.psd" if rng.random() < 0.3 else "layers/foreground.png"
                    async with http.get(f"{url}/api/jobs/{job_id}/{path}") as response:
                        await response.read()
                        counts.downloads += response.status == 200
            elif final == "cancelled":
                counts.cancelled += 1
            else:
                counts.errors += 1
            if rng.random() < 0.7:  # delete most finished jobs; the rest stay listed
                async with http.delete(f"{url}/api/jobs/{job_id}") as response:
                    counts.deleted += response.status == 204


async def run_clients(url: str, clients: int, seconds: float) -> Counts:
    counts = Counts()
    stop_at = time.monotonic() + seconds
    await asyncio.gather(*(client_loop(i, url, stop_at, counts) for i in range(clients)))
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sample-s", type=float, default=60.0)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.output, args.sample_s)
        return 0

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="acetate-soak-") as folder:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port), "--output", folder,
             "--sample-s", str(args.sample_s)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        series: list[tuple[float, dict[str, Any]]] = []
        started = time.monotonic()

        def read_stats() -> None:
            assert server.stdout is not None
            for line in server.stdout:
                if line.startswith("STATS "):
                    series.append((time.monotonic() - started, json.loads(line[6:])))
                elif "Traceback" in line or "ERROR" in line:
                    print("server:", line.rstrip(), flush=True)

        reader = threading.Thread(target=read_stats, daemon=True)
        reader.start()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while not series and time.monotonic() < deadline:
            time.sleep(0.5)
        if not series:
            print("the server did not start")
            server.kill()
            return 1
        print(f"soak: {args.clients} clients for {args.minutes:g} min against {url}", flush=True)
        counts = asyncio.run(run_clients(url, args.clients, args.minutes * 60))
        time.sleep(min(args.sample_s, 5) + 1)  # let the server settle and report once more
        with contextlib.suppress(ProcessLookupError):
            server.terminate()
        server.wait(60)
        reader.join(5)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"jobs: {counts.submitted} submitted, {counts.done} done, {counts.cancelled} cancelled, "
        f"{counts.errors} errors, {counts.refused} refused (429), {counts.deleted} deleted, "
        f"{counts.downloads} downloads; server CPU {ru.ru_utime + ru.ru_stime:.0f} s"
    )
    print(
        f"{'t (s)':>8} {'RSS MB':>8} {'fds':>5} {'tasks':>6} {'threads':>8} {'jobs':>6} {'ws':>4}"
    )
    for t, stats in series:
        print(
            f"{t:8.0f} {stats['rss_mb']:8.1f} {stats['fds']:5d} {stats['tasks']:6d} "
            f"{stats['threads']:8d} {stats['jobs_known']:6d} {stats['sockets']:4d}"
        )
    for failure in counts.failures[:10]:
        print("failure:", failure)
    return 0 if not counts.failures and not counts.errors else 1


if __name__ == "__main__":
    sys.exit(main())
