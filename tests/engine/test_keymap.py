"""LDM ↔ diffusers UNet key mapping: a bijection that agrees with diffusers' own converter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

from acetate.engine.nets.keymap import (
    diffusers_to_ldm_key,
    ldm_to_diffusers_key,
    strip_ldm_prefix,
)
from acetate.engine.tiny.bases import TINY_SD15, TINY_SDXL

MANIFESTS = Path(__file__).resolve().parents[1] / "data" / "manifests"

FULL_SDXL = dict(
    sample_size=128,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(5, 10, 20),
    transformer_layers_per_block=(1, 2, 10),
    use_linear_projection=True,
    cross_attention_dim=2048,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)
FULL_SD15 = dict(
    sample_size=64,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    attention_head_dim=8,
    cross_attention_dim=768,
)


@pytest.mark.parametrize("config", [TINY_SD15, TINY_SDXL, FULL_SD15, FULL_SDXL])
def test_mapping_is_a_bijection_over_every_key(config: dict) -> None:
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
    keys = list(unet.state_dict())
    ldm = [diffusers_to_ldm_key(key, unet.config) for key in keys]
    assert len(set(ldm)) == len(keys)
    assert [ldm_to_diffusers_key("diffusion_model." + k, unet.config) for k in ldm] == keys


@pytest.mark.parametrize("config", [TINY_SD15, TINY_SDXL])
def test_agrees_with_diffusers_ldm_converter(config: dict) -> None:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**config)
    ours = {
        "model.diffusion_model." + diffusers_to_ldm_key(key, unet.config): value
        for key, value in unet.state_dict().items()
    }
    theirs = convert_ldm_unet_checkpoint(ours, dict(unet.config))
    assert set(theirs) == set(unet.state_dict())
    for key, value in unet.state_dict().items():
        assert torch.equal(theirs[key], value), key


def test_full_sdxl_layout_matches_manifest_and_reference_examples() -> None:
    manifest = json.loads((MANIFESTS / "sdxl_unet_diffusers_keys.json").read_text())
    shapes = manifest.get("keys", manifest)
    with torch.device("meta"):
        unet = UNet2DConditionModel(**FULL_SDXL)
    assert {k: list(v.shape) for k, v in unet.state_dict().items()} == {
        k: list(v) for k, v in shapes.items()
    }
    cfg = unet.config
    assert (
        ldm_to_diffusers_key(
            "diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight", cfg
        )
        == "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    )
    assert ldm_to_diffusers_key("input_blocks.7.1.proj_in.weight", cfg).startswith(
        "down_blocks.2.attentions.0."
    )
    assert ldm_to_diffusers_key("input_blocks.8.1.proj_in.weight", cfg).startswith(
        "down_blocks.2.attentions.1."
    )
    assert ldm_to_diffusers_key("output_blocks.2.2.conv.weight", cfg) == (
        "up_blocks.0.upsamplers.0.conv.weight"
    )
    assert ldm_to_diffusers_key("input_blocks.6.0.op.weight", cfg) == (
        "down_blocks.1.downsamplers.0.conv.weight"
    )
    assert ldm_to_diffusers_key("label_emb.0.2.bias", cfg) == "add_embedding.linear_2.bias"
    assert ldm_to_diffusers_key("output_blocks.3.0.skip_connection.weight", cfg) == (
        "up_blocks.1.resnets.0.conv_shortcut.weight"
    )


@pytest.mark.parametrize(
    "key",
    [
        "diffusion_model.input_blocks.99.0.in_layers.0.weight",
        "diffusion_model.middle_block.3.in_layers.0.weight",
        "diffusion_model.output_blocks.0.0.bogus.weight",
        "first_stage_model.decoder.conv_in.weight",
    ],
)
def test_unknown_keys_raise(key: str) -> None:
    with torch.device("meta"):
        unet = UNet2DConditionModel(**FULL_SDXL)
    with pytest.raises(KeyError):
        ldm_to_diffusers_key(key, unet.config)


def test_strip_prefix() -> None:
    assert strip_ldm_prefix("model.diffusion_model.out.2.weight") == "out.2.weight"
    assert strip_ldm_prefix("diffusion_model.out.2.weight") == "out.2.weight"
    assert strip_ldm_prefix("out.2.weight") == "out.2.weight"
