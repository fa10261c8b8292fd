"""Mode `decompose` through the engine on the tiny Qwen-Image-Layered model: layers, placement,
selection-only and recursive splitting, metrics, bad input."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from acetate.engine import framing
from acetate.engine.engine import Engine, StepInfo
from acetate.engine.memory import quantization_config
from acetate.engine.options import EngineOptions
from acetate.engine.outputs import GenerationResult
from acetate.engine.pipelines.decompose import Region, cropped_layer, placed_layer, recomposite
from acetate.engine.pipelines.qwen_loop import LayeredRun, decode_layers, decompose, to_uint8
from acetate.engine.store.models import ModelStore
from acetate.engine.tiny.qwen_layered import TINY_QWEN_NAME, ensure_tiny_qwen
from acetate.errors import GenerationCancelled, InputError
from acetate.protocol import GenerateParameters

STEPS = 2


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    models = tmp_path_factory.mktemp("decompose-models")
    ensure_tiny_qwen(models)
    return Engine(ModelStore(models, hf_cache=False))


@pytest.fixture(scope="module")
def flat() -> np.ndarray:
    """A flat 'painting': a red disc on a blue background, 100×70."""
    rows, cols = np.mgrid[0:70, 0:100]
    image = np.zeros((70, 100, 4), dtype=np.uint8)
    image[...] = (30, 60, 200, 255)
    image[(rows - 35) ** 2 + (cols - 50) ** 2 < 20**2] = (220, 30, 30, 255)
    return image


def split(engine: Engine, images: dict[str, np.ndarray], **fields: Any) -> GenerationResult:
    params = GenerateParameters(
        mode="decompose", prompt="a red disc on blue", steps=STEPS, seed=5, **fields
    )
    return engine.generate(params, images)


def canvas_composite(layers: list[Any], width: int, height: int) -> np.ndarray:
    """The cropped layers placed at their offsets on a transparent canvas, composited in order."""
    placed_layers = []
    for layer in layers:
        placed = np.zeros((height, width, 4), dtype=np.uint8)
        rows, cols = layer.pixels.shape[:2]
        placed[layer.top : layer.top + rows, layer.left : layer.left + cols] = layer.pixels
        placed_layers.append(placed)
    return recomposite(placed_layers)


def test_whole_image_splits_into_n_layers_and_a_hidden_recomposite(
    engine: Engine, flat: np.ndarray
) -> None:
    result = split(engine, {"image": flat}, layer_count=3)
    names = [(layer.name, layer.batch_index, layer.visible) for layer in result.layers]
    assert names == [("layer_1", 0, True), ("layer_2", 0, True), ("layer_3", 0, True),
                     ("blended", 0, False)]  # fmt: skip
    assert (result.canvas_width, result.canvas_height) == (100, 70)
    assert result.model == TINY_QWEN_NAME
    assert result.parameters["resolution"] == 64  # the test model's first bucket
    assert result.parameters["layer_count"] == 3 and result.parameters["cfg"] == 4.0
    for layer in result.layers:
        assert layer.pixels.dtype == np.uint8 and layer.pixels.shape[2] == 4
        assert layer.left + layer.width <= 100 and layer.top + layer.height <= 70
    blended = result.layers[-1]
    assert blended.metrics is not None and 0.0 < blended.metrics["psnr_db"] <= 100.0
    # Same seed, same layers.
    again = split(engine, {"image": flat}, layer_count=3)
    pairs = zip(result.layers, again.layers, strict=True)
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in pairs)


def test_placed_layers_composite_bit_exactly_like_the_full_frame_layers(
    engine: Engine, flat: np.ndarray
) -> None:
    result = split(engine, {"image": flat}, layer_count=2, batch=2)
    pipe = engine._load_base(engine.store.base(TINY_QWEN_NAME).model).sampler.pipe
    run = LayeredRun(flat, ["a red disc on blue"] * 2, "", 4.0, 2, STEPS, 64,
                     [torch.Generator().manual_seed(5 + b) for b in range(2)])  # fmt: skip
    decomposed = decompose(pipe, run, None)
    region = Region(framing.Rect(0, 0, 100, 70), None)
    for b in range(2):
        full_frame = [
            placed_layer(to_uint8(rgba), region) for rgba in decode_layers(pipe, decomposed, b)
        ]
        expected = recomposite(full_frame)
        ours = [
            layer for layer in result.layers if layer.batch_index == b and layer.name != "blended"
        ]
        assert np.array_equal(canvas_composite(ours, 100, 70), expected)
        blended = next(x for x in result.layers if x.batch_index == b and x.name == "blended")
        assert np.array_equal(blended.pixels, expected)


def test_cropping_keeps_exact_offsets() -> None:
    placed = np.zeros((30, 40, 4), dtype=np.uint8)
    placed[5:9, 12:20] = (10, 20, 30, 128)
    layer = cropped_layer("layer_2", 0, placed, framing.Rect(7, 3, 40, 30))
    assert (layer.left, layer.top, layer.width, layer.height) == (19, 8, 8, 4)
    assert np.array_equal(layer.pixels, placed[5:9, 12:20])
    empty = cropped_layer("layer_3", 1, np.zeros_like(placed), framing.Rect(7, 3, 40, 30))
    assert empty.warning and (empty.left, empty.top, empty.width) == (7, 3, 1)


def test_selection_only_comes_back_at_its_place_and_leaves_the_rest(
    engine: Engine, flat: np.ndarray
) -> None:
    rows, cols = np.mgrid[0:30, 0:40]
    selection = ((rows - 15) ** 2 + (cols - 20) ** 2 < 14**2).astype(np.uint8) * 255
    bounds = {"left": 30, "top": 20, "width": 40, "height": 30}
    result = split(engine, {"image": flat, "selection": selection}, layer_count=2,
                   selection_bounds=bounds)  # fmt: skip
    canvas_mask = np.zeros((70, 100), dtype=np.uint8)
    canvas_mask[20:50, 30:70] = selection
    for layer in result.layers:
        assert layer.left >= 30 and layer.top >= 20
        assert layer.left + layer.width <= 70 and layer.top + layer.height <= 50
    layers = [layer for layer in result.layers if layer.name != "blended"]
    over_input = framing.over(flat, canvas_composite(layers, 100, 70))
    outside = canvas_mask == 0
    assert np.array_equal(over_input[outside], flat[outside])  # outside pixels untouched
    assert result.layers[-1].metrics is not None


def test_a_resulting_layer_splits_again_in_its_own_frame(engine: Engine, flat: np.ndarray) -> None:
    first = split(engine, {"image": flat}, layer_count=2)
    source = first.layers[1]
    again = split(engine, {"image": source.pixels}, layer_count=2)
    assert (again.canvas_width, again.canvas_height) == (source.width, source.height)
    assert [layer.name for layer in again.layers] == ["layer_1", "layer_2", "blended"]


@pytest.mark.parametrize(
    ("fields", "images", "field"),
    [
        ({"resolution": 512}, {}, "resolution"),  # not a bucket
        ({"strength": 0.5}, {}, "strength"),  # an option decompose does not read
        ({"scheduler": "euler"}, {}, "scheduler"),
        ({"decode": "fast", "stop_at": 0.5}, {}, "decode"),
        ({"steps": 1}, {}, "steps"),  # one step: the schedule's terminal shift gives NaN
        ({}, {"image": np.zeros((8, 40, 4), dtype=np.uint8)}, "image"),
        ({"model": "tiny-sdxl"}, {}, "model"),  # a LayerDiffusion base for decompose
    ],
)
def test_bad_input_names_the_field(
    engine: Engine, flat: np.ndarray, fields: dict[str, Any], images: dict[str, Any], field: str
) -> None:
    request = {"mode": "decompose", "prompt": "a disc", **fields}
    with pytest.raises(InputError) as error:
        engine.prepare(GenerateParameters(**request), {"image": flat, **images})
    assert error.value.field == field


def test_a_qwen_base_refuses_layerdiffusion_modes(engine: Engine) -> None:
    with pytest.raises(InputError) as error:
        engine.prepare(GenerateParameters(mode="fg", prompt="a cat", model=TINY_QWEN_NAME), {})
    assert error.value.field == "model"
    assert "Qwen-Image-Layered" in error.value.message


@pytest.mark.parametrize("count", [1, 11])
def test_layer_count_out_of_range_is_refused(count: int) -> None:
    with pytest.raises(ValueError, match="layer_count"):
        GenerateParameters(mode="decompose", prompt="x", layer_count=count)


def test_a_diffusers_folder_in_models_is_found_as_qwen(engine: Engine, tmp_path: Path) -> None:
    source = engine.store.base(TINY_QWEN_NAME).model.path
    models = tmp_path / "models"
    copies = {name: models / "checkpoints" / name for name in ("my-layered", "big", "plain")}
    for folder in copies.values():
        shutil.copytree(source, folder)

    def edit(folder: Path, old: str, new: str) -> None:
        config = folder / "transformer" / "config.json"
        config.write_text(config.read_text().replace(old, new))

    # Recognition reads configs only: a different depth is a full-size (not test) model.
    edit(copies["big"], '"num_layers": 2', '"num_layers": 3')
    edit(copies["plain"], '"use_layer3d_rope": true', '"use_layer3d_rope": false')
    store = ModelStore(models, hf_cache=False)
    found = {base.name: base for base in store.bases()}
    assert found["my-layered"].family == found["big"].family == "qwen_layered"
    assert found["my-layered"].tiny and not found["big"].tiny
    assert store.plan("my-layered", "decompose").base.path == copies["my-layered"]
    refused = {r.path.name: r.reason for r in store.refused()}
    assert "layer RoPE" in refused["plain"]
    assert store.base(None, "decompose").model.name == "big"
    defaults = store.describe()["default_bases"]
    assert defaults["decompose"] == "big"
    assert defaults["fg"] == "tiny-sdxl"  # never a Qwen base for a LayerDiffusion mode


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        (EngineOptions(device="cpu", quantize="nf4"), "quantize", "needs a CUDA GPU"),
        (EngineOptions(device="cpu", quantize="int8"), "quantize", "needs a CUDA GPU"),
        (EngineOptions(device="cpu", offload="group"), "offload", "CUDA GPU block by block"),
    ],
)
def test_memory_options_are_refused_with_the_reason_off_cuda(
    engine: Engine, options: EngineOptions, field: str, words: str
) -> None:
    with pytest.raises(InputError) as error:
        Engine(engine.store, options)
    assert error.value.field == field and words in error.value.message


def test_quantization_maps_to_bitsandbytes_for_the_big_components() -> None:
    nf4 = quantization_config("nf4")
    assert nf4 is not None and nf4.quant_backend == "bitsandbytes_4bit"
    assert nf4.quant_kwargs["bnb_4bit_quant_type"] == "nf4"
    assert nf4.components_to_quantize == ["transformer", "text_encoder"]
    int8 = quantization_config("int8")
    assert int8 is not None and int8.quant_backend == "bitsandbytes_8bit"
    assert quantization_config("none") is None


def test_comfyui_split_files_are_listed_with_what_to_get_instead(tmp_path: Path) -> None:
    from store_files import write_header_only

    from acetate.engine.store.qwen import full_size_transformer_shapes

    comfy = tmp_path / "ComfyUI" / "models"
    transformer = {
        f"model.diffusion_model.{k}": v for k, v in full_size_transformer_shapes().items()
    }
    write_header_only(
        comfy / "diffusion_models" / "qwen_image_layered_bf16.safetensors", transformer, "BF16"
    )
    plain = {k: v for k, v in transformer.items() if "addition_t_embedding" not in k}
    write_header_only(comfy / "diffusion_models" / "qwen_image_bf16.safetensors", plain, "BF16")
    vae = {"encoder.conv1.weight": (96, 4, 3, 3, 3), "decoder.head.2.weight": (4, 96, 3, 3, 3)}
    write_header_only(comfy / "checkpoints" / "qwen_image_layered_vae.safetensors", vae, "BF16")
    store = ModelStore(tmp_path / "models", [comfy.parent], hf_cache=False)
    refused = {r.path.name: r.reason for r in store.refused()}
    layered = refused["qwen_image_layered_bf16.safetensors"]
    assert layered.startswith("the Qwen-Image-Layered transformer as a single file (40.9 GB")
    assert "get Qwen/Qwen-Image-Layered" in layered
    assert refused["qwen_image_bf16.safetensors"].startswith("a Qwen-Image (not layered)")
    assert "cannot load this VAE" in refused["qwen_image_layered_vae.safetensors"]
    assert not any(base.family == "qwen_layered" and not base.tiny for base in store.bases())


def test_progress_previews_and_cancel(engine: Engine, flat: np.ndarray) -> None:
    params = GenerateParameters(mode="decompose", prompt="a disc", steps=3, seed=1)
    seen: list[tuple[int, int, tuple[int, ...]]] = []
    cancel = threading.Event()

    def on_step(info: StepInfo) -> None:
        preview = info.preview(64)
        assert preview is not None and preview.dtype == np.uint8
        seen.append((info.step, info.total, preview.shape))
        if info.step == 2:
            cancel.set()

    with pytest.raises(GenerationCancelled):
        engine.generate(params, {"image": flat}, callback=on_step, cancel=cancel)
    assert [(step, total) for step, total, _ in seen] == [(1, 3), (2, 3)]
    assert seen[0][2][2] == 3  # an RGB preview of the composite frame


def test_the_test_model_maps_the_published_buckets_onto_its_own(
    engine: Engine, flat: np.ndarray
) -> None:
    def bucket(value: int | None) -> int | None:
        params = GenerateParameters(mode="decompose", prompt="x", resolution=value)
        return engine.prepare(params, {"image": flat}).request.parameters.resolution

    assert [bucket(None), bucket(640), bucket(1024), bucket(64), bucket(128)] == [
        64,
        64,
        128,
        64,
        128,
    ]
