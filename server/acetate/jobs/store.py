"""Job records on disk, so finished results survive a restart; retention by age and size.

Layout under the output directory: `jobs/<id>.json` (the job's record and owner) and
`jobs/<id>/` (the result folder written by `acetate.export.result`). Paths are only ever built
from ids that match `JOB_ID`, never from raw request values.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ValidationError

from acetate.export.atomic import write_bytes_atomic
from acetate.jobs.job import JOB_ID, check_job_id
from acetate.protocol import JobError, JobRecord

log = logging.getLogger(__name__)


class StoredJob(BaseModel):
    """What `jobs/<id>.json` holds."""

    record: JobRecord
    client_id: str | None = None
    owner: str = ""
    created: float
    finished: float | None = None


def tree_size(path: Path) -> int:
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


class JobStore:
    """Job records and result folders under `<output_dir>/jobs/`."""

    def __init__(self, output_dir: Path) -> None:
        self.root = Path(output_dir).resolve() / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)

    def result_dir(self, job_id: str) -> Path:
        return self.root / check_job_id(job_id)

    def _meta_path(self, job_id: str) -> Path:
        return self.root / f"{check_job_id(job_id)}.json"

    def save(self, stored: StoredJob) -> None:
        data = stored.model_dump_json(indent=1).encode()
        write_bytes_atomic(self._meta_path(stored.record.id), data)

    def load_all(self) -> list[StoredJob]:
        """Every readable record; jobs a previous run left unfinished become errors."""
        jobs: list[StoredJob] = []
        for path in sorted(self.root.glob("j_*.json")):
            if not JOB_ID.fullmatch(path.stem):
                continue
            try:
                stored = StoredJob.model_validate_json(path.read_bytes())
            except (OSError, ValidationError, json.JSONDecodeError) as error:
                log.warning("skipping unreadable job record %s: %s", path.name, error)
                continue
            if stored.record.id != path.stem:
                log.warning("skipping job record %s: id mismatch", path.name)
                continue
            if stored.record.status in ("queued", "started"):
                stored.record.status = "error"
                stored.record.position = None
                stored.record.error = JobError(
                    code="interrupted", message="the server stopped before this job finished"
                )
                stored.finished = stored.finished or time.time()
                shutil.rmtree(self.result_dir(stored.record.id), ignore_errors=True)
                self.save(stored)
            jobs.append(stored)
        return jobs

    def delete(self, job_id: str) -> None:
        shutil.rmtree(self.result_dir(job_id), ignore_errors=True)
        self._meta_path(job_id).unlink(missing_ok=True)

    def expired(
        self, jobs: Iterable[StoredJob], *, max_age_s: float, max_total_bytes: int, now: float
    ) -> list[str]:
        """Ids of finished jobs to delete: too old, then the oldest while over the size cap."""
        finished = sorted(
            (job for job in jobs if job.finished is not None), key=lambda job: job.finished or 0
        )
        doomed = [job.record.id for job in finished if now - (job.finished or now) > max_age_s]
        kept = [job for job in finished if job.record.id not in doomed]
        sizes = {job.record.id: tree_size(self.result_dir(job.record.id)) for job in kept}
        total = sum(sizes.values())
        for job in kept:
            if total <= max_total_bytes:
                break
            doomed.append(job.record.id)
            total -= sizes[job.record.id]
        return doomed
