"""On the CPU at large sizes the two CFG halves of a step go through the UNet one after the
other (half the activations): the same images as one batch, ControlNet and layer models
included; never with attention sharing (SD1.5's layer models), whose frames need both halves
in one batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sample_images import rgba

from acetate.engine.engine import Engine
from acetate.engine.options import EngineOptions
from acetate.engine.pipelines import sampler
from acetate.engine.store.models import ModelStore
from acetate.protocol import GenerateParameters

SIZE = 128
PREDICT = sampler.Sampler._predict_noise


@pytest.fixture(scope="module")
def engine(tiny_models_dir: Path) -> Engine:
    torch.set_num_threads(1)
    return Engine(ModelStore(tiny_models_dir), EngineOptions(device="cpu"))


def generate(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, apart: bool, images: dict[str, Any], **fields
) -> tuple[list[np.ndarray], list[int]]:
    """The layers' pixels, and the batch size of every UNet call."""
    monkeypatch.setattr(sampler, "CFG_APART_PIXELS", 1 if apart else 1 << 40)
    calls: list[int] = []

    def counted(self: sampler.Sampler, spec: Any, t: Any, *inputs: Any) -> torch.Tensor:
        calls.append(inputs[1].shape[0])
        return PREDICT(self, spec, t, *inputs)

    monkeypatch.setattr(sampler.Sampler, "_predict_noise", counted)
    base = {"prompt": "glass bottle", "seed": 7, "steps": 2, "decode": "fast"}
    request = GenerateParameters.model_validate({**base, "width": SIZE, "height": SIZE, **fields})
    return [layer.pixels for layer in engine.generate(request, images).layers], calls


@pytest.mark.parametrize(
    ("fields", "images"),
    [
        ({"model": "tiny-sdxl", "batch": 2}, {}),
        ({"model": "tiny-sdxl", "control": "canny"}, {"control_image": rgba(SIZE, SIZE, seed=9)}),
        ({"model": "tiny-sdxl", "mode": "fg2bg"}, {"fg": rgba(SIZE, SIZE, seed=3)}),
    ],
    ids=["sdxl-batch", "sdxl-controlnet", "sdxl-fg2bg"],
)
def test_cfg_halves_one_after_the_other_give_the_same_images(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any], images: dict
) -> None:
    together, calls_together = generate(engine, monkeypatch, False, images, **fields)
    apart, calls_apart = generate(engine, monkeypatch, True, images, **fields)
    rows = fields.get("batch", 1)
    assert set(calls_together) == {2 * rows} and set(calls_apart) == {rows}
    assert len(calls_apart) == 2 * len(calls_together)
    for one, other in zip(together, apart, strict=True):
        assert np.abs(one.astype(int) - other.astype(int)).max() <= 1


@pytest.mark.parametrize(("mode", "frames"), [("fg", 1), ("joint", 3)])
def test_attention_sharing_keeps_the_cfg_halves_in_one_batch(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, mode: str, frames: int
) -> None:
    fields = {"model": "tiny-sd15", "mode": mode}  # SD1.5's layer models share attention
    together, _ = generate(engine, monkeypatch, False, {}, **fields)
    apart, calls = generate(engine, monkeypatch, True, {}, **fields)
    assert set(calls) == {2 * frames}  # uncond and cond rows of every frame, one batch
    assert all(np.array_equal(one, other) for one, other in zip(together, apart, strict=True))
