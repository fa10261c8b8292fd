"""Acetate's decomposition loop equals diffusers' `QwenImageLayeredPipeline` at a published
bucket, and the tiny Qwen-Image-Layered model keeps the layouts the real one relies on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from acetate.engine.pipelines.qwen_loop import LayeredRun, bucket_size, decode_layers, decompose
from acetate.engine.store.family import detect_pipeline_folder
from acetate.engine.store.qwen import (
    FULL_SIZE_BYTES,
    QWEN_FAMILY,
    full_size_parameters,
    full_size_transformer_shapes,
    load_qwen_pipeline,
)
from acetate.engine.tiny.qwen_layered import QWEN_SPECIAL_TOKENS, ensure_tiny_qwen


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_qwen(tmp_path_factory.mktemp("qwen-models"))


@pytest.fixture(scope="module")
def pipe(qwen_folder: Path) -> Any:
    loaded = load_qwen_pipeline(qwen_folder, torch.float32)
    loaded.set_progress_bar_config(disable=True)
    return loaded


def test_own_loop_equals_the_diffusers_pipeline_at_640(pipe: Any) -> None:
    rgba = np.random.default_rng(3).integers(0, 256, (90, 120, 4), dtype=np.uint8)
    expected = pipe(
        Image.fromarray(rgba, "RGBA"),
        "a red cat on a sofa",
        negative_prompt="",
        true_cfg_scale=4.0,
        layers=2,
        num_inference_steps=2,
        resolution=640,
        generator=[torch.Generator().manual_seed(7)],
        output_type="np",
    ).images[0]
    run = LayeredRun(
        image=rgba,
        prompts=["a red cat on a sofa"],
        negative_prompt="",
        cfg=4.0,
        layers=2,
        steps=2,
        bucket=640,
        generators=[torch.Generator().manual_seed(7)],
    )
    steps: list[int] = []
    decomposed = decompose(pipe, run, lambda index, _latents: steps.append(index))
    ours = decode_layers(pipe, decomposed, 0).permute(0, 2, 3, 1).numpy()
    assert steps == [0, 1]
    assert ours.shape == expected.shape == (2, 544, 736, 4)
    assert np.array_equal(ours, expected)  # bit for bit


def test_tiny_buckets_follow_the_pipeline_rule() -> None:
    assert bucket_size(120, 90, 640, 16) == (736, 544)  # diffusers' size for this aspect
    assert bucket_size(100, 70, 64, 16) == (64, 64)  # 32-px steps: the aspect is coarse
    assert bucket_size(100, 70, 128, 16) == (160, 96)
    assert bucket_size(64, 64, 128, 16) == (128, 128)
    assert bucket_size(16, 4000, 64, 16) == (32, 1024)  # at least 32 px a side


def test_tiny_model_keeps_the_real_layouts(qwen_folder: Path, pipe: Any) -> None:
    vae = pipe.vae.config
    assert vae.input_channels == 4 and vae.z_dim != 4
    assert pipe.vae_scale_factor == 8
    assert pipe.processor is not None  # captioning: tests/engine/test_decompose_caption.py
    transformer = pipe.transformer.config
    assert transformer.use_layer3d_rope and transformer.use_additional_t_cond
    assert transformer.in_channels == 4 * vae.z_dim
    assert transformer.joint_attention_dim == pipe.text_encoder.config.text_config.hidden_size
    # Every special token of the prompt templates is one id of the locally built tokenizer.
    template = "".join(QWEN_SPECIAL_TOKENS[1:])
    assert len(pipe.tokenizer(template).input_ids) == len(QWEN_SPECIAL_TOKENS) - 1
    assert pipe.tokenizer.model_max_length == 1024
    index = json.loads((qwen_folder / "model_index.json").read_text())
    assert index["_class_name"] == "QwenImageLayeredPipeline"
    assert index["processor"] == ["transformers", "Qwen2VLProcessor"]  # as published
    detection = detect_pipeline_folder(qwen_folder)
    assert (detection.family, detection.tiny) == (QWEN_FAMILY, True)


def test_full_size_transformer_on_meta_matches_the_published_model() -> None:
    # 20.43 B parameters: the published "20B" MMDiT, 40.9 GB in bf16.
    assert full_size_parameters("transformer") == 20_430_407_232
    assert full_size_parameters("vae") == 126_897_716  # 254 MB in bf16
    assert FULL_SIZE_BYTES["transformer"] == 2 * full_size_parameters("transformer")
    assert FULL_SIZE_BYTES["vae"] == 2 * full_size_parameters("vae")
    shapes = full_size_transformer_shapes()
    assert shapes["img_in.weight"] == (3072, 64)
    assert shapes["txt_in.weight"] == (3072, 3584)
    assert shapes["proj_out.weight"] == (64, 3072)
    assert shapes["time_text_embed.addition_t_embedding.weight"] == (2, 3072)
    blocks = {key.split(".")[1] for key in shapes if key.startswith("transformer_blocks.")}
    assert blocks == {str(i) for i in range(60)}
