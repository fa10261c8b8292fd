"""Async Python client of the Acetate server (aiohttp): the reference for the plugins' clients.

    async with AcetateClient("http://127.0.0.1:7865", token=None) as client:
        job = await client.submit({"mode": "fg", "prompt": "a glass apple"})
        async for message in client.events([job.id]):
            ...                                   # JobMessage: queued … done | error | cancelled
        pixels, left, top = await client.layer_rgba(job.id, "foreground.png")

`run_job(url, token, request, images, out_dir, on_event)` does all of it and writes the same
folder as `acetate generate` (layer PNGs, `result.json`, optionally `layers.psd`/`.ora`).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
import numpy as np
from PIL import Image

from acetate.errors import AcetateError, GenerationCancelled, InputError
from acetate.export.atomic import write_bytes_atomic
from acetate.export.ora import ORA_FILE
from acetate.export.psd import PSD_FILE
from acetate.images import is_mask_field
from acetate.protocol import (
    FINAL_EVENTS,
    GenerateParameters,
    JobCreated,
    JobEvent,
    JobMessage,
    JobRecord,
    ResultRecord,
    region_fields,
)

log = logging.getLogger(__name__)

ImageEncoding = Literal["raw", "png", "json"]
WS_MAX_MESSAGE = 16 * 1024 * 1024
#: Layer file names a server may send (never a path: `run_job` writes them into `out_dir`).
SAFE_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,100}\.png")


class ServerError(AcetateError):
    """The server answered with an error body; `status`, `code` and `field` say which."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.field = field


@dataclass
class RawLayer:
    """A layer downloaded with `?format=rgba`: straight RGBA pixels and their canvas offset."""

    pixels: np.ndarray
    left: int
    top: int


def encode_png(array: np.ndarray) -> bytes:
    """RGBA (H×W×4) or mask (H×W) uint8 → PNG bytes, fast compression (for upload)."""
    mode = "L" if array.ndim == 2 else "RGBA"
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array), mode).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _request_dict(request: Mapping[str, Any] | GenerateParameters) -> dict[str, Any]:
    if isinstance(request, GenerateParameters):
        return request.model_dump(mode="json", exclude_none=True)
    return dict(request)


