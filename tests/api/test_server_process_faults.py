"""Issue 19 item 6: faults survived, nothing lost.

- `kill -9` of a real `acetate serve` process mid-job: on restart the job is `error` /
  `interrupted`, no partial or temporary files, finished results intact.
- A full disk while results are written: a real small tmpfs mounted by the test (as root),
  else `RLIMIT_FSIZE` on the server process: the job fails with a clear error, nothing
  half-written remains, the server carries on.
- Clients vanishing mid-upload, mid-WebSocket and mid-download; 200 concurrent WebSockets that
  subscribe and vanish.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websockets
from PIL import Image
from server_helpers import (
    FAST,
    BlockingEngine,
    LiveServer,
    free_port,
    http_request,
    start_server,
)

from acetate.api.config import ServerConfig
from acetate.api.keys import HUB

SMALL = {"prompt": "x", **FAST, "width": 64, "height": 64}


class ServeProcess:
    """`acetate serve` in its own process, with the tiny models."""

    def __init__(
        self,
        models: Path,
        output: Path,
        preexec: Callable[[], None] | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        env.pop("ACETATE_TOKEN", None)
        self.log = output.parent / f"serve-{self.port}-{time.monotonic_ns()}.log"
        self.log_file = self.log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "acetate", "serve", "--port", str(self.port),
             "--models-dir", str(models), "--output-dir", str(output), "--device", "cpu"],
            stdout=self.log_file, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while True:
            try:
                self.get("/api/health")
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(self.log.read_text()) from None
                time.sleep(0.3)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def get(self, path: str) -> Any:
        return self.request("GET", path)[1]

    def wait_status(self, job_id: str, statuses: set[str], timeout: float = 180) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.get(f"/api/jobs/{job_id}")
            if record["status"] in statuses:
                return record
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} never reached {statuses}: {record}")

    def stop(self, sig: int = signal.SIGINT) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()


def leftovers(root: Path) -> list[Path]:
    """Temporary files of interrupted atomic writes."""
    return [path for path in root.rglob("*") if path.name.endswith(".tmp")]


def check_pngs(root: Path) -> None:
    for path in root.rglob("*.png"):
        with Image.open(path) as image:
            image.load()  # a truncated file raises


def test_kill_9_mid_job_then_restart(tiny_models_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    server = ServeProcess(tiny_models_dir, output)
    try:
        status, created = server.request("POST", "/api/jobs", SMALL)
        assert status == 202, created
        finished = created["id"]
        server.wait_status(finished, {"done"})
        png_before = (output / "jobs" / finished / "foreground.png").read_bytes()
        big = {"prompt": "x", "steps": 150, "width": 512, "height": 512, "batch": 4, "seed": 1}
        status, created = server.request("POST", "/api/jobs", big)
        assert status == 202, created
        killed = created["id"]
        server.wait_status(killed, {"started"})
        time.sleep(1.0)
        server.process.send_signal(signal.SIGKILL)
        assert server.process.wait(30) == -signal.SIGKILL
    finally:
        server.stop()
    server = ServeProcess(tiny_models_dir, output)
    try:
        record = server.get(f"/api/jobs/{killed}")
        assert record["status"] == "error" and record["error"]["code"] == "interrupted", record
        print("after kill -9 ->", record["error"], "partial result:", record.get("result"))
        assert not leftovers(output), leftovers(output)
        check_pngs(output)
        if record.get("result") is None:
            assert not (output / "jobs" / killed).exists()
        # the finished job is intact and served
        assert server.get(f"/api/jobs/{finished}")["status"] == "done"
        url = f"http://127.0.0.1:{server.port}/api/jobs/{finished}/layers/foreground.png"
        with urllib.request.urlopen(url, timeout=60) as response:
            assert response.read() == png_before
    finally:
        server.stop()


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[bool]:
    """A real tmpfs of `size` at `path` (True), or nothing when mounting is impossible."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    mounted = done.returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def limit_file_size(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_disk_full_while_writing_results(tiny_models_dir: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    with small_disk(disk, "4m") as mounted:
        output = disk / "out"
        output.mkdir(parents=True)
        preexec = None if mounted else limit_file_size(150_000)
        print(f"disk full via {'tmpfs' if mounted else 'RLIMIT_FSIZE'}")
        server = ServeProcess(tiny_models_dir, output, preexec=preexec)
        try:
            filler = disk / "filler"
            if mounted:
                free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
                filler.write_bytes(b"\0" * max(0, free - 96 * 1024))
            # noise layers of 512×512 RGBA: far more than the room left
            big = {"prompt": "x", **FAST, "width": 512, "height": 512, "batch": 2}
            status, created = server.request("POST", "/api/jobs", big)
            assert status == 202, created
            record = server.wait_status(created["id"], {"done", "error"})
            assert record["status"] == "error", record
            error = record["error"]
            print("disk full ->", error)
            assert error["code"] == "disk_full", error
            text = error["message"].lower()
            assert "disk is full" in text, error
            assert "no space left" in text or "file too large" in text, error
            assert str(disk) not in error["message"]
            assert not leftovers(output), leftovers(output)
            check_pngs(output)
            # room again: the server carries on
            filler.unlink(missing_ok=True)
            status, created = server.request("POST", "/api/jobs", SMALL)
            assert status == 202
            assert server.wait_status(created["id"], {"done", "error"})["status"] == "done"
            assert server.get("/api/health")["queue_length"] == 0
        finally:
            server.stop()
        log = server.log.read_text()
        assert "Traceback" not in log.split("job ")[0]  # no crash before the first job


