"""A private asyncio loop driven by a Qt timer: no threads, no blocking of Krita's GUI.

Every 20 ms the timer runs the callbacks that are ready (`call_soon(stop); run_forever()`),
so coroutines, asyncio sockets (the WebSocket) and Qt network replies all run on Krita's
main thread. Use `run(coro)` to start work; `stop()` cancels what is left on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from .qt import QtCore

log = logging.getLogger(__name__)

T = TypeVar("T")
INTERVAL_MS = 20

_loop: asyncio.AbstractEventLoop | None = None
_timer: QtCore.QTimer | None = None
_tasks: set[asyncio.Task[Any]] = set()


def loop() -> asyncio.AbstractEventLoop:
    """The plugin's loop (created on first use)."""
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop


def setup() -> None:
    """Start pumping the loop from Qt's event loop (idempotent)."""
    global _timer
    if _timer is None:
        _timer = QtCore.QTimer()
        _timer.timeout.connect(process_events)
        _timer.start(INTERVAL_MS)


def process_events() -> None:
    """Run every callback that is ready now, then return to Qt."""
    current = loop()
    # Another plugin's loop may be running if it pumps Qt from inside a coroutine.
    if asyncio._get_running_loop() is not None:
        return
    current.call_soon(current.stop)
    current.run_forever()


def run(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Schedule a coroutine on the plugin loop; unexpected exceptions are logged."""
    task = loop().create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task[Any]) -> None:
    _tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", exc_info=task.exception())


def stop() -> None:
    """Cancel pending tasks and close the loop (Krita is shutting down)."""
    global _timer, _loop
    if _timer is not None:
        _timer.stop()
        _timer = None
    if _loop is None or _loop.is_closed():
        return
    for task in list(_tasks):
        task.cancel()
    if _tasks:
        _loop.run_until_complete(asyncio.gather(*_tasks, return_exceptions=True))
    _loop.close()
    _loop = None
