"""`RayBackend`: the front server's queue feeding a pool of Ray Serve engine replicas.

The front keeps the only queue: a job leaves it only when a replica slot is free, so the
positions clients see are the real order. Each started job streams its events from a replica
(`ServeExecutor`); layers arrive as pixels and are written, cached and announced here exactly
as the local worker does, so the HTTP/WebSocket behaviour is the same. A replica that dies
mid-job costs one retry on another replica (when no layer was announced yet), else a clear
error; never a hang.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import numpy as np

from acetate import __version__
from acetate.backends.base import (
    Cancelled,
    Executor,
    Failed,
    LayerDone,
    Preview,
    Progress,
    RemoteEvent,
    Started,
    WorkerLost,
)
from acetate.backends.ray_cluster import Cluster
from acetate.export.png import FAST_COMPRESS_LEVEL
from acetate.export.result import ResultWriter, finish_record, layer_record
from acetate.jobs.cache import LayerCache
from acetate.jobs.job import Job
from acetate.jobs.queue import JobQueue
from acetate.protocol import JobError, JobMessage, ResultRecord
from acetate.public import public_message

if TYPE_CHECKING:
    from acetate.engine.resolve import Prepared

log = logging.getLogger(__name__)


class ServeExecutor:
    """`Executor` over a Serve deployment handle with streaming responses."""

    def __init__(self, handle: Any, lease: Any = None) -> None:
        """`lease`: this process's `FrontLease` actor (jobs are cancelled when it dies)."""
        self.handle = handle
        self.lease = lease
        self._responses: dict[str, Any] = {}

    async def submit(
        self, job_id: str, prepared: Prepared, images: Mapping[str, np.ndarray]
    ) -> AsyncIterator[RemoteEvent]:
        from ray.exceptions import RayError, TaskCancelledError
        from ray.serve.exceptions import RequestCancelledError

        options = self.handle.options(stream=True, multiplexed_model_id=model_key(prepared))
        response = options.generate.remote(job_id, prepared, dict(images), self.lease)
        self._responses[job_id] = response
        try:
            async for event in response:
                yield event
        except (RequestCancelledError, TaskCancelledError):
            yield Cancelled()
        except RayError as error:
            raise WorkerLost(_first_line(error)) from None
        finally:
            self._responses.pop(job_id, None)

    def cancel(self, job_id: str) -> None:
        response = self._responses.get(job_id)
        if response is not None:
            response.cancel()


