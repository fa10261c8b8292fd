"""The backend seam: what the job queue needs from whatever runs its jobs.

A backend takes started jobs from the `JobQueue` (as many at once as it has slots) and turns
each into the same events: progress, previews, `layer_ready` as each layer is final, then a
final event with the result record. `LocalBackend` is the single GPU thread; `RayBackend`
sends each job to a Ray Serve replica through an `Executor` (submit a resolved request → an
async stream of `RemoteEvent`s; cancel by closing the stream).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from acetate.engine.outputs import LayerImage

if TYPE_CHECKING:
    from acetate.engine.resolve import Prepared


class Backend(Protocol):
    """Runs the queue's jobs; `create_app` starts `run()` and stops it on shutdown."""

    #: "local" or "ray" (shown by /api/status and /metrics).
    name: str

    @property
    def slots(self) -> int:
        """How many jobs may run at once."""
        ...

    @property
    def replicas(self) -> int:
        """Workers currently able to run jobs (1 for the local thread)."""
        ...

    async def run(self) -> None:
        """Take jobs from the queue until cancelled (the running jobs are cancelled first)."""
        ...

    async def release(self) -> None:
        """Free model memory after a failure (best effort)."""
        ...

    async def close(self) -> None:
        """Release threads, connections and (when it started one) the cluster."""
        ...


# -- what a remote executor streams back -------------------------------------------------


@dataclass(frozen=True)
class Started:
    """The first event of an attempt: which replica took the job, and its Acetate version."""

    replica: str
    version: str


@dataclass(frozen=True)
class Progress:
    step: int
    total: int
    eta_s: float | None


@dataclass(frozen=True)
class Preview:
    width: int
    height: int
    jpeg: bytes


@dataclass(frozen=True)
class LayerDone:
    """A final layer, pixels included (the front writes the files)."""

    layer: LayerImage


@dataclass(frozen=True)
class Failed:
    """The job failed on the replica; `code`/`field` as an `InputError` names them."""

    code: str
    message: str
    field: str | None = None


@dataclass(frozen=True)
class Cancelled:
    """The replica stopped the job after a cancel."""


RemoteEvent = Started | Progress | Preview | LayerDone | Failed | Cancelled


class WorkerLost(Exception):
    """The replica running a job died (process or node) or became unreachable."""


class Executor(Protocol):
    """Runs one job elsewhere; closing the stream (or `aclose`) cancels it there."""

    def submit(
        self, job_id: str, prepared: Prepared, images: Mapping[str, np.ndarray]
    ) -> AsyncIterator[RemoteEvent]:
        """Start the job; its events until the last (`LayerDone`s then the end, or `Failed` /
        `Cancelled`). Raises `WorkerLost` when the replica dies mid-way."""
        ...

    def cancel(self, job_id: str) -> None:
        """Ask the replica running `job_id` to stop at its next step."""
        ...
