"""SD1.5 attention sharing on a tiny SD1.5 UNet: strict files, processors, official semantics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from layer_files_helpers import SD15_KINDS, rewrite, state_copy, tiny_sd15, write_files
from safetensors.torch import load_file
from test_keymap import FULL_SD15, TINY_SD15

from acetate.engine.nets.attention_sharing import AttentionSharing, attention_module_names
from acetate.errors import InputError, ModelFileError

CONTEXT = TINY_SD15["cross_attention_dim"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_files(tmp_path_factory.mktemp("layers"))


@pytest.fixture
def unet() -> UNet2DConditionModel:
    return tiny_sd15()


def _inputs(rows: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(rows, 4, 8, 8, generator=generator),
        torch.randn(rows, 7, CONTEXT, generator=generator),
    )


def _run(unet: UNet2DConditionModel, latents: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return unet(latents, 10, context).sample


def _control(seed: int, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize(
    ("kind", "frames", "control"),
    [
        ("layer_sd15_transparent_attn", 1, False),
        ("layer_sd15_joint", 3, False),
        ("layer_sd15_fg2bg", 2, True),
        ("layer_sd15_bg2fg", 2, True),
    ],
)
def test_file_loads_strictly_and_detach_restores_outputs(
    kind: str, frames: int, control: bool, files: dict[str, Path], unet: UNet2DConditionModel
) -> None:
    model = AttentionSharing.from_file(files[kind])
    assert (model.frames, model.use_control) == (frames, control)
    assert set(model.state_dict()) == set(load_file(files[kind]))
    latents, context = _inputs(2 * frames)
    before, keys = _run(unet, latents, context), list(unet.state_dict())
    modules = [unet.get_submodule(name) for name in attention_module_names(unet.config)]
    processors = [attn.processor for attn in modules]
    with model.attach(unet) as handle:
        assert handle.attached
        assert list(unet.state_dict()) == keys  # processors add no weights to the UNet
        if control:
            model.set_control(_control(0))
        during = _run(unet, latents, context)
    assert torch.isfinite(during).all()
    assert (during - before).abs().mean() > 0.05 * before.abs().mean()
    assert [attn.processor for attn in modules] == processors
    assert torch.equal(_run(unet, latents, context), before)


def test_attention_math_matches_diffusers_when_the_extras_are_off(
    files: dict[str, Path], unet: UNet2DConditionModel
) -> None:
    """LoRA at strength 0 and a zero temporal output leave plain attention: the UNet's own."""
    model = AttentionSharing.from_file(files["layer_sd15_joint"])
    for layer in model.hookers.layers:
        torch.nn.init.zeros_(layer.temporal_o.weight)
        torch.nn.init.zeros_(layer.temporal_o.bias)
    latents, context = _inputs(6)
    before = _run(unet, latents, context)
    with model.attach(unet, strength=0.0):
        torch.testing.assert_close(_run(unet, latents, context), before, atol=1e-5, rtol=1e-5)
        model.strength = 1.0
        assert not torch.allclose(_run(unet, latents, context), before, atol=1e-3)


def test_frames_share_attention_within_a_group_only(
    files: dict[str, Path], unet: UNet2DConditionModel
) -> None:
    """Batch layout `(b f)`: rows 0–2 are one result set, rows 3–5 the next."""
    model = AttentionSharing.from_file(files["layer_sd15_joint"])
    latents, context = _inputs(6)
    changed = latents.clone()
    changed[5] += 1.0  # the blend frame of the second group
    with model.attach(unet):
        a, b = _run(unet, latents, context), _run(unet, changed, context)
    torch.testing.assert_close(a[:3], b[:3], atol=1e-6, rtol=0)
    assert not torch.allclose(a[3:5], b[3:5], atol=1e-4)  # fg and bg see the blend frame


def test_batch_must_be_a_multiple_of_frames(
    files: dict[str, Path], unet: UNet2DConditionModel
) -> None:
    model = AttentionSharing.from_file(files["layer_sd15_joint"])
    latents, context = _inputs(4)
    with model.attach(unet), pytest.raises(InputError, match="multiple of 3") as error:
        _run(unet, latents, context)
    assert error.value.field == "batch"


def test_frame_prompts_reach_positive_rows_only(
    files: dict[str, Path], unet: UNet2DConditionModel
) -> None:
    model = AttentionSharing.from_file(files["layer_sd15_joint"])
    latents, context = _inputs(6)
    cond_mark = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])  # negative group, positive group
    prompt = torch.randn(1, 7, CONTEXT, generator=torch.Generator().manual_seed(5))
    with model.attach(unet):
        plain = _run(unet, latents, context)
        model.set_frame_prompts([None, prompt, None], cond_mark)
        prompted = _run(unet, latents, context)
        model.set_frame_prompts(None)
        assert torch.equal(_run(unet, latents, context), plain)
    torch.testing.assert_close(prompted[:3], plain[:3], atol=1e-6, rtol=0)
    assert not torch.allclose(prompted[3:], plain[3:], atol=1e-4)


