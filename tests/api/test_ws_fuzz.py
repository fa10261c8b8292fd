"""Property-based fuzzing of the WebSocket protocol on a live server: every frame sequence —
valid and invalid commands, arbitrary and deeply nested JSON, huge id lists, binary frames,
interleaved subscribe/unsubscribe — leaves the socket answering and logs no server error.

Short in `make test`; `make fuzz` sets `ACETATE_FUZZ_WS_EXAMPLES` and prints the figures.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_helpers import free_port
from test_server_fuzz import ThreadedServer
from websockets.sync.client import ClientConnection, connect

from acetate.api.config import ServerConfig

MAX_EXAMPLES = int(os.environ.get("ACETATE_FUZZ_WS_EXAMPLES", "40"))
SENTINEL = "j_" + "f" * 32
FIGURES: collections.Counter[str] = collections.Counter()


class ErrorCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def ws_server(
    tmp_path_factory: pytest.TempPathFactory, engine: Any, model_store: Any
) -> Iterator[tuple[ThreadedServer, ErrorCounter]]:
    counter = ErrorCounter()
    logging.getLogger().addHandler(counter)
    config = ServerConfig(output_dir=tmp_path_factory.mktemp("wsfuzz"), port=free_port())
    server = ThreadedServer(config, engine, model_store)
    yield server, counter
    server.stop()
    logging.getLogger().removeHandler(counter)


job_ids = st.one_of(
    st.just(SENTINEL),
    st.builds(lambda: "j_" + uuid.uuid4().hex),
    st.text(max_size=40),
    st.text(alphabet="j_0123456789abcdef./\\", max_size=40),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
commands = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["subscribe", "unsubscribe", "Subscribe", "cancel", ""]),
        "jobs": st.one_of(
            st.lists(job_ids, max_size=8),
            st.lists(job_ids, min_size=1000, max_size=1001),  # at and over the limit
            json_values,
        ),
    },
    optional={"extra": json_values},
)


def nested(depth: int, opener: str) -> str:
    """JSON (or, past the limit, text a JSON parser recurses on) `depth` levels deep."""
    if opener == "[":
        return "[" * depth + "1" + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


frames = st.one_of(
    commands.map(lambda c: ("text", json.dumps(c))),
    json_values.map(lambda v: ("text", json.dumps(v))),
    st.text(max_size=200).map(lambda t: ("text", t)),
    st.integers(min_value=1, max_value=200_000).flatmap(
        lambda depth: st.sampled_from(["[", "{"]).map(lambda o: ("text", nested(depth, o)))
    ),
    st.binary(max_size=200).map(lambda b: ("binary", b)),
)


def drain_until_sentinel(ws: ClientConnection) -> int:
    """Read until the sentinel's `not_found`; returns how many messages came before it."""
    received = 0
    while True:
        message = ws.recv(timeout=30)
        assert isinstance(message, str), "no binary frame is expected here"
        data = json.loads(message)
        assert data["type"] in ("error", "queued", "started", "done", "cancelled", "progress")
        if data.get("code") == "not_found" and data.get("job_id") == SENTINEL:
            return received
        received += 1


@given(st.lists(frames, min_size=1, max_size=8))
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_websocket_never_breaks(
    ws_server: tuple[ThreadedServer, ErrorCounter], sequence: list[tuple[str, Any]]
) -> None:
    server, errors = ws_server
    with connect(f"ws://127.0.0.1:{server.live.port}/api/ws", max_size=2**24) as ws:
        for kind, payload in sequence:
            ws.send(payload)  # str → a text frame, bytes → a binary frame
            FIGURES[kind] += 1
        ws.send(json.dumps({"type": "unsubscribe", "jobs": [SENTINEL]}))
        ws.send(json.dumps({"type": "subscribe", "jobs": [SENTINEL]}))
        FIGURES["replies"] += drain_until_sentinel(ws)
        FIGURES["sequences"] += 1
    assert not errors.records, [r.getMessage() for r in errors.records][:3]


def test_figures(ws_server: tuple[ThreadedServer, ErrorCounter]) -> None:
    _, errors = ws_server
    print(
        f"\nWebSocket fuzz: {FIGURES['sequences']} sequences, {FIGURES['text']} text and "
        f"{FIGURES['binary']} binary frames, {FIGURES['replies']} replies, "
        f"{len(errors.records)} server errors"
    )
    assert not errors.records
