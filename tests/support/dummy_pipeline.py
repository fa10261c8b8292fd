"""The pipeline of the test-only `dummy_parts` mode (its spec: `dummy_mode.py`)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from acetate.engine import framing
from acetate.engine.outputs import LayerImage
from acetate.engine.pipelines.common import decode_transparent_layers
from acetate.engine.pipelines.context import ModeContext
from acetate.engine.pipelines.transparent import transparent_latents


def run_dummy_parts(ctx: ModeContext) -> Iterator[LayerImage]:
    """Stage one: part 0, yielded at once; stage two: the other parts, then the composite."""
    canvas = ctx.images["canvas"]
    frame_h, frame_w = canvas.shape[:2]
    width, height = framing.model_size(frame_w, frame_h, ctx.native_size)
    parts = getattr(ctx.params, "parts", None) or []
    prompts = [f"{part.prompt}, {ctx.params.prompt}".strip(", ") for part in parts]
    seeds = [ctx.seed + i if part.seed is None else part.seed for i, part in enumerate(parts)]
    composite = canvas.copy()
    layers: list[LayerImage] = []
    for stage, rows in ((0, [0]), (1, list(range(1, len(parts))))):
        if not rows:
            continue
        latents = transparent_latents(
            ctx,
            width,
            height,
            stage=stage,
            prompts=[prompts[i] for i in rows],
            seeds=[seeds[i] for i in rows],
        )
        rgba = decode_transparent_layers(ctx, latents)
        for row, index in enumerate(rows):
            pixels = framing.resize_rgba(rgba[row], frame_w, frame_h)
            layer = LayerImage(f"part_{index}", 0, pixels)
            layers.append(layer)
            yield layer
    for layer in layers:
        composite = over(composite, layer.pixels)
    yield LayerImage("blended", 0, composite, visible=False)


def over(bottom: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Straight-alpha `top` over `bottom`."""
    b = bottom.astype(np.float32) / 255.0
    t = top.astype(np.float32) / 255.0
    alpha = t[..., 3:] + b[..., 3:] * (1.0 - t[..., 3:])
    colour = t[..., :3] * t[..., 3:] + b[..., :3] * b[..., 3:] * (1.0 - t[..., 3:])
    colour = np.where(alpha > 1e-6, colour / np.maximum(alpha, 1e-6), 0.0)
    return np.clip(np.rint(np.concatenate([colour, alpha], 2) * 255.0), 0, 255).astype(np.uint8)
