"""HTTP handlers: thin wrappers over the job queue, the store and the result files."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from aiohttp import web
from PIL import Image

from acetate import __version__
from acetate.api.errors import ApiError
from acetate.api.keys import CACHE, CONFIG, ENGINE, HUB, MODELS, PSD_LOCKS, QUEUE, TICKETS
from acetate.api.middlewares import TICKET_PATH, principal_of
from acetate.api.openapi import build_openapi
from acetate.api.schemas import ClientSeen, Health, ImageLimits, ModesInfo, WsTicket
from acetate.api.uploads import read_upload
from acetate.bitdepth import to_depth, to_uint8
from acetate.export.png import decode_png16, png_bit_depth
from acetate.export.result import write_ora_for_result, write_psd_for_result
from acetate.jobs.job import Job
from acetate.jobs.queue import JobNotFound, new_job
from acetate.modes import API_VERSION, MODES, modes_document
from acetate.protocol import (
    MAX_PIXELS,
    MAX_SIDE,
    JobCreated,
    JobList,
    JobRecord,
    LayerRecord,
    ResultRecord,
)

if TYPE_CHECKING:
    from acetate.engine.resolve import Prepared

#: How long a PNG download of a layer announced by `layer_ready` waits for the file.
FILE_WAIT_S = 300.0


def json_model(model: Any, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)


async def health(request: web.Request) -> web.Response:
    queue = request.app[QUEUE]
    running = queue.running.id if queue.running is not None else None
    info = Health(
        version=__version__,
        api_version=API_VERSION,
        device=request.app[ENGINE].device_name,
        queue_length=queue.length,
        running=running,
        # What this request carried: the panel shows it (what UXP really sends is undocumented).
        client_seen=ClientSeen(
            origin=request.headers.get("Origin"),
            sec_fetch_site=request.headers.get("Sec-Fetch-Site"),
            sec_fetch_mode=request.headers.get("Sec-Fetch-Mode"),
        ),
        limits=ImageLimits(max_side=MAX_SIDE, max_pixels=MAX_PIXELS),
    )
    return json_model(info)


async def models(request: web.Request) -> web.Response:
    description = await asyncio.to_thread(request.app[MODELS].describe)
    return web.json_response(description)


def published_modes() -> dict[str, Any]:
    """`GET /api/modes`: the mode specs, checked against the published schema."""
    return ModesInfo.model_validate(modes_document()).model_dump(mode="json", exclude_none=True)


async def modes(request: web.Request) -> web.Response:
    return web.json_response(published_modes())


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(build_openapi(__version__))


def check_output_frame(prepared: Prepared) -> None:
    """The result frame (e.g. `upscale`'s input × scale) must fit the image limits too."""
    request = prepared.request
    width, height = request.canvas.width, request.canvas.height
    if width <= MAX_SIDE and height <= MAX_SIDE and width * height <= MAX_PIXELS:
        return
    spec = MODES.get(request.mode)
    field = (spec.frame_scale or spec.frame_image) if spec is not None else None
    raise ApiError(
        f"{field or 'request'}: the result would be {width}×{height}, over the image limits "
        f"({MAX_SIDE} px a side, {MAX_PIXELS // (1024 * 1024)} megapixels)",
        field=field,
        code="image_too_large",
    )


async def submit_job(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    upload = await read_upload(request, config.max_body_bytes, config.body_timeout_s)
    # Unknown model, missing layer file, unsupported mode: a 4xx now rather than an error event.
    # The request is resolved once, here; the worker runs exactly what was resolved.
    prepared = await asyncio.to_thread(request.app[ENGINE].prepare, upload.params, upload.images)
    check_output_frame(prepared)
    owner = principal_of(request).name
    job = new_job(prepared, upload.images, owner, peer=request.remote or "")
    position = await request.app[QUEUE].submit(job)
    return json_model(JobCreated(id=job.id, position=position), status=202)


def _record(request: web.Request, job: Job) -> JobRecord:
    """The job's record; admins of a server with tokens also see its owner."""
    record = request.app[QUEUE].record(job)
    principal = principal_of(request)
    if principal.authenticated and principal.admin:
        record = record.model_copy(update={"owner": job.owner})
    return record


async def list_jobs(request: web.Request) -> web.Response:
    client_id = request.query.get("client_id")
    if client_id is not None and len(client_id) > 128:
        raise ApiError("client_id is longer than 128 characters", field="client_id")
    principal = principal_of(request)
    owner = None if principal.may_touch(None) else principal.name
    listing = request.app[QUEUE].listing(client_id, owner=owner)
    return json_model(JobList(jobs=[_record(request, job) for job in listing]))


def _job(request: web.Request) -> Job:
    """The job named in the path, if the caller may touch it (its owner or an admin)."""
    job = request.app[QUEUE].get(request.match_info["id"])
    if not principal_of(request).may_touch(job.owner):
        raise ApiError(f"job {job.id} belongs to someone else", field="id", code="forbidden")
    return job


async def get_job(request: web.Request) -> web.Response:
    job = _job(request)
    return json_model(_record(request, job))


async def ws_ticket(request: web.Request) -> web.Response:
    """A single-use WebSocket ticket for a client that cannot send headers on the socket."""
    tickets = request.app[TICKETS]
    ticket = tickets.issue(principal_of(request))
    return json_model(WsTicket(ticket=ticket, expires_in=math.ceil(tickets.ttl_s)))


async def delete_job(request: web.Request) -> web.StreamResponse:
    """Queued: cancelled (200). Running: cancelled at the next step (202). Final: deleted (204)."""
    queue = request.app[QUEUE]
    job = _job(request)
    if job.status == "queued":
        await queue.cancel(job)
        return json_model(_record(request, job))
    if job.status == "started":
        await queue.cancel(job)
        return json_model(_record(request, job), status=202)
    await queue.delete(job)
    request.app[CACHE].drop(job.id)
    return web.Response(status=204)


def _find_layer(job: Job, file: str) -> LayerRecord:
    layers = job.result.layers if job.result is not None else job.ready_layers
    for layer in layers:
        if layer.file == file:
            return layer
    if job.final and job.status != "done" and job.result is not None:
        # A partial result: a layer the mode would have made, had the job not stopped.
        spec = MODES.get(job.result.mode)
        stem = file.removesuffix(".png")
        if spec is not None and (spec.layer_spec(stem) or spec.layer_spec(stem.rpartition("_")[0])):
            raise ApiError(
                f"job {job.id} ended with status {job.status} before {file[:80]!r} was made",
                field="file",
                code="not_ready",
            )
    raise JobNotFound(f"job {job.id} has no layer {file[:80]!r}", field="file")


def _inside(folder: Path, name: str) -> Path:
    """`folder/name` for a name taken from our own record, refusing anything that escapes."""
    path = folder / name
    if path.parent != folder or name in ("", ".", ".."):
        raise JobNotFound(f"no file {name[:80]!r}", field="file")
    return path


async def _written(job: Job, file: str | None = None) -> None:
    """Wait until a layer file (or the whole result) is on disk; 409 if it never will be."""
    try:
        if file is None:
            while not job.final:
                await asyncio.wait_for(job.file_written.wait(), FILE_WAIT_S)
            ok = job.status == "done"
        else:
            ok = await asyncio.wait_for(job.wait_for_file(file), FILE_WAIT_S)
    except asyncio.TimeoutError:
        raise ApiError("the result is not written yet", field="id", code="not_ready") from None
    if not ok:
        raise ApiError(f"job {job.id} ended with status {job.status}", field="id", code="not_ready")


def _read_png_rgba(path: Path) -> np.ndarray:
    """A layer file's pixels: uint16 from a 16-bit PNG (a `bit_depth` 16 job), else uint8."""
    with path.open("rb") as file:
        head = file.read(32)
    if png_bit_depth(head) == 16:
        return decode_png16(path.read_bytes())
    with Image.open(path, formats=["PNG"]) as image:
        return np.asarray(image.convert("RGBA"), dtype=np.uint8)


def _job_bit_depth(job: Job) -> int:
    """The `bit_depth` a job was submitted with (8 when unknown)."""
    if job.prepared is not None:
        return job.prepared.request.parameters.bit_depth
    parameters = job.result.parameters if job.result is not None else {}
    return int(parameters.get("bit_depth") or 8)


#: `?format=` of a layer download: the PNG file, raw 8-bit RGBA, raw 16-bit RGBA (16-bit jobs).
LAYER_FORMATS = ("png", "rgba", "rgba16")


async def get_layer(request: web.Request) -> web.StreamResponse:
    """A layer as PNG, or with `?format=rgba` (`rgba16`: a 16-bit job's little-endian uint16) as
    raw straight RGBA plus placement headers."""
    fmt = request.query.get("format", "png")
    if fmt not in LAYER_FORMATS:
        raise ApiError("format must be png, rgba or rgba16", field="format")
    queue = request.app[QUEUE]
    job = _job(request)
    file = request.match_info["file"]
    kept = job.result.layers if job.result is not None else []
    if job.final and job.status != "done" and not any(layer.file == file for layer in kept):
        # Its files were removed (or never written): they will never exist. (A job that
        # stopped with a partial result keeps the files of its finished layers.)
        raise ApiError(f"job {job.id} ended with status {job.status}", field="id", code="not_ready")
    layer = _find_layer(job, file)
    if fmt == "rgba16" and _job_bit_depth(job) != 16:
        raise ApiError(
            f"format=rgba16 needs a 16-bit job; job {job.id} is 8-bit: send bit_depth: 16 "
            "with the request (or use format=rgba)",
            field="format",
        )
    path = _inside(queue.store.result_dir(job.id), layer.file)
    if fmt == "png":
        await _written(job, layer.file)
        if not path.is_file():
            raise JobNotFound(f"the file of layer {layer.file} is gone", field="file")
        return web.FileResponse(path, headers={"Content-Type": "image/png"})
    cache = request.app[CACHE]
    pixels = cache.get(job.id, layer.file)
    if pixels is None:
        await _written(job, layer.file)
        try:
            pixels = await asyncio.to_thread(_read_png_rgba, path)
        except FileNotFoundError:
            raise JobNotFound(f"the file of layer {layer.file} is gone", field="file") from None
        cache.put(job.id, layer.file, pixels)
    # rgba: 8 bits (a 16-bit job's values rounded); rgba16: little-endian uint16, 0-65535
    pixels = to_depth(pixels, 16).astype("<u2", copy=False) if fmt == "rgba16" else to_uint8(pixels)
    headers = {
        "X-Acetate-Width": str(pixels.shape[1]),
        "X-Acetate-Height": str(pixels.shape[0]),
        "X-Acetate-Left": str(layer.left),
        "X-Acetate-Top": str(layer.top),
        "X-Acetate-Depth": "16" if fmt == "rgba16" else "8",
    }
    body = np.ascontiguousarray(pixels).data.cast("B")
    return web.Response(body=body, content_type="application/octet-stream", headers=headers)


@dataclass(frozen=True)
class _Document:
    """A layered document built from a result on its first request, then kept with it."""

    field: Literal["psd", "ora"]
    content_type: str
    write: Callable[[Path, ResultRecord], Path]


DOCUMENTS = {
    "psd": _Document("psd", "image/vnd.adobe.photoshop", write_psd_for_result),
    "ora": _Document("ora", "image/openraster", write_ora_for_result),
}


def _document_handler(
    document: _Document,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def get_document(request: web.Request) -> web.StreamResponse:
        queue = request.app[QUEUE]
        job = _job(request)
        await _written(job)
        assert job.result is not None
        folder = queue.store.result_dir(job.id)
        key = f"{job.id}.{document.field}"
        lock = request.app[PSD_LOCKS].setdefault(key, asyncio.Lock())
        async with lock:
            name = getattr(job.result, document.field)
            if name is None or not (folder / name).is_file():
                written = await asyncio.to_thread(document.write, folder, job.result)
                job.result = job.result.model_copy(update={document.field: written.name})
                await queue.persist(job)
        request.app[PSD_LOCKS].pop(key, None)
        path = _inside(folder, getattr(job.result, document.field))
        headers = {
            "Content-Type": document.content_type,
            "Content-Disposition": f'attachment; filename="{job.id}.{document.field}"',
        }
        return web.FileResponse(path, headers=headers)

    get_document.__doc__ = f"The layered {document.field.upper()}, written on the first request."
    return get_document


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/models", models)
    app.router.add_get("/api/modes", modes)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_post("/api/jobs", submit_job)
    app.router.add_get("/api/jobs", list_jobs)
    app.router.add_get("/api/jobs/{id}", get_job)
    app.router.add_delete("/api/jobs/{id}", delete_job)
    app.router.add_get("/api/jobs/{id}/layers/{file}", get_layer)
    for extension, document in DOCUMENTS.items():
        app.router.add_get(f"/api/jobs/{{id}}/result.{extension}", _document_handler(document))
    app.router.add_post(TICKET_PATH, ws_ticket)
    app.router.add_get("/api/ws", app[HUB].handle)
