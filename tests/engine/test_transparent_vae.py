"""Transparent decoder/encoder: official layouts, strict loading, TTA semantics, the codec."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from safetensors.torch import load_file, save_file

from acetate.engine.nets.rgb_padding import pad_rgb
from acetate.engine.nets.transparency_codec import (
    TTA_VIEWS,
    decode_rgba,
    decode_transparent,
    encode_offset,
    encode_transparent,
    rgba_tensor_to_uint8,
    rgba_uint8_to_tensor,
    tta_median,
)
from acetate.engine.nets.transparent_vae import (
    TINY_FILE_NAMES,
    TransparentDecoder,
    TransparentEncoder,
    load_transparent_decoder,
    load_transparent_encoder,
    random_transparent_encoder,
    write_tiny_transparent_files,
)
from acetate.errors import InputError, ModelFileError, ModelNotFoundError

MANIFESTS = Path(__file__).resolve().parents[1] / "data" / "manifests"


def _manifest(name: str) -> dict[str, list[int]]:
    return json.loads((MANIFESTS / f"{name}.json").read_text())["keys"]


def _shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {key: list(value.shape) for key, value in model.state_dict().items()}


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    paths = write_tiny_transparent_files(tmp_path_factory.mktemp("tiny_transparent"))
    return {path.name: path for path in paths}


@pytest.fixture(scope="module")
def decoder(tiny_files: dict[str, Path]) -> TransparentDecoder:
    return load_transparent_decoder(tiny_files["vae_transparent_decoder.safetensors"])


@pytest.fixture(scope="module")
def encoder(tiny_files: dict[str, Path]) -> TransparentEncoder:
    return load_transparent_encoder(tiny_files["vae_transparent_encoder.safetensors"])


@pytest.fixture(scope="module")
def vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=4,
        scaling_factor=0.13025,
    ).eval()


def _inputs(
    batch: int, height: int, width: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    pixel = torch.rand(batch, 3, height, width, generator=generator)
    latent = torch.randn(batch, 4, height // 8, width // 8, generator=generator)
    return pixel, latent


def _rgba_image(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    rgba = rng.integers(0, 256, (batch, size, size, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(rng.random((batch, size, size)) < 0.5, 0, 255)
    return rgba_uint8_to_tensor(rgba)


# Layouts


@pytest.mark.parametrize(
    ("cls", "manifest"),
    [
        (TransparentDecoder, "vae_transparent_decoder"),
        (TransparentEncoder, "vae_transparent_encoder"),
    ],
)
def test_default_config_state_dict_equals_official_manifest(cls: type, manifest: str) -> None:
    with torch.device("meta"):
        model = cls()
    assert _shapes(model) == _manifest(manifest)


def test_tiny_files_have_the_official_keys(tiny_files: dict[str, Path]) -> None:
    assert sorted(tiny_files) == sorted(TINY_FILE_NAMES)
    for name, path in tiny_files.items():
        manifest = "vae_transparent_decoder" if "decoder" in name else "vae_transparent_encoder"
        assert set(load_file(path)) == set(_manifest(manifest)), name


def test_config_round_trips_through_from_config(decoder: TransparentDecoder) -> None:
    with torch.device("meta"):
        rebuilt = TransparentDecoder.from_config(decoder.config)
    assert _shapes(rebuilt) == _shapes(decoder)


def _official_forward(
    decoder: TransparentDecoder, pixel: torch.Tensor, latent: torch.Tensor
) -> torch.Tensor:
    """UNet1024's forward as the official code runs it: through the diffusers blocks' forwards."""
    block: Any
    hidden = decoder.conv_in(pixel)
    skips = [hidden]
    for i, block in enumerate(decoder.down_blocks):
        if i == 3:
            hidden = hidden + decoder.latent_conv_in(latent)
        hidden, residuals = block(hidden_states=hidden, temb=None)
        skips.extend(residuals)
    hidden = decoder.mid_block(hidden, None)
    for block in decoder.up_blocks:
        count = len(block.resnets)
        hidden = block(hidden, tuple(skips[-count:]), None)
        del skips[-count:]
    return decoder.conv_out(torch.nn.functional.silu(decoder.conv_norm_out(hidden)))


def test_forward_equals_the_diffusers_blocks_forwards_bit_for_bit(
    decoder: TransparentDecoder,
) -> None:
    pixel, latent = _inputs(2, 64, 128, seed=12)
    with torch.inference_mode():
        assert torch.equal(decoder(pixel, latent), _official_forward(decoder, pixel, latent))


# Loading


@pytest.mark.parametrize("name", TINY_FILE_NAMES)
def test_tiny_files_load_strictly_with_their_values(tiny_files: dict[str, Path], name: str) -> None:
    loader = load_transparent_decoder if "decoder" in name else load_transparent_encoder
    model = loader(tiny_files[name])
    stored = load_file(tiny_files[name])
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, stored[key], rtol=0, atol=0)
    assert not model.training


def test_full_size_file_round_trips(tmp_path: Path) -> None:
    # fp16 zeros keep the 104 M-parameter file small and fast; the point is the inferred config.
    shapes = _manifest("vae_transparent_decoder")
    tensors = {key: torch.zeros(shape, dtype=torch.float16) for key, shape in shapes.items()}
    tensors["conv_out.bias"] = torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float16)
    save_file(tensors, tmp_path / "vae_transparent_decoder.safetensors")
    del tensors
    decoder = load_transparent_decoder(
        tmp_path / "vae_transparent_decoder.safetensors", dtype=torch.float16
    )
    assert tuple(decoder.config["block_out_channels"]) == (32, 32, 64, 128, 256, 512, 512)
    assert decoder.state_dict()["conv_out.bias"].tolist() == [0.25, 0.5, 0.75, 1.0]

    encoder = random_transparent_encoder()
    save_file(encoder.state_dict(), tmp_path / "vae_transparent_encoder.safetensors")
    loaded = load_transparent_encoder(tmp_path / "vae_transparent_encoder.safetensors")
    assert tuple(loaded.config["block_out_channels"]) == (32, 64, 128, 256)
    torch.testing.assert_close(loaded.blocks[16].weight, encoder.blocks[16].weight)


def _rewrite(source: Path, target: Path, edit: str, key: str) -> Path:
    tensors = load_file(source)
    if edit == "missing":
        del tensors[key]
    elif edit == "extra":
        tensors[key] = torch.zeros(3)
    else:
        tensors[key] = torch.zeros(*tensors[key].shape[:-1], tensors[key].shape[-1] + 1)
    save_file(tensors, target)
    return target


@pytest.mark.parametrize(
    ("name", "edit", "key"),
    [
        ("vae_transparent_decoder.safetensors", "missing", "up_blocks.1.attentions.2.to_k.bias"),
        ("vae_transparent_decoder.safetensors", "missing", "latent_conv_in.weight"),
        ("vae_transparent_decoder.safetensors", "extra", "up_blocks.7.resnets.0.conv1.weight"),
        ("vae_transparent_decoder.safetensors", "misshaped", "mid_block.attentions.0.to_q.weight"),
        ("vae_transparent_encoder.safetensors", "missing", "blocks.10.bias"),
        ("vae_transparent_encoder.safetensors", "extra", "blocks.18.weight"),
        ("vae_transparent_encoder.safetensors", "misshaped", "blocks.14.weight"),
    ],
)
def test_strict_load_names_the_key_and_the_file(
    tiny_files: dict[str, Path], tmp_path: Path, name: str, edit: str, key: str
) -> None:
    path = _rewrite(tiny_files[name], tmp_path / f"broken_{name}", edit, key)
    loader = load_transparent_decoder if "decoder" in name else load_transparent_encoder
    with pytest.raises(ModelFileError) as caught:
        loader(path)
    assert key in caught.value.message
    assert str(path) in caught.value.message


def test_load_refuses_missing_non_safetensors_and_damaged_files(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not found"):
        load_transparent_decoder(tmp_path / "absent.safetensors")
    pickle_file = tmp_path / "vae_transparent_decoder.ckpt"
    pickle_file.write_bytes(b"\x80\x04")
    with pytest.raises(ModelFileError, match=r"\.safetensors"):
        load_transparent_decoder(pickle_file)
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelFileError, match=r"damaged\.safetensors"):
        load_transparent_encoder(damaged)


def test_widths_the_official_group_norm_cannot_split_are_refused(tmp_path: Path) -> None:
    odd = TransparentDecoder(
        block_out_channels=(2, 2, 4, 8, 16, 32, 32), norm_num_groups=2, attention_head_dim=2
    )
    save_file(odd.state_dict(), tmp_path / "odd.safetensors")
    with pytest.raises(ModelFileError, match="not a transparent decoder"):
        load_transparent_decoder(tmp_path / "odd.safetensors")


def test_encoder_file_given_to_decoder_loader_is_refused(tiny_files: dict[str, Path]) -> None:
    with pytest.raises(ModelFileError, match="not a transparent decoder"):
        load_transparent_decoder(tiny_files["vae_transparent_encoder.safetensors"])


# Decoding


def _single_pass(
    decoder: TransparentDecoder, pixel: torch.Tensor, latent: torch.Tensor
) -> torch.Tensor:
    with torch.no_grad():
        return decoder(pixel.contiguous(), latent.contiguous()).clamp(0, 1)


@pytest.mark.parametrize(
    ("height", "width", "pixels_per_pass"), [(64, 64, 8 * 64 * 64), (64, 128, 1)]
)
def test_tta_is_the_median_of_eight_independent_passes(
    decoder: TransparentDecoder, height: int, width: int, pixels_per_pass: int
) -> None:
    pixel, latent = _inputs(2, height, width, seed=1)
    views = []
    for flip, turns in TTA_VIEWS:
        for image in range(2):  # the official code decodes image by image
            p, z = pixel[image : image + 1], latent[image : image + 1]
            if flip:
                p, z = p.flip(3), z.flip(3)
            out = _single_pass(decoder, p.rot90(turns, (2, 3)), z.rot90(turns, (2, 3)))
            out = out.rot90(-turns, (2, 3))
            views.append(out.flip(3) if flip else out)
    stacked = torch.cat(views).reshape(8, 2, 4, height, width)
    expected = stacked.sort(dim=0).values[3]  # lower middle of 8
    expected = torch.cat([expected[:, 1:], expected[:, :1]], dim=1)

    result = decode_transparent(decoder, pixel, latent, "tta", pixels_per_pass=pixels_per_pass)
    torch.testing.assert_close(result, expected, rtol=0, atol=1e-4)  # batched vs single
    assert not torch.equal(result, decode_transparent(decoder, pixel, latent, "fast"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_tta_median_is_rank_two_and_bit_identical_to_the_stacked_median(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MPS-safe combine: same bits as the official 5-D stacked median (ties included), and
    it never hands `median` more than two dimensions or a half-precision tensor."""
    generator = torch.Generator().manual_seed(4)
    views = [torch.rand(2, 4, 16, 24, generator=generator).to(dtype) for _ in TTA_VIEWS]
    views[5] = views[2].clone()  # ties: equal middle values must pick the same element
    views[6][:, :, :4] = 0.5
    views[7][:, :, :4] = 0.5
    expected = torch.stack(views).median(dim=0).values  # the official combine, in its dtype
    seen: list[tuple[int, torch.dtype]] = []
    median = torch.Tensor.median

    def recording_median(tensor: torch.Tensor, *args: object, **kwargs: object) -> object:
        seen.append((tensor.dim(), tensor.dtype))
        return median(tensor, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(torch.Tensor, "median", recording_median)
    result = tta_median(views)
    assert result.dtype == dtype and result.shape == views[0].shape
    assert torch.equal(result, expected)
    assert seen == [(2, torch.float32)]


def test_fast_is_one_pass_in_rgba_order(decoder: TransparentDecoder) -> None:
    pixel, latent = _inputs(3, 64, 192, seed=2)
    raw = _single_pass(decoder, pixel, latent)
    result = decode_transparent(decoder, pixel, latent, "fast")
    assert result.shape == (3, 4, 64, 192)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result[:, :3], raw[:, 1:], rtol=0, atol=1e-5)  # RGB
    torch.testing.assert_close(result[:, 3], raw[:, 0], rtol=0, atol=1e-5)  # alpha


