"""The Acetate client: HTTP calls and the event WebSocket, with errors in plain words.

Qt-free: HTTP goes through an `Http` transport (Qt's QNetworkAccessManager inside Krita,
see network.py; any asyncio HTTP client in tests), events through websocket.py. Everything
is a coroutine on the plugin's event loop, so nothing here ever blocks Krita.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

from . import __version__
from .protocol import (
    API_VERSION,
    Event,
    JobEvent,
    JobRecord,
    LayerRecord,
    ModelsInfo,
    ModesInfo,
    Parameters,
    WireImage,
    encode_multipart,
    subscribe_message,
    unsubscribe_message,
)
from .websocket import WebSocket, WebSocketError

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:7865"
TOO_OLD = "Server too old — update Acetate (this plugin needs a server that publishes /api/modes)."


def version_problem(server_version: str, api_version: int) -> ServerError | None:
    """Why this plugin refuses a server speaking protocol `api_version`, or None when it fits.

    Both directions are refused: an older server lacks what the plugin sends, a newer one
    may have changed what the plugin reads.
    """
    facts = (
        f"the server is Acetate {server_version} with protocol {api_version}; "
        f"this plugin ({__version__}) speaks protocol {API_VERSION}"
    )
    if api_version < API_VERSION:
        return ServerError(f"Server too old — update Acetate ({facts}).", code="too_old")
    if api_version > API_VERSION:
        return ServerError(
            f"Server too new — update the Acetate plugin for Krita ({facts}).", code="too_new"
        )
    return None


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class NetworkError(Exception):
    """No HTTP answer at all (refused, unreachable, timed out); the text says which."""


class Http(Protocol):
    """The HTTP transport the client runs on."""

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float = 30.0,
    ) -> HttpResponse: ...


class ServerError(Exception):
    """What went wrong, in words for the docker; `code` is the server's error code."""

    def __init__(
        self, message: str, code: str = "error", field: str | None = None, status: int = 0
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
        self.status = status


def unreachable(url: str, detail: str) -> ServerError:
    return ServerError(
        f"Cannot reach the Acetate server at {url} ({detail}). "
        "Start it with `acetate serve`, or check the server URL.",
        code="unreachable",
    )


def error_from_response(response: HttpResponse) -> ServerError:
    """The server's `{"error": {code, message, field}}` as plain words."""
    try:
        error = json.loads(response.body)["error"]
        code, message = str(error.get("code", "error")), str(error.get("message", ""))
        field = error.get("field")
    except (ValueError, KeyError, TypeError, AttributeError):
        code, message, field = "error", response.body[:200].decode("utf-8", "replace"), None
    status = response.status
    if status == 401:
        message = (
            "The server wants a token, or the token is wrong: enter the token the server was "
            "started with (--token or ACETATE_TOKEN)."
        )
    elif code == "model_not_found":
        message = f"Model file missing: {message}"
    elif status >= 500:
        message = f"The server failed ({code}): {message}"
    elif field and field not in message:
        message = f"{field}: {message}"
    return ServerError(message, code, field, status)


def error_from_event(fields: Mapping[str, Any]) -> ServerError:
    """A job's `error` event as plain words (a missing model file says which to get)."""
    code = str(fields.get("code") or "error")
    message = str(fields.get("message") or code)
    if code == "model_not_found":
        message = f"Model file missing: {message}"
    return ServerError(message, code, fields.get("field"))


class AcetateClient:
    """HTTP API of one server (URL + optional token)."""

    def __init__(self, http: Http, url: str = DEFAULT_URL, token: str = "") -> None:
        self.http = http
        self.url = url.strip().rstrip("/") or DEFAULT_URL
        self.token = token.strip()
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ServerError(
                f"Server URL must look like {DEFAULT_URL} (got {url!r})", code="bad_url"
            )

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def ws_url(self) -> str:
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path + "/api/ws", "", ""))

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        ok: tuple[int, ...] = (200,),
        timeout: float = 30.0,
    ) -> HttpResponse:
        headers = self.headers
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            response = await self.http.request(method, self.url + path, headers, body, timeout)
        except NetworkError as error:
            raise unreachable(self.url, str(error)) from None
        if response.status not in ok:
            raise error_from_response(response)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._call(method, path, **kwargs)
        try:
            return json.loads(response.body)
        except ValueError:
            raise ServerError(f"{self.url} is not an Acetate server", code="bad_response") from None

    async def health(self) -> dict[str, Any]:
        """GET /api/health: version, device, queue length."""
        data = await self._json("GET", "/api/health", timeout=10.0)
        if not isinstance(data, dict) or "version" not in data:
            raise ServerError(f"{self.url} is not an Acetate server", code="bad_response")
        if not isinstance(data.get("api_version"), int):
            raise ServerError(TOO_OLD, code="too_old")
        problem = version_problem(str(data["version"]), data["api_version"])
        if problem is not None:
            raise problem
        return data

    async def models(self) -> ModelsInfo:
        return ModelsInfo.from_json(await self._json("GET", "/api/models"))

    async def modes(self) -> ModesInfo:
        """GET /api/modes: every mode the server runs; a server without it is too old."""
        try:
            data = await self._json("GET", "/api/modes")
        except ServerError as error:
            if error.status in (404, 405):
                raise ServerError(TOO_OLD, code="too_old", status=error.status) from None
            raise
        try:
            modes = ModesInfo.from_json(data)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ServerError(
                f"{self.url} sent a mode list this plugin cannot read ({error})",
                code="bad_response",
            ) from None
        if modes.api_version < API_VERSION:
            raise ServerError(TOO_OLD, code="too_old")
        problem = version_problem("(version not given)", modes.api_version)
        if problem is not None:  # too new: health said otherwise, but the modes decide
            raise problem
        return modes

    async def submit(self, params: Parameters, images: Mapping[str, WireImage]) -> str:
        """POST /api/jobs (multipart, raw pixels); returns the job id."""
        content_type, body = encode_multipart(params.to_json(), dict(images))
        data = await self._json(
            "POST", "/api/jobs", body=body, content_type=content_type, ok=(200, 202), timeout=120
        )
        return str(data["id"])

    async def job(self, job_id: str) -> JobRecord:
        return JobRecord.from_json(await self._json("GET", f"/api/jobs/{quote(job_id)}"))

    async def cancel(self, job_id: str) -> None:
        """DELETE /api/jobs/{id}: a queued job stops at once, a running one at its next step."""
        await self._call("DELETE", f"/api/jobs/{quote(job_id)}", ok=(200, 202, 204))

    async def layer_pixels(self, job_id: str, layer: LayerRecord, bits: int = 8) -> bytes:
        """A layer as raw straight RGBA, 8-bit (`?format=rgba`) or with `bits` 16 (a 16-bit
        job's `?format=rgba16`) little-endian uint16; its size and placement must match the
        record."""
        fmt = "rgba16" if bits == 16 else "rgba"
        path = f"/api/jobs/{quote(job_id)}/layers/{quote(layer.file)}?format={fmt}"
        response = await self._call("GET", path, timeout=300)
        header = response.headers
        placement = tuple(
            header.get(f"x-acetate-{name}") for name in ("width", "height", "left", "top")
        )
        expected = tuple(str(v) for v in (layer.width, layer.height, layer.left, layer.top))
        if bits == 16 and header.get("x-acetate-depth") != "16":
            raise ServerError(
                f"The server sent {layer.file} at depth {header.get('x-acetate-depth')} "
                "instead of 16 bits (a server bug)",
                code="bad_response",
            )
        if placement != expected or len(response.body) != bits // 2 * layer.width * layer.height:
            raise ServerError(
                f"The server sent {layer.file} with placement {placement} but its result "
                f"record says {expected} (a server bug)",
                code="bad_response",
            )
        return response.body

    async def psd(self, job_id: str) -> bytes:
        """The job's layered PSD (written by the server on first request)."""
        return (await self._call("GET", f"/api/jobs/{quote(job_id)}/result.psd", timeout=300)).body


