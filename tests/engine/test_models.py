"""The model store: discovery in each layout, family detection, refusals, requirements per mode."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
from store_files import (
    CLIP_L,
    VAE,
    checkpoint_shapes,
    folder_files,
    hf_repo,
    sd2_unet_shapes,
    unet_shapes,
    write_header_only,
    write_layer_file,
)

from acetate.engine.store.family import detect_checkpoint, read_header
from acetate.engine.store.models import MODE_REQUIREMENTS, ModelStore
from acetate.engine.store.requirements import UNSUPPORTED_MODES
from acetate.errors import InputError, ModelFileError, ModelNotFoundError
from acetate.modes import MODE_NAMES as MODES


@pytest.fixture
def models(tmp_path: Path, tiny_models_dir: Path) -> Path:
    """An empty models folder that shares the session's tiny build."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "tiny").symlink_to(tiny_models_dir / "tiny")
    return folder


def store(models: Path, *extra: Path, hf: Path | bool = False) -> ModelStore:
    return ModelStore(models, extra, hf_cache=hf)


# ---- family detection from headers ------------------------------------------------------------


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_full_size_checkpoints_are_recognised_from_their_header(
    tmp_path: Path, family: str
) -> None:
    path = write_header_only(tmp_path / "x.safetensors", checkpoint_shapes(family))
    detection = detect_checkpoint(path)
    assert (detection.family, detection.tiny, detection.reason) == (family, False, None)


def _refusal(tmp_path: Path, shapes: dict) -> str:
    path = write_header_only(tmp_path / "x.safetensors", shapes)
    detection = detect_checkpoint(path)
    assert detection.family is None
    return detection.reason or ""


def test_refusals_name_the_architecture(tmp_path: Path) -> None:
    sd15 = checkpoint_shapes("sd15")
    sd2 = sd2_unet_shapes() | {
        VAE: (512, 4, 3, 3),
        "cond_stage_model.model.token_embedding.weight": (49408, 1024),
    }
    assert "SD2.x" in _refusal(tmp_path, sd2)
    refiner = {
        "model.diffusion_model.input_blocks.0.0.weight": (384, 4, 3, 3),
        "conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias": (1280,),
    }
    assert "SDXL refiner" in _refusal(tmp_path, refiner)
    sd3 = {
        "model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias": (9216,),
        "model.diffusion_model.pos_embed": (1, 36864, 1536),
    }
    assert "Stable Diffusion 3" in _refusal(tmp_path, sd3)
    flux = {"double_blocks.0.img_attn.norm.key_norm.scale": (128,), "img_in.weight": (3072, 64)}
    assert "Flux" in _refusal(tmp_path, flux)
    inpaint = sd15 | {"model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3)}
    assert "inpainting" in _refusal(tmp_path, inpaint)
    assert "v-prediction" in _refusal(tmp_path, sd15 | {"v_pred": ()})
    unet_only = unet_shapes("sdxl")
    assert "without its text encoder" in _refusal(tmp_path, unet_only)
    no_vae = {k: v for k, v in sd15.items() if k != VAE}
    assert "without its VAE" in _refusal(tmp_path, no_vae)
    pruned = {k: v for k, v in sd15.items() if "output_blocks.11" not in k}
    assert "matches neither SD1.5 nor SDXL" in _refusal(tmp_path, pruned)
    assert "no UNet" in _refusal(tmp_path, {"foo.weight": (3, 3)})


def test_v_prediction_from_metadata_is_refused(tmp_path: Path) -> None:
    shapes = checkpoint_shapes("sd15")
    assert detect_checkpoint(write_header_only(tmp_path / "eps.safetensors", shapes)).family
    path = write_header_only(
        tmp_path / "v.safetensors", shapes, metadata={"modelspec.prediction_type": "v"}
    )
    assert read_header(path).metadata == {"modelspec.prediction_type": "v"}
    assert "v-prediction" in (detect_checkpoint(path).reason or "")


def test_damaged_files_raise_model_file_error(tmp_path: Path) -> None:
    truncated = write_header_only(tmp_path / "truncated.safetensors", checkpoint_shapes("sd15"))
    os.truncate(truncated, truncated.stat().st_size - 1)
    with pytest.raises(ModelFileError, match="truncated"):
        read_header(truncated)
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ModelFileError):
        read_header(tmp_path / "junk.safetensors")