@pytest.mark.parametrize("mode", ["tta", "fast"])
def test_outputs_are_finite_in_range_and_not_degenerate(
    decoder: TransparentDecoder, mode: str
) -> None:
    pixel, latent = _inputs(1, 128, 128, seed=3)
    rgba = decode_transparent(decoder, pixel, latent, mode)  # type: ignore[arg-type]
    assert rgba.shape == (1, 4, 128, 128)
    assert torch.isfinite(rgba).all()
    assert rgba.min() >= 0 and rgba.max() <= 1
    alpha = rgba[:, 3]
    assert 0.02 < alpha.mean() < 0.98
    assert alpha.std() > 0.05


def test_the_latent_changes_the_output(decoder: TransparentDecoder) -> None:
    pixel, latent = _inputs(1, 64, 64, seed=4)
    with_latent = decode_transparent(decoder, pixel, latent, "fast")
    without = decode_transparent(decoder, pixel, torch.zeros_like(latent), "fast")
    assert (with_latent - without).abs().max() > 0.01


def test_tiny_tta_decode_of_128_square_is_well_under_a_second(decoder: TransparentDecoder) -> None:
    pixel, latent = _inputs(1, 128, 128)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # CPU time of one thread: meaningful on a busy shared machine
    try:
        decode_transparent(decoder, pixel, latent, "tta")  # warm-up
        timings = []
        for _ in range(3):
            start = time.process_time()
            decode_transparent(decoder, pixel, latent, "tta")
            timings.append(time.process_time() - start)
    finally:
        torch.set_num_threads(threads)
    assert min(timings) < 0.5


