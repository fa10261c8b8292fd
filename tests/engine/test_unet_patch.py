"""Official SDXL patch files on a tiny SDXL UNet: exact merge math, bit-exact removal, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from layer_files_helpers import (
    SDXL_KINDS,
    assert_state_equal,
    rewrite,
    sdxl_forward,
    state_copy,
    tiny_sd15,
    tiny_sdxl,
    write_files,
)
from safetensors.torch import load_file, save_file

from acetate.engine.nets.keymap import diffusers_to_ldm_key
from acetate.engine.nets.unet_patch import (
    active_patches,
    apply_unet_patch,
    load_unet_patch,
)
from acetate.errors import InputError, ModelFileError

TO_K = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"
ATTN_LDM = "diffusion_model.input_blocks.4.1.transformer_blocks.0"
TO_OUT = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0.weight"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_files(tmp_path_factory.mktemp("layers"))


@pytest.fixture
def sdxl() -> torch.nn.Module:
    return tiny_sdxl()


def _ldm(unet: torch.nn.Module, key: str) -> str:
    return "diffusion_model." + diffusers_to_ldm_key(key, unet.config)


@pytest.mark.parametrize("kind", SDXL_KINDS)
def test_patch_changes_output_and_removal_is_bit_exact(
    kind: str, files: dict[str, Path], sdxl: torch.nn.Module
) -> None:
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    before_state = state_copy(sdxl)
    before = sdxl_forward(sdxl, latents)
    patch = load_unet_patch(files[kind], sdxl.config)
    with apply_unet_patch(sdxl, patch, 1.0) as handle:
        assert active_patches(sdxl) == [handle]
        channels = sdxl.config.in_channels
        cond = torch.randn(2, channels - 4, 8, 8, generator=torch.Generator().manual_seed(1))
        patched = sdxl_forward(sdxl, torch.cat([latents, cond], 1))
    assert torch.isfinite(patched).all()
    assert (patched - before).abs().mean() > 0.05 * before.abs().mean()
    assert_state_equal(sdxl, before_state)
    assert sdxl.config.in_channels == 4 and sdxl.conv_in.in_channels == 4
    assert active_patches(sdxl) == []
    assert torch.equal(sdxl_forward(sdxl, latents), before)


@pytest.mark.parametrize("kind", ["layer_xl_transparent_attn", "layer_xl_fgble2bg"])
def test_fp16_unet_restores_bit_exactly(
    kind: str, files: dict[str, Path], sdxl: torch.nn.Module
) -> None:
    sdxl.half()
    before = state_copy(sdxl)
    patch = load_unet_patch(files[kind], sdxl.config)
    handle = apply_unet_patch(sdxl, patch, 1.3)
    assert all(value.dtype == torch.float16 for value in sdxl.state_dict().values())
    assert not torch.equal(sdxl.get_parameter(TO_OUT), before[TO_OUT])
    handle.remove()
    assert_state_equal(sdxl, before)


def test_merge_math_matches_forge_formula(files: dict[str, Path], sdxl: torch.nn.Module) -> None:
    before = state_copy(sdxl)
    lora = load_file(files["layer_xl_transparent_attn"])
    up, down = lora[f"{_ldm(sdxl, TO_K)}::lora::0"], lora[f"{_ldm(sdxl, TO_K)}::lora::1"]
    offsets = load_file(files["ld_diffusers_sdxl_attn"])
    strength = 0.7
    with apply_unet_patch(
        sdxl, load_unet_patch(files["layer_xl_transparent_attn"], sdxl.config), strength
    ):
        expected = before[TO_K] + strength * (up.float() @ down.float())
        assert torch.equal(sdxl.get_parameter(TO_K), expected)
    with apply_unet_patch(
        sdxl, load_unet_patch(files["ld_diffusers_sdxl_attn"], sdxl.config), strength
    ):
        expected = before[TO_K] + strength * offsets[TO_K].float()
        assert torch.equal(sdxl.get_parameter(TO_K), expected)


@pytest.mark.parametrize("kind", ["layer_xl_transparent_conv", "layer_xl_transparent_attn"])
def test_strength_scales_the_delta(
    kind: str, files: dict[str, Path], sdxl: torch.nn.Module
) -> None:
    patch = load_unet_patch(files[kind], sdxl.config)
    before = state_copy(sdxl)
    deltas = {}
    for strength in (0.0, 0.5, 1.0, 2.0):
        with apply_unet_patch(sdxl, patch, strength):
            deltas[strength] = {k: v - before[k] for k, v in sdxl.state_dict().items()}
    touched = [k for k, v in deltas[1.0].items() if v.abs().max() > 0]
    assert len(touched) >= len(patch.weights) - 2  # a couple of tiny deltas may round away
    for key in touched:
        assert torch.equal(deltas[0.0][key], torch.zeros_like(deltas[0.0][key]))
        torch.testing.assert_close(deltas[0.5][key], 0.5 * deltas[1.0][key], atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(deltas[2.0][key], 2.0 * deltas[1.0][key], atol=1e-6, rtol=1e-4)
    for bad in (-0.1, 2.5):
        with pytest.raises(InputError, match="layer_weight"):
            apply_unet_patch(sdxl, patch, bad)
    assert_state_equal(sdxl, before)


@pytest.mark.parametrize(("kind", "channels"), [("layer_xl_fg2ble", 8), ("layer_xl_bgble2fg", 12)])
def test_conditional_files_widen_conv_in(
    kind: str, channels: int, files: dict[str, Path], sdxl: torch.nn.Module
) -> None:
    original = sdxl.conv_in.weight
    diff = load_file(files[kind])[f"{_ldm(sdxl, 'conv_in.weight')}::diff::0"].float()
    patch = load_unet_patch(files[kind], sdxl.config)
    assert patch.conv_in_channels == channels
    latents = torch.randn(1, channels, 8, 8)
    with apply_unet_patch(sdxl, patch, 0.5):
        assert sdxl.config.in_channels == channels == sdxl.conv_in.in_channels
        weight = sdxl.conv_in.weight
        assert weight.shape[1] == channels
        assert torch.equal(weight[:, :4], original + 0.5 * diff[:, :4])
        assert torch.equal(weight[:, 4:], 0.5 * diff[:, 4:])  # new channels start at zero
        assert torch.isfinite(sdxl_forward(sdxl, latents)).all()
        with pytest.raises(RuntimeError):
            sdxl_forward(sdxl, latents[:, :4])
    assert sdxl.conv_in.weight is original
    sdxl_forward(sdxl, latents[:, :4])
    with pytest.raises(RuntimeError):
        sdxl_forward(sdxl, latents)


def test_one_unet_serves_several_modes_repeatedly(
    files: dict[str, Path], sdxl: torch.nn.Module
) -> None:
    before = state_copy(sdxl)
    patches = [load_unet_patch(files[k], sdxl.config) for k in SDXL_KINDS]
    first: dict[str, dict[str, torch.Tensor]] = {}
    for _ in range(2):
        for patch in patches:
            with apply_unet_patch(sdxl, patch, 1.0):
                state = state_copy(sdxl)
                if patch.name in first:  # applying again gives the very same weights
                    assert_state_equal(sdxl, first[patch.name])
                first[patch.name] = state
    assert_state_equal(sdxl, before)


def test_stacked_patches_come_off_in_reverse_order(
    files: dict[str, Path], sdxl: torch.nn.Module
) -> None:
    before = state_copy(sdxl)
    conv = apply_unet_patch(sdxl, load_unet_patch(files["layer_xl_fgble2bg"], sdxl.config))
    attn = apply_unet_patch(sdxl, load_unet_patch(files["layer_xl_transparent_attn"], sdxl.config))
    with pytest.raises(RuntimeError, match="layer_xl_transparent_attn"):
        conv.remove()
    attn.remove()
    conv.remove()
    conv.remove()  # idempotent
    assert_state_equal(sdxl, before)
    assert sdxl.config.in_channels == 4


def test_lora_factors_are_told_apart_by_shape(
    files: dict[str, Path], sdxl: torch.nn.Module, tmp_path: Path
) -> None:
    """Some converters swap the slots; and `model.diffusion_model.` is accepted as a prefix."""
    tensors = load_file(files["layer_xl_transparent_attn"])
    swapped = {}
    for key, value in tensors.items():
        target, _, slot = key.rpartition("::")
        swapped[f"model.{target}::{1 - int(slot)}"] = value
    save_file(swapped, tmp_path / "swapped.safetensors")
    reference = load_unet_patch(files["layer_xl_transparent_attn"], sdxl.config)
    converted = load_unet_patch(tmp_path / "swapped.safetensors", sdxl.config)
    with apply_unet_patch(sdxl, reference):
        expected = state_copy(sdxl)
    with apply_unet_patch(sdxl, converted):
        assert_state_equal(sdxl, expected)


def test_conv_file_maps_time_and_label_embeddings(
    files: dict[str, Path], sdxl: torch.nn.Module
) -> None:
    patch = load_unet_patch(files["layer_xl_transparent_conv"], sdxl.config)
    assert {"time_embedding.linear_1.weight", "add_embedding.linear_2.bias"} <= set(patch.weights)
    assert not any(
        key.endswith(("to_q.weight", "to_k.weight", "to_v.weight")) for key in patch.weights
    )


@pytest.mark.parametrize(
    ("kind", "edit", "named"),
    [
        # extra key with no place in the UNet
        (
            "layer_xl_transparent_conv",
            {"diffusion_model.input_blocks.99.0.in_layers.0.weight::diff::0": torch.zeros(3)},
            "input_blocks.99",
        ),
        # a key of another model
        (
            "layer_xl_transparent_conv",
            {"first_stage_model.decoder.conv_in.weight::diff::0": torch.zeros(3)},
            "first_stage_model",
        ),
        # mis-shaped diff
        (
            "layer_xl_transparent_conv",
            {"diffusion_model.out.2.weight::diff::0": torch.zeros(4, 32, 1, 1)},
            "out.2.weight",
        ),
        # missing LoRA factor
        ("layer_xl_transparent_attn", {f"{ATTN_LDM}.attn2.to_k.weight::lora::1": None}, "to_k"),
        # mis-shaped LoRA factor
        (
            "layer_xl_transparent_attn",
            {f"{ATTN_LDM}.attn1.to_q.weight::lora::0": torch.zeros(5, 4)},
            "attn1.to_q.weight",
        ),
        # unknown patch type and a plain key among Forge keys
        (
            "layer_xl_transparent_conv",
            {"diffusion_model.out.2.bias::lokr::0": torch.zeros(4)},
            "out.2.bias::lokr",
        ),
        ("layer_xl_transparent_conv", {"conv_out.bias": torch.zeros(4)}, "conv_out.bias"),
        # the same parameter twice (both prefixes)
        (
            "layer_xl_transparent_conv",
            {"model.diffusion_model.out.2.bias::diff::0": torch.zeros(4)},
            "out.2.bias",
        ),
        # diffusers-keyed offsets: unknown and mis-shaped keys
        (
            "ld_diffusers_sdxl_attn",
            {"down_blocks.9.attn1.to_q.weight": torch.zeros(2, 2)},
            "down_blocks.9",
        ),
        ("ld_diffusers_sdxl_attn", {TO_K: torch.zeros(64, 64)}, TO_K),
    ],
)
def test_bad_keys_are_refused_by_name(
    kind: str, edit: dict, named: str, files: dict[str, Path], sdxl: torch.nn.Module, tmp_path: Path
) -> None:
    path = rewrite(files[kind], tmp_path / f"{kind}.safetensors", edit)
    with pytest.raises(ModelFileError, match=named.replace(".", r"\.")):
        load_unet_patch(path, sdxl.config)


def test_damaged_or_empty_files_are_refused(
    files: dict[str, Path], sdxl: torch.nn.Module, tmp_path: Path
) -> None:
    data = files["layer_xl_fg2ble"].read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    save_file({}, tmp_path / "empty.safetensors")
    for name in ("cut.safetensors", "empty.safetensors", "missing.safetensors"):
        with pytest.raises(ModelFileError, match=name):
            load_unet_patch(tmp_path / name, sdxl.config)


def test_a_patch_for_another_unet_is_refused(files: dict[str, Path]) -> None:
    sd15 = tiny_sd15()
    with pytest.raises(ModelFileError):
        load_unet_patch(files["layer_xl_transparent_conv"], sd15.config)


def test_inference_mode_and_grad_enabled_unets(files: dict[str, Path]) -> None:
    """Weights made in inference mode can be patched; a widened conv_in still runs with grad."""
    with torch.inference_mode():
        frozen = tiny_sdxl()
    before = state_copy(frozen)
    with apply_unet_patch(frozen, load_unet_patch(files["layer_xl_fg2ble"], frozen.config)):
        pass
    assert_state_equal(frozen, before)
    trainable = tiny_sdxl().requires_grad_(True)
    with apply_unet_patch(trainable, load_unet_patch(files["layer_xl_fg2ble"], trainable.config)):
        assert trainable.conv_in.weight.requires_grad
        out = trainable(
            torch.randn(1, 8, 8, 8),
            10,
            torch.randn(1, 7, 80),
            added_cond_kwargs={"text_embeds": torch.randn(1, 32), "time_ids": torch.randn(1, 6)},
        ).sample
        out.mean().backward()
        assert trainable.conv_in.weight.grad is not None
