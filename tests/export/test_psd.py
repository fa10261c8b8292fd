"""Layered PSD read back with psd-tools; the merged composite against Pillow's alpha_composite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms
from psd_tools import PSDImage
from psd_tools.constants import Resource

from acetate.export.psd import PsdGroup, PsdLayer, build_psd, composite, srgb_profile, write_psd

CANVAS = (96, 64)


def reference_composite(canvas: tuple[int, int], layers: list[PsdLayer]) -> np.ndarray:
    """Pillow's own straight-alpha "over", on a canvas padded so that every layer fits."""
    pad = max(max(abs(layer.left), abs(layer.top)) + max(layer.rgba.shape) for layer in layers)
    width, height = canvas
    big = Image.new("RGBA", (width + 2 * pad, height + 2 * pad), (0, 0, 0, 0))
    for layer in layers:
        if layer.visible:
            big.alpha_composite(Image.fromarray(layer.rgba), (layer.left + pad, layer.top + pad))
    return np.asarray(big)[pad : pad + height, pad : pad + width]


def assert_same_pixels(ours: np.ndarray, reference: np.ndarray) -> None:
    """Alpha within 1; colour within 1 after weighting by alpha (colour under alpha 0 is free)."""
    ours16, ref16 = ours.astype(np.int32), reference.astype(np.int32)
    assert np.abs(ours16[..., 3] - ref16[..., 3]).max(initial=0) <= 1
    weight = ref16[..., 3:] / 255.0
    assert (np.abs(ours16[..., :3] - ref16[..., :3]) * weight).max(initial=0) <= 1.0


@pytest.fixture
def groups(noisy_rgba, opaque_rgba) -> list[PsdGroup]:
    """Two result sets as the server writes them, with Unicode names and layers past the edges."""
    return [
        PsdGroup(
            "ガラスの猫 glass cat, café #1",
            [
                PsdLayer("background", opaque_rgba(64, 96)),
                PsdLayer("foreground", noisy_rgba(40, 30), left=70, top=-10),  # past right/top
                PsdLayer("blended", opaque_rgba(64, 96), visible=False),
            ],
        ),
        PsdGroup(
            "ガラスの猫 glass cat, café #2",
            [
                PsdLayer("前景 ✓", noisy_rgba(50, 40), left=-12, top=30),  # past left/bottom
                PsdLayer("outside", noisy_rgba(8, 8), left=200, top=5),  # entirely off-canvas
            ],
        ),
    ]


def test_psd_tools_reads_back_everything(tmp_path: Path, groups):
    path = tmp_path / "layers.psd"
    write_psd(path, CANVAS, groups)
    psd = PSDImage.open(path)
    assert (psd.width, psd.height) == CANVAS
    assert [group.name for group in psd] == [group.name for group in groups]
    for read_group, group in zip(psd, groups, strict=True):
        assert read_group.is_group()
        assert read_group.visible
        assert len(read_group) == len(group.layers)
        for read, layer in zip(read_group, group.layers, strict=True):
            assert read.kind == "pixel"
            assert read.name == layer.name
            assert (read.left, read.top) == (layer.left, layer.top)
            assert (read.width, read.height) == (layer.rgba.shape[1], layer.rgba.shape[0])
            assert read.visible == layer.visible
            assert read.opacity == 255
            pixels = np.asarray(read.topil(apply_icc=False))
            assert np.array_equal(pixels, layer.rgba), layer.name  # straight alpha, exact


def test_legacy_names_fall_back_to_mac_roman(tmp_path: Path, groups):
    path = tmp_path / "layers.psd"
    write_psd(path, CANVAS, groups)
    records = PSDImage.open(path)._record.layer_and_mask_information.layer_info.layer_records
    legacy = {record.name for record in records}
    assert "????? glass cat, café #1" in legacy  # MacRoman keeps é, the rest becomes ?
    assert "background" in legacy


def test_srgb_profile_is_embedded_byte_exact(tmp_path: Path, groups):
    path = tmp_path / "layers.psd"
    write_psd(path, CANVAS, groups)
    icc = PSDImage.open(path).image_resources.get_data(Resource.ICC_PROFILE)
    assert icc == srgb_profile()
    profile = ImageCms.ImageCmsProfile(__import__("io").BytesIO(icc))
    assert "sRGB" in ImageCms.getProfileDescription(profile)


