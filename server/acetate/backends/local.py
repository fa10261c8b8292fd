"""`LocalBackend`: today's single GPU worker thread behind the `Backend` seam."""

from __future__ import annotations

from acetate.jobs.worker import Worker


class LocalBackend(Worker):
    """One engine thread in this process, jobs one at a time (`jobs/worker.py`)."""

    name = "local"

    @property
    def slots(self) -> int:
        return 1

    @property
    def replicas(self) -> int:
        return 1

    async def close(self) -> None:
        self.executor.shutdown(wait=True)
