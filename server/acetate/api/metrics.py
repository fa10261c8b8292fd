"""`GET /metrics`: Prometheus text format (version 0.0.4) for whoever runs the server.

Queue depth, jobs by state, job durations (a histogram from submission to the final event),
the backend's replicas and slots, and per-owner counts. With tokens (LAN mode) only an admin
token may read it: owner names and load are not for every artist.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable

from aiohttp import web

from acetate.api.errors import ApiError
from acetate.api.keys import BACKEND, QUEUE
from acetate.api.middlewares import principal_of
from acetate.jobs.queue import JobQueue
from acetate.protocol import FINAL_EVENTS, JobMessage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Upper bounds (seconds) of the job duration histogram: seconds on a GPU to many minutes.
BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)


class JobMetrics:
    """Counters fed by the queue's events (they only grow, as Prometheus expects)."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self.finished: Counter[str] = Counter()
        self.submitted_by_owner: Counter[str] = Counter()
        self.buckets = [0] * len(BUCKETS)
        self.duration_sum = 0.0
        self.duration_count = 0
        self._seen: set[str] = set()
        queue.add_listener(self.on_message)

    def on_message(self, message: JobMessage) -> None:
        job = self.queue.jobs.get(message.job_id or "")
        if job is None:
            return
        if message.job_id not in self._seen and not job.final:
            self._seen.add(job.id)
            self.submitted_by_owner[job.owner] += 1
        if message.type in FINAL_EVENTS and job.final and job.finished is not None:
            self._seen.discard(job.id)
            self.finished[job.status] += 1
            took = max(0.0, job.finished - job.created)
            self.duration_sum += took
            self.duration_count += 1
            for index, bound in enumerate(BUCKETS):
                if took <= bound:
                    self.buckets[index] += 1


JOB_METRICS = web.AppKey("job_metrics", JobMetrics)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


async def metrics(request: web.Request) -> web.Response:
    principal = principal_of(request)
    if principal.authenticated and not principal.admin:
        raise ApiError("/metrics needs an admin token", field="Authorization", code="forbidden")
    queue, backend, counters = request.app[QUEUE], request.app[BACKEND], request.app[JOB_METRICS]
    replicas = await asyncio.to_thread(lambda: backend.replicas)
    by_status = Counter(job.status for job in queue.jobs.values())
    queued_by_owner = Counter(job.owner for job in queue.jobs.values() if job.status == "queued")
    running_by_owner = Counter(job.owner for job in queue.active.values())
    lines: list[str] = []
    lines += _family(
        "acetate_queue_waiting",
        "gauge",
        "Jobs waiting for a slot.",
        [f"acetate_queue_waiting {queue.waiting}"],
    )
    lines += _family(
        "acetate_jobs",
        "gauge",
        "Jobs the server knows, by status (finished ones until they expire).",
        [
            f'acetate_jobs{{status="{status}"}} {by_status.get(status, 0)}'
            for status in ("queued", "started", "done", "error", "cancelled")
        ],
    )
    lines += _family(
        "acetate_jobs_finished_total",
        "counter",
        "Jobs finished since the server started, by final status.",
        [
            f'acetate_jobs_finished_total{{status="{s}"}} {n}'
            for s, n in sorted(counters.finished.items())
        ],
    )
    cumulative = [
        f'acetate_job_duration_seconds_bucket{{le="{bound:g}"}} {count}'
        for bound, count in zip(BUCKETS, counters.buckets, strict=True)
    ]
    cumulative += [
        f'acetate_job_duration_seconds_bucket{{le="+Inf"}} {counters.duration_count}',
        f"acetate_job_duration_seconds_sum {counters.duration_sum:.3f}",
        f"acetate_job_duration_seconds_count {counters.duration_count}",
    ]
    lines += _family(
        "acetate_job_duration_seconds",
        "histogram",
        "Seconds from submission to the final event.",
        cumulative,
    )
    lines += _family(
        "acetate_backend_replicas",
        "gauge",
        "Workers able to run jobs (1 for the local backend).",
        [f'acetate_backend_replicas{{backend="{backend.name}"}} {replicas}'],
    )
    lines += _family(
        "acetate_backend_slots",
        "gauge",
        "Jobs the backend runs at once.",
        [f'acetate_backend_slots{{backend="{backend.name}"}} {backend.slots}'],
    )
    owners = sorted(set(counters.submitted_by_owner) | set(queued_by_owner) | set(running_by_owner))
    for name, source, kind, help_text in (
        (
            "acetate_owner_jobs_submitted_total",
            counters.submitted_by_owner,
            "counter",
            "Jobs submitted, by owner.",
        ),
        ("acetate_owner_jobs_queued", queued_by_owner, "gauge", "Waiting jobs, by owner."),
        ("acetate_owner_jobs_running", running_by_owner, "gauge", "Running jobs, by owner."),
    ):
        samples = [f'{name}{{owner="{_label(owner)}"}} {source.get(owner, 0)}' for owner in owners]
        lines += _family(name, kind, help_text, samples)
    body = "\n".join(lines) + "\n"
    headers = {"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"}
    return web.Response(body=body.encode("utf-8"), headers=headers)


def setup_metrics(app: web.Application) -> None:
    """Count the queue's events from now on, and serve `GET /metrics`."""
    app[JOB_METRICS] = JobMetrics(app[QUEUE])
    app.router.add_get("/metrics", metrics)
