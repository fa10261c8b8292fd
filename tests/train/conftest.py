"""Shared training fixtures: synthetic data and one seeded tiny run, built once per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: Small enough for CPU tests, big enough for random crops (short side 96 → 64² crops).
SYNTH_SIZE = 96
CROP = 64


@pytest.fixture(scope="session")
def train_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from acetate.train.synth import write_synth

    folder = tmp_path_factory.mktemp("train-data")
    write_synth(folder, 24, seed=1, size=SYNTH_SIZE)
    return folder


@pytest.fixture(scope="session")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from acetate.train.synth import write_synth

    folder = tmp_path_factory.mktemp("held-out")
    write_synth(folder, 8, seed=2, size=SYNTH_SIZE)
    return folder


def tiny_config(data: Path, models: Path, out: Path, **changes: Any) -> Any:
    """A seeded fine-tune of the tiny official-layout pair against tiny-sd15's VAE."""
    from acetate.train.loop import TrainConfig

    settings: dict[str, Any] = dict(
        data=data,
        base="tiny-sd15",
        models_dir=models,
        out=out,
        init="official",  # the tiny twins of the released files: a fine-tune
        arch="tiny",
        steps=60,
        batch=4,
        size=CROP,
        lr=1e-3,
        seed=0,
        save_every=30,
        disc_start=30,
        disc_width=8,
        workers=0,
        progress=False,
    )
    settings.update(changes)
    return TrainConfig(**settings)


@dataclass
class TinyRun:
    """The 60-step run and its held-out figures before (step 0) and after."""

    out: Path
    files: dict[str, Path]
    before: dict[str, float]
    after: dict[str, float]
    seconds: float


def held_out_figures(trainer: Any, held: Path) -> dict[str, float]:
    from acetate.train import data as train_data
    from acetate.train import evaluate as train_eval

    scan = train_data.scan_folder(held)
    crops = [train_data.centre_crop(train_data.read_rgba(p), CROP) for p in scan.images]
    pair = trainer.accelerator.unwrap_model(trainer.pair)
    pair.eval()
    try:
        names = [p.name for p in scan.images]
        metrics = train_eval.evaluate(trainer.vae, pair.encoder, pair.decoder, crops, names)
        figures = dict(metrics["mean"])
        figures.update(train_eval.objective(trainer.vae, pair.encoder, pair.decoder, crops))
    finally:
        pair.train()
    return figures


@pytest.fixture(scope="session")
def tiny_run(
    tiny_models_dir: Path,
    train_data: Path,
    held_out: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> TinyRun:
    import time

    from acetate.train.loop import Trainer

    out = tmp_path_factory.mktemp("runs") / "tiny-run"
    trainer = Trainer(tiny_config(train_data, tiny_models_dir, out))
    before = held_out_figures(trainer, held_out)
    started = time.perf_counter()
    files = trainer.run()
    seconds = time.perf_counter() - started
    return TinyRun(out, files, before, held_out_figures(trainer, held_out), seconds)
