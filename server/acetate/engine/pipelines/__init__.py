"""One pipeline function per mode, named by its spec (`acetate.modes.ModeSpec.pipeline`).

A pipeline takes a `ModeContext` and yields each `LayerImage` as soon as it is final, so the
worker can write and announce it before the next stage starts.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from functools import cache

from acetate.engine.outputs import LayerImage
from acetate.engine.pipelines.context import ModeContext
from acetate.modes import MODES

Pipeline = Callable[[ModeContext], Iterator[LayerImage]]


@cache
def pipeline(mode: str) -> Pipeline:
    """The pipeline function of `mode`, imported from its spec's `module:function`."""
    module_name, _, function = MODES[mode].pipeline.partition(":")
    found: Pipeline = getattr(importlib.import_module(module_name), function)
    return found