class RayBackend:
    """Dispatches queued jobs to replicas, one per free slot."""

    name = "ray"

    def __init__(
        self,
        queue: JobQueue,
        cache: LayerCache,
        executor: Executor,
        *,
        slots: int,
        cluster: Cluster | None = None,
        owns_cluster: bool = True,
        retries: int = 1,
        shutdown_timeout_s: float = 30.0,
    ) -> None:
        self.queue = queue
        self.cache = cache
        self.executor = executor
        self.cluster = cluster
        self.owns_cluster = owns_cluster
        self.retries = retries
        self.shutdown_timeout_s = shutdown_timeout_s
        self._slots = slots
        self._free = asyncio.Semaphore(slots)
        self._tasks: set[asyncio.Task[None]] = set()
        #: Job id → the Ray actor name of the replica running it (tests and logs).
        self.replica_of: dict[str, str] = {}
        #: Jobs each replica (Ray actor name) has taken, and retries after a lost replica.
        self.jobs_by_replica: Counter[str] = Counter()
        self.retried = 0

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def replicas(self) -> int:
        return self.cluster.running_replicas() if self.cluster is not None else self._slots

    async def run(self) -> None:
        try:
            while True:
                await self._free.acquire()
                try:
                    job = await self.queue.next_job()
                except BaseException:
                    self._free.release()
                    raise
                task = asyncio.create_task(self._run_job(job), name=f"acetate-{job.id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            # Shutdown: every running job stops at its next step and is recorded.
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=self.shutdown_timeout_s)

    async def release(self) -> None:
        """Replicas free their own memory after a failure."""

    async def close(self) -> None:
        if self.cluster is not None and self.owns_cluster:
            await asyncio.to_thread(self.cluster.close)

    # -- one job -----------------------------------------------------------------------------

    async def _run_job(self, job: Job) -> None:
        try:
            for attempt in range(self.retries + 1):
                try:
                    await self._attempt(job)
                    return
                except WorkerLost as error:
                    if attempt < self.retries and not job.cancel.is_set():
                        self.retried += 1
                        log.warning("job %s: its replica died (%s); retrying", job.id, error)
                        continue
                    message = f"the GPU worker running this job stopped ({error}); submit it again"
                    await self._fail(job, JobError(code="worker_lost", message=message))
                    return
        except asyncio.CancelledError:
            if not job.final:
                await self.queue.finish(job, cancelled=True)
            raise
        except Exception as error:
            log.exception("job %s failed", job.id)
            message = f"the server failed: {type(error).__name__}: {error}"
            await self._fail(job, JobError(code="internal_error", message=message))
        finally:
            self.replica_of.pop(job.id, None)
            if job.status != "done":
                self.cache.drop(job.id)
            self._free.release()

    async def _attempt(self, job: Job) -> None:
        prepared = job.prepared
        if prepared is None:
            await self.queue.finish(job, cancelled=True)
            return
        request = prepared.request
        out_dir = self.queue.store.result_dir(job.id)
        writer = ResultWriter(
            out_dir,
            mode=request.mode,
            parameters=request.record_parameters(),
            compress_level=FAST_COMPRESS_LEVEL,
        )
        stream = self.executor.submit(job.id, prepared, job.images)
        watcher = asyncio.create_task(self._watch_cancel(job))
        outcome: RemoteEvent | None = None
        try:
            async for event in stream:
                if isinstance(event, Started):
                    self._started(job, event)
                elif isinstance(event, Progress):
                    message = JobMessage.progress(job.id, event.step, event.total, event.eta_s)
                    self.queue.emit(message)
                elif isinstance(event, Preview):
                    self.queue.emit(
                        JobMessage.preview(job.id, event.width, event.height, event.jpeg)
                    )
                elif isinstance(event, LayerDone):
                    await self._layer(job, writer, event)
                else:
                    outcome = event
        except WorkerLost as error:
            if not job.ready_layers:
                self._discard(job, writer, out_dir)
                raise  # nothing announced yet: another replica may run it again
            # Layers already announced stay, as a partial result (like the local worker's).
            text = f"the GPU worker running this job stopped ({error}); submit it again"
            partial = await self._record(job, writer)
            lost = JobError(code="worker_lost", message=text)
            await self.queue.finish(job, error=lost, result=partial)
            return
        except asyncio.CancelledError:
            # Shutdown: stop the replica's work and keep the layers already written.
            self.executor.cancel(job.id)
            await self._conclude(job, writer, Cancelled())
            raise
        except OSError as error:
            await self._disk_error(job, writer, error)
            return
        finally:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher
        await self._conclude(job, writer, outcome)

    def _started(self, job: Job, event: Started) -> None:
        self.replica_of[job.id] = event.replica
        self.jobs_by_replica[event.replica] += 1
        if event.version != __version__:
            log.warning(
                "replica %s runs Acetate %s, this server %s",
                event.replica,
                event.version,
                __version__,
            )

    async def _layer(self, job: Job, writer: ResultWriter, event: LayerDone) -> None:
        """Announce from memory at once, then write its PNG (like the local worker)."""
        layer = event.layer
        record = layer_record(layer, writer.mode, writer.parameters)
        self.cache.put(job.id, record.file, layer.pixels)
        self.queue.layer_ready(job, record)
        await asyncio.to_thread(writer.add, layer)
        job.mark_written(record.file)

    async def _conclude(self, job: Job, writer: ResultWriter, outcome: RemoteEvent | None) -> None:
        partial = await self._record(job, writer)
        if isinstance(outcome, Failed):
            error = JobError(code=outcome.code, message=outcome.message, field=outcome.field)
            await self.queue.finish(job, error=error, result=partial)
        elif isinstance(outcome, Cancelled) or (job.cancel.is_set() and outcome is not None):
            await self.queue.finish(job, result=partial, cancelled=True)
        elif partial is None:
            message = "the GPU worker returned no layers"
            await self.queue.finish(job, error=JobError(code="internal_error", message=message))
        else:
            await self.queue.finish(job, result=partial)
        if partial is None:
            self._discard(job, writer, writer.out_dir)

    async def _record(self, job: Job, writer: ResultWriter) -> ResultRecord | None:
        prepared = job.prepared
        if not writer.layers or prepared is None:
            return None
        return await asyncio.to_thread(finish_record, writer, job.id, prepared.request)

    async def _disk_error(self, job: Job, writer: ResultWriter, error: OSError) -> None:
        self.executor.cancel(job.id)
        if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            message = f"the results disk is full: {error.strerror}; free some space"
            code = "disk_full"
        else:
            log.exception("job %s: writing its results failed", job.id)
            message = f"the server failed: {type(error).__name__}: {error}"
            code = "internal_error"
        self._discard(job, writer, writer.out_dir)
        await self.queue.finish(job, error=JobError(code=code, message=public_message(message)))

    async def _fail(self, job: Job, error: JobError) -> None:
        if not job.final:
            await self.queue.finish(job, error=error)

    def _discard(self, job: Job, writer: ResultWriter, out_dir: Any) -> None:
        """Forget an attempt's files (a retry starts clean)."""
        writer.layers.clear()
        job.written.clear()
        shutil.rmtree(out_dir, ignore_errors=True)

    async def _watch_cancel(self, job: Job) -> None:
        """`JobQueue.cancel` sets a thread flag; pass it on to the replica."""
        while not job.cancel.is_set():
            await asyncio.sleep(0.05)
        self.executor.cancel(job.id)


def model_key(prepared: Prepared) -> str:
    """What a replica must hold for this job: the base model and its LayerDiffusion files
    (Serve's multiplexing prefers a replica that already has this key loaded)."""
    request = prepared.request
    files = ",".join(sorted(used.name for used in request.files.values()))
    return f"{request.parameters.model or ''}|{files}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line[:200]