class AcetateClient:
    """One server connection: HTTP calls plus the event stream. Use as `async with`."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 300.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self._own_session = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def __aenter__(self) -> AcetateClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def _request(self, method: str, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        response = await self.session.request(
            method, f"{self.url}{path}", headers=self.headers, **kwargs
        )
        if response.status >= 400:
            try:
                error = (await response.json())["error"]
                raise ServerError(
                    response.status, error["code"], error["message"], error.get("field")
                )
            except (aiohttp.ContentTypeError, KeyError, TypeError, ValueError):
                text = (await response.text())[:200]
                raise ServerError(response.status, "http_error", text) from None
            finally:
                response.release()
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._request(method, path, **kwargs)
        async with response:
            return await response.json()

    async def _bytes(self, path: str, **kwargs: Any) -> tuple[bytes, aiohttp.ClientResponse]:
        response = await self._request("GET", path, **kwargs)
        async with response:
            return await response.read(), response

    # -- HTTP ------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        return dict(await self._json("GET", "/api/health"))

    async def models(self) -> dict[str, Any]:
        return dict(await self._json("GET", "/api/models"))

    async def modes(self) -> dict[str, Any]:
        """`GET /api/modes`: every mode's declaration (see docs/protocol.md, Modes)."""
        return dict(await self._json("GET", "/api/modes"))

    async def submit(
        self,
        request: Mapping[str, Any] | GenerateParameters,
        images: Mapping[str, np.ndarray] | None = None,
        *,
        encoding: ImageEncoding = "raw",
    ) -> JobCreated:
        """Queue a job. Images (RGBA H×W×4 or mask H×W uint8) go as raw multipart parts
        (`raw`, fastest), PNG multipart parts (`png`) or base64 PNG inside the JSON (`json`)."""
        body = _request_dict(request)
        images = dict(images or {})
        if encoding == "json" or not images:
            for name, array in images.items():
                value = base64.b64encode(encode_png(array)).decode("ascii")
                list_field, _, rest = name.partition(".")
                index = rest.partition(".")[0]
                items = body.get(list_field) if rest else None
                if isinstance(items, list) and index.isdigit() and int(index) < len(items):
                    # a list item's region mask goes inline, in its region
                    for region in region_fields(list_field):
                        items[int(index)].setdefault(region, {})["mask"] = value
                    continue
                body[name] = value
            data = await self._json("POST", "/api/jobs", json=body)
        else:
            form = aiohttp.FormData()
            form.add_field("request", json.dumps(body), content_type="application/json")
            for name, array in images.items():
                if encoding == "png":
                    form.add_field(
                        name, encode_png(array), content_type="image/png", filename=f"{name}.png"
                    )
                    continue
                expected = 2 if is_mask_field(name) else 3
                if array.ndim != expected:
                    raise InputError(f"{name}: expected a {expected}-D uint8 array", field=name)
                raw = np.ascontiguousarray(array, dtype=np.uint8).tobytes()
                form.add_field(
                    name, raw, content_type="application/octet-stream", filename=f"{name}.raw"
                )
                form.add_field(f"{name}_width", str(array.shape[1]))
                form.add_field(f"{name}_height", str(array.shape[0]))
            data = await self._json("POST", "/api/jobs", data=form)
        return JobCreated.model_validate(data)

    async def job(self, job_id: str) -> JobRecord:
        return JobRecord.model_validate(await self._json("GET", f"/api/jobs/{job_id}"))

    async def jobs(self, client_id: str | None = None) -> list[JobRecord]:
        params = {"client_id": client_id} if client_id is not None else None
        data = await self._json("GET", "/api/jobs", params=params)
        return [JobRecord.model_validate(job) for job in data["jobs"]]

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a queued or running job (a finished one is deleted instead)."""
        response = await self._request("DELETE", f"/api/jobs/{job_id}")
        async with response:
            if response.status == 204:
                return None
            return JobRecord.model_validate(await response.json())

    delete = cancel

    async def layer_png(self, job_id: str, file: str) -> bytes:
        data, _ = await self._bytes(f"/api/jobs/{job_id}/layers/{file}")
        return data

    async def layer_rgba(self, job_id: str, file: str, *, bit_depth: int = 8) -> RawLayer:
        """A layer's raw straight RGBA: uint8, or (`bit_depth` 16, a 16-bit job) uint16."""
        fmt, dtype = ("rgba16", "<u2") if bit_depth == 16 else ("rgba", "u1")
        data, response = await self._bytes(
            f"/api/jobs/{job_id}/layers/{file}", params={"format": fmt}
        )
        width = int(response.headers["X-Acetate-Width"])
        height = int(response.headers["X-Acetate-Height"])
        pixels = np.frombuffer(data, dtype=dtype).reshape(height, width, 4)
        left = int(response.headers["X-Acetate-Left"])
        top = int(response.headers["X-Acetate-Top"])
        return RawLayer(pixels, left, top)

    async def psd(self, job_id: str) -> bytes:
        data, _ = await self._bytes(f"/api/jobs/{job_id}/result.psd")
        return data

    async def ora(self, job_id: str) -> bytes:
        """The result's OpenRaster document (`.ora`), built by the server on first request."""
        data, _ = await self._bytes(f"/api/jobs/{job_id}/result.ora")
        return data

    # -- WebSocket -------------------------------------------------------------------------

    async def events(
        self, job_ids: Iterable[str], *, until_final: bool = True, retries: int = 5
    ) -> AsyncIterator[JobMessage]:
        """Events for these jobs. On a dropped connection it reconnects and resubscribes (the
        server re-sends each job's state or final event). With `until_final`, it ends once
        every job has had its final event."""
        pending = set(job_ids)
        failures = 0
        while pending or not until_final:
            try:
                async with self.session.ws_connect(
                    f"{self.url}/api/ws", headers=self.headers, max_msg_size=WS_MAX_MESSAGE
                ) as ws:
                    await ws.send_json({"type": "subscribe", "jobs": sorted(pending)})
                    failures = 0
                    async for message in _read(ws):
                        yield message
                        if message.job_id in pending and message.type in FINAL_EVENTS:
                            pending.discard(message.job_id)
                            if until_final and not pending:
                                return
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as error:
                failures += 1
                if failures > retries:
                    raise
                log.info("event stream dropped (%s); reconnecting", error)
            await asyncio.sleep(min(0.2 * 2**failures, 5.0))

    async def wait(
        self, job_id: str, on_event: Callable[[JobMessage], Any] | None = None
    ) -> JobRecord:
        """Follow one job to its end; returns its final record."""
        async for message in self.events([job_id]):
            if on_event is not None:
                result = on_event(message)
                if asyncio.iscoroutine(result):
                    await result
        return await self.job(job_id)


