"""A 3-object `scene` vs three single `bg2fg` runs on the same regions (SD1.5, CPU).

Both sides do the same denoising work: the scene generates each object on a crop of its
region + `margin` (resized to the model size), a `bg2fg` run does the same on that crop sent
as its background. ratio = scene wall ÷ the sum of the three bg2fg walls (target ≤ 1.05): the
scene's own costs (composite bookkeeping, feathering, alpha crops) must stay in the noise.
Uses bench/modes.py's cached random full-size SD1.5 store; models are loaded by a warm-up run
of each mode first. Peak RSS is the process's (ru_maxrss), after the scene and at the end.

    python bench/scene.py [--size 512] [--steps 4] [--margin 64] [--runs 1] [--cache DIR]
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time

import numpy as np
import torch
from modes import build_store  # bench/modes.py: the cached random full-size SD1.5 store
from provenance import add_cache_argument, commit

from acetate.engine import framing
from acetate.engine.engine import Engine
from acetate.engine.options import EngineOptions
from acetate.engine.store.models import ModelStore
from acetate.protocol import GenerateParameters

#: Three overlapping boxes, as fractions of the canvas side: (left, top, width, height).
BOXES = ((0.08, 0.30, 0.42, 0.45), (0.32, 0.22, 0.36, 0.48), (0.55, 0.12, 0.38, 0.55))
PROMPTS = ("a red bottle", "a blue cup", "a green vase")
SCENE_PROMPT = "on a table"


def regions(size: int) -> list[framing.Rect]:
    return [
        framing.Rect(round(l * size), round(t * size), round(w * size), round(h * size))
        for l, t, w, h in BOXES  # noqa: E741
    ]


def background(size: int) -> np.ndarray:
    """An opaque, smooth-ish random background (what a canvas would send)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (size // 16, size // 16, 4), dtype=np.uint8)
    image = framing.resize_rgba(small, size, size)
    image[..., 3] = 255
    return image


def scene_request(size: int, steps: int, margin: int) -> GenerateParameters:
    objects = [
        {"prompt": prompt, "region": box} for prompt, box in zip(PROMPTS, _boxes(size), strict=True)
    ]
    return GenerateParameters.model_validate(
        {
            "mode": "scene",
            "model": "bench-sd15",
            "prompt": SCENE_PROMPT,
            "seed": 1,
            "steps": steps,
            "decode": "fast",
            "margin": margin,
            "objects": objects,
        }
    )


def _boxes(size: int) -> list[dict[str, int]]:
    return [
        {"left": r.left, "top": r.top, "width": r.width, "height": r.height} for r in regions(size)
    ]


def bg2fg_request(prompt: str, steps: int) -> GenerateParameters:
    return GenerateParameters.model_validate(
        {
            "mode": "bg2fg",
            "model": "bench-sd15",
            "prompt": f"{prompt}, {SCENE_PROMPT}",  # as the scene words an object's prompt
            "seed": 1,
            "steps": steps,
            "decode": "fast",
        }
    )


def timed(function) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="canvas side (multiple of 64)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--margin", type=int, default=64)
    parser.add_argument("--runs", type=int, default=1)
    add_cache_argument(parser)
    args = parser.parse_args()

    store_dir = build_store(args.cache / "sd15-full-random")
    engine = Engine(ModelStore(store_dir), EngineOptions(device="cpu"))
    size, steps, margin = args.size, args.steps, args.margin
    print(
        f"device: {engine.device_name} ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, commit {commit()}"
    )
    print(
        f"SD1.5 full size, random weights, canvas {size}², {steps} steps, decode=fast, "
        f"margin {margin}, 3 overlapping objects, {args.runs} run(s), medians\n"
    )
    bg = background(size)
    boxes = regions(size)
    crops = [framing.expand_rect(box, margin, size, size) for box in boxes]
    for box, crop in zip(boxes, crops, strict=True):
        model = framing.model_size(crop.width, crop.height, 512)
        print(f"  region {box} → crop {crop} → model size {model[0]}×{model[1]}")

    # Warm-up: load everything both sides use (1 step each).
    engine.generate(scene_request(size, 1, margin), {"bg": bg})
    engine.generate(
        bg2fg_request(PROMPTS[0], 1), {"bg": np.ascontiguousarray(bg[crops[0].slices()])}
    )

    scene_walls, single_walls = [], []
    scene_peak = 0.0
    for _ in range(args.runs):
        scene_walls.append(
            timed(lambda: engine.generate(scene_request(size, steps, margin), {"bg": bg}))
        )
        scene_peak = peak_rss_mib()
        total = 0.0
        for prompt, crop in zip(PROMPTS, crops, strict=True):
            image = np.ascontiguousarray(bg[crop.slices()])
            wall = timed(
                lambda p=prompt, i=image: engine.generate(bg2fg_request(p, steps), {"bg": i})
            )
            total += wall
        single_walls.append(total)
    scene, singles = statistics.median(scene_walls), statistics.median(single_walls)
    print(f"\n{'scene (3 objects)':<28}{scene:>9.2f} s")
    print(f"{'3 × bg2fg on the same crops':<28}{singles:>9.2f} s")
    print(f"{'ratio scene / sum':<28}{scene / singles:>9.3f}   (target ≤ 1.05)")
    print(f"peak RSS: {scene_peak:.0f} MiB after the scene, {peak_rss_mib():.0f} MiB at the end")


if __name__ == "__main__":
    main()
