"""Issue 19 item 3: TLS for LAN/studio mode (`--tls-cert/--tls-key`), with a self-signed
certificate made in the test; the Krita plugin's client over https/wss, and a clear error for a
certificate the computer does not trust."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp_transport import AiohttpTransport
from server_process import free_port

from acetate.api.app import create_app, runner_options, ssl_context
from acetate.api.config import ServerConfig
from acetate_krita.client import AcetateClient
from acetate_krita.websocket import WebSocket, WebSocketError

TOKEN = "tls-test-token-0123456789"


def make_certificate(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class NoEngine:
    device_name = "cpu"

    def prepare(self, *args: Any) -> Any:
        raise AssertionError("no jobs in this test")

    def stream(self, *args: Any) -> Any:
        raise AssertionError("no jobs in this test")

    def release(self) -> None:
        pass


class NoModels:
    def describe(self) -> dict[str, Any]:
        return {"bases": []}


@pytest_asyncio.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[ServerConfig, Path]]:
    cert, key = make_certificate(tmp_path)
    config = ServerConfig(
        output_dir=tmp_path / "out",
        port=free_port(),
        host="0.0.0.0",
        token=TOKEN,
        tls_cert=cert,
        tls_key=key,
    )
    app = create_app(config, NoEngine(), NoModels())  # type: ignore[arg-type]
    runner = web.AppRunner(app, **{**runner_options(config), "shutdown_timeout": 2.0})
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", config.port, ssl_context=ssl_context(config)).start()
    yield config, cert
    await runner.cleanup()


@pytest.mark.asyncio
async def test_https_and_wss_with_a_trusted_certificate(
    tls_server: tuple[ServerConfig, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, cert = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the default context trusts it now
    client = AcetateClient(AiohttpTransport(), f"https://localhost:{config.port}", TOKEN)
    assert client.ws_url == f"wss://localhost:{config.port}/api/ws"
    trusted = ssl.create_default_context(cafile=str(cert))
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{client.url}/api/health", headers=client.headers, ssl=trusted) as response,
    ):
        assert response.status == 200 and (await response.json())["device"] == "cpu"
    socket = await WebSocket.connect(
        f"wss://localhost:{config.port}/api/ws", {"Authorization": f"Bearer {TOKEN}"}
    )
    await socket.send_text('{"type": "subscribe", "jobs": []}')
    await socket.close()
    # plain HTTP to the TLS port gets nothing useful
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{config.port}/api/health") as response:
                await response.read()


@pytest.mark.asyncio
async def test_an_untrusted_certificate_is_a_clear_error(
    tls_server: tuple[ServerConfig, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _ = tls_server
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(WebSocketError) as caught:
        await WebSocket.connect(f"wss://localhost:{config.port}/api/ws")
    message = str(caught.value)
    assert "does not trust" in message and "localhost" in message, message
    assert "certificate" in message
    # the server's own SSL context: TLS 1.2 at least
    context = ssl_context(config)
    assert context is not None and context.minimum_version >= ssl.TLSVersion.TLSv1_2
