"""HTTP handlers: thin wrappers over the job queue, the store and the result files."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from PIL import Image

from acetate import __version__
from acetate.api.errors import ApiError
from acetate.api.keys import CACHE, CONFIG, ENGINE, HUB, MODELS, PSD_LOCKS, QUEUE
from acetate.api.openapi import build_openapi
from acetate.api.schemas import Health, ModesInfo
from acetate.api.uploads import read_upload
from acetate.export.result import write_psd_for_result
from acetate.jobs.job import Job
from acetate.jobs.queue import JobNotFound, new_job
from acetate.modes import API_VERSION, modes_document
from acetate.protocol import JobCreated, JobList, LayerRecord, ResultRecord

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


async def submit_job(request: web.Request) -> web.Response:
    upload = await read_upload(request, request.app[CONFIG].max_body_bytes)
    # Unknown model, missing layer file, unsupported mode: a 4xx now rather than an error event.
    # The request is resolved once, here; the worker runs exactly what was resolved.
    prepared = await asyncio.to_thread(request.app[ENGINE].prepare, upload.params, upload.images)
    owner = upload.params.client_id or request.remote or "unknown"
    job = new_job(prepared, upload.images, owner)
    position = await request.app[QUEUE].submit(job)
    return json_model(JobCreated(id=job.id, position=position), status=202)


async def list_jobs(request: web.Request) -> web.Response:
    client_id = request.query.get("client_id")
    if client_id is not None and len(client_id) > 128:
        raise ApiError("client_id is longer than 128 characters", field="client_id")
    queue = request.app[QUEUE]
    jobs = JobList(jobs=[queue.record(job) for job in queue.listing(client_id)])
    return json_model(jobs)


def _job(request: web.Request) -> Job:
    return request.app[QUEUE].get(request.match_info["id"])


async def get_job(request: web.Request) -> web.Response:
    job = _job(request)
    return json_model(request.app[QUEUE].record(job))


async def delete_job(request: web.Request) -> web.StreamResponse:
    """Queued: cancelled (200). Running: cancelled at the next step (202). Final: deleted (204)."""
    queue = request.app[QUEUE]
    job = _job(request)
    if job.status == "queued":
        await queue.cancel(job)
        return json_model(queue.record(job))
    if job.status == "started":
        await queue.cancel(job)
        return json_model(queue.record(job), status=202)
    await queue.delete(job)
    request.app[CACHE].drop(job.id)
    return web.Response(status=204)


def _find_layer(job: Job, file: str) -> LayerRecord:
    layers = job.result.layers if job.result is not None else job.ready_layers
    for layer in layers:
        if layer.file == file:
            return layer
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
    with Image.open(path, formats=["PNG"]) as image:
        return np.asarray(image.convert("RGBA"), dtype=np.uint8)


async def get_layer(request: web.Request) -> web.StreamResponse:
    """A layer as PNG, or with `?format=rgba` as raw straight RGBA plus placement headers."""
    fmt = request.query.get("format", "png")
    if fmt not in ("png", "rgba"):
        raise ApiError("format must be png or rgba", field="format")
    queue = request.app[QUEUE]
    job = _job(request)
    layer = _find_layer(job, request.match_info["file"])
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
    headers = {
        "X-Acetate-Width": str(pixels.shape[1]),
        "X-Acetate-Height": str(pixels.shape[0]),
        "X-Acetate-Left": str(layer.left),
        "X-Acetate-Top": str(layer.top),
    }
    body = np.ascontiguousarray(pixels).data.cast("B")
    return web.Response(body=body, content_type="application/octet-stream", headers=headers)


async def get_psd(request: web.Request) -> web.StreamResponse:
    """The layered PSD, written on the first request (then kept with the result)."""
    queue = request.app[QUEUE]
    job = _job(request)
    await _written(job)
    assert job.result is not None
    folder = queue.store.result_dir(job.id)
    lock = request.app[PSD_LOCKS].setdefault(job.id, asyncio.Lock())
    async with lock:
        if job.result.psd is None or not (folder / job.result.psd).is_file():
            job.result = await asyncio.to_thread(_write_psd, folder, job.result)
            await queue.persist(job)
    request.app[PSD_LOCKS].pop(job.id, None)
    assert job.result.psd is not None
    path = _inside(folder, job.result.psd)
    headers = {
        "Content-Type": "image/vnd.adobe.photoshop",
        "Content-Disposition": f'attachment; filename="{job.id}.psd"',
    }
    return web.FileResponse(path, headers=headers)


def _write_psd(folder: Path, record: ResultRecord) -> ResultRecord:
    path = write_psd_for_result(folder, record)
    return record.model_copy(update={"psd": path.name})


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
    app.router.add_get("/api/jobs/{id}/result.psd", get_psd)
    app.router.add_get("/api/ws", app[HUB].handle)
