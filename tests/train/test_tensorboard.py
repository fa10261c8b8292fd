"""TensorBoard logs (the `train` extra): both training commands write the scalars a user
watches, readable by TensorBoard's own event reader."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TinyRun

pytest.importorskip("tensorboard", reason="the train extra (tensorboard) is not installed")


def _scalars(logs: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(logs.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events.parent))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            found[tag] = [(e.step, e.value) for e in accumulator.Scalars(tag)]
    return found


def test_transparency_training_logs_losses_and_evaluations(tiny_run: TinyRun) -> None:
    scalars = _scalars(tiny_run.out / "logs")
    steps = [step for step, _ in scalars["rec"]]
    assert steps == list(range(1, 61))
    assert {"loss", "id", "g", "w", "d"} <= set(scalars), sorted(scalars)
    assert [step for step, _ in scalars["eval/alpha_psnr"]] == [30, 60]


def test_layer_model_training_logs_the_loss(tiny_models_dir: Path, tmp_path: Path) -> None:
    from acetate.train.layer.config import LayerTrainConfig
    from acetate.train.layer.loop import LayerTrainer
    from acetate.train.synth import write_synth

    data = tmp_path / "data"
    write_synth(data, 4, seed=3, size=64)
    config = LayerTrainConfig(
        data=data, base="tiny-sd15", models_dir=tiny_models_dir, out=tmp_path / "run",
        default_caption="a sticker", steps=4, batch=2, save_every=1000, validation_steps=1,
        workers=0, progress=False,
    )  # fmt: skip
    LayerTrainer(config).run()
    scalars = _scalars(tmp_path / "run" / "logs")
    assert [step for step, _ in scalars["loss"]] == [1, 2, 3, 4]
    assert all(value > 0 for _, value in scalars["loss"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = next((tmp_path / "run" / "logs").rglob("events.out.tfevents.*"))
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    assert "samples" in accumulator.Tags()["images"]
    sample = accumulator.Images("samples")[-1]
    assert sample.step == 4 and sample.width > sample.height > 0
