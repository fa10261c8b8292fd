"""`bit_depth` 16 through the engine on the tiny models: layers kept at 16 bits from the float
decoder output (real 16-bit precision, not 8-bit values scaled up), whose 8-bit rounding is the
8-bit run's pixels within one level; 8-bit sources carried into a 16-bit result scaled by 257."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sample_images import rgba

from acetate.bitdepth import to_depth, to_uint8
from acetate.engine.engine import Engine
from acetate.engine.options import EngineOptions
from acetate.engine.outputs import GenerationResult
from acetate.engine.store.models import ModelStore
from acetate.engine.tiny.qwen_layered import ensure_tiny_qwen

#: Premultiplied difference allowed between resampled 16- and 8-bit layers, in 8-bit levels.
RESAMPLED_LEVELS = 1.5
FAST = {"prompt": "smoke and glass", "seed": 7, "steps": 2, "decode": "fast"}


@pytest.fixture(scope="module")
def engine(tiny_models_dir: Path) -> Engine:
    torch.set_num_threads(1)
    return Engine(ModelStore(tiny_models_dir), EngineOptions(device="cpu"))


def both_depths(
    engine: Engine, images: dict[str, np.ndarray], **fields: Any
) -> tuple[GenerationResult, GenerationResult]:
    from acetate.protocol import GenerateParameters

    runs = [
        engine.generate(GenerateParameters.model_validate({**fields, "bit_depth": d}), images)
        for d in (8, 16)
    ]
    return runs[0], runs[1]


def premultiplied(pixels: np.ndarray) -> np.ndarray:
    """Colour × alpha and alpha, in 8-bit levels (float)."""
    values = pixels.astype(np.float64) / (65535.0 if pixels.dtype == np.uint16 else 255.0)
    values[..., :3] *= values[..., 3:]
    return values * 255.0


def assert_rounds_to(
    eight: GenerationResult, sixteen: GenerationResult, *, resampled: bool = False
) -> None:
    """Same layers, placement and sizes; uint16 whose 8-bit rounding is within 1 level.

    `resampled`: layers scaled back into the input's frame were resampled from slightly
    different inputs, and a straight colour under a tiny alpha amplifies that; they are
    compared premultiplied, within 1.5 levels (each 8-bit factor is off by up to half a
    level, their product by up to one)."""
    assert [(x.name, x.batch_index) for x in eight.layers] == [
        (x.name, x.batch_index) for x in sixteen.layers
    ]
    for low, high in zip(eight.layers, sixteen.layers, strict=True):
        assert low.pixels.dtype == np.uint8 and high.pixels.dtype == np.uint16, high.name
        assert (low.left, low.top, low.pixels.shape) == (high.left, high.top, high.pixels.shape)
        if resampled:
            difference = np.abs(premultiplied(high.pixels) - premultiplied(low.pixels))
            assert difference.max() <= RESAMPLED_LEVELS, (high.name, difference.max())
        else:
            difference = np.abs(to_uint8(high.pixels).astype(int) - low.pixels)
            assert difference.max() <= 1, (high.name, difference.max())
    assert eight.parameters["bit_depth"] == 8 and sixteen.parameters["bit_depth"] == 16


def has_16_bit_precision(channel: np.ndarray) -> bool:
    """Values between 8-bit levels (v % 257 != 0): not 8-bit data scaled by 257."""
    return bool(np.any(channel % 257 != 0))


@pytest.mark.parametrize(("model", "decode"), [("tiny-sdxl", "fast"), ("tiny-sd15", "tta")])
def test_fg_keeps_the_decoders_16_bits(engine: Engine, model: str, decode: str) -> None:
    eight, sixteen = both_depths(
        engine, {}, **{**FAST, "decode": decode}, model=model, width=64, height=128
    )
    assert_rounds_to(eight, sixteen)
    pixels = sixteen.layers[0].pixels
    assert has_16_bit_precision(pixels[..., 3]), "alpha must hold values between 8-bit levels"
    assert has_16_bit_precision(pixels[..., :3])


@pytest.mark.parametrize(
    ("mode", "model", "given"), [("fg2bg", "tiny-sdxl", "fg"), ("bg2fg", "tiny-sd15", "bg")]
)
def test_conditional_modes_at_16_bits(engine: Engine, mode: str, model: str, given: str) -> None:
    image = rgba(150, 100, opaque=given == "bg")
    eight, sixteen = both_depths(engine, {given: image}, **FAST, mode=mode, model=model)
    assert_rounds_to(eight, sixteen, resampled=True)
    layers = {layer.name: layer.pixels for layer in sixteen.layers}
    # the blended image (the VAE's RGB) is opaque at 16 bits, with 16-bit colour
    assert (layers["blended"][..., 3] == 65535).all()
    assert has_16_bit_precision(layers["blended"][..., :3])


def test_inpaint_keeps_the_8_bit_source_scaled_by_257(engine: Engine) -> None:
    image = rgba(150, 100)
    mask = np.zeros((100, 150), np.uint8)
    mask[20:70, 30:110] = 255
    images = {"image": image, "mask": mask}
    eight, sixteen = both_depths(engine, images, **FAST, mode="inpaint", model="tiny-sdxl")
    assert_rounds_to(eight, sixteen, resampled=True)
    pixels = sixteen.layers[0].pixels
    outside = mask == 0
    assert np.array_equal(pixels[outside], image[outside].astype(np.uint16) * 257)
    assert has_16_bit_precision(pixels[~outside][..., 3])


def test_scene_composite_at_16_bits(engine: Engine) -> None:
    objects = [{"prompt": "a crow", "region": {"left": 8, "top": 8, "width": 60, "height": 50}}]
    background = rgba(128, 96, opaque=True)
    fields = {**FAST, "mode": "scene", "model": "tiny-sdxl", "objects": objects, "margin": 8}
    eight, sixteen = both_depths(engine, {"bg": background}, **fields)
    layers = {layer.name: layer for layer in sixteen.layers}
    blended, crow = layers["blended"].pixels, layers["object_0"]
    assert blended.dtype == np.uint16 and (blended[..., 3] == 65535).all()
    # outside the object's layer the composite is the given background, scaled by 257
    untouched = np.ones(blended.shape[:2], bool)
    rows, cols = crow.pixels.shape[:2]
    untouched[crow.top : crow.top + rows, crow.left : crow.left + cols] = False
    assert np.array_equal(blended[untouched][..., :3], to_depth(background, 16)[untouched][..., :3])
    assert has_16_bit_precision(crow.pixels[..., 3])
    low = {layer.name: layer.pixels for layer in eight.layers}["blended"]
    assert np.abs(to_uint8(blended).astype(int) - low).max() <= 2


def test_decompose_layers_at_16_bits(tmp_path_factory: pytest.TempPathFactory) -> None:
    models = tmp_path_factory.mktemp("qwen16")
    ensure_tiny_qwen(models)
    engine = Engine(ModelStore(models, hf_cache=False))
    image = rgba(100, 70, opaque=True)
    fields = {"mode": "decompose", "prompt": "a disc", "steps": 2, "seed": 5, "layer_count": 2}
    eight, sixteen = both_depths(engine, {"image": image}, **fields)
    assert [x.name for x in sixteen.layers] == ["layer_1", "layer_2", "blended"]

    def on_canvas(layer: Any, depth: int) -> np.ndarray:
        canvas = np.zeros((70, 100, 4), np.float64)
        rows, cols = layer.pixels.shape[:2]
        values = layer.pixels / (65535.0 if depth == 16 else 255.0)
        canvas[layer.top : layer.top + rows, layer.left : layer.left + cols] = values
        canvas[..., :3] *= canvas[..., 3:]  # premultiplied: colour under alpha 0 never counts
        return canvas

    for low, high in zip(eight.layers, sixteen.layers, strict=True):
        assert high.pixels.dtype == np.uint16
        # cropping keeps alpha > 0: a 16-bit alpha below half an 8-bit level may widen a crop;
        # each layer is resized from the bucket into the region (see `assert_rounds_to`)
        difference = np.abs(on_canvas(high, 16) - on_canvas(low, 8)) * 255.0
        # the recomposite adds up both layers' 8-bit rounding
        limit = 2.0 if high.name == "blended" else RESAMPLED_LEVELS
        assert difference.max() <= limit, (high.name, difference.max())
    assert any(has_16_bit_precision(layer.pixels[..., 3]) for layer in sixteen.layers[:2])
    assert sixteen.layers[-1].metrics is not None and "psnr_db" in sixteen.layers[-1].metrics
