"""A small WebSocket client (RFC 6455) on asyncio streams, Qt-free.

Why not a library: Qt's QtWebSockets is not part of the PyQt5 that Krita bundles (nor of
Debian's python3-pyqt5), and the `websockets` release our venv pins needs Python 3.11 while
Krita 5.2 ships 3.10. The plugin needs little: one client connection, text and binary
messages, ping/pong, close. No extensions, no subprotocols.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import ssl
import struct
from urllib.parse import SplitResult, urlsplit

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
MAX_HEADER_BYTES = 64 * 1024


def untrusted_certificate(host: str, error: BaseException) -> str:
    """An untrusted TLS certificate, in plain words."""
    reason = getattr(error, "verify_message", None) or str(error)
    return (
        f"the server {host} has a TLS certificate this computer does not trust ({reason}); "
        "install the server's certificate (or its CA) in the system's trusted certificates, "
        "or use a certificate from a trusted authority"
    )


class WebSocketError(Exception):
    """The connection could not be opened or broke; `status` is the HTTP status if refused."""

    def __init__(self, message: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class WebSocketClosed(WebSocketError):
    """The server closed the connection (or it ended without a close frame)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        detail = f"{code}: {reason}" if reason else str(code or "no close frame")
        super().__init__(f"connection closed ({detail})")
        self.code = code
        self.reason = reason


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value a server must answer to `key`."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR `payload` with the repeated 4-byte `key` (clients mask every frame they send)."""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return masked.to_bytes(len(payload), "big")


def encode_frame(opcode: int, payload: bytes, key: bytes | None = None) -> bytes:
    """One final, masked frame."""
    key = key if key is not None else os.urandom(4)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return header + key + mask(payload, key)


class WebSocket:
    """An open client connection. Only one task may call `receive`."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_size: int
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._max_size = max_size
        self.closed = False

    @classmethod
    async def connect(
        cls,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        timeout: float = 10.0,
        max_size: int = 16 * 1024 * 1024,
    ) -> WebSocket:
        """Open `ws://` or `wss://` `url`; WebSocketError if refused or unreachable."""
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise WebSocketError(f"not a WebSocket URL: {url}")
        port = parts.port or (443 if secure else 80)
        context = ssl.create_default_context() if secure else None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, port, ssl=context), timeout
            )
        except asyncio.TimeoutError:
            raise WebSocketError(f"no answer from {parts.hostname}:{port}") from None
        except ssl.SSLCertVerificationError as error:
            raise WebSocketError(untrusted_certificate(parts.hostname, error)) from None
        except OSError as error:
            raise WebSocketError(error.strerror or str(error)) from None
        socket = cls(reader, writer, max_size)
        try:
            await asyncio.wait_for(socket._handshake(parts, headers or {}), timeout)
        except asyncio.TimeoutError:
            await socket.abort()
            raise WebSocketError("the server did not complete the WebSocket handshake") from None
        except BaseException:
            await socket.abort()
            raise
        return socket

    async def _handshake(self, parts: SplitResult, headers: dict[str, str]) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self._writer.drain()
        try:
            head = await self._reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            raise WebSocketError("the server closed the connection during the handshake") from None
        except asyncio.LimitOverrunError:
            raise WebSocketError("the handshake response is too large") from None
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        fields = status_line.split(" ", 2)
        status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
        response = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            response[name.strip().lower()] = value.strip()
        if status != 101:
            length = int(response.get("content-length") or 0)
            body = await self._reader.readexactly(min(length, MAX_HEADER_BYTES)) if length else b""
            raise WebSocketError(f"the server refused the WebSocket ({status_line})", status, body)
        if response.get("sec-websocket-accept") != accept_key(key):
            raise WebSocketError("the server answered the handshake with a wrong accept key")

    async def send_text(self, text: str) -> None:
        await self._send(TEXT, text.encode())

    async def _send(self, opcode: int, payload: bytes) -> None:
        if self.closed:
            raise WebSocketClosed(None, "already closed")
        self._writer.write(encode_frame(opcode, payload))
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as error:
            self.closed = True
            raise WebSocketError(str(error) or "connection lost") from None

    async def _frame(self) -> tuple[bool, int, bytes]:
        first, second = await self._reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self._reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self._reader.readexactly(8))
        if size > self._max_size:
            raise WebSocketError(f"message of {size} bytes is over the {self._max_size} limit")
        key = await self._reader.readexactly(4) if second & 0x80 else None
        payload = await self._reader.readexactly(size)
        return bool(first & 0x80), first & 0x0F, mask(payload, key) if key else payload

    async def receive(self) -> str | bytes:
        """The next text (str) or binary (bytes) message; answers pings on the way."""
        opcode, parts = None, []
        try:
            while True:
                final, frame_opcode, payload = await self._frame()
                if frame_opcode == PING:
                    await self._send(PONG, payload)
                elif frame_opcode == PONG:
                    continue
                elif frame_opcode == CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    await self._reply_close(payload[:2])
                    raise WebSocketClosed(code, payload[2:].decode("utf-8", "replace"))
                else:
                    opcode = frame_opcode if frame_opcode != CONTINUATION else opcode
                    parts.append(payload)
                    if sum(map(len, parts)) > self._max_size:
                        raise WebSocketError(f"message over the {self._max_size} byte limit")
                    if final:
                        data = b"".join(parts)
                        return data.decode() if opcode == TEXT else data
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            self.closed = True
            raise WebSocketClosed(None, "the connection ended") from None

    async def _reply_close(self, code: bytes) -> None:
        if not self.closed:
            with contextlib.suppress(WebSocketError):
                await self._send(CLOSE, code)
        await self.abort()

    async def close(self, code: int = 1000) -> None:
        """Say goodbye and drop the connection (without waiting for the server's echo)."""
        await self._reply_close(struct.pack("!H", code))

    async def abort(self) -> None:
        self.closed = True
        self._writer.close()
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError, OSError, ssl.SSLError):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)
