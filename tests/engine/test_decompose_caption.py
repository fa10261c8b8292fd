"""Mode `decompose` without a prompt: the tiny Qwen-Image-Layered model captions the image first
(a progress stage of its own, cancellable, the caption recorded in the result's `metrics`), and
a model folder without its processor refuses an empty prompt naming `prompt` and saying how to
enable captioning."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from acetate.engine.engine import Engine
from acetate.engine.pipelines.context import StepInfo
from acetate.engine.pipelines.qwen_loop import bucket_size, caption_image, packing_multiple
from acetate.engine.store.models import ModelStore
from acetate.engine.store.qwen import (
    PROCESSOR_DIR,
    caption_problem,
    load_qwen_pipeline,
)
from acetate.engine.tiny.qwen_layered import (
    TINY_QWEN_NAME,
    ensure_tiny_qwen,
    tiny_qwen_folder,
    tiny_qwen_root,
)
from acetate.errors import GenerationCancelled, InputError
from acetate.export.result import write_result
from acetate.protocol import GenerateParameters, JobMessage

STEPS = 2


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("caption-models")
    ensure_tiny_qwen(folder)
    return folder


@pytest.fixture(scope="module")
def engine(models: Path) -> Engine:
    return Engine(ModelStore(models, hf_cache=False))


@pytest.fixture(scope="module")
def no_processor_models(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny model (same build stamp, so it is not rebuilt) without processor/."""
    folder = tmp_path_factory.mktemp("no-processor-models")
    shutil.copytree(tiny_qwen_root(models), tiny_qwen_root(folder))
    shutil.rmtree(tiny_qwen_folder(folder) / PROCESSOR_DIR)
    return folder


@pytest.fixture(scope="module")
def flat() -> np.ndarray:
    rows, cols = np.mgrid[0:70, 0:100]
    image = np.zeros((70, 100, 4), dtype=np.uint8)
    image[...] = (30, 60, 200, 255)
    image[(rows - 35) ** 2 + (cols - 50) ** 2 < 20**2] = (220, 30, 30, 255)
    return image


def params(**fields: Any) -> GenerateParameters:
    request: dict[str, Any] = {"mode": "decompose", "prompt": "", "steps": STEPS, "seed": 3}
    return GenerateParameters(**{**request, **fields})


def test_the_tiny_model_has_a_processor_that_loads(models: Path) -> None:
    folder = tiny_qwen_folder(models)
    assert caption_problem(folder) is None
    assert (folder / PROCESSOR_DIR / "preprocessor_config.json").is_file()
    assert (folder / PROCESSOR_DIR / "chat_template.jinja").is_file()
    pipe = load_qwen_pipeline(folder, torch.float32)
    assert pipe.processor is not None and pipe.vl_processor is pipe.processor


def test_an_empty_prompt_is_captioned_then_decomposed(
    engine: Engine, flat: np.ndarray, tmp_path: Path
) -> None:
    events: list[StepInfo] = []
    result = engine.generate(params(layer_count=2), {"image": flat}, callback=events.append)
    names = [layer.name for layer in result.layers]
    assert names == ["layer_1", "layer_2", "blended"]
    # The caption stage comes first, under its own label, then the denoising steps
    stages = [(info.stage, info.label) for info in events]
    assert stages[0] == ("caption", "Describing the image")
    assert stages[-STEPS:] == [("decompose", "Splitting into layers")] * STEPS
    assert [info.step for info in events if info.stage == "decompose"] == [1, 2]
    assert all(info.step == 0 and info.preview(64) is None for info in events[:-STEPS])
    # The caption is in the record's metrics, next to the PSNR
    record = write_result(tmp_path, result, job_id="j_caption", psd=False)
    (metrics,) = record.metrics
    assert metrics["batch_index"] == 0 and "psnr_db" in metrics
    assert isinstance(metrics["caption"], str) and metrics["caption"].strip()
    assert record.parameters["prompt"] == ""  # the request as sent


def test_a_prompt_skips_captioning(engine: Engine, flat: np.ndarray) -> None:
    events: list[StepInfo] = []
    result = engine.generate(params(prompt="a red disc"), {"image": flat}, callback=events.append)
    assert {info.stage for info in events} == {"decompose"}
    blended = next(layer for layer in result.layers if layer.name == "blended")
    assert blended.metrics is not None and "caption" not in blended.metrics


def test_the_caption_is_the_pipelines_own(engine: Engine, models: Path, flat: np.ndarray) -> None:
    pipe = load_qwen_pipeline(tiny_qwen_folder(models), torch.float32)
    tokens: list[int] = []
    ours = caption_image(pipe, flat, 64, tokens.append)
    width, height = bucket_size(100, 70, 64, packing_multiple(pipe))
    from PIL import Image

    resized = pipe.image_processor.resize(Image.fromarray(flat, "RGBA"), height, width)
    theirs = pipe.get_image_caption(resized, use_en_prompt=True, device=torch.device("cpu"))
    assert ours == theirs and ours
    assert tokens == list(range(1, len(tokens) + 1))


def test_cancel_during_captioning(engine: Engine, flat: np.ndarray) -> None:
    cancel = threading.Event()
    events: list[StepInfo] = []

    def on_event(info: StepInfo) -> None:
        events.append(info)
        if info.stage == "caption":
            cancel.set()

    with pytest.raises(GenerationCancelled):
        engine.generate(params(), {"image": flat}, callback=on_event, cancel=cancel)
    assert events and all(info.stage == "caption" for info in events)


def test_without_a_processor_an_empty_prompt_names_prompt(
    no_processor_models: Path, flat: np.ndarray
) -> None:
    folder = tiny_qwen_folder(no_processor_models)
    problem = caption_problem(folder)
    assert problem is not None and "processor/" in problem
    assert load_qwen_pipeline(folder, torch.float32).processor is None
    engine = Engine(ModelStore(no_processor_models, hf_cache=False))
    for prompt in ("", "   "):
        with pytest.raises(InputError) as error:
            engine.prepare(params(prompt=prompt), {"image": flat})
        assert error.value.field == "prompt"
        message = str(error.value)
        assert "pip install 'acetate[decompose]'" in message and "processor/" in message
    # With a prompt it decomposes as before
    result = engine.generate(params(prompt="a red disc", layer_count=2), {"image": flat})
    assert [layer.name for layer in result.layers] == ["layer_1", "layer_2", "blended"]
    assert result.model == TINY_QWEN_NAME


def test_progress_events_carry_the_stage_only_when_named() -> None:
    plain = JobMessage.progress("j_1", 1, 4, 0.5)
    assert plain.fields == {"step": 1, "total": 4, "eta_s": 0.5}
    named = JobMessage.progress("j_1", 0, 4, None, "caption", "Describing the image")
    assert named.fields == {
        "step": 0,
        "total": 4,
        "eta_s": None,
        "stage": "caption",
        "label": "Describing the image",
    }