# ---- discovery in each layout -----------------------------------------------------------------


def _names(items) -> list[str]:
    return [item.name for item in items]


def test_models_folder_layout_lists_bases_layers_controlnets_and_refusals(
    models: Path, tiny_models_dir: Path
) -> None:
    checkpoints = models / "checkpoints"
    write_header_only(checkpoints / "real-xl.safetensors", checkpoint_shapes("sdxl"))
    write_header_only(checkpoints / "sd15" / "real-15.safetensors", checkpoint_shapes("sd15"))
    shutil.copytree(
        tiny_models_dir / "tiny" / "checkpoints" / "tiny-sd15", checkpoints / "folder-15"
    )
    write_layer_file(models / "layer_model", "layer_sd15_transparent_attn")
    write_layer_file(models / "vae", "layer_sd15_vae_transparent_decoder")
    write_header_only(models / "vae" / "sdxl_vae.safetensors", {"decoder.conv_in.weight": (1, 1)})
    shutil.copytree(
        tiny_models_dir / "tiny" / "controlnet" / "tiny-controlnet-sd15",
        models / "controlnet" / "cn",
    )
    (checkpoints / "old.ckpt").write_bytes(b"not even read")
    s = store(models)
    assert _names(s.bases()) == [
        "folder-15",
        "real-xl",
        "sd15/real-15",
        "tiny-sd15",
        "tiny-sdxl",
        "tiny-qwen-image-layered",
    ]
    by_name = {b.name: b for b in s.bases()}
    assert by_name["real-xl"].format == "single_file" and not by_name["real-xl"].tiny
    assert by_name["folder-15"].format == "diffusers" and by_name["folder-15"].tiny
    assert by_name["tiny-sdxl"].tiny and by_name["tiny-sdxl"].source == "tiny"
    real_layers = [f.kind for f in s.layer_files() if not f.tiny]
    assert real_layers == ["layer_sd15_transparent_attn", "layer_sd15_vae_transparent_decoder"]
    assert [(c.name, c.family, c.tiny) for c in s.controlnets() if c.source == "models"] == [
        ("cn", "sd15", True)
    ]
    refused = {r.path.name: r.reason for r in s.refused()}
    assert "pickle" in refused["old.ckpt"]
    assert "sdxl_vae.safetensors" not in refused  # plain VAEs in vae/ are not layer files


