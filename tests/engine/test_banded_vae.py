"""The banded VAE decode equals diffusers' own decode, for SD1.5- and SDXL-shaped VAEs."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL

from acetate.engine.nets import banded_vae


def _vae(seed: int, **config: object) -> AutoencoderKL:
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=(32, 32, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        norm_num_groups=8,
        **config,
    ).eval()
    with torch.no_grad():  # non-trivial norms, so wrong statistics would show
        for module in vae.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    return vae


@pytest.mark.parametrize("rows", [1, 3, 64])
@pytest.mark.parametrize("size", [(4, 4), (5, 7)])
def test_banded_decode_matches_the_plain_decode(
    monkeypatch: pytest.MonkeyPatch, rows: int, size: tuple[int, int]
) -> None:
    monkeypatch.setattr(banded_vae, "BANDED_FROM_BYTES", 1)  # every stage in bands
    monkeypatch.setattr(banded_vae, "ROWS_PER_BAND", rows)
    vae = _vae(0)
    assert banded_vae.supports_banding(vae.decoder)
    latents = torch.randn(2, 4, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        plain = vae.decode(latents).sample
        banded = banded_vae.vae_decode(vae, latents)
    assert banded.shape == plain.shape == (2, 3, size[0] * 8, size[1] * 8)
    assert (banded - plain).abs().max().item() < 1e-5


def test_small_images_and_tiling_take_the_plain_path(monkeypatch: pytest.MonkeyPatch) -> None:
    vae = _vae(2)
    latents = torch.randn(1, 4, 4, 4)
    calls: list[str] = []
    monkeypatch.setattr(banded_vae, "_resnet", lambda *a: calls.append("banded"))
    with torch.inference_mode():
        plain = vae.decode(latents).sample
        assert torch.equal(banded_vae.vae_decode(vae, latents), plain)  # below the threshold
        vae.enable_tiling()
        banded_vae.vae_decode(vae, latents)
    assert calls == []


def test_unknown_block_types_are_not_banded() -> None:
    vae = _vae(3)
    vae.decoder.conv_act = torch.nn.GELU()
    assert not banded_vae.supports_banding(vae.decoder)
