"""Layer-model training speed: `acetate train layer-model`'s step against a plain reference loop.

Both fine-tune the SD1.5 attention-sharing units (frames = 1, rank 256, from the random
full-size official-layout `layer_sd15_transparent_attn`) on a random full-size SD1.5 base at
512² (bench/modes.py's cached store), AdamW, epsilon MSE, the same captioned synthetic images.
The reference is the loop written the obvious way: every step encodes the image (VAE posterior
+ transparency offset) and the caption again. Ours is `LayerTrainer.train_step` with
`--cache-latents` (each image and caption encoded once). Steps/s is the median over timed steps
after warm-up (the warm-up covers every image, so ours then runs from its cache), by wall clock
and by process CPU time (steadier on a shared host). Peak RSS per side (own processes).

    python bench/train_layer.py [--size 512] [--steps 3] [--images 2] [--threads N] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from modes import build_store  # bench/modes.py: the cached random full-size SD1.5 store
from provenance import add_cache_argument, commit

CAPTION = "a glass bottle, sticker"


def _data(root: Path, size: int, images: int) -> Path:
    from acetate.train.synth import write_synth

    folder = root / f"layer-data-{size}-{images}"
    if not folder.is_dir():
        write_synth(folder, images, seed=0, size=size)
        for path in folder.rglob("*.png"):
            path.with_suffix(".txt").write_text(CAPTION)
    return folder


def _config(args: argparse.Namespace, store: Path, data: Path, out: Path) -> Any:
    from acetate.train.layer.config import LayerTrainConfig

    return LayerTrainConfig(
        data=data, base="bench-sd15", models_dir=store, out=out, init="official",
        steps=10**6, batch=1, lr=1e-5, resolution=args.size, cache_latents=True,
        save_every=10**6, validate_every=10**6, workers=0, progress=False,
    )  # fmt: skip


def _timed(step: Any, count: int, warmup: int) -> list[tuple[float, float]]:
    times = []
    for index in range(warmup + count):
        wall, cpu = time.perf_counter(), time.process_time()
        step(index)
        if index >= warmup:
            times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def run_ours(args: argparse.Namespace, store: Path, data: Path, out: Path) -> list[Any]:
    from acetate.train.layer.captions import CaptionedBatches
    from acetate.train.layer.loop import LayerTrainer

    trainer = LayerTrainer(_config(args, store, data, out))
    batches = CaptionedBatches(trainer.data, batch=1, seed=0, centre=True)

    def step(index: int) -> None:
        trainer.step = index
        trainer.train_step(batches[index])

    return _timed(step, args.steps, args.images)


def run_reference(args: argparse.Namespace, store: Path, data: Path, out: Path) -> list[Any]:
    """The obvious loop: the same model and data, everything recomputed every step."""
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    from acetate.engine.nets.attention_sharing import AttentionSharing
    from acetate.engine.nets.transparency_codec import encode_transparent, rgba_uint8_to_tensor
    from acetate.engine.nets.transparent_vae import load_transparent_encoder
    from acetate.engine.schedulers import SD_SCHEDULE
    from acetate.train.data import read_rgba
    from acetate.train.layer.captions import cover_crop

    layers = store / "layer_model"
    pipe = StableDiffusionPipeline.from_pretrained(
        store / "checkpoints" / "bench-sd15", torch_dtype=torch.float32, local_files_only=True
    )
    pipe.unet.requires_grad_(False)
    pipe.vae.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    sharing = AttentionSharing.from_file(layers / "layer_sd15_transparent_attn.safetensors")
    sharing.float().requires_grad_(True)
    sharing.attach(pipe.unet)
    encoder = load_transparent_encoder(layers / "layer_sd15_vae_transparent_encoder.safetensors")
    optimizer = torch.optim.AdamW(sharing.parameters(), lr=1e-5)
    scheduler = DDPMScheduler(**SD_SCHEDULE)
    paths = sorted(data.rglob("*.png"))

    def step(index: int) -> None:
        path = paths[index % len(paths)]
        crop = cover_crop(read_rgba(path), args.size, args.size, None, False)
        latents = encode_transparent(pipe.vae, encoder, rgba_uint8_to_tensor(crop)).clone()
        embeds, _ = pipe.encode_prompt(path.with_suffix(".txt").read_text(), "cpu", 1, False)
        generator = torch.Generator().manual_seed(index)
        noise = torch.randn(latents.shape, generator=generator)
        t = torch.randint(0, 1000, (1,), generator=generator)
        predicted = pipe.unet(scheduler.add_noise(latents, noise, t), t, embeds).sample
        loss = F.mse_loss(predicted, noise)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return _timed(step, args.steps, args.images)


def child(args: argparse.Namespace) -> None:
    """One side in its own process: prints a JSON line with its times and peak RSS."""
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    store = build_store(args.cache / "sd15-full-random")
    data = _data(args.cache, args.size, args.images)
    out = args.cache / f"layer-run-{os.getpid()}"
    run = run_ours if args.child == "ours" else run_reference
    times = run(args, store, data, out)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times": times, "rss_mb": rss}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side")
    parser.add_argument("--images", type=int, default=2, help="images (= warm-up steps)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--child", choices=("ours", "reference"), help=argparse.SUPPRESS)
    add_cache_argument(parser)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    build_store(args.cache / "sd15-full-random")
    print(
        f"SD1.5 full size, random weights, {args.size}², batch 1, attention-sharing units rank "
        f"256 from the official layout; {args.images} warm-up + {args.steps} timed steps; "
        f"torch {torch.__version__}, threads {args.threads or torch.get_num_threads()}, "
        f"commit {commit()}"
    )
    results = {}
    for side in ("reference", "ours"):
        command = [sys.executable, __file__, "--child", side, *sys.argv[1:]]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            sys.exit(f"{side} failed:\n{done.stderr[-3000:]}")
        results[side] = json.loads(done.stdout.strip().splitlines()[-1])
    rates = {}
    for side, result in results.items():
        wall = statistics.median(t[0] for t in result["times"])
        cpu = statistics.median(t[1] for t in result["times"])
        rates[side] = (1 / wall, 1 / cpu)
        print(
            f"  {side:9s}: {1 / wall:.4f} steps/s wall, {1 / cpu:.4f} steps/s CPU, "
            f"peak RSS {result['rss_mb']:.0f} MB"
        )
    print(
        f"ratio ours / reference: {rates['ours'][0] / rates['reference'][0]:.2f} (wall), "
        f"{rates['ours'][1] / rates['reference'][1]:.2f} (CPU)"
    )


if __name__ == "__main__":
    main()
