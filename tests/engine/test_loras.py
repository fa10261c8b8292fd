"""A request's `loras`: LoRA files listed from `loras/` / `Lora/` with their family, fused into the
base for one job (on top of which LayerDiffusion's patches still apply) and taken out again so
the base is bit-identical afterwards — also when the job fails or is cancelled part-way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from support.loras import store_with_loras
from support.stopping import stop_after_first_step
from support.trained import sha256_of

import acetate.cli
from acetate.engine.lora_fusion import wrapped_layers
from acetate.engine.store.loras import detect_lora
from acetate.errors import InputError, ModelFileError, ModelNotFoundError
from acetate.protocol import GenerateParameters


@pytest.fixture(scope="module")
def models(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lora-store") / "models"
    store_with_loras(tiny_models_dir, root)
    return root


@pytest.fixture(scope="module")
def store(models: Path) -> Any:
    from acetate.engine.store.models import ModelStore

    return ModelStore(models, hf_cache=False)


@pytest.fixture(scope="module")
def engine(store: Any) -> Any:
    from acetate.engine.engine import Engine
    from acetate.engine.options import EngineOptions

    torch.set_num_threads(1)
    return Engine(store, EngineOptions(device="cpu"))


def _params(model: str, loras: list[dict[str, Any]] | None = None, **more: Any):
    fields = dict(mode="fg", model=model, prompt="glass", seed=3, steps=2, decode="fast")
    return GenerateParameters(**{**fields, **more, "loras": loras})


def _pixels(result: Any) -> np.ndarray:
    return np.stack([layer.pixels for layer in result.layers])


def _weights(engine: Any) -> dict[str, torch.Tensor]:
    """Every weight of the loaded base (UNet and text encoders), copied."""
    pipe = engine._base.sampler.pipe
    parts = [("unet", pipe.unet), ("text_encoder", pipe.text_encoder)]
    if getattr(pipe, "text_encoder_2", None) is not None:
        parts.append(("text_encoder_2", pipe.text_encoder_2))
    return {
        f"{name}.{key}": value.clone()
        for name, model in parts
        for key, value in model.state_dict().items()
    }


def _assert_identical(before: dict[str, torch.Tensor], engine: Any) -> None:
    after = _weights(engine)
    assert list(after) == list(before)  # no peft wrappers left (`base_layer`, `lora_A` keys)
    changed = [key for key in before if not torch.equal(before[key], after[key])]
    assert not changed, changed[:5]
    pipe = engine._base.sampler.pipe
    assert wrapped_layers(pipe) == [] and pipe.num_fused_loras == 0
    assert not getattr(pipe.unet, "peft_config", None)


def test_the_store_lists_loras_with_their_family_and_refuses_pickles(store: Any) -> None:
    listed = {lora.name: lora for lora in store.loras()}
    assert {name: (x.family, x.tiny, x.format) for name, x in listed.items()} == {
        "style-sd15": ("sd15", True, "diffusers"),
        "style-sdxl": ("sdxl", True, "diffusers"),
        "kohya-sdxl": ("sdxl", True, "kohya"),
        # The tiny store's own, listed after the store's folders.
        "tiny-style-sd15": ("sd15", True, "diffusers"),
        "tiny-style-sdxl": ("sdxl", True, "diffusers"),
    }
    assert [x.source for x in store.loras()][-2:] == ["tiny", "tiny"]
    refused = [r for r in store.refused() if r.category == "lora"]
    assert [r.path.name for r in refused] == ["old.pt"] and "pickle" in refused[0].reason
    described = store.describe()["loras"]
    assert {item["name"] for item in described} == set(listed)
    assert all({"family", "tiny", "format", "path", "source"} <= set(item) for item in described)


def test_a1111_and_comfyui_installs_are_scanned_with_sub_folders(
    models: Path, tmp_path: Path
) -> None:
    from acetate.engine.store.models import ModelStore

    style = (models / "loras" / "style-sd15.safetensors").read_bytes()
    forge = tmp_path / "forge" / "models" / "Lora" / "people"
    comfy = tmp_path / "ComfyUI" / "models" / "loras"
    for folder in (forge, comfy):
        folder.mkdir(parents=True)
    (forge / "ink.safetensors").write_bytes(style)
    (comfy / "ink.safetensors").write_bytes(style)  # another name: the first one listed wins
    (comfy / "style-sd15.safetensors").write_bytes(style)
    store = ModelStore(models, [tmp_path / "forge", tmp_path / "ComfyUI"], hf_cache=False)
    sources = {lora.name: lora.source for lora in store.loras()}
    assert sources["people/ink"] == f"extra:{tmp_path / 'forge'}"
    assert sources["ink"] == f"extra:{tmp_path / 'ComfyUI'}"
    assert sources["style-sd15"] == "models"  # `models/` comes first
    assert any("'style-sd15' is already taken" in warning for warning in store.warnings)
    params = _params("tiny-sd15", [{"name": "people/ink", "strength": -1}])
    planned = store.plan("tiny-sd15", "fg", loras=params.loras).loras
    assert [(p.lora.name, p.strength) for p in planned] == [("people/ink", -1.0)]


@pytest.mark.parametrize(
    ("tensors", "expected"),
    [
        # Full-size header facts: SD1.5 cross-attention reads 768-wide text, SDXL 2048.
        ({"unet.x.attn2.to_k.lora_A.weight": (4, 768)}, ("sd15", False, "diffusers")),
        ({"lora_unet_x_attn2_to_v.lora_down.weight": (4, 2048)}, ("sdxl", False, "kohya")),
        ({"lora_te2_text_model_x_q_proj.lora_down.weight": (4, 1280)}, ("sdxl", False, "kohya")),
        # Old diffusers attention-processor keys; a LoRA of the first text encoder only.
        ({"unet.x.attn2.processor.to_k_lora.down.weight": (4, 2048)}, ("sdxl", False, "diffusers")),
        ({"lora_te_text_model_x_q_proj.lora_down.weight": (4, 768)}, ("sd15", False, "kohya")),
        ({"unet.x.attn2.to_k.lora_A.weight": (4, 1024)}, "SD2.x"),
        ({"unet.x.attn1.to_q.lora_A.weight": (4, 320)}, "cannot tell"),
        ({"lora_unet_x.hada_w1_a": (4, 320)}, "LyCORIS"),
        ({"model.diffusion_model.x.weight": (4, 4)}, "not a LoRA"),
    ],
)
def test_the_family_comes_from_header_facts(
    tmp_path: Path, tensors: dict[str, tuple[int, ...]], expected: Any
) -> None:
    path = tmp_path / "x.safetensors"
    save_file(
        {key: torch.zeros(shape, dtype=torch.float16) for key, shape in tensors.items()}, path
    )
    if isinstance(expected, tuple):
        assert detect_lora(path) == expected
    else:
        with pytest.raises(ModelFileError, match=expected):
            detect_lora(path)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_a_lora_changes_the_output_and_leaves_the_base_bit_identical(
    engine: Any, family: str
) -> None:
    model = f"tiny-{family}"
    plain = _pixels(engine.generate(_params(model), {}))
    before = _weights(engine)
    styled = engine.generate(_params(model, [{"name": f"style-{family}"}]), {})
    assert np.abs(_pixels(styled).astype(int) - plain.astype(int)).mean() > 1
    _assert_identical(before, engine)
    assert np.array_equal(_pixels(engine.generate(_params(model), {})), plain)
    # Strength 0 adds a zero delta: exactly the plain picture.
    zero = engine.generate(_params(model, [{"name": f"style-{family}", "strength": 0}]), {})
    assert np.array_equal(_pixels(zero), plain)
    assert styled.parameters["loras"] == [{"name": f"style-{family}", "strength": 1.0}]


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_the_tiny_store_lora_changes_the_output(engine: Any, family: str) -> None:
    """`tiny-style-*` (UNet and text encoders, `text_encoder.text_model.…` keys as LoRA files
    name them) loads into the tiny bases."""
    model = f"tiny-{family}"
    plain = _pixels(engine.generate(_params(model), {}))
    before = _weights(engine)
    styled = engine.generate(_params(model, [{"name": f"tiny-style-{family}"}]), {})
    assert np.abs(_pixels(styled).astype(int) - plain.astype(int)).mean() > 1
    _assert_identical(before, engine)
    pipe = engine._base.sampler.pipe
    tiny = next(x for x in engine.store.loras() if x.name == f"tiny-style-{family}")
    pipe.load_lora_weights(str(tiny.path))
    encoders = ["text_encoder"] + (["text_encoder_2"] if family == "sdxl" else [])
    assert {name.split(".")[0] for name in wrapped_layers(pipe)} == {"unet", *encoders}
    pipe.unload_lora_weights()
    _assert_identical(before, engine)


def test_kohya_keys_load_like_diffusers_keys_and_strengths_scale(engine: Any) -> None:
    """UNet and both text encoders, converted from kohya keys by diffusers."""
    kohya = engine.generate(_params("tiny-sdxl", [{"name": "kohya-sdxl", "strength": 0.5}]), {})
    same = engine.generate(_params("tiny-sdxl", [{"name": "style-sdxl", "strength": 0.5}]), {})
    full = engine.generate(_params("tiny-sdxl", [{"name": "style-sdxl"}]), {})
    assert np.array_equal(_pixels(kohya), _pixels(same))
    assert not np.array_equal(_pixels(same), _pixels(full))


def test_attention_sharing_sees_the_lora(engine: Any) -> None:
    """SD1.5 joint mode runs through attention-sharing processors that call `F.linear` on the
    projections' weights: fused, the LoRA reaches them."""
    plain = _pixels(engine.generate(_params("tiny-sd15", mode="joint", steps=1), {}))
    before = _weights(engine)
    joint = _params("tiny-sd15", [{"name": "style-sd15"}], mode="joint", steps=1)
    assert not np.array_equal(_pixels(engine.generate(joint, {})), plain)
    _assert_identical(before, engine)


