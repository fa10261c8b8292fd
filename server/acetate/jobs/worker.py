"""The single GPU worker: runs queued jobs one at a time on a dedicated thread.

The event loop never waits on torch: `Engine.generate` and result writing run on one
long-lived thread (so every torch call happens on the same thread), and progress comes back
with `loop.call_soon_threadsafe`. Any failure ends only its own job.
"""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from acetate.engine.outputs import GenerationResult
from acetate.errors import GenerationCancelled, InputError, OutOfMemory
from acetate.export.png import FAST_COMPRESS_LEVEL
from acetate.export.result import layer_record, write_result
from acetate.jobs.cache import LayerCache
from acetate.jobs.job import Job, JobMessage
from acetate.jobs.queue import JobQueue
from acetate.protocol import GenerateParameters, JobError, JobEvent, LayerRecord, ResultRecord

log = logging.getLogger(__name__)


class StepInfoLike(Protocol):
    step: int
    total: int
    eta_s: float | None
    preview: Callable[[int], np.ndarray | None]


class GenerationEngine(Protocol):
    """What the worker needs of `acetate.engine.engine.Engine`."""

    @property
    def device_name(self) -> str: ...

    def generate(
        self,
        params: GenerateParameters,
        images: Mapping[str, np.ndarray],
        callback: Callable[[Any], None] | None = None,
        cancel: Any = None,
    ) -> GenerationResult: ...

    def release(self) -> None: ...


#: Writes a result folder, calling back after each layer file: → the result record.
ResultWriter = Callable[[Path, GenerationResult, str, Callable[[LayerRecord], None]], ResultRecord]


def write_result_folder(
    out_dir: Path,
    result: GenerationResult,
    job_id: str,
    on_layer: Callable[[LayerRecord], None],
) -> ResultRecord:
    """`acetate.export.result.write_result` with fast PNG compression (files are for transfer);
    the PSD is left for its first request."""
    return write_result(
        out_dir,
        result,
        job_id=job_id,
        psd=False,
        on_layer=on_layer,
        compress_level=FAST_COMPRESS_LEVEL,
    )


def encode_jpeg(rgb: np.ndarray, quality: int = 80) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb[..., :3])).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


class Worker:
    """Takes jobs from the queue and runs them on the engine thread."""

    def __init__(
        self,
        queue: JobQueue,
        engine: GenerationEngine,
        cache: LayerCache,
        *,
        writer: ResultWriter = write_result_folder,
        preview_interval_s: float = 0.25,
        preview_max_side: int = 256,
        shutdown_timeout_s: float = 30.0,
    ) -> None:
        self.queue = queue
        self.engine = engine
        self.cache = cache
        self.writer = writer
        self.preview_interval_s = preview_interval_s
        self.preview_max_side = preview_max_side
        self.shutdown_timeout_s = shutdown_timeout_s
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="acetate-gpu")

    async def run(self) -> None:
        """Run jobs forever; cancelled on shutdown (the running job is cancelled first)."""
        while True:
            job = await self.queue.next_job()
            await self._run_job(job)

    async def release(self) -> None:
        """Free the engine's memory on its own thread."""
        await asyncio.get_running_loop().run_in_executor(self.executor, self.engine.release)

    async def _run_job(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, self._execute, job, loop)
        try:
            record = await asyncio.shield(future)
        except asyncio.CancelledError:
            # Shutdown: stop at the next step, let the thread finish its writes, record it.
            job.cancel.set()
            try:
                record = await asyncio.wait_for(future, self.shutdown_timeout_s)
            except BaseException:
                await self.queue.finish(job)
            else:
                await self.queue.finish(job, result=record)
            raise
        except GenerationCancelled:
            await self.queue.finish(job)
        except InputError as error:
            await self.queue.finish(
                job, error=JobError(code=error.code, message=error.message, field=error.field)
            )
        except OutOfMemory as error:
            log.warning("job %s ran out of memory: %s", job.id, error.message)
            await self._fail(job, JobError(code=error.code, message=error.message))
        except Exception as error:
            log.exception("job %s failed", job.id)
            message = f"the worker failed: {type(error).__name__}: {error}"
            await self._fail(job, JobError(code="internal_error", message=message))
        else:
            await self.queue.finish(job, result=record)
        finally:
            if job.status != "done":
                self.cache.drop(job.id)

    async def _fail(self, job: Job, error: JobError) -> None:
        try:
            await self.release()
        except Exception:
            log.exception("releasing engine memory failed")
        await self.queue.finish(job, error=error)

    # -- on the engine thread ------------------------------------------------------------

    def _execute(self, job: Job, loop: asyncio.AbstractEventLoop) -> ResultRecord:
        assert job.params is not None
        if job.cancel.is_set():
            raise GenerationCancelled("cancelled before it started")
        emit = self._emitter(loop)
        last_preview = 0.0

        def on_step(info: StepInfoLike) -> None:
            nonlocal last_preview
            eta = None if info.eta_s is None else round(float(info.eta_s), 2)
            emit(
                JobMessage(
                    JobEvent.progress,
                    job.id,
                    {"step": info.step, "total": info.total, "eta_s": eta},
                )
            )
            now = time.monotonic()
            if now - last_preview >= self.preview_interval_s:
                last_preview = now
                rgb = info.preview(self.preview_max_side)
                if rgb is not None:
                    fields = {
                        "width": int(rgb.shape[1]),
                        "height": int(rgb.shape[0]),
                        "format": "jpeg",
                    }
                    emit(JobMessage(JobEvent.preview, job.id, fields, encode_jpeg(rgb)))

        result = self.engine.generate(job.params, job.images, callback=on_step, cancel=job.cancel)
        # Raw pixels are served from memory at once; PNG downloads wait for their file.
        for layer in result.layers:
            self.cache.put(job.id, layer.file, layer.pixels)
            loop.call_soon_threadsafe(self.queue.layer_ready, job, layer_record(layer, result.mode))

        def on_layer(record: LayerRecord) -> None:
            loop.call_soon_threadsafe(job.mark_written, record.file)

        out_dir = self.queue.store.result_dir(job.id)
        try:
            return self.writer(out_dir, result, job.id, on_layer)
        except BaseException:
            shutil.rmtree(out_dir, ignore_errors=True)
            raise

    def _emitter(self, loop: asyncio.AbstractEventLoop) -> Callable[[JobMessage], None]:
        def emit(message: JobMessage) -> None:
            loop.call_soon_threadsafe(self.queue.emit, message)

        return emit
