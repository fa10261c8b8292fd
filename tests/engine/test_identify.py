"""Identification of official LayerDiffusion files from their headers (and official names)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from layer_files_helpers import rewrite, tiny_unets, write_files
from safetensors.torch import save_file

from acetate.engine.nets.transparent_vae import write_tiny_transparent_files
from acetate.engine.store.identify import (
    KINDS,
    LD_DIFFUSERS_ENCODER_SCALE,
    describe,
    identify_layer_file,
    verify_full_size,
)
from acetate.engine.tiny.layers import write_tiny_layer_files
from acetate.errors import ModelFileError

# kind → (family, role, frames, use_control, conv_in_channels)
EXPECTED = {
    "layer_xl_transparent_attn": ("sdxl", "unet_patch", None, None, None),
    "layer_xl_transparent_conv": ("sdxl", "unet_patch", None, None, 4),
    "layer_xl_fg2ble": ("sdxl", "unet_patch", None, None, 8),
    "layer_xl_bg2ble": ("sdxl", "unet_patch", None, None, 8),
    "layer_xl_fgble2bg": ("sdxl", "unet_patch", None, None, 12),
    "layer_xl_bgble2fg": ("sdxl", "unet_patch", None, None, 12),
    "ld_diffusers_sdxl_attn": ("sdxl", "unet_patch", None, None, None),
    "layer_sd15_transparent_attn": ("sd15", "attention_sharing", 1, False, None),
    "layer_sd15_joint": ("sd15", "attention_sharing", 3, False, None),
    "layer_sd15_fg2bg": ("sd15", "attention_sharing", 2, True, None),
    "layer_sd15_bg2fg": ("sd15", "attention_sharing", 2, True, None),
    "vae_transparent_decoder": ("sdxl", "transparent_decoder", None, None, None),
    "vae_transparent_encoder": ("sdxl", "transparent_encoder", None, None, None),
    "layer_sd15_vae_transparent_decoder": ("sd15", "transparent_decoder", None, None, None),
    "layer_sd15_vae_transparent_encoder": ("sd15", "transparent_encoder", None, None, None),
    "ld_diffusers_sdxl_vae_transparent_decoder": ("sdxl", "transparent_decoder", None, None, None),
    "ld_diffusers_sdxl_vae_transparent_encoder": ("sdxl", "transparent_encoder", None, None, None),
}
#: Files whose header is shared with a sibling: only the name (or kind=) tells them apart.
ATTN = "input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight"
AMBIGUOUS = {
    "layer_xl_fg2ble",
    "layer_xl_bg2ble",
    "layer_xl_fgble2bg",
    "layer_xl_bgble2fg",
    "layer_sd15_fg2bg",
    "layer_sd15_bg2fg",
    *(kind for kind in KINDS if "vae_transparent" in kind),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("layers")
    found = write_files(folder)
    found.update({path.stem: path for path in write_tiny_transparent_files(folder)})
    return found


def test_every_kind_has_a_tiny_file() -> None:
    assert set(EXPECTED) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_tiny_files_identify(kind: str, files: dict[str, Path]) -> None:
    identity = identify_layer_file(files[kind])
    family, role, frames, control, channels = EXPECTED[kind]
    assert identity.kind == kind
    assert (identity.family, identity.role) == (family, role) == KINDS[kind]
    assert (identity.frames, identity.use_control, identity.conv_in_channels) == (
        frames,
        control,
        channels,
    )
    assert identity.tiny
    assert identity.num_params > 0
    scale = LD_DIFFUSERS_ENCODER_SCALE if kind == "ld_diffusers_sdxl_vae_transparent_encoder" else 1
    assert identity.encoder_offset_scale == scale
    assert describe(identity)["kind"] == kind


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_renamed_files(kind: str, files: dict[str, Path], tmp_path: Path) -> None:
    renamed = shutil.copy(files[kind], tmp_path / "my_layer_model.safetensors")
    if kind in AMBIGUOUS:
        with pytest.raises(ModelFileError, match="official file name"):
            identify_layer_file(renamed)
    else:
        assert identify_layer_file(renamed).kind == kind
    assert identify_layer_file(renamed, kind=kind).kind == kind


def test_wrong_names_and_kinds_are_refused(files: dict[str, Path], tmp_path: Path) -> None:
    misnamed = shutil.copy(
        files["layer_xl_transparent_attn"], tmp_path / "layer_sd15_joint.safetensors"
    )
    with pytest.raises(ModelFileError, match="layer_xl_transparent_attn"):
        identify_layer_file(misnamed)
    with pytest.raises(ModelFileError, match="not layer_xl_fg2ble"):
        identify_layer_file(files["layer_xl_fgble2bg"], kind="layer_xl_fg2ble")
    with pytest.raises(ModelFileError, match="unknown layer file kind"):
        identify_layer_file(files["layer_xl_fgble2bg"], kind="layer_xl_nonsense")


def test_encoder_offset_scale_override(files: dict[str, Path]) -> None:
    path = files["ld_diffusers_sdxl_vae_transparent_encoder"]
    assert identify_layer_file(path, encoder_offset_scale=1.0).encoder_offset_scale == 1.0
    path = files["vae_transparent_encoder"]
    assert identify_layer_file(path, encoder_offset_scale=300).encoder_offset_scale == 300.0


def test_header_only(files: dict[str, Path], tmp_path: Path) -> None:
    """Garbage in the tensor data does not matter: only names and shapes are read."""
    data = bytearray(files["layer_sd15_joint"].read_bytes())
    header_end = 8 + int.from_bytes(data[:8], "little")
    data[header_end:] = b"\xff" * (len(data) - header_end)
    (tmp_path / "layer_sd15_joint.safetensors").write_bytes(bytes(data))
    assert identify_layer_file(tmp_path / "layer_sd15_joint.safetensors").kind == "layer_sd15_joint"


@pytest.mark.parametrize(
    ("kind", "edit", "message"),
    [
        ("layer_sd15_joint", {"hookers.layers.9.temporal_v.weight": None}, "temporal_v.weight"),
        ("layer_sd15_fg2bg", {"hookers.layers.0.to_q_lora.0.up.weight": None}, "to_q_lora.0.up"),
        (
            "layer_xl_transparent_attn",
            {f"diffusion_model.{ATTN}::lora::1": None},
            f"{ATTN}::lora has slots [0]",
        ),
        ("vae_transparent_encoder", {"blocks.14.bias": None}, "blocks.14.bias"),
        ("vae_transparent_decoder", {"up_blocks.2.attentions.0.to_q.weight": None}, "to_q"),
        ("vae_transparent_decoder", {"conv_out.weight": None}, "conv_out.weight"),
    ],
)
def test_damaged_files_are_refused(
    kind: str, edit: dict, message: str, files: dict[str, Path], tmp_path: Path
) -> None:
    path = rewrite(files[kind], tmp_path / f"{kind}.safetensors", edit)
    with pytest.raises(ModelFileError, match=re.escape(message)):
        identify_layer_file(path)


def test_unknown_truncated_and_pickle_files_are_refused(
    files: dict[str, Path], tmp_path: Path
) -> None:
    save_file({"model.weight": torch.zeros(2)}, tmp_path / "other.safetensors")
    save_file({}, tmp_path / "empty.safetensors")
    data = files["layer_xl_fg2ble"].read_bytes()
    (tmp_path / "layer_xl_fg2ble.safetensors").write_bytes(data[:100])
    (tmp_path / "layer_sd15_joint.safetensors").write_bytes(data[: len(data) - 10])
    (tmp_path / "layer_xl_bg2ble.safetensors").write_bytes(b"\x80\x02}q\x00." * 20)  # pickle
    for name, message in [
        ("other", "not an official LayerDiffusion file"),
        ("empty", "no tensors"),
        ("layer_xl_fg2ble", "not a readable safetensors file"),
        ("layer_sd15_joint", "not a readable safetensors file"),
        ("layer_xl_bg2ble", "not a readable safetensors file"),
        ("absent", "no such file"),
    ]:
        with pytest.raises(ModelFileError, match=message):
            identify_layer_file(tmp_path / f"{name}.safetensors")


@pytest.mark.parametrize(
    "kind", ["layer_xl_transparent_conv", "layer_sd15_bg2fg", "vae_transparent_decoder"]
)
def test_tiny_files_are_not_full_size(kind: str, files: dict[str, Path]) -> None:
    with pytest.raises(ModelFileError, match="key"):
        verify_full_size(files[kind])


def test_tiny_writer_is_deterministic_and_atomic(files: dict[str, Path], tmp_path: Path) -> None:
    again = write_files(tmp_path / "again")
    assert sorted(again) == sorted(k for k in files if not k.endswith(("encoder", "decoder")))
    for kind, path in again.items():
        assert path.read_bytes() == files[kind].read_bytes(), kind
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == sorted(
        f"{kind}.safetensors" for kind in again
    )  # no temporary files left behind
    sd15, sdxl = tiny_unets()
    other = write_tiny_layer_files(tmp_path / "seed1", sd15, sdxl, seed=1)
    assert all(p.read_bytes() != again[p.stem].read_bytes() for p in other)
