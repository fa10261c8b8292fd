"""The single GPU worker: runs queued jobs one at a time on a dedicated thread.

The event loop never waits on torch: `Engine.stream` and result writing run on one
long-lived thread (so every torch call happens on the same thread), and progress comes back
with `loop.call_soon_threadsafe`. Any failure ends only its own job.
"""

from __future__ import annotations

import asyncio
import errno
import io
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from acetate.engine.outputs import LayerImage
from acetate.errors import GenerationCancelled, InputError, OutOfMemory, error_field
from acetate.export.png import FAST_COMPRESS_LEVEL
from acetate.export.result import ResultWriter, finish_record, layer_record
from acetate.jobs.cache import LayerCache
from acetate.jobs.job import Job
from acetate.jobs.queue import JobQueue
from acetate.protocol import (
    GenerateParameters,
    JobError,
    JobMessage,
    ResultRecord,
)
from acetate.public import public_message

if TYPE_CHECKING:
    from acetate.engine.resolve import Prepared

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

    def prepare(self, params: GenerateParameters, images: Mapping[str, np.ndarray]) -> Prepared:
        """Check and resolve a request (on submit): `InputError`s name the field."""
        ...

    def stream(
        self,
        prepared: Prepared,
        images: Mapping[str, np.ndarray],
        callback: Callable[[Any], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[LayerImage]:
        """Run a prepared request, yielding each layer as soon as it is final."""
        ...

    def release(self) -> None: ...


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
        preview_interval_s: float = 0.25,
        preview_max_side: int = 256,
        shutdown_timeout_s: float = 30.0,
    ) -> None:
        self.queue = queue
        self.engine = engine
        self.cache = cache
        self.preview_interval_s = preview_interval_s
        self.preview_max_side = preview_max_side
        self.shutdown_timeout_s = shutdown_timeout_s
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="acetate-gpu")
        #: The partial result of the job that just failed or was cancelled (layers it finished),
        #: set on the engine thread before the exception leaves `_execute`.
        self._partial: ResultRecord | None = None

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
        self._partial = None
        future = loop.run_in_executor(self.executor, self._execute, job, loop)
        # A job that stops after finishing some layers keeps them: its record's `result` lists
        # them (status error or cancelled) and their files stay downloadable.
        try:
            record = await asyncio.shield(future)
        except asyncio.CancelledError:
            # Shutdown: stop at the next step, let the thread finish its writes, record it.
            job.cancel.set()
            try:
                record = await asyncio.wait_for(future, self.shutdown_timeout_s)
            except BaseException:
                await self.queue.finish(job, result=self._partial, cancelled=True)
            else:
                await self.queue.finish(job, result=record)
            raise
        except GenerationCancelled:
            await self.queue.finish(job, result=self._partial, cancelled=True)
        except InputError as error:
            error_record = JobError(code=error.code, message=error.message, field=error.field)
            await self.queue.finish(job, error=error_record, result=self._partial)
        except OutOfMemory as error:
            log.warning("job %s ran out of memory: %s", job.id, error.message)
            error_record = JobError(code=error.code, message=error.message, field=error.field)
            await self._fail(job, error_record)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                log.exception("job %s failed", job.id)
                message = f"the worker failed: {type(error).__name__}: {error}"
                code = "internal_error"
            else:
                # Nothing half-written remains (atomic writes); the job's own folder is removed.
                log.error("job %s: the results disk is full (%s)", job.id, error.strerror)
                message = f"the results disk is full: {error.strerror}; free some space"
                code = "disk_full"
            await self._fail(job, JobError(code=code, message=public_message(message)))
        except Exception as error:
            log.exception("job %s failed", job.id)
            message = f"the worker failed: {type(error).__name__}: {error}"
            error_record = JobError(
                code="internal_error", message=message, field=error_field(error)
            )
            await self._fail(job, error_record)
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
        await self.queue.finish(job, error=error, result=self._partial)

    # -- on the engine thread ------------------------------------------------------------

    def _execute(self, job: Job, loop: asyncio.AbstractEventLoop) -> ResultRecord:
        prepared = job.prepared
        if prepared is None:
            raise GenerationCancelled("the job's request is gone")
        if job.cancel.is_set():
            raise GenerationCancelled("cancelled before it started")
        emit = self._emitter(loop)
        last_preview = 0.0

        def on_step(info: StepInfoLike) -> None:
            nonlocal last_preview
            stage, label = getattr(info, "stage", None), getattr(info, "label", None)
            emit(JobMessage.progress(job.id, info.step, info.total, info.eta_s, stage, label))
            now = time.monotonic()
            if now - last_preview >= self.preview_interval_s:
                last_preview = now
                rgb = info.preview(self.preview_max_side)
                if rgb is not None:
                    height, width = rgb.shape[:2]
                    emit(JobMessage.preview(job.id, int(width), int(height), encode_jpeg(rgb)))

        request = prepared.request
        out_dir = self.queue.store.result_dir(job.id)
        writer: ResultWriter | None = None
        try:
            # Each layer is written and announced as soon as the engine yields it, before the
            # next stage starts; raw pixels are served from memory, PNG downloads from the file.
            writer = ResultWriter(
                out_dir,
                mode=request.mode,
                parameters=request.record_parameters(),
                compress_level=FAST_COMPRESS_LEVEL,
            )
            for layer in self.engine.stream(prepared, job.images, on_step, job.cancel):
                # Announced as soon as the engine yields it, from memory (raw downloads at
                # once); its PNG is written before the engine resumes with the next stage, and
                # PNG downloads wait for the file.
                record = layer_record(layer, request.mode, writer.parameters)
                self.cache.put(job.id, record.file, layer.pixels)
                loop.call_soon_threadsafe(self.queue.layer_ready, job, record)
                writer.add(layer)
                loop.call_soon_threadsafe(job.mark_written, record.file)
            return finish_record(writer, job.id, request)
        except BaseException:
            self._partial = self._finish_partial(job, writer)
            if self._partial is None:
                shutil.rmtree(out_dir, ignore_errors=True)
            raise

    def _finish_partial(self, job: Job, writer: ResultWriter | None) -> ResultRecord | None:
        """The record of the layers written before a failure or cancel (None: none were)."""
        prepared = job.prepared
        if writer is None or not writer.layers or prepared is None:
            return None
        try:
            return finish_record(writer, job.id, prepared.request)
        except Exception:
            log.exception("could not record the partial result of job %s", job.id)
            return None

    def _emitter(self, loop: asyncio.AbstractEventLoop) -> Callable[[JobMessage], None]:
        def emit(message: JobMessage) -> None:
            loop.call_soon_threadsafe(self.queue.emit, message)

        return emit
