"""The tiny test models: real layouts, deterministic, idempotent and race-safe to build."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch
from diffusers import ControlNetModel, StableDiffusionPipeline, StableDiffusionXLPipeline

from acetate.engine.store.family import CONFIGS_DIR, load_json
from acetate.engine.store.identify import KINDS
from acetate.engine.tiny.bases import (
    STAMP_FILE,
    TINY_SD15,
    TINY_SDXL,
    _install,
    build_tiny_models,
    builder_stamp,
    ensure_tiny_models,
)


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != STAMP_FILE
    }


def test_layout_has_every_official_kind(tiny_models_dir: Path) -> None:
    root = tiny_models_dir / "tiny"
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == ["tiny-sd15", "tiny-sdxl"]
    assert sorted(p.name for p in (root / "controlnet").iterdir()) == [
        "tiny-controlnet-sd15",
        "tiny-controlnet-sdxl",
    ]
    assert {p.stem for p in (root / "layer_model").glob("*.safetensors")} == set(KINDS)
    # One style LoRA and one textual-inversion embedding per tiny base family.
    assert sorted(p.name for p in (root / "loras").iterdir()) == [
        "tiny-style-sd15.safetensors",
        "tiny-style-sdxl.safetensors",
    ]
    assert sorted(p.name for p in (root / "embeddings").iterdir()) == [
        "tiny-emb-sd15.safetensors",
        "tiny-emb-sdxl.safetensors",
    ]


def test_a_changed_style_writer_changes_the_builder_stamp(monkeypatch: pytest.MonkeyPatch) -> None:
    """So a cached tiny store is rebuilt when the LoRA/embedding writer changes."""
    from acetate.engine.tiny import styles

    before = builder_stamp()["builder"]
    source = inspect.getsource
    monkeypatch.setattr(
        inspect, "getsource", lambda obj: source(obj) + ("# changed" if obj is styles else "")
    )
    assert builder_stamp()["builder"] != before


def test_build_is_deterministic(tmp_path: Path, tiny_models_dir: Path) -> None:
    build_tiny_models(tmp_path / "again")
    assert digests(tmp_path / "again") == digests(tiny_models_dir / "tiny")


def _linked_copy(source: Path, target: Path) -> Path:
    """Hard links (instant, no space) for the model files; a real copy of the stamp, which the
    tests rewrite."""

    def link(src: str, dst: str) -> None:
        if Path(src).name == STAMP_FILE:
            shutil.copy(src, dst)
        else:
            os.link(src, dst)

    shutil.copytree(source, target, copy_function=link)
    return target


def test_ensure_is_idempotent_and_rebuilds_when_the_builder_changes(
    tmp_path: Path, tiny_models_dir: Path
) -> None:
    root = _linked_copy(tiny_models_dir / "tiny", tmp_path / "tiny")
    marker = root / "checkpoints" / "tiny-sd15" / "model_index.json"
    before = marker.stat().st_mtime_ns
    assert ensure_tiny_models(tmp_path) == root
    assert marker.stat().st_mtime_ns == before  # current: nothing rebuilt
    stamp = json.loads((root / STAMP_FILE).read_text())
    assert stamp == builder_stamp()
    (root / STAMP_FILE).write_text(json.dumps({**stamp, "builder": "an older builder"}))
    assert ensure_tiny_models(tmp_path) == root
    assert json.loads((root / STAMP_FILE).read_text()) == stamp
    assert marker.stat().st_mtime_ns != before
    assert digests(root) == digests(tiny_models_dir / "tiny")
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]  # no build or trash folders left


def test_racing_installs_leave_one_complete_current_build(
    tmp_path: Path, tiny_models_dir: Path
) -> None:
    """What makes concurrent `ensure_tiny_models` calls safe: each builds in its own folder and
    installs it with renames; a stale build in place is swapped out, a current one kept."""
    stamp = builder_stamp()
    root = _linked_copy(tiny_models_dir / "tiny", tmp_path / "tiny")
    (root / STAMP_FILE).write_text(json.dumps({**stamp, "builder": "stale"}))
    builds = [
        _linked_copy(tiny_models_dir / "tiny", tmp_path / f".tiny-build-{i}") for i in range(4)
    ]
    barrier = threading.Barrier(len(builds))
    errors: list[BaseException] = []

    def install(build: Path) -> None:
        barrier.wait()
        try:
            _install(build, root, stamp)
        except BaseException as error:
            errors.append(error)
        finally:
            shutil.rmtree(build, ignore_errors=True)

    threads = [threading.Thread(target=install, args=(build,)) for build in builds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert json.loads((root / STAMP_FILE).read_text()) == stamp
    assert digests(root) == digests(tiny_models_dir / "tiny")
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]


def _plain(value: object) -> object:
    return list(value) if isinstance(value, (list, tuple)) else value


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_tiny_pipelines_keep_the_real_invariants(tiny_models_dir: Path, family: str) -> None:
    cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    pipe = cls.from_pretrained(tiny_models_dir / "tiny" / "checkpoints" / f"tiny-{family}")
    real_unet = load_json(CONFIGS_DIR / family / "unet" / "config.json")
    real_vae = load_json(CONFIGS_DIR / family / "vae" / "config.json")
    for name in ("down_block_types", "up_block_types", "layers_per_block", "in_channels"):
        assert _plain(pipe.unet.config[name]) == _plain(real_unet[name]), name
    assert pipe.vae.config.latent_channels == real_vae["latent_channels"] == 4
    assert pipe.vae_scale_factor == 8
    assert pipe.vae.config.scaling_factor == real_vae["scaling_factor"]
    assert pipe.tokenizer.model_max_length == 77
    widths = [pipe.text_encoder.config.hidden_size]
    if family == "sdxl":
        widths.append(pipe.text_encoder_2.config.hidden_size)
        assert widths[0] != widths[1]  # the single-file loader tells them apart by width
        assert pipe.unet.config.projection_class_embeddings_input_dim == (
            6 * pipe.unet.config.addition_time_embed_dim + pipe.text_encoder_2.config.projection_dim
        )
        assert pipe.tokenizer_2.pad_token == "!"
    assert pipe.unet.config.cross_attention_dim == sum(widths)
    tiny_config = TINY_SDXL if family == "sdxl" else TINY_SD15
    for name, value in tiny_config.items():
        assert _plain(pipe.unet.config[name]) == _plain(value), name  # tiny.py's configs are used
    image = pipe(
        "a cat",
        num_inference_steps=1,
        height=64,
        width=64,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert image.shape == (1, 64, 64, 3) and torch.isfinite(torch.from_numpy(image)).all()


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_tiny_controlnets_have_non_zero_outputs(tiny_models_dir: Path, family: str) -> None:
    controlnet = ControlNetModel.from_pretrained(
        tiny_models_dir / "tiny" / "controlnet" / f"tiny-controlnet-{family}"
    )
    zero_convs = [
        p for n, p in controlnet.named_parameters() if n.startswith("controlnet_down_blocks")
    ]
    assert zero_convs and all(p.abs().sum() > 0 for p in zero_convs)
    config = TINY_SDXL if family == "sdxl" else TINY_SD15
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    context = torch.randn(1, 7, config["cross_attention_dim"])
    added = (
        {"text_embeds": torch.randn(1, 32), "time_ids": torch.randn(1, 6)}
        if family == "sdxl"
        else None
    )

    def residuals(image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            down, mid = controlnet(
                latents, 10, context, image, added_cond_kwargs=added, return_dict=False
            )
        return torch.cat([d.flatten() for d in (*down, mid)])

    black, white = torch.zeros(1, 3, 64, 64), torch.ones(1, 3, 64, 64)
    assert residuals(black).abs().max() > 0
    assert not torch.allclose(residuals(black), residuals(white))  # the control image matters
