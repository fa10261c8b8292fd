"""Resident memory of SDXL `fg` at 1024² on the CPU, stage by stage, against the weights' size.

Builds a full-size random SDXL base once (a diffusers folder, fp16 on disk) with a full-size
official-layout `layer_xl_transparent_attn` (Forge LoRA keys, rank 256) and
`vae_transparent_decoder`, ≈ 8 GB in a cache folder. Then runs `acetate generate --mode fg` in a
child process (the real CLI, fp32 on the CPU unless flags say otherwise) and samples the
child's resident memory (`/proc/<pid>/status` VmRSS) ten times a second. The child marks when
it enters and leaves each stage (loading, patching, denoising, VAE decode, transparent decode,
unpatching), so each sample is attributed to the innermost stage running then.

The bounds (issue 20): at most 1.1 × the fp32 weights through loading and denoising, at most
1.25 × at the peak (the kernel's VmHWM of the child).

    python bench/memory.py [--size 1024] [--steps 2] [--cache DIR] [-- extra generate flags]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provenance import add_cache_argument, commit

PACKAGE = Path(__file__).resolve().parents[1] / "server" / "acetate"
CONFIGS = PACKAGE / "engine" / "store" / "configs" / "sdxl"
BASE_NAME = "bench-sdxl"
LORA_RANK = 256
WHILE_WORKING_BOUND = 1.10
PEAK_BOUND = 1.25
#: Stages whose samples must stay under `WHILE_WORKING_BOUND`.
WORKING_STAGES = ("load base", "load layer files", "patch", "denoise")
GB = 1e9


# The store --------------------------------------------------------------------------------------


def _random_fp16(module: Any, seed: int) -> Any:
    """`module` (built on the meta device) with random fp16 weights of sensible scale."""
    import torch

    module = module.to(torch.float16).to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if tensor.ndim <= 1:
                tensor.fill_(1.0 if "norm" in name and name.endswith("weight") else 0.0)
            else:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / fan_in**0.5)
    return module


def _layer_files(root: Path, unet: Any) -> None:
    import torch
    from safetensors.torch import save_file

    from acetate.engine.nets.keymap import diffusers_to_ldm_key
    from acetate.engine.nets.transparent_vae import TransparentDecoder
    from acetate.engine.nets.unet_patch import ATTENTION_TARGET

    folder = root / "layer_model"
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(20)
    tensors = {}
    for key, weight in unet.state_dict().items():
        if ATTENTION_TARGET.search(key):
            ldm = f"diffusion_model.{diffusers_to_ldm_key(key, unet.config)}"
            factor = (0.01 / LORA_RANK**0.5) ** 0.5
            up = torch.randn(weight.shape[0], LORA_RANK, generator=generator) * factor
            down = torch.randn(LORA_RANK, weight[0].numel(), generator=generator) * factor
            tensors[f"{ldm}::lora::0"] = up.half()
            tensors[f"{ldm}::lora::1"] = down.half()
    save_file(tensors, folder / "layer_xl_transparent_attn.safetensors")
    with torch.device("meta"):
        decoder = TransparentDecoder()
    decoder = _random_fp16(decoder, 21)
    save_file(
        {k: v.contiguous() for k, v in decoder.state_dict().items()},
        folder / "vae_transparent_decoder.safetensors",
    )


def build_store(root: Path) -> Path:
    """A models folder with a random full-size SDXL base (fp16) and the fg layer files."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel
    from diffusers.schedulers import EulerDiscreteScheduler
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    from acetate.engine.tiny.bases import write_tiny_tokenizer

    stamp = root / "complete.json"
    if stamp.is_file():
        return root
    print(f"building full-size random SDXL store in {root} (once, ~8 GB) …", flush=True)

    def config(name: str) -> dict[str, Any]:
        return json.loads((CONFIGS / name / "config.json").read_text())

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config("unet"))
        vae = AutoencoderKL.from_config(config("vae"))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_dict(config("text_encoder")))
        text_encoder_2 = CLIPTextModelWithProjection(
            CLIPTextConfig.from_dict(config("text_encoder_2"))
        )
    tokenizer = CLIPTokenizer.from_pretrained(
        write_tiny_tokenizer(root / "tokenizer"), local_files_only=True
    )
    tokenizer_2 = CLIPTokenizer.from_pretrained(
        write_tiny_tokenizer(root / "tokenizer_2", pad_token="!"), local_files_only=True
    )
    pipe = StableDiffusionXLPipeline(
        vae=_random_fp16(vae, 1),
        text_encoder=_random_fp16(text_encoder, 2),
        text_encoder_2=_random_fp16(text_encoder_2, 3),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=_random_fp16(unet, 4),
        scheduler=EulerDiscreteScheduler.from_pretrained(CONFIGS, subfolder="scheduler"),
    )
    pipe.save_pretrained(root / "checkpoints" / BASE_NAME, safe_serialization=True)
    _layer_files(root, pipe.unet)
    stamp.write_text("{}")
    return root