@pytest.mark.parametrize("how", ["cancel", "fail"])
def test_a_job_stopped_part_way_leaves_the_base_bit_identical(engine: Any, how: str) -> None:
    plain = _pixels(engine.generate(_params("tiny-sdxl", steps=3), {}))
    before = _weights(engine)
    on_step, cancel, error = stop_after_first_step(how)
    params = _params("tiny-sdxl", [{"name": "style-sdxl"}], steps=3)
    with pytest.raises(error):
        engine.generate(params, {}, callback=on_step, cancel=cancel)
    _assert_identical(before, engine)
    assert np.array_equal(_pixels(engine.generate(_params("tiny-sdxl", steps=3), {})), plain)


@pytest.mark.parametrize(
    ("model", "loras", "error", "words"),
    [
        ("tiny-sdxl", ["style-sd15"], InputError, "'style-sd15' is for SD1.5 (test model) bases"),
        ("tiny-sd15", ["nosuch"], ModelNotFoundError, "no LoRA named 'nosuch'"),
        ("tiny-sd15", ["old"], ModelFileError, "pickle checkpoint refused"),
        ("tiny-sd15", ["style-sd15", "style-sd15.safetensors"], InputError, "named twice"),
    ],
)
def test_bad_loras_are_input_errors_on_loras_before_anything_loads(
    engine: Any, model: str, loras: list[str], error: type[Exception], words: str
) -> None:
    params = _params(model, [{"name": name} for name in loras])
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")) as raised:
        engine.prepare(params, {})
    assert raised.value.field == "loras"  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["/etc/passwd", "../loras/x", "C:\\x.safetensors", "a/./b"])