@pytest.mark.parametrize(("height", "width", "field"), [(96, 128, "height"), (128, 100, "width")])
def test_sizes_not_multiple_of_64_are_an_input_error(
    decoder: TransparentDecoder, height: int, width: int, field: str
) -> None:
    pixel, latent = _inputs(1, height, width)
    with pytest.raises(InputError, match="multiple of 64") as caught:
        decode_transparent(decoder, pixel, latent, "tta")
    assert caught.value.field == field


def test_unknown_mode_is_an_input_error(decoder: TransparentDecoder) -> None:
    pixel, latent = _inputs(1, 64, 64)
    with pytest.raises(InputError) as caught:
        decode_transparent(decoder, pixel, latent, "median")  # type: ignore[arg-type]
    assert caught.value.field == "decode"


def test_mismatched_latent_is_refused(decoder: TransparentDecoder) -> None:
    pixel, _ = _inputs(1, 64, 64)
    with pytest.raises(ValueError, match="does not match"):
        decode_transparent(decoder, pixel, torch.zeros(1, 4, 4, 4), "fast")


# The codec with a real (tiny) SD VAE


def test_decode_rgba_decodes_unscaled_latents_through_the_vae(
    vae: AutoencoderKL, decoder: TransparentDecoder
) -> None:
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    result = decode_rgba(vae, decoder, latents, "fast")
    with torch.no_grad():
        unscaled = latents / vae.config["scaling_factor"]
        pixel = (vae.decode(unscaled).sample * 0.5 + 0.5).clamp(0, 1)
    torch.testing.assert_close(result, decode_transparent(decoder, pixel, unscaled, "fast"))


