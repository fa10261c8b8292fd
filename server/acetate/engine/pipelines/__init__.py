"""One pipeline per mode; each takes a `ModeContext` and returns `LayerImage`s."""

from __future__ import annotations

from collections.abc import Callable

from acetate.engine.outputs import LayerImage
from acetate.engine.pipelines.artwork import run_layer_on_artwork
from acetate.engine.pipelines.context import ModeContext
from acetate.engine.pipelines.layered import run_bg2fg, run_fg2bg, run_joint
from acetate.engine.pipelines.transparent import run_fg, run_img2img, run_upscale

MODE_PIPELINES: dict[str, Callable[[ModeContext], list[LayerImage]]] = {
    "fg": run_fg,
    "fg2bg": run_fg2bg,
    "bg2fg": run_bg2fg,
    "joint": run_joint,
    "img2img": run_img2img,
    "inpaint": run_img2img,
    "layer_on_artwork": run_layer_on_artwork,
    "upscale": run_upscale,
}


def denoising_stages(mode: str, family: str) -> int:
    """How many full denoising runs a mode makes (SDXL conditional modes run two)."""
    if family == "sdxl" and mode in ("fg2bg", "bg2fg", "layer_on_artwork"):
        return 2
    return 1
