"""Issue 19 item 2: who may touch a job — one token per person (`--tokens FILE`), owners,
admins, SIGHUP reload, file-permission and entropy checks; loopback without tokens: one user."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from server_helpers import FAST, BlockingEngine, LiveServer, free_port, start_server

from acetate.api.auth import parse_tokens_file, token_bits
from acetate.api.config import ServerConfig
from acetate.errors import InputError

ANNA = secrets.token_urlsafe(32)
BEN = secrets.token_hex(16)
BOSS = secrets.token_urlsafe(24)
GOOD = {"prompt": "x", **FAST, "width": 64, "height": 64}


def tokens_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "tokens.txt"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_token_file_checks(tmp_path: Path) -> None:
    good = f"# studio\nanna {ANNA}\nben {BEN}  # hex is fine\nboss {BOSS} admin\n\n"
    tokens = parse_tokens_file(tokens_file(tmp_path, good))
    assert {p.name: p.admin for p in tokens.values()} == {"anna": False, "ben": False, "boss": True}
    bad = [
        (good, 0o640, "readable by group or others"),
        (good, 0o604, "readable by group or others"),
        ("anna password123\n", 0o600, "too weak"),
        ("anna " + "a" * 60 + "\n", 0o600, "too weak"),
        (f"anna {ANNA}\nanna {BEN}\n", 0o600, "appears twice"),
        (f"anna {ANNA}\nben {ANNA}\n", 0o600, "not unique"),
        (f"anna {ANNA} root\n", 0o600, "name token [admin]"),
        ("# nobody\n", 0o600, "no tokens"),
    ]
    for text, mode, words in bad:
        with pytest.raises(InputError) as caught:
            parse_tokens_file(tokens_file(tmp_path, text, mode))
        assert words in caught.value.message, (text, caught.value.message)
        assert ANNA not in caught.value.message and BEN not in caught.value.message
    assert token_bits(secrets.token_urlsafe(22)) >= 128 > token_bits(secrets.token_hex(15))


def test_serve_refuses_a_readable_tokens_file(tmp_path: Path) -> None:
    path = tokens_file(tmp_path, f"anna {ANNA}\n", 0o644)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("ACETATE_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-m", "acetate", "serve", "--listen", "--port", str(free_port()),
         "--tokens", str(path), "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "readable by group or others" in done.stderr and "chmod 600" in done.stderr
    assert ANNA not in done.stderr + done.stdout


async def _call(
    live: LiveServer, method: str, path: str, token: str, **kwargs: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{live.url}{path}", headers=headers, **kwargs) as r,
    ):
        body = await r.json() if r.content_type == "application/json" else None
        return r.status, body


@pytest.mark.asyncio
async def test_jobs_belong_to_their_owner(
    make_config: Callable[..., ServerConfig], engine: Any, model_store: Any, tmp_path: Path
) -> None:
    path = tokens_file(tmp_path, f"anna {ANNA}\nben {BEN}\nboss {BOSS} admin\n")
    blocking = BlockingEngine(engine)
    live = await start_server(make_config(tokens_file=path), blocking, model_store)
    try:
        status, created = await _call(live, "POST", "/api/jobs", ANNA, json=GOOD)
        assert status == 202
        anna_job = created["id"]
        status, created = await _call(live, "POST", "/api/jobs", BEN, json=GOOD)
        ben_job = created["id"]

        # Ben cannot see, follow, download, cancel or delete Anna's job
        for method, suffix in (
            ("GET", ""),
            ("GET", "/layers/foreground.png"),
            ("GET", "/result.psd"),
            ("GET", "/result.ora"),
            ("DELETE", ""),
        ):
            status, body = await _call(live, method, f"/api/jobs/{anna_job}{suffix}", BEN)
            assert status == 403 and body["error"]["code"] == "forbidden", (method, suffix)
        status, listing = await _call(live, "GET", "/api/jobs", BEN)
        assert [job["id"] for job in listing["jobs"]] == [ben_job]
        assert listing["jobs"][0].get("owner") is None  # owners are shown to admins only
        uri = f"ws://127.0.0.1:{live.port}/api/ws?token={BEN}"
        async with websockets.connect(uri) as ws:
            await ws.send(f'{{"type": "subscribe", "jobs": ["{anna_job}"]}}')
            reply = await asyncio.wait_for(ws.recv(), 10)
            assert '"forbidden"' in str(reply) and anna_job in str(reply)

        # the admin sees everything, with owners, and may cancel anyone's job
        status, listing = await _call(live, "GET", "/api/jobs", BOSS)
        assert {job["id"]: job["owner"] for job in listing["jobs"]} == {
            anna_job: "anna",
            ben_job: "ben",
        }
        status, record = await _call(live, "GET", f"/api/jobs/{ben_job}", BOSS)
        assert status == 200 and record["owner"] == "ben"
        status, record = await _call(live, "DELETE", f"/api/jobs/{ben_job}", BOSS)
        assert status in (200, 202)
        # the owner may cancel her own
        status, _ = await _call(live, "DELETE", f"/api/jobs/{anna_job}", ANNA)
        assert status in (200, 202)

        # no token ever reaches the job store on disk
        for file in Path(live.config.output_dir).rglob("*"):
            if file.is_file():
                data = file.read_bytes()
                assert all(t.encode() not in data for t in (ANNA, BEN, BOSS)), file
    finally:
        blocking.gate.set()
        await live.stop()


@pytest.mark.asyncio
async def test_sighup_reloads_the_tokens(
    make_config: Callable[..., ServerConfig], engine: Any, model_store: Any, tmp_path: Path
) -> None:
    path = tokens_file(tmp_path, f"anna {ANNA}\n")
    live = await start_server(make_config(tokens_file=path), engine, model_store)
    try:
        assert (await _call(live, "GET", "/api/health", ANNA))[0] == 200
        assert (await _call(live, "GET", "/api/health", BEN))[0] == 401
        tokens_file(tmp_path, f"ben {BEN}\n")
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.2)
        assert (await _call(live, "GET", "/api/health", BEN))[0] == 200
        assert (await _call(live, "GET", "/api/health", ANNA))[0] == 401
        # a bad file (readable by others) keeps the tokens in force
        tokens_file(tmp_path, f"anna {ANNA}\n", 0o644)
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.2)
        assert (await _call(live, "GET", "/api/health", BEN))[0] == 200
        assert (await _call(live, "GET", "/api/health", ANNA))[0] == 401
    finally:
        await live.stop()


@pytest.mark.asyncio
async def test_single_token_is_one_admin_and_loopback_has_no_owners(
    make_config: Callable[..., ServerConfig], engine: Any, model_store: Any, tmp_path: Path
) -> None:
    live = await start_server(make_config(token=BOSS), engine, model_store)
    try:
        _, created = await _call(live, "POST", "/api/jobs", BOSS, json=GOOD)
        _, record = await _call(live, "GET", f"/api/jobs/{created['id']}", BOSS)
        assert record["owner"] == "admin"
    finally:
        await live.stop()
    live = await start_server(make_config(output_dir=tmp_path / "other"), engine, model_store)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{live.url}/api/jobs", json={**GOOD, "client_id": "krita-1"}
            ) as response:
                job_id = (await response.json())["id"]
            async with http.get(f"{live.url}/api/jobs?client_id=other") as response:
                assert (await response.json())["jobs"] == []
            async with http.get(f"{live.url}/api/jobs") as response:
                jobs = (await response.json())["jobs"]
                assert [job["id"] for job in jobs] == [job_id]
                assert jobs[0].get("owner") is None
            async with http.delete(f"{live.url}/api/jobs/{job_id}") as response:
                assert response.status in (200, 202, 204)
    finally:
        await live.stop()
