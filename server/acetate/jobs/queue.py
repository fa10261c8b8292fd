"""The job queue: submission, positions, cancellation, records, and event fan-out.

Everything here runs on the event loop; a backend (`acetate.backends`) takes jobs from it: the
local worker one at a time, the Ray backend one per free replica slot. The waiting line is
fair: round-robin across owners (FIFO for one owner), and `position` is the true order.
Listeners (the WebSocket hub) receive every `JobMessage` synchronously and must not block.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from acetate.errors import InputError
from acetate.jobs.job import Job, check_job_id, new_job_id
from acetate.jobs.store import JobStore, StoredJob
from acetate.protocol import JobError, JobMessage, JobRecord, LayerRecord, ResultRecord
from acetate.public import public_message

if TYPE_CHECKING:
    from acetate.engine.resolve import Prepared

log = logging.getLogger(__name__)

Listener = Callable[[JobMessage], None]


class JobNotFound(InputError):
    code = "not_found"


class TooManyJobs(InputError):
    code = "too_many_jobs"


class JobQueue:
    """Known jobs (queued, running, finished), the waiting line, and the listeners."""

    def __init__(
        self,
        store: JobStore,
        *,
        max_queued_per_client: int = 16,
        max_queued_per_peer: int = 32,
        max_queued_total: int = 256,
    ) -> None:
        self.store = store
        self.max_queued_per_client = max_queued_per_client
        self.max_queued_per_peer = max_queued_per_peer
        self.max_queued_total = max_queued_total
        self.jobs: dict[str, Job] = {}
        #: Started jobs by id, oldest first (one with the local worker).
        self.active: dict[str, Job] = {}
        self._waiting: deque[Job] = deque()
        self._wakeup = asyncio.Event()
        self._listeners: list[Listener] = []

    # -- state ---------------------------------------------------------------------------

    def restore(self) -> int:
        """Load finished jobs from disk (after a restart); returns how many."""
        for stored in self.store.load_all():
            record = stored.record
            job = Job(
                id=record.id,
                prepared=None,
                images={},
                owner=stored.owner,
                client_id=stored.client_id,
                created=stored.created,
                finished=stored.finished,
                status=record.status,
                result=record.result,
                error=record.error,
            )
            self.jobs[job.id] = job
        return len(self.jobs)

    def get(self, job_id: str, field: str = "id") -> Job:
        job = self.jobs.get(check_job_id(job_id, field))
        if job is None:
            raise JobNotFound(f"no job {job_id}", field=field)
        return job

    def position(self, job: Job) -> int | None:
        """Jobs ahead of this one in the waiting line (0: it starts next); None unless queued."""
        if job.status != "queued":
            return None
        for index, waiting in enumerate(self._waiting):
            if waiting is job:
                return index
        return None

    def record(self, job: Job) -> JobRecord:
        return job.record(self.position(job))

    def listing(self, client_id: str | None = None, owner: str | None = None) -> list[Job]:
        """Jobs oldest first; only `client_id`'s and/or only `owner`'s when given."""
        jobs = sorted(self.jobs.values(), key=lambda job: job.created)
        if client_id is not None:
            jobs = [job for job in jobs if job.client_id == client_id]
        if owner is not None:
            jobs = [job for job in jobs if job.owner == owner]
        return jobs

    @property
    def running(self) -> Job | None:
        """The oldest running job (the only one with the local worker)."""
        return next(iter(self.active.values()), None)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def length(self) -> int:
        """Waiting jobs plus the running ones."""
        return len(self._waiting) + len(self.active)

    # -- events --------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def emit(self, message: JobMessage) -> None:
        for listener in list(self._listeners):
            try:
                listener(message)
            except Exception:
                log.exception("job event listener failed")

    def _announce_positions(self, start: int = 0) -> None:
        """Re-send `queued` to the waiting jobs from `start` on (their positions changed)."""
        for index, job in enumerate(self._waiting):
            if index >= start:
                self.emit(JobMessage.queued(job.id, index))

    def state_messages(self, job: Job) -> list[JobMessage]:
        """What a new subscriber needs to catch up: current state, or the final event."""
        if job.final:
            return [job.final_message()]
        if job.status == "queued":
            return [JobMessage.queued(job.id, self.position(job))]
        messages = [JobMessage.started(job.id)]
        messages += [JobMessage.layer_ready(job.id, layer) for layer in job.ready_layers]
        return messages

    # -- persistence ---------------------------------------------------------------------

    def _stored(self, job: Job) -> StoredJob:
        record = job.record(None)
        return StoredJob(
            record=record,
            client_id=job.client_id,
            owner=job.owner,
            created=job.created,
            finished=job.finished,
        )

    async def persist(self, job: Job) -> None:
        await asyncio.to_thread(self.store.save, self._stored(job))

    # -- transitions ---------------------------------------------------------------------

    async def submit(self, job: Job) -> int:
        """Queue a job and return its position; refuses (429) when its client id, its peer
        address or its owner has too many waiting, or the whole queue is full."""
        if len(self._waiting) >= self.max_queued_total:
            raise TooManyJobs(
                f"the server already has {len(self._waiting)} queued jobs "
                f"(at most {self.max_queued_total}); try again later",
                field=None,
            )
        client = job.client_id or job.peer or job.owner
        by_client = sum(1 for q in self._waiting if (q.client_id or q.peer or q.owner) == client)
        if by_client >= self.max_queued_per_client:
            raise TooManyJobs(
                f"this client already has {by_client} queued jobs "
                f"(at most {self.max_queued_per_client}); wait or cancel some",
                field="client_id",
            )
        if job.peer:
            by_peer = sum(1 for queued in self._waiting if queued.peer == job.peer)
            if by_peer >= self.max_queued_per_peer:
                raise TooManyJobs(
                    f"this address already has {by_peer} queued jobs "
                    f"(at most {self.max_queued_per_peer}); wait or cancel some",
                    field=None,
                )
        self.jobs[job.id] = job
        await self.persist(job)
        position = self._fair_position(job.owner)
        self._waiting.insert(position, job)
        self._wakeup.set()
        self.emit(JobMessage.queued(job.id, position))
        self._announce_positions(position + 1)
        return position

    def _fair_position(self, owner: str) -> int:
        """Where a new job of `owner` goes: round-robin across owners. An owner's k-th waiting
        job belongs to round k; the line is ordered by round, then by arrival in the round, so
        one person's twenty jobs never hold back another's first."""
        seen: dict[str, int] = {}
        mine = sum(1 for queued in self._waiting if queued.owner == owner)
        position = 0
        for index, queued in enumerate(self._waiting):
            round_ = seen.get(queued.owner, 0)
            seen[queued.owner] = round_ + 1
            if round_ <= mine:
                position = index + 1
        return position

    async def next_job(self) -> Job:
        """Wait for the next job, mark it started and announce it."""
        while not self._waiting:
            self._wakeup.clear()
            await self._wakeup.wait()
        job = self._waiting.popleft()
        job.status = "started"
        self.active[job.id] = job
        self.emit(JobMessage.started(job.id))
        self._announce_positions()
        await self.persist(job)
        return job

    def layer_ready(self, job: Job, layer: LayerRecord) -> None:
        job.ready_layers.append(layer)
        self.emit(JobMessage.layer_ready(job.id, layer))

    async def finish(
        self,
        job: Job,
        *,
        result: ResultRecord | None = None,
        error: JobError | None = None,
        cancelled: bool = False,
    ) -> None:
        """Record the final state, persist it, then announce it. `result` with `error` or
        `cancelled`: the partial result (the layers finished before the job stopped)."""
        if result is not None:
            job.result = result
        if result is not None and error is None and not cancelled:
            job.finish("done")
        elif error is not None:
            # Records and events reach LAN clients: no server paths or object reprs.
            public = error.model_copy(update={"message": public_message(error.message)})
            job.finish("error", error=public)
        else:
            job.finish("cancelled")
        self.active.pop(job.id, None)
        took = (job.finished or 0) - job.created
        log.info("job %s %s after %.1f s", job.id, job.status, took)
        try:
            await self.persist(job)
        except OSError:
            log.exception("could not save the record of job %s", job.id)
        self.emit(job.final_message())

    async def cancel(self, job: Job) -> None:
        """Queued: cancelled now. Running: stops at the next denoising step. Final: no-op."""
        if job.status == "queued":
            index = self._waiting.index(job)
            del self._waiting[index]
            await self.finish(job)
            self._announce_positions(index)
        elif job.status == "started":
            job.cancel.set()

    async def cancel_all(self) -> None:
        for job in list(self._waiting):
            await self.cancel(job)
        for job in self.active.values():
            job.cancel.set()

    async def delete(self, job: Job) -> None:
        """Forget a finished job and delete its files."""
        self.jobs.pop(job.id, None)
        await asyncio.to_thread(self.store.delete, job.id)

    async def expire(self, *, max_age_s: float, max_total_bytes: int) -> list[str]:
        """Delete finished jobs past the retention limits; returns their ids."""
        finished = [self._stored(job) for job in self.jobs.values() if job.final]
        doomed = await asyncio.to_thread(
            self.store.expired,
            finished,
            max_age_s=max_age_s,
            max_total_bytes=max_total_bytes,
            now=time.time(),
        )
        for job_id in doomed:
            job = self.jobs.get(job_id)
            if job is not None and job.final:
                await self.delete(job)
        return doomed


def new_job(prepared: Prepared, images: dict[str, np.ndarray], owner: str, peer: str = "") -> Job:
    """A fresh queued job for a resolved request."""
    client_id = prepared.request.parameters.client_id
    return Job(
        id=new_job_id(),
        prepared=prepared,
        images=images,
        owner=owner,
        client_id=client_id,
        peer=peer,
    )
