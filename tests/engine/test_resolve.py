"""Requests are resolved once: every default filled per family and mode, stages included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from sample_images import rgba

from acetate.engine.engine import Engine
from acetate.engine.options import EngineOptions
from acetate.engine.store.models import ModelStore
from acetate.modes import BUILTIN_MODES
from acetate.protocol import GenerateParameters, ResolvedRequest

IMAGE = rgba(96, 80, 3)
MASK = np.zeros((80, 96), np.uint8)
MASK[10:50, 20:70] = 255
IMAGES: dict[str, dict[str, np.ndarray]] = {
    "fg": {},
    "fg2bg": {"fg": IMAGE},
    "bg2fg": {"bg": IMAGE},
    "joint": {},
    "img2img": {"image": IMAGE},
    "inpaint": {"image": IMAGE, "mask": MASK},
    "layer_on_artwork": {"canvas": IMAGE, "selection": MASK},
    "upscale": {"image": IMAGE},
    "scene": {"bg": IMAGE, "objects.1.mask": MASK[10:50, 20:70]},
}
#: Request fields a mode needs beyond the prompt (its list inputs).
FIELDS: dict[str, dict[str, object]] = {
    "scene": {
        "objects": [
            {"prompt": "a crow", "region": {"left": 0, "top": 0, "width": 30, "height": 20}},
            {"prompt": "a moon", "region": {"left": 40, "top": 30}},
        ]
    }
}


@pytest.fixture(scope="module")
def engine(tiny_models_dir: Path) -> Engine:
    return Engine(ModelStore(tiny_models_dir), EngineOptions(device="cpu"))


def resolve(engine: Engine, **fields: object) -> ResolvedRequest:
    mode = str(fields.get("mode", "fg"))
    params = GenerateParameters.model_validate(
        {"prompt": "a lamp", **FIELDS.get(mode, {}), **fields}
    )
    return engine.prepare(params, IMAGES[params.mode]).request


@pytest.mark.parametrize("mode", [spec.name for spec in BUILTIN_MODES])
@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
def test_every_mode_resolves_completely_and_round_trips_through_json(
    engine: Engine, mode: str, model: str
) -> None:
    if mode == "joint" and model == "tiny-sdxl":
        pytest.skip("joint is SD1.5 only (refused at plan time, tested elsewhere)")
    if mode == "decompose":
        pytest.skip("decompose runs on Qwen-Image-Layered (tests/engine/test_decompose.py)")
    request = resolve(engine, mode=mode, model=model)
    params = request.parameters
    assert params.model == model and params.seed is not None
    for name in ("steps", "cfg", "scheduler", "stop_at"):
        assert getattr(params, name) is not None, name
    two_step = model == "tiny-sdxl" and request.spec.name in ("fg2bg", "bg2fg", "layer_on_artwork")
    # scene: its background stage, then the bg→fg stages every object runs
    scene = {"tiny-sdxl": 3, "tiny-sd15": 2}[model] if mode == "scene" else None
    assert len(request.stages) == (scene or (2 if two_step else 1))
    if request.spec.is_editor_mode:
        assert params.width is None and params.height is None
    else:
        assert (params.width, params.height) == (256, 256)  # test models: small by default
    again = ResolvedRequest.model_validate_json(request.model_dump_json())
    assert again == request
    assert again.record_parameters() == request.record_parameters()
    if mode == "scene":  # a region mask is recorded inside its region, not as a request field
        recorded = request.record_parameters()
        assert recorded["objects"][1]["region"]["mask"]["width"] == 50
        assert "objects.1.mask" not in recorded
    with pytest.raises(ValidationError):  # frozen: nothing downstream can change it
        request.family = "sd15"  # type: ignore[misc]


def test_stage_defaults_and_overrides(engine: Engine) -> None:
    plain = resolve(engine, mode="fg2bg", model="tiny-sdxl", seed=1)
    assert [(s.name, s.scheduler, s.stop_at) for s in plain.stages] == [
        ("blend", "dpm++_2m_sde_karras", 1.0),
        ("background", "unipc", 0.5),
    ]
    assert plain.parameters.stop_at == 0.5 and plain.parameters.cfg == 7.0
    assert plain.parameters.scheduler == "dpm++_2m_sde_karras"
    chosen = resolve(engine, mode="fg2bg", model="tiny-sdxl", scheduler="euler", stop_at=0.8)
    assert [(s.scheduler, s.stop_at) for s in chosen.stages] == [("euler", 1.0), ("euler", 0.8)]
    assert chosen.parameters.stop_at == 0.8
    sd15 = resolve(engine, mode="fg", model="tiny-sd15")
    assert [(s.scheduler, s.stop_at) for s in sd15.stages] == [("dpm++_2m_karras", 1.0)]
    assert sd15.parameters.cfg == 7.0
    sdxl = resolve(engine, mode="fg", model="tiny-sdxl", width=128, height=192, steps=3)
    assert (sdxl.parameters.width, sdxl.parameters.height, sdxl.parameters.steps) == (128, 192, 3)
    assert sdxl.parameters.cfg == 5.0
    assert {role: used.kind for role, used in sdxl.files.items()} == {
        "unet_patch": "layer_xl_transparent_attn",
        "decoder": "vae_transparent_decoder",
    }
    assert all(used.name == f"{used.kind}.safetensors" for used in sdxl.files.values())
    assert all(len(used.sha256) == 64 for used in sdxl.files.values())


def test_result_parameters_come_from_the_resolved_request(engine: Engine) -> None:
    params = GenerateParameters.model_validate(
        {"mode": "upscale", "model": "tiny-sd15", "steps": 1, "decode": "fast", "seed": 5}
    )
    prepared = engine.prepare(params, {"image": IMAGE})
    layers = list(engine.stream(prepared, {"image": IMAGE}))
    assert [layer.name for layer in layers] == ["foreground"]
    assert layers[0].pixels.shape == (160, 192, 4)  # scale 2 of the 96×80 frame
    record = prepared.request.record_parameters()
    assert record["stop_at"] == 1.0 and record["scheduler"] == "dpm++_2m_karras"
    assert record["image"]["width"] == 96 and len(record["image"]["sha256"]) == 64
    assert (prepared.request.canvas.width, prepared.request.canvas.height) == (192, 160)
