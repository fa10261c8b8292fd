"""Mode `scene` on both tiny bases: placement, alpha outside regions, determinism, independence
of lower objects, progress, empty objects, the PSD, and bad input naming `objects[i].<field>`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gimp_reader import read_with_gimp
from pydantic import ValidationError
from sample_images import rgba

from acetate.engine.engine import Engine
from acetate.engine.options import EngineOptions
from acetate.engine.outputs import GenerationResult, LayerImage
from acetate.engine.store.models import ModelStore
from acetate.errors import InputError
from acetate.export.result import write_result
from acetate.protocol import GenerateParameters

WIDTH, HEIGHT = 192, 128
#: Three overlapping objects: two boxes and a disc mask (bottom → top).
DISC = np.zeros((60, 70), dtype=np.uint8)
_yy, _xx = np.mgrid[:60, :70]
DISC[(_yy - 30) ** 2 / 900 + (_xx - 35) ** 2 / 1225 <= 1.0] = 255
OBJECTS: list[dict[str, Any]] = [
    {"prompt": "a crow", "region": {"left": 10, "top": 12, "width": 80, "height": 60}},
    {"prompt": "a lantern", "region": {"left": 60, "top": 40, "width": 90, "height": 70}},
    {"prompt": "café ☕ sign", "region": {"left": 100, "top": 20}},
]
MASKS = {"objects.2.mask": DISC}


@pytest.fixture(scope="module")
def engine(tiny_models_dir: Path) -> Engine:
    torch.set_num_threads(1)
    return Engine(ModelStore(tiny_models_dir), EngineOptions(device="cpu"))


def scene(**fields: Any) -> GenerateParameters:
    base = {
        "mode": "scene",
        "prompt": "a quiet street at dusk",
        "seed": 11,
        "steps": 2,
        "decode": "fast",
        "width": WIDTH,
        "height": HEIGHT,
        "feather": 3,
        "margin": 16,
        "objects": OBJECTS,
    }
    return GenerateParameters.model_validate({**base, **fields})


def region_mask(index: int) -> np.ndarray:
    """Object `index`'s region as a canvas-sized boolean mask."""
    region = OBJECTS[index]["region"]
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    if index == 2:
        mask[region["top"] : region["top"] + 60, region["left"] : region["left"] + 70] = DISC > 0
    else:
        rows = slice(region["top"], region["top"] + region["height"])
        mask[rows, slice(region["left"], region["left"] + region["width"])] = True
    return mask


def on_canvas(layer: LayerImage) -> np.ndarray:
    canvas = np.zeros((HEIGHT, WIDTH, 4), dtype=np.uint8)
    canvas[layer.top : layer.top + layer.height, layer.left : layer.left + layer.width] = (
        layer.pixels
    )
    return canvas


def by_name(result: GenerationResult) -> dict[str, LayerImage]:
    return {layer.name: layer for layer in result.layers}


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
def test_three_overlapping_objects_land_in_their_regions(engine: Engine, model: str) -> None:
    steps: list[tuple[int, int]] = []
    result = engine.generate(
        scene(model=model), MASKS, callback=lambda info: steps.append((info.step, info.total))
    )
    names = [layer.name for layer in result.layers]
    assert names == ["background", "object_0", "object_1", "object_2", "blended"]
    layers = by_name(result)
    assert layers["background"].pixels.shape == (HEIGHT, WIDTH, 4)
    assert (layers["background"].pixels[..., 3] == 255).all()
    assert not layers["blended"].visible and (layers["blended"].pixels[..., 3] == 255).all()
    for index in range(3):
        layer = layers[f"object_{index}"]
        alpha = on_canvas(layer)[..., 3]
        inside = region_mask(index)
        assert alpha[~inside].max() == 0, "alpha must be 0 outside the object's region"
        assert alpha[inside].max() > 0
        # cropped to its alpha's bounds, at the exact offset
        rows = np.flatnonzero(alpha.any(axis=1))
        cols = np.flatnonzero(alpha.any(axis=0))
        assert (layer.left, layer.top) == (cols[0], rows[0])
        assert (layer.width, layer.height) == (cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1)
    # progress counts the background and every object's stages
    stages = 2 if model == "tiny-sdxl" else 1
    assert steps[-1] == (2 * (1 + 3 * stages), 2 * (1 + 3 * stages))
    # same request → byte-identical layers
    again = engine.generate(scene(model=model), MASKS)
    for first, second in zip(result.layers, again.layers, strict=True):
        assert np.array_equal(first.pixels, second.pixels)
        assert (first.left, first.top) == (second.left, second.top)