Connector = Callable[[str, dict[str, str]], Awaitable[WebSocket]]


def _connect(url: str, headers: dict[str, str]) -> Awaitable[WebSocket]:
    return WebSocket.connect(url, headers)


class EventStream:
    """One WebSocket for every job of a client: subscribe, reconnect, resubscribe.

    `run()` keeps the connection up (backing off up to `max_delay`) until cancelled; after a
    reconnect it subscribes again to the jobs still wanted, and the server re-sends the
    final event of any that finished meanwhile. `on_status(connected, error)` reports the
    connection; `disconnected_for()` tells a waiting job how long the server has been gone.
    """

    def __init__(
        self,
        client: AcetateClient,
        on_status: Callable[[bool, str | None], None] | None = None,
        *,
        connect: Connector = _connect,
        max_delay: float = 5.0,
        idle_timeout: float = 75.0,
    ) -> None:
        self.client = client
        self.on_status = on_status or (lambda connected, error: None)
        self._connect = connect
        self._max_delay = max_delay
        self._idle_timeout = idle_timeout  # the server pings every 30 s
        self._queues: dict[str, asyncio.Queue[Event]] = {}
        self._socket: WebSocket | None = None
        self._lost_at: float | None = None
        self.connected = asyncio.Event()

    def subscribe(self, job_id: str) -> asyncio.Queue[Event]:
        """Start receiving `job_id`'s events (sent now if connected, else on connect)."""
        queue = self._queues.setdefault(job_id, asyncio.Queue())
        self._send_soon(subscribe_message([job_id]))
        return queue

    def unsubscribe(self, job_id: str) -> None:
        if self._queues.pop(job_id, None) is not None:
            self._send_soon(unsubscribe_message([job_id]))

    def disconnected_for(self) -> float:
        """Seconds since the connection was lost (0 while connected)."""
        if self._lost_at is None:
            return 0.0
        return asyncio.get_running_loop().time() - self._lost_at

    def _send_soon(self, text: str) -> None:
        socket = self._socket
        if socket is not None and not socket.closed:
            task = asyncio.ensure_future(socket.send_text(text))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.25
        self._lost_at = loop.time()
        while True:
            try:
                socket = await self._connect(self.client.ws_url, self.client.headers)
            except WebSocketError as error:
                self.on_status(False, self._describe(error))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_delay)
                continue
            delay = 0.25
            self._socket, self._lost_at = socket, None
            self.connected.set()
            self.on_status(True, None)
            try:
                if self._queues:
                    await socket.send_text(subscribe_message(list(self._queues)))
                await self._receive(socket)
            except (WebSocketError, asyncio.TimeoutError) as error:
                log.info("event stream lost: %s", error)
            finally:
                self._socket = None
                self.connected.clear()
                self._lost_at = loop.time()
                await socket.abort()
            self.on_status(False, "The connection to the server was lost; reconnecting…")

    async def _receive(self, socket: WebSocket) -> None:
        pending_preview: Event | None = None
        while True:
            message = await asyncio.wait_for(socket.receive(), self._idle_timeout)
            if isinstance(message, bytes):
                if pending_preview is not None:
                    pending_preview.binary = message
                    self._deliver(pending_preview)
                pending_preview = None
                continue
            try:
                event = Event.from_json(json.loads(message))
            except (ValueError, TypeError, AttributeError):
                log.warning("ignoring an unknown server message: %.200s", message)
                continue
            if event.type is JobEvent.preview:
                pending_preview = event  # its image is the next binary frame
            else:
                self._deliver(event)

    def _deliver(self, event: Event) -> None:
        queue = self._queues.get(event.job_id or "")
        if queue is not None:
            queue.put_nowait(event)

    def _describe(self, error: WebSocketError) -> str:
        if error.status is not None:
            return error_from_response(HttpResponse(error.status, {}, error.body)).message
        return unreachable(self.client.url, str(error)).message
