"""Transparent decoder speed: our `tta` and `fast` against a plain reference of the official TTA.

The reference is the official `estimate_augmented` written out: 8 sequential batch-1 passes of
the same network (contiguous tensors, `no_grad`, fp32), each clipped and un-transformed, then
`torch.median`. All three run on the same random full-size weights and inputs, in this process
with the same thread count, interleaved (the order rotating every round); figures are medians.

    python bench/decoder.py [--size 512] [--repeats 5] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from provenance import commit

from acetate.engine.nets.transparency_codec import TTA_VIEWS, decode_transparent
from acetate.engine.nets.transparent_vae import TransparentDecoder, random_transparent_decoder

TARGET_SPEEDUP = 2.0
TARGET_MAX_DIFFERENCE = 1 / 255


@torch.no_grad()
def reference_tta(
    model: TransparentDecoder, pixel: torch.Tensor, latent: torch.Tensor
) -> torch.Tensor:
    """The official TTA, RGBA order: one image and one view at a time, lower median of 8."""
    outputs = []
    for flip, turns in TTA_VIEWS:
        feed_pixel, feed_latent = pixel.clone(), latent.clone()
        if flip:
            feed_pixel, feed_latent = feed_pixel.flip(3), feed_latent.flip(3)
        feed_pixel = torch.rot90(feed_pixel, turns, dims=(2, 3))
        feed_latent = torch.rot90(feed_latent, turns, dims=(2, 3))
        out = torch.rot90(model(feed_pixel, feed_latent).clip(0, 1), -turns, dims=(2, 3))
        outputs.append(out.flip(3) if flip else out)
    median = torch.median(torch.stack(outputs), dim=0).values
    return torch.cat([median[:, 1:], median[:, :1]], dim=1)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def timed(function: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="image side, a multiple of 64")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="smoke run: 128², 1 round")
    args = parser.parse_args()
    if args.quick:
        args.size, args.repeats = 128, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    torch.manual_seed(0)
    ours: Any = random_transparent_decoder()  # diffusers' `to` is typed loosely
    reference: Any = TransparentDecoder().eval().requires_grad_(False)
    reference.load_state_dict(ours.state_dict())
    reference.to(device)
    # as `load_transparent_decoder` returns it
    ours.to(device=device, memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(1)
    pixel = torch.rand(1, 3, args.size, args.size, generator=generator).to(device)
    latent = torch.randn(1, 4, args.size // 8, args.size // 8, generator=generator).to(device)

    runs: dict[str, Callable[[], torch.Tensor]] = {
        "reference TTA": lambda: reference_tta(reference, pixel, latent),
        "ours tta": lambda: decode_transparent(ours, pixel, latent, "tta"),
        "ours fast": lambda: decode_transparent(ours, pixel, latent, "fast"),
    }
    outputs = {name: run() for name, run in runs.items()}  # warm-up, and the outputs compared
    walls: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_index in range(args.repeats):
        for name in names[round_index % 3 :] + names[: round_index % 3]:
            wall, cpu = timed(runs[name], device)
            walls[name].append(wall)
            cpus[name].append(cpu)

    reference_wall = statistics.median(walls["reference TTA"])
    tta_error = (outputs["ours tta"] - outputs["reference TTA"]).abs()
    fast_error = (outputs["ours fast"] - outputs["ours tta"]).abs()
    print(
        f"device: {device_name(device)} ({device.type}), torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, commit {commit()}"
    )
    print(
        f"decoder: full-size random weights, fp32, {args.size}x{args.size}, "
        f"median of {args.repeats} interleaved rounds"
    )
    print(f"{'run':<15} {'wall s':>8} {'min s':>8} {'CPU s':>8} {'speed-up':>9}  max |diff|")
    for name in names:
        wall = statistics.median(walls[name])
        if name == "reference TTA":
            error = "-"
        elif name == "ours tta":
            error = f"{tta_error.max().item():.2e} vs reference"
        else:
            error = (
                f"{fast_error.max().item():.2e} vs our tta (mean {fast_error.mean().item():.1e})"
            )
        print(
            f"{name:<15} {wall:8.2f} {min(walls[name]):8.2f} {statistics.median(cpus[name]):8.2f} "
            f"{reference_wall / wall:8.2f}x  {error}"
        )
    speedup = reference_wall / statistics.median(walls["ours tta"])
    met = speedup >= TARGET_SPEEDUP and tta_error.max().item() <= TARGET_MAX_DIFFERENCE
    print(
        f"target tta >= {TARGET_SPEEDUP:.0f}x reference with max |diff| <= 1/255: "
        f"{'met' if met else 'MISSED'} ({speedup:.2f}x, {tta_error.max().item():.2e})"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (all runs): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