def test_composite_matches_pillow(groups):
    layers = [layer for group in groups for layer in group.layers]
    ours = composite(CANVAS, layers)
    assert_same_pixels(ours, reference_composite(CANVAS, layers))
    hidden_on_top = [
        *layers,
        PsdLayer("hidden", np.full((64, 96, 4), 255, np.uint8), visible=False),
    ]
    assert np.array_equal(composite(CANVAS, hidden_on_top), ours)


def test_stored_merged_image(tmp_path: Path, groups):
    """Photoshop's convention: 4th channel is transparency, colour matted against white."""
    path = tmp_path / "layers.psd"
    transparent = groups[1:]  # no opaque background: the merged alpha varies
    write_psd(path, CANVAS, transparent)
    psd = PSDImage.open(path)
    assert psd._record.layer_and_mask_information.layer_info.layer_count < 0
    planes = psd._record.image_data.get_data(psd._record.header)
    stored = np.stack(
        [np.frombuffer(plane, np.uint8).reshape(CANVAS[1], CANVAS[0]) for plane in planes], -1
    )
    expected = reference_composite(CANVAS, list(transparent[0].layers))
    assert 0 < expected[..., 3].mean() < 255
    alpha = expected[..., 3:] / 255.0
    matted = expected[..., :3] * alpha + 255.0 * (1.0 - alpha)
    assert np.abs(stored[..., 3].astype(int) - expected[..., 3]).max() <= 1
    assert np.abs(stored[..., :3] - matted).max() <= 1.5
    # psd-tools' own renderer of the layers agrees…
    rendered = np.asarray(psd.composite(force=True, apply_icc=False))
    assert_same_pixels(rendered, expected)
    # …and its reader un-mattes the stored image (8 bits: precise only where alpha is high).
    unmatted = np.asarray(psd.topil(apply_icc=False)).astype(int)
    assert np.abs(unmatted[..., 3] - expected[..., 3]).max() <= 1
    visible = expected[..., 3] >= 32
    assert np.abs(unmatted[..., :3] - expected[..., :3])[visible].max() <= 4


@settings(max_examples=40, deadline=None)
@given(
    layers=st.lists(
        st.tuples(
            st.integers(1, 12),  # height
            st.integers(1, 12),  # width
            st.integers(-14, 20),  # left
            st.integers(-14, 20),  # top
            st.booleans(),  # visible
            st.sampled_from(["noise", "opaque", "sparse"]),
            st.integers(0, 2**32 - 1),  # pixel seed
        ),
        min_size=1,
        max_size=4,
    ),
    canvas=st.tuples(st.integers(1, 16), st.integers(1, 16)),
)
def test_composite_property(layers, canvas):
    specs = []
    for height, width, left, top, visible, kind, seed in layers:
        rng = np.random.default_rng(seed)
        rgba = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
        if kind == "opaque":
            rgba[..., 3] = 255
        elif kind == "sparse":  # transparent but for a few pixels: exercises the cropping
            rgba[..., 3] *= rng.random((height, width)) < 0.1
        specs.append(PsdLayer("l", rgba, left, top, visible))
    assert_same_pixels(composite(canvas, specs), reference_composite(canvas, specs))


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="canvas"):
        build_psd((0, 10), [])
    with pytest.raises(ValueError, match="canvas"):
        build_psd((30001, 1), [])  # beyond PSD (would need PSB)
    bad = PsdLayer("rgb", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="rgb"):
        build_psd((10, 10), [PsdGroup(None, [bad])])


def test_long_names_are_cut_to_what_photoshop_keeps(tmp_path: Path, noisy_rgba):
    path = tmp_path / "long.psd"
    name = "é" * 300
    write_psd(path, (4, 4), [PsdGroup(name, [PsdLayer(name, noisy_rgba(4, 4))])])
    psd = PSDImage.open(path)
    assert psd[0].name == psd[0][0].name == "é" * 255


def test_top_level_layers_without_group(tmp_path: Path, noisy_rgba):
    path = tmp_path / "plain.psd"
    rgba = noisy_rgba(5, 7)
    write_psd(path, (7, 5), [PsdGroup(None, [PsdLayer("only", rgba)])])
    psd = PSDImage.open(path)
    assert [(layer.kind, layer.name) for layer in psd] == [("pixel", "only")]
    assert np.array_equal(np.asarray(psd[0].topil(apply_icc=False)), rgba)
