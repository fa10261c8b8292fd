"""Does nothing: a launch that only lets Krita build its resource database."""

from __future__ import annotations

from typing import Any


def run(ctx: Any) -> None:
    from krita import Krita

    ctx.results["version"] = Krita.instance().version()
