"""`decompose`'s own cost over the diffusers components' compute, and the full-size memory.

1. Overhead (tiny components, CPU or GPU): one `decompose` request through the engine, timing
   every call into the diffusers components (text encoder forward, transformer forward, VAE
   encode/decode) with wrappers installed on the loaded pipeline. overhead = (request wall −
   component time) ÷ component time (target ≤ 5 %): resolving, resizing into the frame,
   compositing, cropping and PSNR must stay in the noise. Medians over --runs.
2. Memory of the full-size model, from the committed configs on the `meta` device: weights of
   each component per precision / quantisation, and what must sit on the GPU at once under
   each --offload choice. With CUDA, the tiny run's peak allocation is measured as well.

    python bench/decompose.py [--layers 4] [--steps 20] [--resolution 128] [--runs 3]
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from provenance import commit

from acetate.engine import framing
from acetate.engine.engine import Engine
from acetate.engine.options import EngineOptions
from acetate.engine.store.models import ModelStore
from acetate.engine.store.qwen import FULL_SIZE_BYTES, full_size_parameters
from acetate.engine.tiny.qwen_layered import TINY_QWEN_NAME, ensure_tiny_qwen
from acetate.protocol import GenerateParameters

GB = 1e9


class ComponentClock:
    """Accumulates the wall time spent inside wrapped component calls."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, owner: Any, name: str) -> None:
        original: Callable[..., Any] = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self.seconds += time.perf_counter() - start

        setattr(owner, name, timed)


def flat_image(width: int, height: int) -> np.ndarray:
    """A smooth random opaque image (what a canvas would send)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (max(1, height // 16), max(1, width // 16), 4), dtype=np.uint8)
    image = framing.resize_rgba(small, width, height)
    image[..., 3] = 255
    return image


def overhead(args: argparse.Namespace) -> None:
    models = Path(tempfile.mkdtemp(prefix="acetate-bench-decompose-"))
    ensure_tiny_qwen(models)
    engine = Engine(ModelStore(models, hf_cache=False), EngineOptions(device=args.device))
    image = flat_image(args.width, args.height)
    params = GenerateParameters(
        mode="decompose",
        model=TINY_QWEN_NAME,
        prompt="a red cup on a wooden table",
        layer_count=args.layers,
        steps=args.steps,
        resolution=args.resolution,
        seed=1,
    )
    engine.generate(params.model_copy(update={"steps": 2}), {"image": image})  # load, warm up
    pipe = engine._base.sampler.pipe if engine._base is not None else None
    assert pipe is not None
    clock = ComponentClock()
    clock.wrap(pipe.text_encoder, "forward")
    clock.wrap(pipe.transformer, "forward")
    clock.wrap(pipe.vae, "encode")
    clock.wrap(pipe.vae, "decode")
    walls, ratios = [], []
    for _ in range(args.runs):
        clock.seconds = 0.0
        start = time.perf_counter()
        result = engine.generate(params, {"image": image})
        wall = time.perf_counter() - start
        walls.append(wall)
        ratios.append((wall - clock.seconds) / clock.seconds)
    psnr = next(layer.metrics for layer in result.layers if layer.metrics)
    print(
        f"tiny {TINY_QWEN_NAME}: image {args.width}×{args.height}, bucket {args.resolution}, "
        f"{args.layers} layers, {args.steps} steps, cfg 4 (2 transformer passes/step), "
        f"{args.runs} run(s), medians"
    )
    print(f"  request wall          {statistics.median(walls) * 1000:9.1f} ms")
    print(f"  overhead / components {statistics.median(ratios) * 100:9.2f} %   (target ≤ 5 %)")
    print(f"  recomposite PSNR      {psnr} (random weights: reported, not judged)")
    if torch.cuda.is_available() and args.device != "cpu":
        print(f"  CUDA peak allocated   {torch.cuda.max_memory_allocated() / 2**20:9.1f} MiB")


def memory() -> None:
    transformer = full_size_parameters("transformer")
    vae = full_size_parameters("vae")
    text_bytes = FULL_SIZE_BYTES["text_encoder"]
    print("\nfull-size Qwen-Image-Layered weights (meta-device parameter counts):")
    print(f"  transformer  {transformer:>14,} params   bf16 {2 * transformer / GB:6.2f} GB   "
          f"int8 {transformer / GB:6.2f} GB   nf4 ≈{0.5 * transformer / GB:6.2f} GB")  # fmt: skip
    print(f"  text encoder {text_bytes // 2:>14,} params   bf16 {text_bytes / GB:6.2f} GB   "
          f"int8 {text_bytes / 2 / GB:6.2f} GB   nf4 ≈{text_bytes / 4 / GB:6.2f} GB")  # fmt: skip
    print(f"  VAE          {vae:>14,} params   bf16 {2 * vae / GB:6.2f} GB (never quantised)")
    everything = 2 * transformer + text_bytes + 2 * vae
    print("GPU-resident weights by option (activations come on top):")
    print(f"  --offload none          {everything / GB:6.2f} GB (all components)")
    print(
        f"  --offload model         {2 * transformer / GB:6.2f} GB (the largest, the transformer)"
    )
    print(f"  --quantize int8         {(transformer + text_bytes / 2 + 2 * vae) / GB:6.2f} GB")
    nf4 = 0.5 * transformer + text_bytes / 4 + 2 * vae  # 4 bits a weight; the VAE in bf16
    print(f"  --quantize nf4          ≈{nf4 / GB:5.2f} GB")
    block = 2 * transformer / 60
    print(f"  --offload group         ≈{block / GB:6.2f} GB per transformer block (60 blocks)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50)  # the family default
    parser.add_argument("--resolution", type=int, default=128, choices=(64, 128))
    # About the bucket's size by default: the frame-sized work (resizing back, compositing,
    # PSNR) then compares with the work the tiny components do at that size.
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args()
    print(
        f"device: {args.device} ({platform.processor() or platform.machine()}), torch "
        f"{torch.__version__}, threads {torch.get_num_threads()}, commit {commit()}"
    )
    overhead(args)
    memory()


if __name__ == "__main__":
    main()