def _fp32_bytes(paths: list[Path]) -> int:
    from safetensors import safe_open

    total = 0
    for path in paths:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118
                total += math.prod(handle.get_slice(key).get_shape()) * 4
    return total


def weight_bytes_fp32(base: Path) -> dict[str, float]:
    """fp32 bytes of each component's weights, from the safetensors headers."""
    components = ("unet", "text_encoder", "text_encoder_2", "vae")
    return {name: _fp32_bytes(sorted((base / name).glob("*.safetensors"))) for name in components}


# The child: the real CLI with stage marks ------------------------------------------------------


def _marking(function: Callable[..., Any], stage: str, marks: Any) -> Callable[..., Any]:
    def marked(*args: Any, **kwargs: Any) -> Any:
        marks.write(f"{time.monotonic():.4f} enter {stage}\n")
        marks.flush()
        try:
            return function(*args, **kwargs)
        finally:
            marks.write(f"{time.monotonic():.4f} leave {stage}\n")
            marks.flush()

    return marked


def child(marks_path: Path, argv: list[str]) -> int:
    """Run `acetate <argv>` with stage marks written to `marks_path`."""
    from diffusers import AutoencoderKL

    import acetate.engine.engine as engine_module
    import acetate.engine.nets.transparency_codec as codec
    import acetate.engine.nets.unet_patch as unet_patch
    import acetate.engine.pipelines.common  # noqa: F401  (loaded, so its names are marked too)
    from acetate.cli import main
    from acetate.engine.nets import banded_vae
    from acetate.engine.nets.transparent_vae import TransparentDecoder
    from acetate.engine.pipelines.sampler import Sampler

    marks = marks_path.open("w")
    originals = {
        "load base": engine_module.load_base_pipeline,
        "load layer files": engine_module.Engine._layer_models,
        "patch": unet_patch.apply_unet_patch,
        "unpatch": unet_patch.PatchHandle.remove,
        "denoise": Sampler.denoise,
        "encode prompt": Sampler.encode_prompt,
        "vae decode": banded_vae.vae_decode,
        "vae decoder": AutoencoderKL.decode,
        "transparent decode": codec.decode_transparent,
        "transparent decoder pass": TransparentDecoder.forward,
    }
    for stage, function in originals.items():
        marked = _marking(function, stage, marks)
        for module in list(sys.modules.values()):
            if module is None or not getattr(module, "__name__", "").startswith("acetate"):
                continue
            for name, value in list(vars(module).items()):
                if value is function:
                    setattr(module, name, marked)
                elif isinstance(value, type) and vars(value).get(function.__name__) is function:
                    setattr(value, function.__name__, marked)
    return main(argv)


# The parent: sample, attribute, report ---------------------------------------------------------


def _rss(pid: int, field: str = "VmRSS") -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _stage_at(events: list[tuple[float, str, str]], moment: float) -> str:
    open_stages: list[str] = []
    for at, action, stage in events:
        if at > moment:
            break
        if action == "enter":
            open_stages.append(stage)
        elif stage in open_stages:
            open_stages.remove(stage)
    return open_stages[-1] if open_stages else "other (start-up, export)"


