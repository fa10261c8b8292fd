"""Transparent decoder speed: our `tta` and `fast` against a plain reference of the official TTA.

The reference is the official `estimate_augmented` written out: 8 sequential batch-1 passes of
the same network (contiguous tensors, `no_grad`, fp32), each clipped and un-transformed, then
`torch.median`. Ours: `tta` eager, `tta` prepared (the ONNX Runtime decoder of
`decoder_paths`, CPU only, prepared or loaded from the private cache first and timed), and
`fast` eager. All run on the same random full-size weights and inputs, in this process with the
same thread count, interleaved (the order rotating every round); figures are medians.

    python bench/decoder.py [--size 512] [--repeats 5] [--threads N] [--runs NAMES] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from provenance import commit

from acetate.engine.nets.decoder_paths import PREPARED, prepared_path_problem
from acetate.engine.nets.prepared_decoder import machine_name
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


RUNS = ("tta", "prepared", "fast")


def prepare(decoder: TransparentDecoder, size: int, parser: argparse.ArgumentParser) -> bool:
    """Attach `decoder` and load or prepare its ONNX Runtime network (timed); False: cannot."""
    problem = prepared_path_problem(decoder.device, decoder.dtype, export=True)
    if problem:
        print(f"ours prepared: skipped ({problem})")
        return False
    digest = hashlib.sha256()
    for name, value in decoder.state_dict().items():
        digest.update(name.encode() + value.float().contiguous().numpy().tobytes())
    PREPARED.attach(decoder, digest.hexdigest)
    start = time.perf_counter()
    net = PREPARED.net_for(decoder, size, size, background=False)
    if net is None:
        parser.error(f"preparing failed: {PREPARED.failures(decoder)}")
    print(f"ours prepared: ready after {time.perf_counter() - start:.1f} s (load or prepare)")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="image side, a multiple of 64")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--runs",
        default=",".join(RUNS),
        help=f"comma-separated runs besides the reference, of: {', '.join(RUNS)}",
    )
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

    chosen = [name for name in args.runs.split(",") if name]
    unknown = sorted(set(chosen) - set(RUNS))
    if unknown:
        parser.error(f"--runs: unknown {', '.join(unknown)}")
    available: dict[str, Callable[[], torch.Tensor]] = {
        "tta": lambda: decode_transparent(ours, pixel, latent, "tta", prepared=False),
        "prepared": lambda: decode_transparent(ours, pixel, latent, "tta"),
        "fast": lambda: decode_transparent(ours, pixel, latent, "fast", prepared=False),
    }
    if "prepared" in chosen and not prepare(ours, args.size, parser):
        chosen.remove("prepared")
    runs = {"reference TTA": lambda: reference_tta(reference, pixel, latent)}
    runs.update({f"ours {name}": available[name] for name in chosen})
    outputs = {name: run() for name, run in runs.items()}  # warm-up, and the outputs compared
    walls: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_index in range(args.repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = timed(runs[name], device)
            walls[name].append(wall)
            cpus[name].append(cpu)

    reference_wall = statistics.median(walls["reference TTA"])
    reference_cpu = statistics.median(cpus["reference TTA"])
    print(
        f"device: {machine_name(device)} ({device.type}), torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, commit {commit()}"
    )
    print(
        f"decoder: full-size random weights, fp32, {args.size}x{args.size}, "
        f"median of {args.repeats} interleaved rounds"
    )
    print(
        f"{'run':<15} {'wall s':>8} {'min s':>8} {'CPU s':>8} {'speed-up':>9} {'CPU ratio':>9}"
        "  max |diff| vs reference"
    )
    for name in names:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        error = (outputs[name] - outputs["reference TTA"]).abs()
        difference = "-" if name == "reference TTA" else f"{error.max().item():.2e}"
        if name == "ours fast":
            difference += f" (mean {error.mean().item():.1e}: one view, not the TTA)"
        print(
            f"{name:<15} {wall:8.2f} {min(walls[name]):8.2f} {cpu:8.2f} "
            f"{reference_wall / wall:8.2f}x {reference_cpu / cpu:8.2f}x  {difference}"
        )
    for name in ("ours tta", "ours prepared"):
        if name not in runs:
            continue
        speedup = reference_wall / statistics.median(walls[name])
        error = (outputs[name] - outputs["reference TTA"]).abs().max().item()
        met = speedup >= TARGET_SPEEDUP and error <= TARGET_MAX_DIFFERENCE
        print(
            f"target {name} >= {TARGET_SPEEDUP:.0f}x reference with max |diff| <= 1/255: "
            f"{'met' if met else 'MISSED'} ({speedup:.2f}x, {error:.2e})"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (all runs): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
