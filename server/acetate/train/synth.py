"""Synthetic RGBA images for tests and demos: what makes alpha hard, deterministic by seed.

Each image stacks one to three elements over full transparency: soft-edged shapes, hair-like
strokes (thin curves of partial alpha), smoke-like fractal noise alpha, and glass-like panes
(low alpha over colour with brighter, more opaque highlights). A caption `.txt` names them.
Everything comes from one `numpy` generator seeded by (seed, index), so a file depends only
on its seed, its index and its size.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from acetate.export.atomic import write_bytes_atomic

ELEMENTS = ("shape", "hair", "smoke", "glass")
COLOURS = {
    "red": (0.85, 0.15, 0.12),
    "orange": (0.95, 0.55, 0.1),
    "yellow": (0.95, 0.85, 0.2),
    "green": (0.2, 0.7, 0.3),
    "teal": (0.1, 0.6, 0.6),
    "blue": (0.15, 0.3, 0.85),
    "purple": (0.55, 0.25, 0.75),
    "white": (0.95, 0.95, 0.95),
    "grey": (0.5, 0.5, 0.5),
    "black": (0.08, 0.08, 0.08),
}


@dataclass(frozen=True)
class Layer:
    """One element: straight colour H×W×3 and alpha H×W, floats in [0, 1]."""

    colour: np.ndarray
    alpha: np.ndarray
    caption: str


def _pick_colour(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    name = str(rng.choice(list(COLOURS)))
    jitter = rng.uniform(-0.08, 0.08, size=3)
    return name, np.clip(np.array(COLOURS[name]) + jitter, 0, 1).astype(np.float32)


def _gradient(rng: np.random.Generator, size: int, base: np.ndarray) -> np.ndarray:
    """Colour with a linear shading ramp, so colour under alpha is not flat."""
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    ramp = (np.cos(angle) * x + np.sin(angle) * y)[..., None]
    return np.clip(base * (0.7 + 0.6 * ramp), 0, 1).astype(np.float32)


def _soft_shape(rng: np.random.Generator, size: int) -> Layer:
    name, base = _pick_colour(rng)
    mask = np.zeros((size, size), np.float32)
    centre = (int(rng.uniform(0.25, 0.75) * size), int(rng.uniform(0.25, 0.75) * size))
    kind = str(rng.choice(["ellipse", "rectangle", "polygon"]))
    if kind == "ellipse":
        axes = (int(rng.uniform(0.1, 0.35) * size), int(rng.uniform(0.1, 0.35) * size))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    elif kind == "rectangle":
        half = rng.uniform(0.08, 0.3, size=2) * size
        corners = np.array(centre) + np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
        cv2.fillPoly(mask, [corners.astype(np.int32)], 1.0)
    else:
        count = int(rng.integers(3, 8))
        angles = np.sort(rng.uniform(0, 2 * np.pi, count))
        radii = rng.uniform(0.1, 0.35, count) * size
        points = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], 1) + centre
        cv2.fillPoly(mask, [points.astype(np.int32)], 1.0)
    softness = rng.uniform(0.005, 0.04) * size  # from crisp anti-aliasing to a feathered edge
    alpha = cv2.GaussianBlur(mask, (0, 0), max(softness, 0.5))
    return Layer(_gradient(rng, size, base), alpha, f"a soft-edged {name} {kind}")


def _hair(rng: np.random.Generator, size: int) -> Layer:
    name, base = _pick_colour(rng)
    alpha = np.zeros((size, size), np.float32)
    root = rng.uniform(0.2, 0.8, size=2) * size
    direction = rng.uniform(0, 2 * np.pi)
    for _ in range(int(rng.integers(20, 60))):
        # A strand: a random walk of bending segments away from a shared root.
        point = root + rng.normal(0, 0.05 * size, size=2)
        heading = direction + rng.normal(0, 0.4)
        points = [point.copy()]
        for _ in range(int(rng.integers(8, 20))):
            heading += rng.normal(0, 0.2)
            point = point + np.array([np.cos(heading), np.sin(heading)]) * size * 0.03
            points.append(point.copy())
        strand = np.zeros_like(alpha)
        cv2.polylines(strand, [np.array(points, np.int32)], False, 1.0, 1, cv2.LINE_AA)
        alpha = np.maximum(alpha, strand * rng.uniform(0.3, 1.0))
    return Layer(_gradient(rng, size, base), alpha, f"{name} hair-like strands")


def _fractal_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    noise = np.zeros((size, size), np.float32)
    amplitude, cells = 1.0, 2
    while cells <= size // 2:
        grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
        noise += amplitude * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        amplitude, cells = amplitude * 0.5, cells * 2
    return noise


def _smoke(rng: np.random.Generator, size: int) -> Layer:
    name, base = _pick_colour(rng)
    noise = _fractal_noise(rng, size)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cx, cy = rng.uniform(0.3, 0.7, size=2)
    falloff = np.clip(1 - ((x - cx) ** 2 + (y - cy) ** 2) / rng.uniform(0.05, 0.2), 0, 1)
    alpha = np.clip((noise * 0.6 + 0.5) * falloff * rng.uniform(0.6, 1.0), 0, 1)
    colour = np.clip(base + 0.15 * noise[..., None], 0, 1).astype(np.float32)
    return Layer(colour, alpha.astype(np.float32), f"{name} smoke")


def _glass(rng: np.random.Generator, size: int) -> Layer:
    shape = _soft_shape(rng, size)
    name = shape.caption.split()[2]
    pane = shape.alpha * rng.uniform(0.15, 0.5)
    highlight = np.zeros_like(pane)
    start = (rng.uniform(0.2, 0.5, size=2) * size).astype(np.int32)
    end = (rng.uniform(0.5, 0.8, size=2) * size).astype(np.int32)
    cv2.line(highlight, tuple(start.tolist()), tuple(end.tolist()), 1.0, max(2, size // 40))
    highlight = cv2.GaussianBlur(highlight, (0, 0), max(1.0, size / 128)) * shape.alpha
    alpha = np.clip(pane + 0.8 * highlight, 0, 1)
    colour = shape.colour * (1 - highlight[..., None]) + highlight[..., None]  # white glints
    return Layer(colour.astype(np.float32), alpha, f"{name} glass with highlights")


_MAKERS = {"shape": _soft_shape, "hair": _hair, "smoke": _smoke, "glass": _glass}


def over(top: Layer, bottom_colour: np.ndarray, bottom_alpha: np.ndarray) -> tuple[np.ndarray, ...]:
    """Straight-alpha "over" of `top` onto a straight-alpha image."""
    a = top.alpha[..., None]
    b = bottom_alpha[..., None]
    out_alpha = a + b * (1 - a)
    premultiplied = top.colour * a + bottom_colour * b * (1 - a)
    colour = np.where(out_alpha > 1e-6, premultiplied / np.maximum(out_alpha, 1e-6), 0)
    return colour.astype(np.float32), out_alpha[..., 0]


def synth_image(seed: int, index: int, size: int = 256) -> tuple[np.ndarray, str]:
    """Image `index` of the set for `seed`: (H×W×4 uint8 straight RGBA, caption)."""
    rng = np.random.default_rng([seed, index])
    colour = np.zeros((size, size, 3), np.float32)
    alpha = np.zeros((size, size), np.float32)
    kinds = rng.choice(ELEMENTS, size=int(rng.integers(1, 4)))
    captions = []
    for kind in kinds:
        layer = _MAKERS[str(kind)](rng, size)
        colour, alpha = over(layer, colour, alpha)
        captions.append(layer.caption)
    rgba = np.concatenate([colour, alpha[..., None]], axis=-1)
    return (np.clip(rgba, 0, 1) * 255 + 0.5).astype(np.uint8), ", ".join(captions)


def write_synth(out_dir: Path, count: int, seed: int, size: int = 256) -> list[Path]:
    """Write `synth-NNNNN.png` + `.txt` caption pairs (atomically); returns the PNG paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        rgba, caption = synth_image(seed, index, size)
        buffer = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
        path = out_dir / f"synth-{index:05d}.png"
        write_bytes_atomic(path, buffer.getvalue())
        write_bytes_atomic(path.with_suffix(".txt"), (caption + "\n").encode("utf-8"))
        paths.append(path)
    return paths
