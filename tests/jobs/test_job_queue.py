"""The FIFO queue: positions, per-client bound, cancellation, events, persistence."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from acetate.engine.resolve import Prepared
from acetate.jobs.cache import LayerCache
from acetate.jobs.queue import JobQueue, TooManyJobs, new_job
from acetate.jobs.store import JobStore
from acetate.protocol import (
    CanvasSize,
    GenerateParameters,
    JobEvent,
    JobMessage,
    ResolvedRequest,
)


def params(client_id: str | None = None) -> Prepared:
    """A resolved request as the server makes at submit; the queue never reads its plan."""
    request = ResolvedRequest(
        parameters=GenerateParameters(prompt="x", client_id=client_id),
        family="sdxl",
        tiny=True,
        stages=(),
        native_size=256,
        canvas=CanvasSize(width=64, height=64),
        images={},
        files={},
    )
    return Prepared(request, None)  # type: ignore[arg-type]


def make_queue(tmp_path: Path, limit: int = 3) -> tuple[JobQueue, list[JobMessage]]:
    queue = JobQueue(JobStore(tmp_path), max_queued_per_client=limit)
    seen: list[JobMessage] = []
    queue.add_listener(seen.append)
    return queue, seen


@pytest.mark.asyncio
async def test_fifo_positions_and_announcements(tmp_path: Path) -> None:
    queue, seen = make_queue(tmp_path)
    jobs = [new_job(params(), {}, owner=f"c{i}") for i in range(3)]
    assert [await queue.submit(job) for job in jobs] == [0, 1, 2]
    first = await queue.next_job()
    assert first is jobs[0] and first.status == "started"
    assert queue.position(jobs[1]) == 0 and queue.position(jobs[2]) == 1
    assert queue.record(jobs[2]).position == 1 and queue.record(first).position is None
    assert queue.length == 3
    queued = [(m.job_id, m.fields["position"]) for m in seen if m.type is JobEvent.queued]
    assert queued[-2:] == [(jobs[1].id, 0), (jobs[2].id, 1)]


@pytest.mark.asyncio
async def test_cancelling_a_queued_job_is_immediate(tmp_path: Path) -> None:
    queue, seen = make_queue(tmp_path)
    a, b, c = (new_job(params(), {}, owner="o") for _ in range(3))
    for job in (a, b, c):
        await queue.submit(job)
    await queue.cancel(b)
    assert b.status == "cancelled" and b.images == {}
    assert (seen[-2].type, seen[-2].job_id) == (JobEvent.cancelled, b.id)
    assert (seen[-1].job_id, seen[-1].fields) == (c.id, {"position": 1})  # only c moved
    assert await queue.next_job() is a
    assert await queue.next_job() is c


@pytest.mark.asyncio
async def test_cancelling_the_running_job_sets_its_flag(tmp_path: Path) -> None:
    queue, _ = make_queue(tmp_path)
    job = new_job(params(), {}, owner="o")
    await queue.submit(job)
    await queue.next_job()
    await queue.cancel(job)
    assert job.cancel.is_set() and job.status == "started"


@pytest.mark.asyncio
async def test_per_client_bound(tmp_path: Path) -> None:
    queue, _ = make_queue(tmp_path, limit=2)
    for _ in range(2):
        await queue.submit(new_job(params("krita"), {}, owner="krita"))
    with pytest.raises(TooManyJobs) as caught:
        await queue.submit(new_job(params("krita"), {}, owner="krita"))
    assert caught.value.code == "too_many_jobs"
    await queue.submit(new_job(params("ps"), {}, owner="ps"))  # other clients unaffected


@pytest.mark.asyncio
async def test_next_job_waits_for_a_submission(tmp_path: Path) -> None:
    queue, _ = make_queue(tmp_path)
    waiter = asyncio.create_task(queue.next_job())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    job = new_job(params(), {}, owner="o")
    await queue.submit(job)
    assert await asyncio.wait_for(waiter, 1) is job


@pytest.mark.asyncio
async def test_final_state_is_persisted_and_replayed(tmp_path: Path) -> None:
    queue, _ = make_queue(tmp_path)
    job = new_job(params("k"), {"image": np.zeros((2, 2, 4), np.uint8)}, owner="k")
    await queue.submit(job)
    await queue.next_job()
    await queue.finish(job)
    restored, _ = make_queue(tmp_path)
    assert restored.restore() == 1
    again = restored.get(job.id)
    assert again.status == "cancelled" and again.client_id == "k"
    [message] = restored.state_messages(again)
    assert message.type is JobEvent.cancelled
    assert [j.id for j in restored.listing("k")] == [job.id] and restored.listing("other") == []


def test_layer_cache_is_bounded_lru() -> None:
    cache = LayerCache(max_bytes=100)
    block = np.zeros((5, 5, 4), np.uint8)  # 100 bytes
    cache.put("a", "f.png", block)
    cache.put("b", "f.png", block)
    assert cache.get("a", "f.png") is None and cache.get("b", "f.png") is block
    cache.put("c", "f.png", np.zeros((6, 6, 4), np.uint8))  # larger than the cap: not kept
    assert cache.get("c", "f.png") is None and cache.nbytes == 100
    cache.drop("b")
    assert cache.nbytes == 0


@pytest.mark.asyncio
async def test_round_robin_across_owners_with_true_positions(tmp_path: Path) -> None:
    queue, seen = make_queue(tmp_path, limit=10)
    jobs = {}
    for name, owner in (("a0", "anna"), ("a1", "anna"), ("a2", "anna"), ("b0", "ben")):
        jobs[name] = new_job(params(name), {}, owner)
        await queue.submit(jobs[name])
    jobs["c0"] = new_job(params("c0"), {}, "cleo")
    assert await queue.submit(jobs["c0"]) == 2  # behind anna's first and ben's first
    jobs["b1"] = new_job(params("b1"), {}, "ben")
    assert await queue.submit(jobs["b1"]) == 4  # ben's second: round two, after anna's second
    order = ["a0", "b0", "c0", "a1", "b1", "a2"]
    assert [queue.position(jobs[name]) for name in order] == list(range(6))
    # Jobs pushed back by a newcomer were told their new position.
    last_queued = {m.job_id: m.fields["position"] for m in seen if m.type is JobEvent.queued}
    assert [last_queued[jobs[name].id] for name in order] == list(range(6))
    # Dispatch follows the announced order.
    started = [await queue.next_job() for _ in order]
    assert [job.id for job in started] == [jobs[name].id for name in order]
    assert len(queue.active) == 6 and queue.length == 6
