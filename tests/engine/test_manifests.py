"""Full-size layouts against the reference manifests, on the meta device and header-only files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from layer_files_helpers import write_sparse
from test_keymap import FULL_SD15, FULL_SDXL, MANIFESTS

from acetate.engine.nets.attention_sharing import (
    OFFICIAL_LAYERS,
    AttentionSharing,
    attention_module_names,
)
from acetate.engine.nets.keymap import diffusers_to_ldm_key
from acetate.engine.nets.unet_patch import ATTENTION_TARGET, QKV_WEIGHT, plan_unet_patch
from acetate.engine.store.identify import full_size_params, identify_layer_file, verify_full_size
from acetate.errors import ModelFileError

SHARING = {
    "layer_sd15_transparent_attn": (1, False),
    "layer_sd15_joint": (3, False),
    "layer_sd15_fg2bg": (2, True),
    "layer_sd15_bg2fg": (2, True),
}


def _manifest(name: str) -> dict:
    return json.loads((MANIFESTS / name).read_text())


def _shapes(manifest: dict) -> dict[str, tuple[int, ...]]:
    return {key: tuple(shape) for key, shape in manifest.items()}


@pytest.fixture(scope="module")
def sd15() -> UNet2DConditionModel:
    with torch.device("meta"):
        return UNet2DConditionModel(**FULL_SD15)


@pytest.fixture(scope="module")
def sdxl() -> UNet2DConditionModel:
    with torch.device("meta"):
        return UNet2DConditionModel(**FULL_SDXL)


def _ldm(unet: UNet2DConditionModel, key: str) -> str:
    return "diffusion_model." + diffusers_to_ldm_key(key, unet.config)


@pytest.mark.parametrize("kind", sorted(SHARING))
def test_attention_sharing_layout_equals_manifest(
    kind: str, sd15: UNet2DConditionModel, tmp_path: Path
) -> None:
    manifest = _manifest(f"{kind}.expected.json")
    frames, control = SHARING[kind]
    model = AttentionSharing.for_unet(sd15, frames, control)
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert shapes == _shapes(manifest["keys"])
    assert list(shapes) == list(manifest["keys"])  # also the official definition order
    assert sum(v.numel() for v in model.state_dict().values()) == manifest["num_params"]
    assert full_size_params(kind) == manifest["num_params"]
    identity = identify_layer_file(write_sparse(tmp_path / f"{kind}.safetensors", shapes))
    assert (identity.kind, identity.tiny, identity.frames) == (kind, False, frames)
    verify_full_size(identity)


def test_attention_sharing_layer_order_equals_manifest(sd15: UNet2DConditionModel) -> None:
    manifest = _manifest("sd15_attention_sharing_layer_index_map.json")
    assert list(OFFICIAL_LAYERS) == [manifest[str(i)]["ldm"] for i in range(32)]
    assert attention_module_names(sd15.config) == [manifest[str(i)]["diffusers"] for i in range(32)]


def test_full_size_refusals_name_the_key(sd15: UNet2DConditionModel, tmp_path: Path) -> None:
    shapes = _shapes(_manifest("layer_sd15_joint.expected.json")["keys"])
    wrong = dict(shapes, **{"hookers.layers.13.to_k_lora.2.down.weight": (256, 1024)})
    path = write_sparse(tmp_path / "layer_sd15_joint.safetensors", wrong)
    with pytest.raises(ModelFileError, match=r"hookers\.layers\.13\.to_k_lora\.2\.down\.weight"):
        verify_full_size(path)


def test_sdxl_attention_lora_targets_map_completely(
    sdxl: UNet2DConditionModel, tmp_path: Path
) -> None:
    manifest = _manifest("sdxl_attn_lora_targets.expected.json")
    params = {k: tuple(v.shape) for k, v in sdxl.state_dict().items()}
    assert {k for k in params if ATTENTION_TARGET.search(k)} == set(manifest["targets"])
    header = {}
    for key, factors in manifest["lora_factors"].items():
        assert params[key] == tuple(manifest["targets"][key])
        header[f"{_ldm(sdxl, key)}::lora::0"] = tuple(factors["up (Forge ::lora::0)"])
        header[f"{_ldm(sdxl, key)}::lora::1"] = tuple(factors["down (Forge ::lora::1)"])
    plan = plan_unet_patch(header, sdxl.config, "layer_xl_transparent_attn")
    assert {p.key for p in plan} == set(manifest["targets"]) and len(plan) == 560
    assert all(p.kind == "lora" and p.sources[0].endswith("::lora::0") for p in plan)
    total = sum(s[0] * s[1] for s in header.values())
    assert full_size_params("layer_xl_transparent_attn") == total
    identity = identify_layer_file(write_sparse(tmp_path / "x.safetensors", header))
    assert (identity.kind, identity.tiny) == ("layer_xl_transparent_attn", False)
    verify_full_size(identity)


@pytest.mark.parametrize(
    ("kind", "channels"),
    [
        ("layer_xl_transparent_conv", 4),
        ("layer_xl_fg2ble", 8),
        ("layer_xl_bg2ble", 8),
        ("layer_xl_fgble2bg", 12),
        ("layer_xl_bgble2fg", 12),
    ],
)
def test_sdxl_diff_files_map_completely(
    kind: str, channels: int, sdxl: UNet2DConditionModel, tmp_path: Path
) -> None:
    """Forge diff keys for every non-q/k/v weight of the manifest UNet, conv_in widened."""
    manifest = _shapes(_manifest("sdxl_unet_diffusers_keys.json"))
    header = {}
    for key, shape in manifest.items():
        if QKV_WEIGHT.search(key):
            continue
        if key == "conv_in.weight":
            shape = (shape[0], channels, *shape[2:])
        header[f"{_ldm(sdxl, key)}::diff::0"] = shape
    plan = plan_unet_patch(header, sdxl.config, kind)
    assert len(plan) == len(header) and all(p.kind == "diff" for p in plan)
    assert any(p.key.startswith("add_embedding.") for p in plan)
    identity = identify_layer_file(write_sparse(tmp_path / f"{kind}.safetensors", header))
    assert (identity.kind, identity.conv_in_channels, identity.tiny) == (kind, channels, False)
    verify_full_size(identity)
    if channels == 4:
        assert full_size_params(kind) == sum(torch.Size(s).numel() for s in header.values())


def test_sdxl_diffusers_offsets_map_completely(sdxl: UNet2DConditionModel, tmp_path: Path) -> None:
    targets = _shapes(_manifest("sdxl_attn_lora_targets.expected.json")["targets"])
    path = write_sparse(tmp_path / "ld_diffusers_sdxl_attn.safetensors", targets)
    identity = identify_layer_file(path)
    assert (identity.kind, identity.tiny) == ("ld_diffusers_sdxl_attn", False)
    verify_full_size(identity)
    bad = dict(
        targets, **{"mid_block.attentions.0.transformer_blocks.3.attn2.to_v.weight": (1280, 768)}
    )
    with pytest.raises(ModelFileError, match=re.escape("transformer_blocks.3.attn2.to_v.weight")):
        verify_full_size(write_sparse(tmp_path / "ld_diffusers_sdxl_attn.safetensors", bad))


@pytest.mark.parametrize(
    ("manifest", "kind"),
    [
        ("vae_transparent_decoder.json", "vae_transparent_decoder"),
        ("vae_transparent_encoder.json", "layer_sd15_vae_transparent_encoder"),
        ("vae_transparent_encoder.json", "ld_diffusers_sdxl_vae_transparent_encoder"),
    ],
)
def test_transparent_vae_manifests(manifest: str, kind: str, tmp_path: Path) -> None:
    data = _manifest(manifest)
    path = write_sparse(tmp_path / f"{kind}.safetensors", _shapes(data["keys"]))
    identity = identify_layer_file(path)
    assert (identity.kind, identity.tiny) == (kind, False)
    assert full_size_params(kind) == data["num_params"] == identity.num_params
    verify_full_size(identity)