def test_decode_rgba_checks_the_size_before_decoding(
    vae: AutoencoderKL, decoder: TransparentDecoder
) -> None:
    with pytest.raises(InputError, match="multiple of 64"):
        decode_rgba(vae, decoder, torch.zeros(1, 4, 12, 8), "fast")


def test_fp16_vae_with_force_upcast_decodes_in_fp32(
    vae: AutoencoderKL, decoder: TransparentDecoder
) -> None:
    half = AutoencoderKL.from_config({**vae.config, "force_upcast": True}).eval()
    half.load_state_dict(vae.state_dict())
    half.to(torch.float16)
    reference = AutoencoderKL.from_config(half.config).eval()
    reference.load_state_dict({k: v.float() for k, v in half.state_dict().items()})
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(6))
    result = decode_rgba(half, decoder, latents, "fast")
    assert half.dtype == torch.float16  # put back afterwards
    torch.testing.assert_close(result, decode_rgba(reference, decoder, latents, "fast"))


def test_encode_offset_feeds_alpha_then_padded_rgb_and_scales(encoder: TransparentEncoder) -> None:
    rgba = _rgba_image(2, 64, seed=7)
    uint8 = rgba_tensor_to_uint8(rgba)
    feed = torch.cat(
        [rgba[:, 3:], torch.from_numpy(np.stack([pad_rgb(x) for x in uint8])).permute(0, 3, 1, 2)],
        1,
    )
    with torch.no_grad():
        expected = encoder(feed)
    offset = encode_offset(encoder, rgba)
    assert offset.shape == (2, 4, 8, 8)
    torch.testing.assert_close(offset, expected)
    torch.testing.assert_close(encode_offset(encoder, rgba, 300.0), expected * 300.0)