def test_pickle_files_are_never_unpickled(models: Path, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"

    class Boom:
        def __reduce__(self):
            return (Path.touch, (marker,))

    for folder, name in [
        ("checkpoints", "evil.ckpt"),
        ("layer_model", "evil.pt"),
        ("controlnet", "x.pth"),
    ]:
        (models / folder).mkdir(exist_ok=True)
        (models / folder / name).write_bytes(pickle.dumps(Boom()))
    s = store(models)
    summary = s.describe()
    assert {Path(r["path"]).name for r in summary["refused"]} >= {"evil.ckpt", "evil.pt", "x.pth"}
    with pytest.raises(ModelFileError, match="pickle"):
        s.base("evil")
    assert not marker.exists()


def test_comfyui_install_root_and_models_folder(models: Path, tmp_path: Path) -> None:
    comfy = tmp_path / "ComfyUI"
    write_header_only(
        comfy / "models" / "checkpoints" / "juggernaut.safetensors", checkpoint_shapes("sdxl")
    )
    write_layer_file(comfy / "models" / "layer_model", "vae_transparent_decoder")
    for root in (comfy, comfy / "models"):
        s = store(models, root)
        assert [b.name for b in s.bases() if not b.tiny] == ["juggernaut"]
        assert s.bases()[0].source == f"extra:{root}"
        assert [f.kind for f in s.layer_files() if not f.tiny] == ["vae_transparent_decoder"]
        assert s.warnings == []


def test_a1111_forge_layout(models: Path, tmp_path: Path) -> None:
    webui = tmp_path / "stable-diffusion-webui-forge"
    write_header_only(
        webui / "models" / "Stable-diffusion" / "rv51.safetensors", checkpoint_shapes("sd15")
    )
    write_layer_file(webui / "models" / "layer_model", "layer_sd15_joint")
    (webui / "models" / "ControlNet").mkdir(parents=True)
    s = store(models, webui)
    assert [(b.name, b.family) for b in s.bases() if not b.tiny] == [("rv51", "sd15")]
    assert [f.kind for f in s.layer_files() if not f.tiny] == ["layer_sd15_joint"]


def test_unknown_extra_folder_warns(models: Path, tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    s = store(models, tmp_path / "nothing")
    s.bases()
    assert any("not a models folder" in w for w in s.warnings)


def test_hugging_face_cache_pipelines_and_layer_repos(
    models: Path, tmp_path: Path, tiny_models_dir: Path
) -> None:
    cache = tmp_path / "hub"
    tiny_xl = tiny_models_dir / "tiny" / "checkpoints" / "tiny-sdxl"
    hf_repo(cache, "someone/tiny-xl-pipeline", folder_files(tiny_xl))
    layers = tmp_path / "layer_src"
    write_layer_file(layers, "layer_sd15_transparent_attn")
    write_layer_file(layers, "layer_sd15_vae_transparent_decoder")
    hf_repo(cache, "LayerDiffusion/layerdiffusion-v1", folder_files(layers))
    hf_repo(cache, "someone/unrelated", {"README.md": b"hello"})
    single = hf_repo(cache, "stabilityai/stable-diffusion-xl-base-1.0", {"README.md": b"x"})
    write_header_only(single / "sd_xl_base_1.0.safetensors", checkpoint_shapes("sdxl"))
    write_header_only(single / "lora.safetensors", {"lora_unet_down.alpha": ()})
    s = store(models, hf=cache)
    hf_bases = [b for b in s.bases() if b.source.startswith("hf:")]
    assert [(b.name, b.family, b.format) for b in hf_bases] == [
        ("someone/tiny-xl-pipeline", "sdxl", "diffusers"),
        ("stabilityai/stable-diffusion-xl-base-1.0/sd_xl_base_1.0", "sdxl", "single_file"),
    ]
    assert not [r for r in s.refused() if r.source.startswith("hf:")]
    assert {f.kind for f in s.layer_files() if f.source.startswith("hf:")} == {
        "layer_sd15_transparent_attn",
        "layer_sd15_vae_transparent_decoder",
    }


def test_discovery_order_first_name_wins(models: Path, tmp_path: Path) -> None:
    write_header_only(models / "checkpoints" / "same.safetensors", checkpoint_shapes("sd15"))
    comfy = tmp_path / "comfy"
    write_header_only(comfy / "checkpoints" / "same.safetensors", checkpoint_shapes("sdxl"))
    s = store(models, comfy)
    assert [(b.name, b.family) for b in s.bases() if not b.tiny] == [("same", "sd15")]
    assert any("already taken" in w for w in s.warnings)


# ---- default model, names ---------------------------------------------------------------------


def test_default_is_first_real_base_else_tiny_sdxl_with_a_warning(models: Path) -> None:
    model, warnings = store(models).base(None)
    assert model.name == "tiny-sdxl" and model.tiny
    assert len(warnings) == 1 and "tiny-sdxl" in warnings[0] and "checkpoints" in warnings[0]
    write_header_only(models / "checkpoints" / "b.safetensors", checkpoint_shapes("sd15"))
    choice = store(models).base()
    assert (choice.model.name, choice.warnings) == ("b", [])


def test_missing_named_model_is_an_error_never_a_tiny_stand_in(models: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no base model named 'juggernaut'") as info:
        store(models).base("juggernaut")
    assert info.value.field == "model" and "tiny-sd15" in info.value.message
    assert store(models).base("tiny-sd15").model.family == "sd15"


def test_refused_base_named_explicitly_says_why(models: Path) -> None:
    write_header_only(models / "checkpoints" / "sd2.safetensors", sd2_unet_shapes())
    with pytest.raises(ModelFileError, match="SD2"):
        store(models).base("sd2")


# ---- requirements, usable modes, overrides ----------------------------------------------------


def test_requirements_table_covers_every_mode_once() -> None:
    all_modes = set(MODES)
    assert set(MODE_REQUIREMENTS["sd15"]) | set(UNSUPPORTED_MODES["sd15"]) == all_modes
    assert set(MODE_REQUIREMENTS["sdxl"]) | set(UNSUPPORTED_MODES["sdxl"]) == all_modes
    assert set(UNSUPPORTED_MODES["sd15"]) == {"decompose"}
    assert MODE_REQUIREMENTS["qwen_layered"] == {"decompose": {}}  # no extra files
    for family, modes in MODE_REQUIREMENTS.items():
        if family == "qwen_layered":
            continue
        for mode in ("img2img", "inpaint", "upscale"):
            assert modes[mode] == modes["fg"] | {"encoder": modes[mode]["encoder"]}
        assert modes["layer_on_artwork"] == modes["bg2fg"], family


def test_usable_modes_and_missing_names_for_a_real_base(models: Path) -> None:
    write_header_only(models / "checkpoints" / "rv.safetensors", checkpoint_shapes("sd15"))
    write_layer_file(models / "layer_model", "layer_sd15_transparent_attn")
    write_layer_file(models / "layer_model", "layer_sd15_vae_transparent_decoder")
    s = store(models)
    base = s.base("rv").model
    modes = s.usable_modes(base)
    assert modes["fg"] == []
    assert modes["joint"] == ["layer_sd15_joint.safetensors"]
    assert modes["img2img"] == ["layer_sd15_vae_transparent_encoder.safetensors"]
    files = s.resolve(base, "fg")
    assert {role: f.kind for role, f in files.items()} == {
        "attention_sharing": "layer_sd15_transparent_attn",
        "decoder": "layer_sd15_vae_transparent_decoder",
    }
    with pytest.raises(ModelNotFoundError) as info:
        s.resolve(base, "bg2fg")
    assert "layer_sd15_bg2fg.safetensors" in info.value.message
    assert str(models / "layer_model") in info.value.message


def test_sdxl_alternatives_preference_and_joint_refusal(models: Path) -> None:
    write_header_only(models / "checkpoints" / "xl.safetensors", checkpoint_shapes("sdxl"))
    write_layer_file(models / "layer_model", "ld_diffusers_sdxl_attn")
    write_layer_file(models / "layer_model", "ld_diffusers_sdxl_vae_transparent_decoder")
    s = store(models)
    base = s.base("xl").model
    files = s.resolve(base, "fg")
    assert files["unet_patch"].kind == "ld_diffusers_sdxl_attn"
    assert files["decoder"].kind == "ld_diffusers_sdxl_vae_transparent_decoder"
    assert "joint" not in s.usable_modes(base)
    with pytest.raises(InputError, match="no official SDXL joint model") as info:
        s.resolve(base, "joint")
    assert info.value.field == "mode"
    with pytest.raises(ModelNotFoundError) as missing:
        s.resolve(base, "fg2bg")
    assert "layer_xl_fg2ble.safetensors" in missing.value.message
    assert "layer_xl_fgble2bg.safetensors" in missing.value.message


def test_tiny_bases_use_only_tiny_files_and_real_only_real(models: Path) -> None:
    write_layer_file(models / "layer_model", "layer_sd15_transparent_attn")
    s = store(models)
    tiny = s.base("tiny-sd15").model
    files = s.resolve(tiny, "fg")
    assert all(f.tiny for f in files.values())
    assert files["attention_sharing"].path.parent.name == "layer_model"
    assert "tiny" in files["attention_sharing"].path.parts
    write_header_only(models / "checkpoints" / "rv.safetensors", checkpoint_shapes("sd15"))
    s.refresh()
    real = s.base("rv").model
    with pytest.raises(ModelNotFoundError, match="layer_sd15_vae_transparent_decoder"):
        s.resolve(real, "fg")  # the tiny decoder is there but never used for a real base


def test_explicit_override_files(models: Path, tmp_path: Path, tiny_models_dir: Path) -> None:
    s = store(models)
    base = s.base("tiny-sdxl").model
    conv = tmp_path / "my_patch.safetensors"
    shutil.copy(
        tiny_models_dir / "tiny" / "layer_model" / "layer_xl_transparent_conv.safetensors", conv
    )
    files = s.resolve(base, "fg", [conv])
    assert (
        files["unet_patch"].path == conv and files["unet_patch"].kind == "layer_xl_transparent_conv"
    )
    sd15_file = tiny_models_dir / "tiny" / "layer_model" / "layer_sd15_joint.safetensors"
    with pytest.raises(ModelFileError, match=r"SD1\.5 file"):
        s.resolve(base, "fg", [sd15_file])
    decoder = tiny_models_dir / "tiny" / "layer_model" / "vae_transparent_decoder.safetensors"
    with pytest.raises(InputError, match="not used by mode fg2bg"):
        s.resolve(base, "fg2bg", [decoder])
    ambiguous = tmp_path / "renamed.safetensors"
    shutil.copy(tiny_models_dir / "tiny" / "layer_model" / "layer_xl_fg2ble.safetensors", ambiguous)
    with pytest.raises(ModelFileError, match="explicitly"):
        s.resolve(base, "fg2bg", [ambiguous])
    files = s.resolve(base, "fg2bg", [(ambiguous, "layer_xl_fg2ble")])
    assert files["blend_patch"].path == ambiguous


# ---- ControlNets ------------------------------------------------------------------------------


def test_controlnet_default_prefers_the_control_kind(models: Path, tiny_models_dir: Path) -> None:
    source = tiny_models_dir / "tiny" / "controlnet" / "tiny-controlnet-sdxl"
    shutil.copytree(source, models / "controlnet" / "a-depth")
    shutil.copytree(source, models / "controlnet" / "b-canny")
    s = store(models)
    assert s.controlnet(None, "sdxl", "canny", tiny=True).name == "b-canny"
    assert s.controlnet(None, "sdxl", "depth", tiny=True).name == "a-depth"
    assert s.controlnet("tiny-controlnet-sdxl", "sdxl", tiny=True).source == "tiny"
    with pytest.raises(InputError, match="SDXL test ControlNet"):
        s.controlnet("b-canny", "sd15", tiny=True)
    with pytest.raises(ModelNotFoundError, match="no SDXL ControlNet"):
        s.controlnet(None, "sdxl", "canny", tiny=False)
    with pytest.raises(ModelNotFoundError, match="no ControlNet named"):
        s.controlnet("nope", "sdxl", tiny=True)


def test_controlnet_single_files_are_classified(models: Path, tmp_path: Path) -> None:
    from acetate.engine.store.family import detect_controlnet_file

    ldm = {
        "control_model.input_hint_block.0.weight": (16, 3, 3, 3),
        "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
    }
    assert (
        detect_controlnet_file(write_header_only(tmp_path / "a.safetensors", ldm)).family == "sd15"
    )
    sd2 = ldm | {
        "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024)
    }
    assert detect_controlnet_file(write_header_only(tmp_path / "b.safetensors", sd2)).family is None
    lora = {"lora_controlnet": (0,)}
    reason = detect_controlnet_file(write_header_only(tmp_path / "c.safetensors", lora)).reason
    assert "Control-LoRA" in (reason or "")


# ---- summary ----------------------------------------------------------------------------------


def test_describe_is_json_ready_and_lists_what_to_get(models: Path) -> None:
    import json

    write_header_only(models / "checkpoints" / "xl.safetensors", checkpoint_shapes("sdxl"))
    summary = json.loads(json.dumps(store(models).describe()))
    assert summary["default_base"] == "xl"
    xl = next(b for b in summary["bases"] if b["name"] == "xl")
    assert xl["modes"]["fg"] == [
        "layer_xl_transparent_attn.safetensors",
        "vae_transparent_decoder.safetensors",
    ]
    assert "joint" in xl["unsupported_modes"]
    tiny = next(b for b in summary["bases"] if b["name"] == "tiny-sd15")
    assert tiny["tiny"] and all(not missing for missing in tiny["modes"].values())
    get = summary["get"]["layer_xl_transparent_attn"]
    assert get["folder"] == str(models / "layer_model")
    assert get["url"].endswith(
        "LayerDiffusion/layerdiffusion-v1/resolve/main/layer_xl_transparent_attn.safetensors"
    )
    assert summary["warnings"] == []


def test_header_keys_for_clip_are_what_ldm_files_use() -> None:
    # the constants the synthetic files use are the ones diffusers' loader looks for
    from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES

    assert CHECKPOINT_KEY_NAMES["clip"] == CLIP_L


def test_explicit_paths_come_first(models: Path, tmp_path: Path, tiny_models_dir: Path) -> None:
    write_header_only(models / "checkpoints" / "b.safetensors", checkpoint_shapes("sd15"))
    elsewhere = write_header_only(tmp_path / "dl" / "mine.safetensors", checkpoint_shapes("sdxl"))
    write_header_only(tmp_path / "dl" / "other.safetensors", checkpoint_shapes("sdxl"))
    s = store(models)
    name = s.add_base(elsewhere)
    assert name == str(elsewhere)
    assert [b.name for b in s.bases() if not b.tiny] == [str(elsewhere), "b"]
    assert s.base().model.path == elsewhere  # first in discovery order: the default
    cn = tiny_models_dir / "tiny" / "controlnet" / "tiny-controlnet-sd15"
    assert s.controlnet(s.add_controlnet(cn), "sd15", tiny=True).path == cn
    with pytest.raises(ModelNotFoundError) as info:
        s.add_base(tmp_path / "nope.safetensors")
    assert info.value.field == "model"
    bad = write_header_only(tmp_path / "sd2.safetensors", sd2_unet_shapes())
    with pytest.raises(ModelFileError, match="SD2"):
        s.add_base(bad)


def test_diffusers_folders_are_judged_by_their_configs(models: Path, tiny_models_dir: Path) -> None:
    import json

    import torch

    from acetate.engine.store.family import detect_pipeline_folder
    from acetate.engine.store.models import load_base_pipeline

    source = tiny_models_dir / "tiny" / "checkpoints" / "tiny-sd15"

    def variant(name: str) -> Path:
        folder = models / "checkpoints" / name
        shutil.copytree(source, folder)
        return folder

    def edit(path: Path, **changes: object) -> None:
        path.write_text(json.dumps(json.loads(path.read_text()) | changes))

    v = variant("vpred")
    edit(v / "scheduler" / "scheduler_config.json", prediction_type="v_prediction")
    assert "v-prediction" in (detect_pipeline_folder(v).reason or "")
    sd2 = variant("sd2")
    edit(sd2 / "unet" / "config.json", cross_attention_dim=1024)
    assert "SD2" in (detect_pipeline_folder(sd2).reason or "")
    pickled = variant("pickled")
    (pickled / "unet" / "diffusion_pytorch_model.safetensors").rename(
        pickled / "unet" / "diffusion_pytorch_model.bin"
    )
    assert "pickle" in (detect_pipeline_folder(pickled).reason or "")
    half = variant("half")
    for weights in half.rglob("*.safetensors"):
        weights.rename(weights.with_name(weights.name.replace(".safetensors", ".fp16.safetensors")))
    s = store(models)
    assert [b.name for b in s.bases() if b.source == "models"] == ["half"]
    base = s.base("half").model
    assert base.variant == "fp16"
    assert load_base_pipeline(base, torch.float32).unet.dtype == torch.float32