def test_a_path_is_refused_by_validation(name: str) -> None:
    with pytest.raises(ValueError, match="loras"):
        GenerateParameters(loras=[{"name": name}])


def test_at_most_eight_loras_with_strength_in_range() -> None:
    with pytest.raises(ValueError):
        GenerateParameters(loras=[{"name": f"x{i}"} for i in range(9)])
    with pytest.raises(ValueError):
        GenerateParameters(loras=[{"name": "x", "strength": 2.5}])


def test_cli_lora_flag_takes_a_name_or_a_path_and_records_them(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["generate", "--mode", "fg", "--model", "tiny-sd15", "--prompt", "glass",
              "--seed", "5", "--steps", "2", "--decode", "fast", "--device", "cpu",
              "--models-dir", str(models)]  # fmt: skip
    listed = models / "loras" / "style-sd15.safetensors"
    outside = tmp_path / "elsewhere" / "mine.safetensors"
    outside.parent.mkdir()
    outside.write_bytes(listed.read_bytes())
    runs = {"by_name": ["--lora", "style-sd15:0.5"], "by_path": ["--lora", f"{outside}:0.5"]}
    for out, flags in runs.items():
        code = acetate.cli.main([*common, *flags, "--out", str(tmp_path / out)])
        assert code == 0, capsys.readouterr().err
    records = {out: json.loads((tmp_path / out / "result.json").read_text()) for out in runs}
    assert records["by_name"]["parameters"]["loras"] == [{"name": "style-sd15", "strength": 0.5}]
    assert records["by_name"]["files"]["lora:style-sd15"] == {
        "name": "style-sd15",
        "sha256": sha256_of(models / "loras" / "style-sd15.safetensors"),
    }
    assert records["by_path"]["parameters"]["loras"] == [{"name": "mine", "strength": 0.5}]
    assert records["by_path"]["files"]["lora:mine"]["sha256"] == sha256_of(outside)
    pixels = [np.asarray(Image.open(tmp_path / out / "foreground.png")) for out in runs]
    assert np.array_equal(*pixels)


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--lora", "nosuch"], "--lora: no LoRA named 'nosuch'"),
        (["--lora", "style-sd15:lots"], "--lora: expected NAME[:STRENGTH]"),
        (["--lora", "style-sd15:3"], "--lora[0].strength"),
        (["--lora", "./x.safetensors", "--server", "http://127.0.0.1:9"],
         "--lora: a server cannot read this machine's files"),
    ],
)  # fmt: skip
def test_cli_bad_lora_flags_are_one_line_errors(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], words: str
) -> None:
    code = acetate.cli.main(
        ["generate", "--mode", "fg", "--model", "tiny-sd15", "--prompt", "x", "--steps", "1",
         "--models-dir", str(models), "--out", str(tmp_path / "out"), *flags]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and words in err, err
    assert "Traceback" not in err