def test_frame_prompt_checks(files: dict[str, Path], unet: UNet2DConditionModel) -> None:
    model = AttentionSharing.from_file(files["layer_sd15_joint"])
    prompt = torch.randn(1, 7, CONTEXT)
    with pytest.raises(ValueError, match="3 frame prompts"):
        model.set_frame_prompts([prompt], torch.zeros(6))
    with pytest.raises(ValueError, match="cond_mark"):
        model.set_frame_prompts([prompt, None, None])
    latents, context = _inputs(6)
    with model.attach(unet):
        model.set_frame_prompts([prompt, None, None], torch.zeros(3))
        with pytest.raises(InputError, match="cond_mark"):
            _run(unet, latents, context)
        model.set_frame_prompts([torch.randn(1, 5, CONTEXT), None, None], torch.zeros(6))
        with pytest.raises(InputError, match="frame prompt 0"):
            _run(unet, latents, context)


def test_control_image_changes_the_output(
    files: dict[str, Path], unet: UNet2DConditionModel
) -> None:
    model = AttentionSharing.from_file(files["layer_sd15_bg2fg"])
    latents, context = _inputs(4)
    with model.attach(unet):
        with pytest.raises(RuntimeError, match="set_control"):
            _run(unet, latents, context)
        model.set_control(_control(0))
        first = _run(unet, latents, context)
        model.set_control(_control(1))
        second = _run(unet, latents, context)
        model.set_control(torch.cat([_control(0), _control(1)]))  # one control per result set
        per_set = _run(unet, latents, context)
        with pytest.raises(InputError, match="multiples of 64"):
            model.set_control(torch.zeros(1, 3, 60, 64))
        model.set_control(torch.zeros(1, 3, 128, 128))
        with pytest.raises(InputError, match="latent size"):
            _run(unet, latents, context)
    assert (first - second).abs().mean() > 1e-2
    # batched control features differ from single ones by convolution rounding only
    torch.testing.assert_close(per_set[:2], first[:2], atol=5e-4, rtol=0)
    torch.testing.assert_close(per_set[2:], second[2:], atol=5e-4, rtol=0)
    without = AttentionSharing.from_file(files["layer_sd15_joint"])
    with pytest.raises(ValueError, match="no control"):
        without.set_control(_control(0))


def test_strength_and_attach_lifecycle(files: dict[str, Path], unet: UNet2DConditionModel) -> None:
    model = AttentionSharing.from_file(files["layer_sd15_transparent_attn"])
    latents, context = _inputs(2)
    with pytest.raises(InputError, match="layer_weight"):
        model.attach(unet, strength=3.0)
    handle = model.attach(unet, strength=0.5)
    half = _run(unet, latents, context)
    with pytest.raises(RuntimeError, match="already attached"):
        model.attach(unet)
    handle.detach()
    handle.detach()  # idempotent
    with model.attach(unet, strength=1.0):
        full = _run(unet, latents, context)
        assert torch.equal(_run(unet, latents, context), full)  # cached merged weights
        model.strength = 0.5  # the cache follows a strength change while attached
        assert torch.equal(_run(unet, latents, context), half)
    assert not torch.allclose(half, full, atol=1e-4)


def test_sd2_base_is_refused() -> None:
    """Full-size SD1.5 file on an SD2 UNet (1024-wide text embeddings), all on the meta device."""
    with torch.device("meta"):
        sd15 = UNet2DConditionModel(**FULL_SD15)
        sd2 = UNet2DConditionModel(
            **dict(FULL_SD15, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20))
        )
    model = AttentionSharing.for_unet(sd15, frames=3, use_control=False)
    processors = [sd2.get_submodule(n).processor for n in attention_module_names(sd2.config)]
    with pytest.raises(ModelFileError, match=r"768.*1024.*SD2"):
        model.attach(sd2)
    assert [sd2.get_submodule(n).processor for n in attention_module_names(sd2.config)] == (
        processors
    )


def test_an_sdxl_unet_is_refused(files: dict[str, Path]) -> None:
    from layer_files_helpers import tiny_sdxl

    model = AttentionSharing.from_file(files["layer_sd15_transparent_attn"])
    with pytest.raises(ModelFileError, match=r"SD1\.5 layout"):
        model.attach(tiny_sdxl())


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ({"hookers.layers.7.temporal_q.bias": None}, "hookers.layers.7.temporal_q.bias"),
        ({"hookers.layers.3.to_v_lora.0.up.weight": torch.zeros(3, 3)}, "to_v_lora.0.up"),
        ({"hookers.layers.0.extra.weight": torch.zeros(2)}, "hookers.layers.0.extra.weight"),
        (
            {"kwargs_encoder.blocks_2.0.weight": torch.zeros(16, 16, 1, 1)},
            "kwargs_encoder.blocks_2.0.weight",
        ),
        ({"hookers.layers.31.control_convs.1.2.bias": None}, "control_convs.1.2.bias"),
    ],
)
def test_bad_files_are_refused_by_key(
    edit: dict, named: str, files: dict[str, Path], tmp_path: Path
) -> None:
    path = rewrite(files["layer_sd15_fg2bg"], tmp_path / "layer_sd15_fg2bg.safetensors", edit)
    with pytest.raises(ModelFileError, match=named.replace(".", r"\.")):
        AttentionSharing.from_file(path)


@pytest.mark.parametrize("kind", SD15_KINDS)
def test_fp16_load_and_state_dict_round_trip(kind: str, files: dict[str, Path]) -> None:
    model = AttentionSharing.from_file(files[kind], dtype=torch.float16)
    original = load_file(files[kind])
    state = state_copy(model)
    assert state.keys() == original.keys()
    assert all(torch.equal(state[k], original[k].half()) for k in original)