def test_encode_offset_needs_multiples_of_8(encoder: TransparentEncoder) -> None:
    with pytest.raises(InputError, match="multiple of 8"):
        encode_offset(encoder, torch.zeros(1, 4, 64, 60))


def test_encode_transparent_moves_the_posterior_mean_by_std_times_offset(
    vae: AutoencoderKL, encoder: TransparentEncoder
) -> None:
    rgba = _rgba_image(1, 64, seed=8)
    latents = encode_transparent(vae, encoder, rgba, offset_scale=2.0)
    with torch.no_grad():
        posterior = vae.encode((rgba[:, :3] * 2 - 1) * rgba[:, 3:]).latent_dist
    offset = encode_offset(encoder, rgba, 2.0)
    expected = (posterior.mean + posterior.std * offset) * vae.config["scaling_factor"]
    torch.testing.assert_close(latents, expected)
    assert (latents / vae.config["scaling_factor"] - posterior.mean).abs().max() > 1e-3


@pytest.mark.parametrize("mode", ["tta", "fast"])
def test_encode_then_decode_round_trip_is_finite(
    vae: AutoencoderKL, encoder: TransparentEncoder, decoder: TransparentDecoder, mode: str
) -> None:
    rgba = _rgba_image(2, 64, seed=9)
    latents = encode_transparent(vae, encoder, rgba)
    assert latents.shape == (2, 4, 8, 8)
    decoded = decode_rgba(vae, decoder, latents, mode)  # type: ignore[arg-type]
    assert decoded.shape == rgba.shape
    assert torch.isfinite(decoded).all()
    assert decoded.min() >= 0 and decoded.max() <= 1


def test_ld_diffusers_encoder_is_sized_for_its_300_scale(tiny_files: dict[str, Path]) -> None:
    rgba = _rgba_image(1, 64, seed=10)
    v1 = load_transparent_encoder(tiny_files["vae_transparent_encoder.safetensors"])
    ld = load_transparent_encoder(
        tiny_files["ld_diffusers_sdxl_vae_transparent_encoder.safetensors"]
    )
    ratio = encode_offset(ld, rgba, 300.0).std() / encode_offset(v1, rgba).std()
    assert 0.2 < ratio < 5


# uint8 conversion and tiny files


def test_uint8_conversion_round_trips() -> None:
    images = np.random.default_rng(11).integers(0, 256, (2, 16, 24, 4), dtype=np.uint8)
    tensor = rgba_uint8_to_tensor(images)
    assert tensor.shape == (2, 4, 16, 24)
    np.testing.assert_array_equal(rgba_tensor_to_uint8(tensor), images)
    np.testing.assert_array_equal(rgba_uint8_to_tensor(images[0])[0], tensor[0])


def test_uint8_conversion_rounds_and_clips() -> None:
    values = torch.tensor([-0.5, 0.0, 0.4 / 255, 0.6 / 255, 254.5 / 255 + 1e-4, 1.5])
    rgba = values.reshape(1, 1, 1, 6).expand(1, 4, 1, 6)
    assert rgba_tensor_to_uint8(rgba)[0, 0, :, 0].tolist() == [0, 0, 0, 1, 255, 255]


def test_tiny_files_are_deterministic_per_seed_and_written_atomically(tmp_path: Path) -> None:
    first = write_tiny_transparent_files(tmp_path / "a", seed=3)
    second = write_tiny_transparent_files(tmp_path / "b", seed=3)
    other = write_tiny_transparent_files(tmp_path / "c", seed=4)
    for a, b, c in zip(first, second, other, strict=True):
        assert a.read_bytes() == b.read_bytes()
        assert a.read_bytes() != c.read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(TINY_FILE_NAMES)
