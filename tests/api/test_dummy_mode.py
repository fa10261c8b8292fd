"""A mode that only a spec and a pipeline function know about runs through the server and the
CLI, streaming its layers: the test-only `dummy_parts` (tests/support/dummy_mode.py), loaded
into real subprocesses with `ACETATE_EXTRA_MODES`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from sample_images import rgba

from acetate.client import AcetateClient
from acetate.protocol import JobEvent

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "krita_plugin"))
from server_process import ServerProcess, start_server  # noqa: E402

DUMMY_ENV = {"ACETATE_EXTRA_MODES": "tests.support.dummy_mode", "PYTHONPATH": str(ROOT)}
STEPS = 2


@pytest.fixture(scope="module")
def dummy_server(
    tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server = start_server(tiny_models_dir, tmp_path_factory.mktemp("dummy"), env=DUMMY_ENV)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.asyncio
async def test_dummy_mode_is_published_and_streams_layers_before_the_next_stage(
    dummy_server: ServerProcess,
) -> None:
    canvas = rgba(96, 64, 5, opaque=True)
    async with AcetateClient(dummy_server.url) as client:
        modes = await client.modes()
        spec = next(m for m in modes["modes"] if m["name"] == "dummy_parts")
        assert [layer["name"] for layer in spec["layers"]] == ["part_{i}", "blended"]
        assert spec["lists"][0]["field"] == "parts"
        request = {
            "mode": "dummy_parts",
            "model": "tiny-sdxl",
            "parts": [{"prompt": "a moon"}, {"prompt": "a cloud", "seed": 9}, {"prompt": "a bat"}],
            "steps": STEPS,
            "decode": "fast",
            "seed": 3,
        }
        created = await client.submit(request, {"canvas": canvas})
        messages = [message async for message in client.events([created.id])]

    kinds = [m.type for m in messages]
    assert kinds[-1] is JobEvent.done, kinds
    progress = [m for m in messages if m.type is JobEvent.progress]
    assert [m.fields["total"] for m in progress] == [2 * STEPS] * len(progress)
    first_layer = kinds.index(JobEvent.layer_ready)
    second_stage = next(
        i
        for i, m in enumerate(messages)
        if m.type is JobEvent.progress and m.fields["step"] > STEPS
    )
    assert first_layer < second_stage, "part_0 must be announced before stage two starts"
    assert messages[first_layer].layer.name == "part_0"
    ready = [m.layer.name for m in messages if m.type is JobEvent.layer_ready]
    assert ready == ["part_0", "part_1", "part_2", "blended"]

    result = messages[-1].result
    assert [layer.name for layer in result.layers] == ["part_0", "part_1", "part_2", "blended"]
    assert [layer.visible for layer in result.layers] == [True, True, True, False]
    assert (result.canvas.width, result.canvas.height) == (96, 64)
    assert result.parameters["parts"][1] == {"prompt": "a cloud", "seed": 9}
    assert result.parameters["stop_at"] == 1.0


def test_dummy_mode_through_the_cli(tiny_models_dir: Path, tmp_path: Path) -> None:
    canvas = tmp_path / "canvas.png"
    Image.fromarray(rgba(64, 64, 1, opaque=True)).save(canvas)
    out = tmp_path / "out"
    parts = json.dumps([{"prompt": "a moon"}, {"prompt": "a bat"}])
    command = [
        sys.executable, "-m", "acetate", "generate", "--mode", "dummy_parts", "--model",
        "tiny-sd15", "--canvas", str(canvas), "--parts", parts, "--steps", "1", "--decode",
        "fast", "--seed", "2", "--psd", "--out", str(out), "--models-dir", str(tiny_models_dir),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **DUMMY_ENV}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "result.json").read_text())
    assert [layer["file"] for layer in record["layers"]] == [
        "part_0.png",
        "part_1.png",
        "blended.png",
    ]
    with Image.open(out / "part_1.png") as part:
        assert part.mode == "RGBA" and part.size == (64, 64)
    with Image.open(out / "blended.png") as blended:
        assert blended.size == (64, 64)
    assert record["psd"] == "layers.psd" and (out / "layers.psd").is_file()
