"""Every mode on both tiny bases: outputs, placement, determinism, conditioning, cancel, errors."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from sample_images import rgba

from acetate.engine.engine import Engine
from acetate.engine.options import EngineOptions
from acetate.engine.store.models import ModelStore
from acetate.errors import GenerationCancelled, InputError, ModelNotFoundError
from acetate.protocol import GenerateParameters

SIZE = 128


@pytest.fixture(scope="module")
def engine(tiny_models_dir: Path) -> Engine:
    torch.set_num_threads(1)
    return Engine(ModelStore(tiny_models_dir), EngineOptions(device="cpu"))


def params(**fields) -> GenerateParameters:
    base = {"prompt": "glass bottle", "seed": 7, "steps": 2, "decode": "fast"}
    return GenerateParameters.model_validate({**base, **fields})


def names(result) -> list[tuple[str, int]]:
    return [(layer.name, layer.batch_index) for layer in result.layers]


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
def test_fg_makes_transparent_layers_deterministically(engine: Engine, model: str) -> None:
    request = params(model=model, width=SIZE, height=192, batch=2)
    first = engine.generate(request, {})
    second = engine.generate(request, {})
    assert names(first) == [("foreground", 0), ("foreground", 1)]
    for layer in first.layers:
        assert layer.pixels.shape == (192, SIZE, 4) and layer.pixels.dtype == np.uint8
        assert (layer.left, layer.top) == (0, 0)
    alpha = first.layers[0].pixels[..., 3]
    assert alpha.min() < alpha.max(), "alpha must vary (transparency actually decoded)"
    pairs = zip(first.layers, second.layers, strict=True)
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in pairs)
    assert not np.array_equal(first.layers[0].pixels, first.layers[1].pixels)
    assert (first.canvas_width, first.canvas_height) == (SIZE, 192)
    assert first.parameters["seed"] == 7 and first.parameters["steps"] == 2
    assert first.model == model and first.parameters["model"] == model


def test_seed_changes_result_and_batch_items_match_single_runs(engine: Engine) -> None:
    batch = engine.generate(params(model="tiny-sdxl", width=SIZE, height=SIZE, batch=2), {})
    single = engine.generate(params(model="tiny-sdxl", width=SIZE, height=SIZE, seed=8), {})
    other = engine.generate(params(model="tiny-sdxl", width=SIZE, height=SIZE, seed=9), {})
    assert not np.array_equal(single.layers[0].pixels, other.layers[0].pixels)
    # batch item 1 uses seed + 1: the same noise as a single run with that seed (batched
    # convolutions round differently, so equal up to float noise, unlike another seed)
    same = np.abs(batch.layers[1].pixels.astype(int) - single.layers[0].pixels)
    different = np.abs(other.layers[0].pixels.astype(int) - single.layers[0].pixels)
    assert same.max() <= 8 and same.mean() < 0.5
    assert different.mean() > 10 * same.mean() + 1


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
@pytest.mark.parametrize(
    ("mode", "given", "wanted"),
    [
        ("fg2bg", "fg", "background"),
        ("bg2fg", "bg", "foreground"),
    ],
)
def test_conditional_modes_return_layers_in_the_input_frame(
    engine: Engine, model: str, mode: str, given: str, wanted: str
) -> None:
    image = rgba(150, 100, opaque=given == "bg")
    result = engine.generate(params(model=model, mode=mode), {given: image})
    assert names(result) == [(wanted, 0), ("blended", 0)]
    layer, blended = result.layers
    assert layer.pixels.shape == (100, 150, 4) and blended.pixels.shape == (100, 150, 4)
    assert not blended.visible and layer.visible
    assert (result.canvas_width, result.canvas_height) == (150, 100)
    assert (blended.pixels[..., 3] == 255).all()
    if wanted == "background":
        assert (layer.pixels[..., 3] == 255).all()
    # the condition reaches the UNet: another input gives another result
    changed = engine.generate(params(model=model, mode=mode), {given: rgba(150, 100, seed=5)})
    assert not np.array_equal(changed.layers[0].pixels, layer.pixels)


def test_joint_makes_three_layers_per_result_set(engine: Engine) -> None:
    request = params(
        model="tiny-sd15",
        mode="joint",
        width=SIZE,
        height=SIZE,
        batch=2,
        layer_prompts={"foreground": "a cat"},
    )
    result = engine.generate(request, {})
    # Record order: per result set, bottom → top as the mode spec stacks them.
    assert names(result) == [
        ("background", 0),
        ("foreground", 0),
        ("blended", 0),
        ("background", 1),
        ("foreground", 1),
        ("blended", 1),
    ]
    assert [layer.visible for layer in result.layers[:3]] == [True, True, False]
    plain = engine.generate(params(model="tiny-sd15", mode="joint", width=SIZE, height=SIZE), {})
    assert not np.array_equal(plain.layers[1].pixels, result.layers[1].pixels)


def test_joint_on_sdxl_is_refused(engine: Engine) -> None:
    with pytest.raises(InputError) as error:
        engine.generate(params(model="tiny-sdxl", mode="joint"), {})
    assert error.value.field == "mode"


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
def test_inpaint_keeps_everything_outside_the_mask(engine: Engine, model: str) -> None:
    image = rgba(140, 90, seed=3)
    mask = np.zeros((90, 140), dtype=np.uint8)
    mask[20:60, 30:100] = 255
    result = engine.generate(
        params(model=model, mode="inpaint", feather=0), {"image": image, "mask": mask}
    )
    out = result.layers[0].pixels
    assert out.shape == image.shape
    assert np.array_equal(out[mask == 0], image[mask == 0])
    assert not np.array_equal(out[mask > 0], image[mask > 0])


def test_img2img_strength_controls_change(engine: Engine) -> None:
    image = rgba(128, 128, seed=4)
    weak = engine.generate(
        params(model="tiny-sdxl", mode="img2img", strength=0.2), {"image": image}
    )
    strong = engine.generate(
        params(model="tiny-sdxl", mode="img2img", strength=1.0), {"image": image}
    )
    assert weak.layers[0].pixels.shape == image.shape
    assert not np.array_equal(weak.layers[0].pixels, strong.layers[0].pixels)


def test_img2img_with_a_mask_regenerates_only_the_masked_part(engine: Engine) -> None:
    """The mask img2img accepts is used (it was once accepted and ignored)."""
    image = rgba(128, 96, seed=6)
    mask = np.zeros((96, 128), dtype=np.uint8)
    mask[10:50, 20:90] = 255
    request = params(model="tiny-sd15", mode="img2img", strength=1.0, feather=0)
    out = engine.generate(request, {"image": image, "mask": mask}).layers[0].pixels
    assert np.array_equal(out[mask == 0], image[mask == 0])
    assert not np.array_equal(out[mask > 0], image[mask > 0])


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
def test_layer_on_artwork_lands_exactly_on_the_selection(engine: Engine, model: str) -> None:
    canvas = rgba(300, 200, seed=1, opaque=True)
    selection = np.zeros((200, 300), dtype=np.uint8)
    selection[40:100, 50:130] = 255
    selection[40:45, 50:130] = 128  # soft top edge
    request = params(model=model, mode="layer_on_artwork", margin=16, feather=3)
    result = engine.generate(request, {"canvas": canvas, "selection": selection})
    (layer,) = result.layers
    assert (layer.left, layer.top, layer.width, layer.height) == (50, 40, 80, 60)
    assert (result.canvas_width, result.canvas_height) == (300, 200)
    placed = np.zeros((200, 300), dtype=np.uint8)
    placed[40:100, 50:130] = layer.pixels[..., 3]
    assert (placed[selection == 0] == 0).all()
    assert layer.pixels[..., 3].max() > 0


def test_layer_on_artwork_with_cropped_selection_bounds(engine: Engine) -> None:
    canvas = rgba(256, 256, seed=2, opaque=True)
    crop = np.full((30, 40), 255, dtype=np.uint8)
    request = params(
        model="tiny-sd15",
        mode="layer_on_artwork",
        selection_bounds={"left": 200, "top": 10, "width": 40, "height": 30},
    )
    (layer,) = engine.generate(request, {"canvas": canvas, "selection": crop}).layers
    assert (layer.left, layer.top, layer.width, layer.height) == (200, 10, 40, 30)


def test_layer_on_artwork_crops_a_canvas_sized_structure_image_like_the_canvas(
    engine: Engine,
) -> None:
    """The editors send the structure image in the canvas frame: the model must see the same
    context crop of it as of the canvas (here selection 50..130 × 40..100, margin 16)."""
    canvas = rgba(300, 200, seed=1, opaque=True)
    structure = rgba(300, 200, seed=4, opaque=True)
    selection = np.zeros((200, 300), dtype=np.uint8)
    selection[40:100, 50:130] = 255
    request = params(model="tiny-sdxl", mode="layer_on_artwork", margin=16, control="image")
    inputs = {"canvas": canvas, "selection": selection}
    whole = engine.generate(request, {**inputs, "control_image": structure})
    cropped = engine.generate(request, {**inputs, "control_image": structure[24:116, 34:146]})
    plain = engine.generate(request.model_copy(update={"control": "none"}), inputs)
    assert np.array_equal(whole.layers[0].pixels, cropped.layers[0].pixels)
    assert not np.array_equal(whole.layers[0].pixels, plain.layers[0].pixels)


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
def test_upscale_multiplies_the_frame(engine: Engine, model: str) -> None:
    image = rgba(96, 64, seed=6)
    result = engine.generate(
        params(model=model, mode="upscale", scale=2.0, prompt=""), {"image": image}
    )
    assert result.layers[0].pixels.shape == (128, 192, 4)
    assert (result.canvas_width, result.canvas_height) == (192, 128)


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
def test_controlnet_reaches_the_unet(engine: Engine, model: str) -> None:
    control = rgba(SIZE, SIZE, seed=9, opaque=True)
    plain = engine.generate(params(model=model, width=SIZE, height=SIZE), {})
    guided = engine.generate(
        params(model=model, width=SIZE, height=SIZE, control="canny"), {"control_image": control}
    )
    assert not np.array_equal(plain.layers[0].pixels, guided.layers[0].pixels)
    assert guided.parameters["controlnet"]


def test_progress_and_preview(engine: Engine) -> None:
    seen = []
    engine.generate(
        params(model="tiny-sdxl", mode="bg2fg", steps=3),
        {"bg": rgba(128, 128, opaque=True)},
        callback=lambda info: seen.append((info.step, info.total, info.preview(64))),
    )
    assert [step for step, _, _ in seen] == [1, 2, 3, 4, 5, 6]
    assert all(total == 6 for _, total, _ in seen)
    preview = seen[-1][2]
    assert preview.dtype == np.uint8 and preview.ndim == 3 and max(preview.shape[:2]) <= 64


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
def test_cancel_stops_at_the_next_step_and_restores_the_unet(engine: Engine, model: str) -> None:
    engine.generate(params(model=model, width=SIZE, height=SIZE), {})
    unet = engine._base.sampler.unet
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    processors = dict(unet.attn_processors)
    cancel = threading.Event()
    steps = []

    def on_step(info) -> None:
        steps.append(info.step)
        cancel.set()

    with pytest.raises(GenerationCancelled):
        engine.generate(params(model=model, steps=10, width=SIZE, height=SIZE), {}, on_step, cancel)
    assert steps == [1]
    after = unet.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert {k: type(v) for k, v in unet.attn_processors.items()} == {
        k: type(v) for k, v in processors.items()
    }


@pytest.mark.parametrize(
    ("fields", "images", "field"),
    [
        ({"mode": "fg2bg"}, {}, "fg"),
        ({"mode": "inpaint"}, {"image": np.zeros((64, 64, 4), np.uint8)}, "mask"),
        ({"mode": "fg", "prompt": " "}, {}, "prompt"),
        ({"mode": "fg"}, {"bg": np.zeros((64, 64, 4), np.uint8)}, "bg"),
        ({"mode": "fg", "control": "canny"}, {}, "control_image"),
        (
            {"mode": "inpaint"},
            {"image": np.zeros((64, 64, 4), np.uint8), "mask": np.zeros((32, 64), np.uint8)},
            "mask",
        ),
    ],
)
def test_bad_inputs_name_their_field(
    engine: Engine, fields: dict, images: dict, field: str
) -> None:
    with pytest.raises(InputError) as error:
        engine.generate(params(**fields), images)
    assert error.value.field == field


def test_the_default_model_is_recorded_with_a_warning(engine: Engine) -> None:
    result = engine.generate(params(width=SIZE, height=SIZE), {})
    assert result.model == result.parameters["model"] == "tiny-sdxl"
    assert any("test model" in warning for warning in result.warnings)


def test_unknown_model_is_an_error_not_a_substitute(engine: Engine) -> None:
    with pytest.raises(ModelNotFoundError):
        engine.generate(params(model="no-such-model"), {})
