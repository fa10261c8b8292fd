"""Queue behaviour through the real server: concurrency, cancel, reconnect, restart, bounds."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np
import pytest
import websockets
from server_helpers import FAST, LiveServer, final, follow, start_server

from acetate.api.config import ServerConfig
from acetate.api.keys import HUB, QUEUE
from acetate.client import ServerError
from acetate.protocol import JobEvent, JobMessage

pytestmark = pytest.mark.asyncio

#: A job slow enough to still be running when the test acts on it.
SLOW = {"prompt": "slow", "steps": 40, "width": 256, "height": 256, "decode": "fast"}


async def wait_for_event(
    server: LiveServer, job_id: str, predicate: Callable[[JobMessage], bool]
) -> None:
    """Block until the job emits a matching event, or its current state matches one."""
    seen = asyncio.get_running_loop().create_future()
    queue = server.app[QUEUE]

    def listener(message: JobMessage) -> None:
        if message.job_id == job_id and predicate(message) and not seen.done():
            seen.set_result(None)

    queue.add_listener(listener)
    for message in queue.state_messages(queue.jobs[job_id]):
        listener(message)
    try:
        await asyncio.wait_for(seen, 60)
    finally:
        queue.remove_listener(listener)


def is_progress(message: JobMessage) -> bool:
    return message.type is JobEvent.progress


async def test_two_clients_at_once(server: LiveServer) -> None:
    a, b = server.client(), server.client()
    job_a, job_b = await asyncio.gather(
        a.submit({"prompt": "a", "client_id": "a", **FAST, "width": 64, "height": 64}),
        b.submit({"prompt": "b", "client_id": "b", **FAST, "width": 64, "height": 64}),
    )
    assert {job_a.position, job_b.position} <= {0, 1}
    events_a, events_b = await asyncio.gather(follow(a, job_a.id), follow(b, job_b.id))
    assert final(events_a).type is JobEvent.done and final(events_b).type is JobEvent.done
    assert {m.job_id for m in events_a} == {job_a.id}
    assert {m.job_id for m in events_b} == {job_b.id}
    assert [j.id for j in await a.jobs("a")] == [job_a.id]


async def test_cancel_a_queued_job_immediately(server: LiveServer) -> None:
    client = server.client()
    running = await client.submit(SLOW)
    await wait_for_event(server, running.id, lambda m: m.type is JobEvent.started)
    queued = await client.submit({**SLOW, "prompt": "second"})
    third = await client.submit({**SLOW, "prompt": "third"})
    assert (queued.position, third.position) == (0, 1)  # jobs ahead, not counting the running
    record = await client.cancel(queued.id)
    assert record is not None and record.status == "cancelled" and record.position is None
    assert [m.type for m in await follow(client, queued.id)] == [JobEvent.cancelled]
    assert (await client.job(third.id)).position == 0
    for job in (third, running):
        await client.cancel(job.id)
    assert final(await follow(client, running.id)).type is JobEvent.cancelled


async def test_cancel_the_running_job_over_http(server: LiveServer) -> None:
    client = server.client()
    created = await client.submit(SLOW)
    await wait_for_event(server, created.id, is_progress)
    record = await client.cancel(created.id)
    assert record is not None and record.status == "started"  # 202: stops at the next step
    messages = await follow(client, created.id)
    assert final(messages).type is JobEvent.cancelled
    assert (await client.job(created.id)).status == "cancelled"
    assert not server.app[QUEUE].store.result_dir(created.id).exists()
    with pytest.raises(ServerError) as caught:
        await client.layer_png(created.id, "foreground.png")
    assert caught.value.status == 409  # docs/protocol.md: the file will never exist
    assert caught.value.code == "not_ready"
    assert (await client.health())["queue_length"] == 0


async def test_running_job_stops_within_one_step(server: LiveServer) -> None:
    client = server.client()
    created = await client.submit(SLOW)
    queue = server.app[QUEUE]
    steps: list[int] = []
    cancelled_at: list[int] = []
    cancelling: list[asyncio.Future[None]] = []

    def listener(message: JobMessage) -> None:
        if message.job_id != created.id or message.type is not JobEvent.progress:
            return
        steps.append(message.fields["step"])
        if message.fields["step"] == 2 and not cancelled_at:
            cancelled_at.append(2)
            job = queue.jobs[created.id]
            cancelling.append(asyncio.ensure_future(queue.cancel(job)))  # what DELETE does

    queue.add_listener(listener)
    try:
        assert final(await follow(client, created.id)).type is JobEvent.cancelled
    finally:
        queue.remove_listener(listener)
    total = 40
    assert cancelled_at == [2]
    assert max(steps) <= 3 < total, steps


async def test_previews_are_throttled_and_follow_their_header(server: LiveServer) -> None:
    client = server.client()
    created = await client.submit({**SLOW, "steps": 12, "width": 128, "height": 128})
    sent: list[float] = []

    def listener(message: JobMessage) -> None:
        if message.job_id == created.id and message.type is JobEvent.preview:
            sent.append(time.monotonic())

    server.app[QUEUE].add_listener(listener)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{server.url}/api/ws") as ws,
        ):
            await ws.send_json({"type": "subscribe", "jobs": [created.id]})
            previews = 0
            while True:
                frame = await ws.receive(timeout=60)
                assert frame.type is aiohttp.WSMsgType.TEXT  # a binary frame only after a header
                message = json.loads(frame.data)
                if message["type"] == "preview":
                    jpeg = await ws.receive(timeout=10)
                    assert jpeg.type is aiohttp.WSMsgType.BINARY and jpeg.data[:2] == b"\xff\xd8"
                    previews += 1
                if message["type"] == "done":
                    break
    finally:
        server.app[QUEUE].remove_listener(listener)
    assert previews == len(sent) >= 1
    # stamped when the loop relays them, so allow a little scheduling jitter below 250 ms
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert all(gap >= 0.2 for gap in gaps), gaps


async def test_expired_results_are_deleted(
    make_config: Callable[..., ServerConfig], engine: Any, model_store: Any
) -> None:
    config = make_config()
    first = await start_server(config, engine, model_store)
    client = first.client()
    created = await client.submit({"prompt": "old", **FAST, "width": 64, "height": 64})
    await client.wait(created.id)
    await first.stop()
    # restarted with a zero age limit: the startup sweep deletes the finished job and its files
    second = await start_server(
        make_config(output_dir=config.output_dir, max_age_s=0.0), engine, model_store
    )
    try:
        with pytest.raises(ServerError) as caught:
            await second.client().job(created.id)
        assert caught.value.status == 404
        assert not second.app[QUEUE].store.result_dir(created.id).exists()
    finally:
        await second.stop()


async def test_reconnect_and_resubscribe_loses_no_final_event(server: LiveServer) -> None:
    client = server.client()
    created = await client.submit({**SLOW, "steps": 6, "width": 128, "height": 128})
    uri = f"ws://127.0.0.1:{server.port}/api/ws"
    # first connection (websockets package): subscribe, see the job start, drop the connection
    async with websockets.connect(uri) as ws:
        await ws.send(json.dumps({"type": "subscribe", "jobs": [created.id]}))
        first = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert first["job_id"] == created.id and first["type"] in ("queued", "started")
    await wait_for_event(server, created.id, lambda m: m.type is JobEvent.done)
    # reconnect after the job finished: subscribing re-sends the final event
    async with websockets.connect(uri) as ws:
        await ws.send(json.dumps({"type": "subscribe", "jobs": [created.id]}))
        done = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert done["type"] == "done" and done["job_id"] == created.id
    assert done["result"] == (await client.job(created.id)).result.model_dump()  # type: ignore[union-attr]


async def test_client_event_stream_survives_a_dropped_socket(server: LiveServer) -> None:
    client = server.client()
    created = await client.submit({**SLOW, "steps": 10, "width": 128, "height": 128})
    messages: list[JobMessage] = []
    dropped = False
    async for message in client.events([created.id]):
        messages.append(message)
        if message.type is JobEvent.progress and not dropped:
            dropped = True
            await server.app[HUB].close_all(server.app)  # the server drops every socket
    # the stream reconnected, resubscribed and still saw the job to its end
    assert dropped and final(messages).type is JobEvent.done
    assert final(messages).fields["result"]["id"] == created.id


async def test_unsubscribe_and_unknown_jobs(server: LiveServer) -> None:
    client = server.client()
    created = await client.submit({"prompt": "x", **FAST, "width": 64, "height": 64})
    await wait_for_event(server, created.id, lambda m: m.type is JobEvent.done)
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{server.url}/api/ws") as ws:
        await ws.send_json({"type": "subscribe", "jobs": ["j_" + "0" * 32, created.id]})
        missing = await ws.receive_json(timeout=10)
        assert (missing["type"], missing["code"]) == ("error", "not_found")
        assert (await ws.receive_json(timeout=10))["type"] == "done"
        await ws.send_json({"type": "unsubscribe", "jobs": [created.id]})
        await ws.send_json({"type": "dance"})
        assert (await ws.receive_json(timeout=10))["code"] == "bad_message"


async def test_restart_keeps_finished_results(
    make_config: Callable[..., ServerConfig], engine: Any, model_store: Any
) -> None:
    config = make_config()
    first = await start_server(config, engine, model_store)
    client = first.client()
    done = await client.submit({"prompt": "keep", **FAST, "width": 64, "height": 64})
    record = (await client.wait(done.id)).result
    assert record is not None
    pixels = (await client.layer_rgba(done.id, "foreground.png")).pixels
    running = await client.submit(SLOW)
    queued = await client.submit(SLOW)
    await wait_for_event(first, running.id, is_progress)
    await first.stop()  # like Ctrl-C: the running job is cancelled, the queued one too

    second = await start_server(make_config(output_dir=config.output_dir), engine, model_store)
    try:
        client = second.client()
        again = await client.job(done.id)
        assert again.status == "done" and again.result == record
        raw = await client.layer_rgba(done.id, "foreground.png")  # decoded from disk now
        assert np.array_equal(raw.pixels, pixels)
        assert final(await follow(client, done.id)).fields["result"] == record.model_dump()
        for job_id in (running.id, queued.id):
            assert (await client.job(job_id)).status == "cancelled"
            assert not second.app[QUEUE].store.result_dir(job_id).exists()  # complete or absent
        await client.delete(done.id)
        with pytest.raises(ServerError) as caught:
            await client.job(done.id)
        assert caught.value.status == 404
        assert not second.app[QUEUE].store.result_dir(done.id).exists()
    finally:
        await second.stop()


async def test_queued_jobs_per_client_are_bounded(
    make_config: Callable[..., ServerConfig], engine: Any, model_store: Any
) -> None:
    live = await start_server(make_config(max_queued_per_client=2), engine, model_store)
    try:
        client = live.client()
        jobs = [await client.submit({**SLOW, "client_id": "krita"}) for _ in range(3)]
        # one runs, two wait; a third waiting one is refused, other clients are not
        await wait_for_event(live, jobs[0].id, lambda m: m.type is JobEvent.started)
        with pytest.raises(ServerError) as caught:
            await client.submit({**SLOW, "client_id": "krita"})
        assert (caught.value.status, caught.value.code) == (429, "too_many_jobs")
        other = await client.submit({**SLOW, "client_id": "photoshop"})
        for job in [*jobs, other]:
            await client.cancel(job.id)
    finally:
        await live.stop()