async def _read(ws: aiohttp.ClientWebSocketResponse) -> AsyncIterator[JobMessage]:
    """JSON messages, with a preview's binary frame attached to its header."""
    waiting_preview: dict[str, Any] | None = None
    async for frame in ws:
        if frame.type is aiohttp.WSMsgType.TEXT:
            data = json.loads(frame.data)
            if data.get("type") == JobEvent.preview.value:
                waiting_preview = data
                continue
            try:
                yield JobMessage.from_json(data)
            except ValueError:
                log.warning("ignoring unknown event %r", data.get("type"))
        elif frame.type is aiohttp.WSMsgType.BINARY and waiting_preview is not None:
            yield JobMessage.from_json(waiting_preview, frame.data)
            waiting_preview = None
        elif frame.type is aiohttp.WSMsgType.ERROR:
            raise ConnectionError(f"WebSocket error: {ws.exception()}")
    raise ConnectionError("WebSocket closed by the server")


async def run_job(
    url: str,
    token: str | None,
    request: Mapping[str, Any] | GenerateParameters,
    images: Mapping[str, np.ndarray] | None,
    out_dir: Path,
    on_event: Callable[[JobMessage], Any] | None = None,
    *,
    psd: bool = False,
    ora: bool = False,
    encoding: ImageEncoding = "raw",
) -> ResultRecord:
    """Run one job on a server and write its result folder like `acetate generate` does.

    Layer PNGs are downloaded as their `layer_ready` events arrive; `result.json` is written
    last (atomically), with `layers.psd`/`layers.ora` first when `psd`/`ora` is set. Raises
    `InputError` (with the field) for a rejected request or run-time input error,
    `GenerationCancelled` if the job is cancelled, `ServerError`/`AcetateError` otherwise.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    async with AcetateClient(url, token) as client:
        try:
            created = await client.submit(request, images, encoding=encoding)
        except ServerError as error:
            if 400 <= error.status < 500 and error.status not in (401, 403, 429):
                raise InputError(error.message, field=error.field, code=error.code) from error
            raise
        saved: set[str] = set()

        async def save_layer(file: str) -> None:
            if not SAFE_FILE.fullmatch(file):
                raise AcetateError(f"unexpected layer file name {file!r}", code="bad_response")
            if file not in saved:
                saved.add(file)
                data = await client.layer_png(created.id, file)
                await asyncio.to_thread(write_bytes_atomic, out_dir / file, data)

        final: JobMessage | None = None
        async for message in client.events([created.id]):
            if on_event is not None:
                outcome = on_event(message)
                if asyncio.iscoroutine(outcome):
                    await outcome
            if message.type is JobEvent.layer_ready:
                await save_layer(message.fields["layer"]["file"])
            elif message.type in FINAL_EVENTS:
                final = message
        assert final is not None
        if final.type is JobEvent.cancelled:
            raise GenerationCancelled(f"job {created.id} was cancelled")
        if final.type is JobEvent.error:
            code = str(final.fields.get("code", "internal_error"))
            message_text = str(final.fields.get("message", "the job failed"))
            field = final.fields.get("field")
            if field is not None or code in ("invalid_input", "model_not_found", "bad_model_file"):
                raise InputError(message_text, field=field, code=code)
            raise AcetateError(message_text, code=code)
        record = ResultRecord.model_validate(final.fields["result"])
        for layer in record.layers:
            await save_layer(layer.file)
        if psd:
            data = await client.psd(created.id)
            await asyncio.to_thread(write_bytes_atomic, out_dir / PSD_FILE, data)
            record = record.model_copy(update={"psd": PSD_FILE})
        if ora:
            data = await client.ora(created.id)
            await asyncio.to_thread(write_bytes_atomic, out_dir / ORA_FILE, data)
            record = record.model_copy(update={"ora": ORA_FILE})
        body = record.model_dump_json(indent=2).encode("utf-8") + b"\n"
        await asyncio.to_thread(write_bytes_atomic, out_dir / "result.json", body)
        return record
