"""One generation job: its request, its state, and how it is recorded and announced."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from acetate.errors import InputError
from acetate.protocol import (
    JobError,
    JobMessage,
    JobRecord,
    JobStatus,
    LayerRecord,
    ResultRecord,
)

if TYPE_CHECKING:
    from acetate.engine.resolve import Prepared

JOB_ID = re.compile(r"j_[0-9a-f]{32}")
FINAL_STATUSES: frozenset[str] = frozenset({"done", "error", "cancelled"})


def new_job_id() -> str:
    return f"j_{uuid.uuid4().hex}"


def check_job_id(value: str, field: str = "id") -> str:
    """A job id from a request; anything else (paths, dots, slashes) is refused."""
    if not JOB_ID.fullmatch(value):
        raise InputError(f"not a job id: {value[:80]!r}", field=field, code="bad_job_id")
    return value


@dataclass(eq=False)
class Job:
    """A job from submission to its final state. The resolved request and images are dropped
    once it has run (the result record keeps the parameters), and are None/empty for restored
    jobs."""

    id: str
    prepared: Prepared | None
    images: dict[str, np.ndarray]
    #: The principal that submitted it (its token's name; "local" without tokens).
    owner: str
    client_id: str | None = None
    #: The submitting peer's address (queue bounds; a `client_id` is self-declared).
    peer: str = ""
    created: float = field(default_factory=time.time)
    finished: float | None = None
    status: JobStatus = "queued"
    result: ResultRecord | None = None
    error: JobError | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    #: Layers announced by `layer_ready` while the job still runs (raw pixels are cached).
    ready_layers: list[LayerRecord] = field(default_factory=list)
    #: Layer files already on disk, and an event set (then renewed) whenever one is added.
    written: set[str] = field(default_factory=set)
    file_written: asyncio.Event = field(default_factory=asyncio.Event)

    def mark_written(self, file: str) -> None:
        self.written.add(file)
        self.file_written.set()
        self.file_written = asyncio.Event()

    async def wait_for_file(self, file: str) -> bool:
        """Wait until `file` is on disk (True) or the job ended without it (False)."""
        while file not in self.written and not self.final:
            await self.file_written.wait()
        if file in self.written or self.status == "done":
            return True
        # A partial result (error/cancelled, possibly restored from disk) keeps its files.
        return self.result is not None and any(layer.file == file for layer in self.result.layers)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    def record(self, position: int | None = None) -> JobRecord:
        return JobRecord(
            id=self.id,
            status=self.status,
            position=position if self.status == "queued" else None,
            result=self.result,
            error=self.error,
        )

    def final_message(self) -> JobMessage:
        """The event that ends this job, re-sent to late subscribers."""
        if self.status == "done" and self.result is not None:
            return JobMessage.done(self.id, self.result)
        if self.status == "error" and self.error is not None:
            return JobMessage.failed(self.id, self.error, self.result)
        return JobMessage.cancelled(self.id, self.result)

    def finish(self, status: JobStatus, *, error: JobError | None = None) -> None:
        self.status = status
        self.error = error
        self.finished = time.time()
        # Finished jobs stay in memory until they expire: keep only what the record needs.
        self.images = {}
        self.prepared = None
        if self.result is not None:
            self.ready_layers = []
        self.file_written.set()
