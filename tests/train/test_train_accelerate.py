"""`accelerate launch` runs the same command data-parallel: 2 CPU processes × batch 2 train
what one process with batch 4 trains (until the discriminator, whose BatchNorm sees each
process's own half, starts).

accelerate 1.x's `launch --cpu` starts ONE process unless MPI is set up (`--mpirun_hostfile`);
2 CPU processes come from its torchrun path (`--multi_gpu`) with our `--cpu` flag, which makes
each process's Accelerator pick gloo (`DistributedType.MULTI_CPU`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import tiny_config
from safetensors import safe_open
from safetensors.torch import load_file


def test_two_processes_equal_one_with_the_global_batch(
    train_data: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    from acetate.train.loop import Trainer

    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate is not None
    out = tmp_path / "ddp"
    command = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "acetate",
        "train", "transparency", "--data", str(train_data), "--base", "tiny-sd15",
        "--models-dir", str(tiny_models_dir), "--size", "64", "--batch", "2", "--steps", "4",
        "--save-every", "2", "--disc-start", "2", "--disc-width", "8", "--lr", "1e-3",
        "--workers", "0", "--out", str(out), "--no-progress", "--cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((out / "checkpoints" / "step-0000002" / "train_state.json").read_text())
    assert state["info"]["extra"]["num_processes"] == 2
    final = sorted(out.glob("*.safetensors"))
    assert len(final) == 2
    with safe_open(str(final[0]), framework="pt") as handle:
        assert handle.metadata()["acetate.steps"] == "4"

    single = tiny_config(train_data, tiny_models_dir, tmp_path / "one", steps=2, batch=4)
    Trainer(single).run()
    # Adam moves every weight by about ±lr whatever its gradient's size, so the few weights
    # whose gradient is ~0 (conv biases before a GroupNorm) flip with all-reduce rounding.
    # Processes that did not synchronise differ in about a third of all weights (measured).
    differing = total = 0
    for name in ("decoder", "encoder"):
        ddp = load_file(next((out / "checkpoints" / "step-0000002").glob(f"*{name}*")))
        one = load_file(next((tmp_path / "one" / "checkpoints" / "step-0000002").glob(f"*{name}*")))
        for key, value in one.items():
            difference = (ddp[key] - value).abs()
            assert float(difference.max()) <= 2 * 2 * 1e-3 + 1e-6  # 2 steps of at most 2·lr
            differing += int((difference > 1e-5).sum())
            total += value.numel()
    assert differing / total < 0.01, f"{differing} of {total} weights differ"


def test_layer_model_two_processes_equal_one_with_the_global_batch(
    train_data: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    """`acetate train layer-model` under `accelerate launch`: data, noise and timesteps are
    sliced per process from the global batch, and DDP averages the adapter's gradients."""
    from acetate.train.layer.config import LayerTrainConfig
    from acetate.train.layer.loop import LayerTrainer

    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate is not None
    out = tmp_path / "ddp"
    common = ["--data", str(train_data), "--base", "tiny-sd15", "--default-caption", "a shape",
              "--models-dir", str(tiny_models_dir), "--steps", "2", "--save-every", "2",
              "--validate-every", "100", "--lr", "1e-3", "--workers", "0",
              "--no-progress"]  # fmt: skip
    command = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "acetate",
        "train", "layer-model", *common, "--batch", "1", "--out", str(out), "--cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    single = LayerTrainConfig(
        data=train_data, base="tiny-sd15", models_dir=tiny_models_dir, out=tmp_path / "one",
        default_caption="a shape", steps=2, batch=2, lr=1e-3, save_every=2, validate_every=100,
        workers=0, progress=False,
    )  # fmt: skip
    LayerTrainer(single).run()
    ddp = load_file(next(out.glob("*.safetensors")))
    one = load_file(next((tmp_path / "one").glob("*.safetensors")))
    assert ddp.keys() == one.keys()
    moved = differing = 0
    start = load_file(
        tiny_models_dir / "tiny" / "layer_model" / "layer_sd15_transparent_attn.safetensors"
    )
    for key, value in one.items():
        # AdamW moves a weight by about ±lr per step whatever its gradient's size, so weights
        # with a near-zero gradient may flip with all-reduce rounding; the rest agree.
        difference = (ddp[key].float() - value.float()).abs()
        assert float(difference.max()) <= 2 * 2 * 1e-3 + 1e-3
        moved += int(((value.float() - start[key].float()).abs() > 1e-4).sum())
        differing += int((difference > 1e-4).sum())
    assert moved > 0 and differing < 0.05 * moved, (differing, moved)