def test_changing_an_object_leaves_the_layers_below_it_identical(engine: Engine) -> None:
    first = by_name(engine.generate(scene(model="tiny-sdxl"), MASKS))
    changed_objects = [*OBJECTS[:2], {**OBJECTS[2], "prompt": "a neon sign"}]
    second = by_name(engine.generate(scene(model="tiny-sdxl", objects=changed_objects), MASKS))
    for name in ("background", "object_0", "object_1"):
        assert np.array_equal(first[name].pixels, second[name].pixels), name
    assert not np.array_equal(first["object_2"].pixels, second["object_2"].pixels)
    # a per-object seed overrides the derived one, and only for that object
    seeded = [OBJECTS[0], {**OBJECTS[1], "seed": 5}, OBJECTS[2]]
    third = by_name(engine.generate(scene(model="tiny-sdxl", objects=seeded), MASKS))
    assert np.array_equal(first["object_0"].pixels, third["object_0"].pixels)
    assert not np.array_equal(first["object_1"].pixels, third["object_1"].pixels)


def test_a_given_background_frames_the_scene_and_is_not_returned(engine: Engine) -> None:
    bg = rgba(WIDTH, HEIGHT, opaque=True)
    objects = OBJECTS[:2]
    result = engine.generate(scene(model="tiny-sd15", width=None, height=None, objects=objects),
                             {"bg": bg})  # fmt: skip
    assert [layer.name for layer in result.layers] == ["object_0", "object_1", "blended"]
    assert (result.canvas_width, result.canvas_height) == (WIDTH, HEIGHT)
    blended = by_name(result)["blended"].pixels
    # the composite is the background outside every region
    outside = ~(region_mask(0) | region_mask(1))
    assert np.array_equal(blended[outside][:, :3], bg[outside][:, :3])


def test_batch_repeats_the_whole_scene_with_its_own_seeds(engine: Engine) -> None:
    result = engine.generate(scene(model="tiny-sdxl", batch=2, objects=OBJECTS[:1]), {})
    keys = [(layer.name, layer.batch_index) for layer in result.layers]
    assert keys == [(name, b) for b in (0, 1) for name in ("background", "object_0", "blended")]
    assert not np.array_equal(result.layers[1].pixels, result.layers[4].pixels)