def measure(store: Path, args: argparse.Namespace) -> int:
    weights = weight_bytes_fp32(store / "checkpoints" / BASE_NAME)
    total = sum(weights.values())
    # The transparent decoder is a model the job loads too (resident from "load layer files").
    decoder = _fp32_bytes([store / "layer_model" / "vae_transparent_decoder.safetensors"])
    with tempfile.TemporaryDirectory() as scratch:
        marks_path = Path(scratch) / "marks.txt"
        command = [
            sys.executable,
            __file__,
            "--child",
            str(marks_path),
            "--",
            "generate",
            "--mode",
            "fg",
            "--model",
            BASE_NAME,
            "--models-dir",
            str(store),
            "--prompt",
            "a glass bottle",
            "--seed",
            "1",
            "--width",
            str(args.size),
            "--height",
            str(args.size),
            "--steps",
            str(args.steps),
            "--device",
            "cpu",
            "--out",
            str(Path(scratch) / "out"),
            *args.extra,
        ]
        samples: list[tuple[float, float]] = []
        process = subprocess.Popen(command)
        peak = [0.0]

        def sample() -> None:
            while process.poll() is None:
                rss = _rss(process.pid)
                if rss is not None:
                    samples.append((time.monotonic(), rss))
                    peak[0] = max(peak[0], _rss(process.pid, "VmHWM") or 0.0)
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = process.wait()
        sampler.join()
        events = []
        for line in marks_path.read_text().splitlines():
            at, action, stage = line.split(" ", 2)
            events.append((float(at), action, stage))
    if code != 0:
        print(f"acetate generate failed (exit {code})")
        return code

    by_stage: dict[str, list[float]] = {}
    spans: dict[str, list[float]] = {}
    for at, rss in samples:
        stage = _stage_at(events, at)
        by_stage.setdefault(stage, []).append(rss)
    for at, action, stage in events:
        spans.setdefault(stage, [math.inf, -math.inf])
        spans[stage][0] = min(spans[stage][0], at) if action == "enter" else spans[stage][0]
        spans[stage][1] = max(spans[stage][1], at) if action == "leave" else spans[stage][1]
    start = samples[0][0] if samples else 0.0

    print(f"commit {commit()}; SDXL full size, random weights, {args.size}², {args.steps} steps")
    print(f"flags: {' '.join(args.extra) or '(none: fp32 on the CPU, default decode)'}")
    parts = ", ".join(f"{name} {size / GB:.2f}" for name, size in weights.items())
    print(f"fp32 weights: {total / GB:.2f} GB ({parts})")
    print(f"{'stage':<28}{'from s':>8}{'to s':>8}{'median GB':>11}{'max GB':>9}{'max/weights':>13}")
    order = sorted(by_stage, key=lambda name: spans.get(name, [math.inf])[0])
    for stage in order:
        values = by_stage[stage]
        span = spans.get(stage, [start, start])
        print(
            f"{stage:<28}{span[0] - start:>8.1f}{span[1] - start:>8.1f}"
            f"{statistics.median(values) / GB:>11.2f}{max(values) / GB:>9.2f}"
            f"{max(values) / total:>12.2f}x"
        )
    print("RSS series per stage (GB, up to 12 evenly spaced samples):")
    for stage in order:
        values = by_stage[stage]
        picked = values[:: max(1, math.ceil(len(values) / 12))]
        print(f"  {stage:<26}" + " ".join(f"{value / GB:.1f}" for value in picked))
    working = max((rss for s in WORKING_STAGES for rss in by_stage.get(s, [])), default=0.0)
    for label, value, bound in (
        ("loading and denoising", working, WHILE_WORKING_BOUND),
        ("peak (VmHWM)", peak[0], PEAK_BOUND),
    ):
        met = "met" if value <= bound * total else "MISSED"
        print(
            f"{label}: {value / GB:.2f} GB = {value / total:.2f}x the base's weights "
            f"(bound {bound:.2f}x = {bound * total / GB:.2f} GB): {met}; "
            f"{value / (total + decoder):.2f}x with the transparent decoder's "
            f"{decoder / GB:.2f} GB"
        )
    return 0


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        separator = sys.argv.index("--")
        return child(Path(sys.argv[2]), sys.argv[separator + 1 :])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=2)
    add_cache_argument(parser)
    parser.add_argument("--build-only", action="store_true", help="build the store and stop")
    parser.add_argument("extra", nargs="*", help="more `acetate generate` flags, after --")
    args = parser.parse_args()
    store = build_store(args.cache / "sdxl-full-random")
    if args.build_only:
        return 0
    return measure(store, args)


if __name__ == "__main__":
    sys.exit(main())
