"""Export speed: our PSD writer vs psd-tools' default `save()`, and PNG encoding levels.

Three realistic layers (a soft-edged transparent object, an opaque background, their blend)
in one result group, as a `joint` result writes them. Both writers get the same layers and run
interleaved in the same process; the figures are medians.

    python bench/export.py [--size 2048] [--runs 5]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from provenance import commit
from psd_tools import PSDImage

from acetate.export.png import DEFAULT_COMPRESS_LEVEL, FAST_COMPRESS_LEVEL, encode_png
from acetate.export.psd import PsdGroup, PsdLayer, composite, srgb_profile, write_psd


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid enlarged bicubically."""
    coarse = (rng.random((cells, cells)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC)) / 255.0


def realistic_layers(size: int) -> list[PsdLayer]:
    """Background (opaque), foreground (soft-edged object, mostly transparent), blended."""
    rng = np.random.default_rng(0)
    grain = rng.normal(0.0, 4.0, (size, size, 3))
    background = np.empty((size, size, 4), np.uint8)
    for channel in range(3):
        field = 40 + 170 * smooth_noise(rng, size, 6) + grain[..., channel]
        background[..., channel] = np.clip(field, 0, 255)
    background[..., 3] = 255

    yy, xx = np.mgrid[0:size, 0:size] / size
    radius = np.hypot((xx - 0.5) / 0.32, (yy - 0.55) / 0.4) + 0.15 * smooth_noise(rng, size, 9)
    alpha = np.clip((1.0 - radius) * 12.0, 0.0, 1.0)  # soft edge a few dozen pixels wide
    foreground = np.empty((size, size, 4), np.uint8)
    for channel in range(3):
        field = 60 + 150 * smooth_noise(rng, size, 12) + grain[..., (channel + 1) % 3]
        foreground[..., channel] = np.clip(field, 0, 255)
    foreground[..., 3] = np.round(alpha * 255)

    layers = [PsdLayer("background", background), PsdLayer("foreground", foreground)]
    blended = composite((size, size), layers)
    return [*layers, PsdLayer("blended", blended, visible=False)]


def psd_tools_default(path: Path, size: int, layers: list[PsdLayer]) -> None:
    """The same document through psd-tools' public API and its default `save()`."""
    psd = PSDImage.new("RGBA", (size, size))
    group = psd.create_group(name="a knight #1")
    for spec in layers:
        layer = group.create_pixel_layer(Image.fromarray(spec.rgba), name=spec.name)
        layer.visible = spec.visible
    psd.save(path)


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    size = args.size
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}, commit {commit()}"
    )
    layers = realistic_layers(size)
    groups = [PsdGroup("a knight #1", layers)]
    srgb_profile()  # built once per process; not part of a write

    ours: list[float] = []
    default: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        ours_path, default_path = Path(folder) / "ours.psd", Path(folder) / "default.psd"
        for _ in range(args.runs):
            ours.append(timed(functools.partial(write_psd, ours_path, (size, size), groups)))
            default.append(timed(functools.partial(psd_tools_default, default_path, size, layers)))
        ours_mb = ours_path.stat().st_size / 1e6
        default_mb = default_path.stat().st_size / 1e6
    ours_s, default_s = statistics.median(ours), statistics.median(default)
    print(f"PSD, 3 layers {size}x{size}, median of {args.runs} interleaved runs:")
    print(f"  ours (build, numpy composite, write, fsync): {ours_s:.3f} s ({ours_mb:.1f} MB)")
    print(f"  psd-tools default save():                    {default_s:.3f} s ({default_mb:.1f} MB)")
    verdict = "ok" if default_s / ours_s >= 2 and ours_s <= 1.0 else "MISSED"
    print(f"  speed-up {default_s / ours_s:.2f}x  (target >= 2x and <= 1 s: {verdict})")

    print(f"PNG encode per {size}x{size} layer, median of {args.runs}:")
    for layer in layers:
        for level in (DEFAULT_COMPRESS_LEVEL, FAST_COMPRESS_LEVEL):
            encode = functools.partial(encode_png, layer.rgba, parameters={}, compress_level=level)
            times = [timed(encode) for _ in range(args.runs)]
            data = encode_png(layer.rgba, parameters={}, compress_level=level)
            print(
                f"  {layer.name:<10} level {level}: {statistics.median(times):.3f} s "
                f"({len(data) / 1e6:.1f} MB)"
            )


if __name__ == "__main__":
    main()
