"""Per-mode engine overhead on full-size SD1.5 with random weights.

overhead = (wall time of `Engine.generate` − time inside UNet, VAE and transparency
decoder/encoder calls) ÷ that compute time, per mode, measured in one process (target ≤ 5 %).
Everything else — prompt encoding, scheduler math, attention-sharing set-up, framing, resizing,
premultiplied blending, PNG-free array work — is overhead. The model store is built once in a
cache folder (random full-size SD1.5 pipeline in fp16 plus full-size official-layout layer files,
≈ 3.5 GB) and reused; model loading is excluded by a small warm-up run per mode.

    python bench/modes.py [--size 512] [--steps 4] [--modes fg,bg2fg] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from provenance import add_cache_argument, commit

from acetate.engine.engine import Engine
from acetate.engine.nets.attention_sharing import AttentionSharing, AttentionSharingConfig
from acetate.engine.nets.transparent_vae import TransparentDecoder, TransparentEncoder
from acetate.engine.options import EngineOptions
from acetate.engine.store.models import ModelStore
from acetate.protocol import GenerateParameters

PACKAGE = Path(__file__).resolve().parents[1] / "server" / "acetate"
CONFIGS = PACKAGE / "engine" / "store" / "configs" / "sd15"
MODES = ("fg", "fg2bg", "bg2fg", "joint", "img2img", "inpaint", "layer_on_artwork", "upscale")
SHARING_FILES = {
    "layer_sd15_transparent_attn": (1, False),
    "layer_sd15_joint": (3, False),
    "layer_sd15_fg2bg": (2, True),
    "layer_sd15_bg2fg": (2, True),
}


def _randomise(module: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if parameter.ndim == 1:
                value = 1.0 if name.endswith("norm.weight") or ".norm" in name else 0.0
                parameter.fill_(value)
            else:
                fan_in = parameter[0].numel()
                parameter.copy_(torch.randn(parameter.shape, generator=generator) / fan_in**0.5)


def build_store(root: Path) -> Path:
    """A models folder with a random full-size SD1.5 base and every SD1.5 layer file."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.schedulers import PNDMScheduler
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from acetate.engine.tiny.bases import write_tiny_tokenizer

    stamp = root / "complete.json"
    if stamp.is_file():
        return root
    base = root / "checkpoints" / "bench-sd15"
    layers = root / "layer_model"
    layers.mkdir(parents=True, exist_ok=True)
    print(f"building full-size random SD1.5 store in {root} (once) …", flush=True)
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(json.loads((CONFIGS / "unet/config.json").read_text()))
    vae = AutoencoderKL.from_config(json.loads((CONFIGS / "vae/config.json").read_text()))
    text_config = CLIPTextConfig.from_json_file(CONFIGS / "text_encoder/config.json")
    text_encoder = CLIPTextModel(text_config)
    tokenizer_dir = write_tiny_tokenizer(root / "tokenizer")
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    scheduler = PNDMScheduler.from_pretrained(CONFIGS, subfolder="scheduler")
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(torch.float16).save_pretrained(base, safe_serialization=True)
    unet.to(torch.float32)
    for index, (kind, (frames, control)) in enumerate(SHARING_FILES.items()):
        model = AttentionSharing(AttentionSharingConfig.for_unet(unet, frames, control, rank=256))
        _randomise(model, index)
        save_file(
            {k: v.half().contiguous() for k, v in model.state_dict().items()},
            layers / f"{kind}.safetensors",
        )
    decoder, encoder = TransparentDecoder(), TransparentEncoder()
    _randomise(decoder, 10)
    _randomise(encoder, 11)
    save_file(
        {k: v.half().contiguous() for k, v in decoder.state_dict().items()},
        layers / "layer_sd15_vae_transparent_decoder.safetensors",
    )
    save_file(
        {k: v.half().contiguous() for k, v in encoder.state_dict().items()},
        layers / "layer_sd15_vae_transparent_encoder.safetensors",
    )
    stamp.write_text("{}")
    return root


class ComputeTimer:
    """Accumulates seconds spent inside the heavy modules' calls."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._depth = 0
        self._start = 0.0

    def wrap(self, function: Callable) -> Callable:
        def timed(*args, **kwargs):
            if self._depth == 0:
                self._start = time.perf_counter()
            self._depth += 1
            try:
                return function(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds += time.perf_counter() - self._start

        return timed

    def instrument(self, engine: Engine) -> None:
        sampler = engine._base.sampler
        for module in (sampler.unet, *engine._transparency.values()):
            if not getattr(module.forward, "_timed", False):
                module.forward = self.wrap(module.forward)
                module.forward._timed = True
        vae = sampler.vae
        for method in ("encode", "decode"):
            bound = getattr(vae, method)
            if not getattr(bound, "_timed", False):
                timed = self.wrap(bound)
                timed._timed = True
                setattr(vae, method, timed)


def inputs(mode: str, size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    disc = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size / 3) ** 2
    transparent = image.copy()
    transparent[..., 3] = np.where(disc, 255, 0)
    opaque = image.copy()
    opaque[..., 3] = 255
    mask = np.where(disc, 255, 0).astype(np.uint8)
    return {
        "fg": {},
        "joint": {},
        "fg2bg": {"fg": transparent},
        "bg2fg": {"bg": opaque},
        "img2img": {"image": transparent},
        "inpaint": {"image": transparent, "mask": mask},
        "layer_on_artwork": {"canvas": opaque, "selection": mask},
        "upscale": {"image": transparent[: size // 2, : size // 2]},
    }[mode]


def request(mode: str, size: int, steps: int) -> GenerateParameters:
    fields = {
        "mode": mode,
        "model": "bench-sd15",
        "prompt": "glass bottle",
        "seed": 1,
        "steps": steps,
        "decode": "fast",
        "margin": 0,
    }
    if mode in ("fg", "joint"):
        fields.update(width=size, height=size)
    return GenerateParameters.model_validate(fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--modes", default=",".join(MODES))
    add_cache_argument(parser)
    args = parser.parse_args()

    store_dir = build_store(args.cache / "sd15-full-random")
    engine = Engine(ModelStore(store_dir), EngineOptions(device="cpu"))
    print(
        f"device: {engine.device_name} ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, commit {commit()}"
    )
    print(f"SD1.5 full size, random weights, {args.size}², {args.steps} steps, decode=fast\n")
    print(f"{'mode':<18}{'wall s':>9}{'compute s':>11}{'overhead':>10}")
    timer = ComputeTimer()  # one timer: modules are wrapped once, as they first load
    for mode in args.modes.split(","):
        images = inputs(mode, args.size)
        warm = request(mode, args.size, 1)
        if mode in ("fg", "joint"):
            warm = warm.model_copy(update={"width": 128, "height": 128})
        engine.generate(warm, inputs(mode, 128) if mode not in ("fg", "joint") else {})
        timer.instrument(engine)
        walls, computes = [], []
        for _ in range(args.runs):
            timer.seconds = 0.0
            start = time.perf_counter()
            engine.generate(request(mode, args.size, args.steps), images)
            walls.append(time.perf_counter() - start)
            computes.append(timer.seconds)
        wall, compute = statistics.median(walls), statistics.median(computes)
        print(
            f"{mode:<18}{wall:>9.2f}{compute:>11.2f}{(wall - compute) / compute:>9.1%}", flush=True
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (all modes loaded): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