def test_an_empty_object_is_a_warning_and_a_transparent_pixel(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import acetate.engine.pipelines.scene as scene_module

    real = scene_module.generate_conditional

    def transparent_second(ctx: Any, *args: Any, **kwargs: Any) -> Iterator[LayerImage]:
        for layer in real(ctx, *args, **kwargs):
            if "a lantern" in ctx.params.prompt:
                layer.pixels[..., 3] = 0
            yield layer

    monkeypatch.setattr(scene_module, "generate_conditional", transparent_second)
    result = engine.generate(scene(model="tiny-sd15", objects=OBJECTS[:2]), {})
    empty = by_name(result)["object_1"]
    assert empty.pixels.shape == (1, 1, 4) and empty.pixels[..., 3].max() == 0
    assert (empty.left, empty.top) == (60, 40)
    assert any("objects[1]" in warning for warning in result.warnings)


def test_the_psd_keeps_names_order_and_non_ascii_prompts(engine: Engine, tmp_path: Path) -> None:
    from psd_tools import PSDImage

    result = engine.generate(scene(model="tiny-sd15"), MASKS)
    record = write_result(tmp_path, result, job_id="j_scene", psd=True)
    names = [layer.name for layer in record.layers]
    assert names == ["background", "a crow", "a lantern", "café ☕ sign", "blended"]
    assert [layer.file for layer in record.layers][1:4] == [
        "object_0.png",
        "object_1.png",
        "object_2.png",
    ]
    assert record.layers[3].key == "object_2" and record.layers[0].key is None
    psd = PSDImage.open(tmp_path / "layers.psd")
    (group,) = list(psd)
    assert [layer.name for layer in group] == names
    object_2 = list(group)[3]
    assert (object_2.left, object_2.top) == (record.layers[3].left, record.layers[3].top)


def test_gimp_reads_the_scene_psd_names_order_offsets_and_pixels(
    engine: Engine, tmp_path: Path
) -> None:
    result = engine.generate(scene(model="tiny-sd15"), MASKS)
    record = write_result(tmp_path, result, job_id="j_scene", psd=True)
    size, items = read_with_gimp(tmp_path / "layers.psd", tmp_path / "gimp")
    assert size == (WIDTH, HEIGHT)
    (group, *layers) = items  # GIMP lists top → bottom
    assert group.is_group and group.path == "a quiet street at dusk #1"
    expected = list(reversed(record.layers))
    assert [item.path for item in layers] == [f"{group.path}/{layer.name}" for layer in expected]
    pixels = {layer.file: layer.pixels for layer in result.layers}
    for item, layer in zip(layers, expected, strict=True):
        assert (item.left, item.top, item.width, item.height, item.visible) == (
            layer.left,
            layer.top,
            layer.width,
            layer.height,
            layer.visible,
        ), layer.name
        assert np.array_equal(item.pixels(tmp_path / "gimp"), pixels[layer.file]), layer.name


def test_duplicate_prompts_get_numbered_names(engine: Engine, tmp_path: Path) -> None:
    objects = [{**OBJECTS[0], "prompt": "a crow"}, {**OBJECTS[1], "prompt": "a crow"}]
    result = engine.generate(scene(model="tiny-sd15", steps=1, objects=objects), {})
    record = write_result(tmp_path, result, job_id="j_scene", psd=False)
    assert [layer.name for layer in record.layers][1:3] == ["a crow", "a crow (2)"]


@pytest.mark.parametrize(
    ("objects", "masks", "field"),
    [
        ([{"prompt": "x", "region": {"left": 150, "top": 0, "width": 60, "height": 10}}], {},
         "objects[0].region"),
        ([OBJECTS[0], {"prompt": "x"}], {}, "objects[1].region"),
        ([OBJECTS[0], {"prompt": "x", "region": {"left": 0, "top": 0}}], {}, "objects[1].region"),
        ([{"prompt": "x", "region": {"left": 0, "top": 0, "width": 10, "height": 10}}],
         {"objects.0.mask": DISC}, "objects[0].region.mask"),
        ([{"prompt": "x", "region": {"left": 0, "top": 0}}],
         {"objects.0.mask": np.zeros((5, 5), np.uint8)}, "objects[0].region.mask"),
        ([{"prompt": "x", "region": {"left": 150, "top": 100}}],
         {"objects.0.mask": DISC}, "objects[0].region"),
        ([OBJECTS[0]], {"objects.3.mask": DISC}, "objects.3.mask"),
    ],
)  # fmt: skip
def test_bad_objects_name_their_field(
    engine: Engine, objects: list[dict[str, Any]], masks: dict[str, np.ndarray], field: str
) -> None:
    with pytest.raises(InputError) as caught:
        engine.prepare(scene(model="tiny-sdxl", objects=objects), masks)
    assert caught.value.field == field, caught.value.message


def test_at_most_sixteen_objects_and_one_at_least() -> None:
    box = {"prompt": "x", "region": {"left": 0, "top": 0, "width": 8, "height": 8}}
    with pytest.raises(ValidationError) as caught:
        scene(objects=[box] * 17)
    assert caught.value.errors()[0]["loc"] == ("objects",)
    with pytest.raises(ValidationError):
        scene(objects=[])
    with pytest.raises(ValidationError) as caught:
        scene(objects=[{"prompt": "x", "region": {"left": 0, "top": 0, "width": 8}}])
    assert caught.value.errors()[0]["loc"][:3] == ("objects", 0, "region")
