"""A job stopped part-way, as the bit-exact restore tests need it: cancelled, or failing."""

from __future__ import annotations

import threading
from collections.abc import Callable

from acetate.engine.pipelines.context import StepInfo
from acetate.errors import GenerationCancelled


def stop_after_first_step(
    how: str,
) -> tuple[Callable[[StepInfo], None], threading.Event, type[Exception]]:
    """(step callback, cancel event, the error the job then raises) for `how` = `cancel` (the
    event is set after step 1) or `fail` (the callback raises after step 1)."""
    cancel = threading.Event()

    def on_step(info: StepInfo) -> None:
        if info.step == 1:
            if how == "fail":
                raise RuntimeError("worker fault")
            cancel.set()

    return on_step, cancel, GenerationCancelled if how == "cancel" else RuntimeError