# -- disconnects ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_clients_vanishing_mid_upload_websocket_and_download(
    make_config: Callable[..., ServerConfig],
    engine: Any,
    model_store: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    blocking = BlockingEngine(engine)
    live: LiveServer = await start_server(make_config(), blocking, model_store)
    try:
        async with live.client() as client:
            # mid-upload: half a multipart body, then gone
            _, writer = await asyncio.open_connection("127.0.0.1", live.port)
            head = http_request(
                live.port,
                "POST",
                "/api/jobs",
                headers={"Content-Type": "multipart/form-data; boundary=B"},
                content_length=5_000_000,
            )
            writer.write(head + b'--B\r\nContent-Disposition: form-data; name="request"\r\n\r\n')
            await writer.drain()
            writer.transport.abort()

            # mid-WebSocket: subscribed to a running job, then the TCP connection is cut
            job = await client.submit({**SMALL, "width": 256, "height": 256, "batch": 2})
            socket = await websockets.connect(f"ws://127.0.0.1:{live.port}/api/ws")
            await socket.send(json.dumps({"type": "subscribe", "jobs": [job.id]}))
            await socket.recv()
            socket.transport.abort()
            blocking.gate.set()
            record = None
            for _ in range(600):
                record = await client.job(job.id)
                if record.status in ("done", "error", "cancelled"):
                    break
                await asyncio.sleep(0.1)
            assert record is not None and record.status == "done"

            # mid-download: ask for the PSD and a layer, read a little, vanish
            for path in (f"/api/jobs/{job.id}/result.psd", f"/api/jobs/{job.id}/layers/"
                         "foreground.png", f"/api/jobs/{job.id}/layers/foreground.png"
                         "?format=rgba"):  # fmt: skip
                reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
                writer.write(http_request(live.port, "GET", path))
                await writer.drain()
                await reader.read(100)
                writer.transport.abort()
            await asyncio.sleep(0.5)
            assert (await client.health())["queue_length"] == 0
            psd = await client.psd(job.id)
            assert psd[:4] == b"8BPS"
        hub = live.app[HUB]
        for _ in range(50):
            if not hub.connections:
                break
            await asyncio.sleep(0.1)
        assert not hub.connections and not hub.subscribers
    finally:
        blocking.gate.set()
        await live.stop()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert not any('" 500 ' in line for line in access), access


@pytest.mark.asyncio
async def test_200_websockets_subscribe_and_vanish(
    make_config: Callable[..., ServerConfig], engine: Any, model_store: Any
) -> None:
    blocking = BlockingEngine(engine)
    live = await start_server(make_config(), blocking, model_store)
    try:
        async with live.client() as client:
            job = await client.submit(SMALL)
            uri = f"ws://127.0.0.1:{live.port}/api/ws"

            async def one(index: int) -> None:
                socket = await websockets.connect(uri, open_timeout=60)
                await socket.send(json.dumps({"type": "subscribe", "jobs": [job.id]}))
                await asyncio.wait_for(socket.recv(), 60)
                if index % 2:
                    socket.transport.abort()  # vanish without a close frame
                else:
                    await socket.close()

            started = time.monotonic()
            await asyncio.gather(*(one(i) for i in range(200)))
            elapsed = time.monotonic() - started
            hub = live.app[HUB]
            for _ in range(100):
                if not hub.connections:
                    break
                await asyncio.sleep(0.1)
            assert not hub.connections and not hub.subscribers, len(hub.connections)
            blocking.gate.set()
            events = [message async for message in client.events([job.id])]
            assert events[-1].type.value == "done"
            print(f"200 WebSockets subscribed and vanished in {elapsed:.2f} s")
    finally:
        blocking.gate.set()
        await live.stop()


def test_the_fixture_pngs_are_sane(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((4, 4, 4), np.uint8)).save(path)
    check_pngs(tmp_path)
