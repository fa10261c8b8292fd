"""Validation samples while training: fixed prompts and seeds through Acetate's own `fg`
pipeline with the in-progress adapter, saved as a contact sheet over a checkerboard."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from acetate.export.atomic import write_bytes_atomic
from acetate.train.evaluate import checkerboard
from acetate.train.state import save_safetensors

if TYPE_CHECKING:
    from acetate.train.layer.loop import LayerTrainer

SAMPLES_DIR = "samples"
#: Prompts sampled when none are given: the first captions of the data.
DEFAULT_PROMPTS = 4
SAMPLE_SEED = 1234


def prompts(trainer: LayerTrainer) -> list[str]:
    given = trainer.config.validation_prompts
    if given:
        return list(given)
    return list(dict.fromkeys(c for c in trainer.data.captions if c))[:DEFAULT_PROMPTS] or [""]


def over_checkerboard(rgba: np.ndarray) -> np.ndarray:
    """uint8 RGBA → uint8 RGB over the official grey checkerboard."""
    image = rgba.astype(np.float32) / 255.0
    board = checkerboard(*image.shape[:2])[..., None]
    rgb = image[..., :3] * image[..., 3:] + board * (1.0 - image[..., 3:])
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def contact_sheet(images: list[np.ndarray], path: Path) -> Path:
    """One row: each RGBA sample over a checkerboard, then its alpha."""
    tiles = [over_checkerboard(image) for image in images]
    tiles += [np.repeat(image[..., 3:], 3, axis=2) for image in images]
    sheet = np.concatenate(tiles, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(sheet, "RGB").save(buffer, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def write_samples(trainer: LayerTrainer) -> Path:
    """`<run>/samples/step-N.png` for the adapter as it is now."""
    from acetate.engine.engine import Engine
    from acetate.engine.options import EngineOptions
    from acetate.protocol import GenerateParameters

    folder = trainer.out / SAMPLES_DIR
    adapter_file = folder / "in-progress.safetensors"
    save_safetensors(trainer.adapter.official_tensors(), adapter_file, trainer.metadata())
    engine = trainer.sample_engine
    if engine is None:
        on_gpu = trainer.accelerator.device.type == "cuda"
        engine = Engine(trainer.store, EngineOptions(device="cuda" if on_gpu else "cpu"))
        trainer.sample_engine = engine
    engine.forget_layer_files()
    side = trainer.resolution
    images = []
    for index, prompt in enumerate(prompts(trainer)):
        params = GenerateParameters.model_validate(
            {
                "mode": "fg",
                "model": trainer.setup.base.name,
                "prompt": prompt,
                "seed": SAMPLE_SEED + index,
                "steps": trainer.config.validation_steps,
                "width": side,
                "height": side,
                "decode": "fast",
            }
        )
        result = engine.generate(params, {}, overrides=[adapter_file])
        images.append(result.layers[0].pixels)
    return contact_sheet(images, folder / f"step-{trainer.step:07d}.png")
