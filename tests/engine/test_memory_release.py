"""What keeps a job's memory near the weights: no autograd graph behind the prompt embeddings,
and freed memory handed back to the system."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from acetate.engine import memory
from acetate.engine.pipelines.sampler import Sampler
from acetate.engine.store.loading import load_base_pipeline
from acetate.engine.store.models import ModelStore


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_prompt_embeddings_keep_no_autograd_graph(tiny_models_dir: Path, family: str) -> None:
    base, _ = ModelStore(tiny_models_dir).base(f"tiny-{family}")
    pipe = load_base_pipeline(base, torch.float32)
    assert any(p.requires_grad for p in pipe.text_encoder.parameters())  # as loaded
    sampler = Sampler(pipe, family, torch.device("cpu"), torch.float32)
    embeds = sampler.encode_prompt(["a glass bottle"], [""], 5.0, (64, 64))
    for tensor in (embeds.embeds, embeds.pooled):
        if tensor is not None:
            assert tensor.grad_fn is None and not tensor.requires_grad
    if family == "sd15":
        assert sampler.encode_texts(["a cup"]).grad_fn is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_memory_goes_back_on_glibc() -> None:
    assert memory._glibc() is not None
    memory.return_large_frees_at_once()
    memory.release_unused_memory()  # both are safe to call at any time
