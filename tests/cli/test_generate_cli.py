"""`acetate generate`: flags derived from the request schema, every mode run in-process on the
tiny models, one-line errors naming the flag, and one `python -m acetate generate` smoke test."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import BaseModel, Field, create_model
from sample_images import rgba

import acetate.cli
from acetate.cli import generate as cli_generate
from acetate.modes import BUILTIN_MODES, IMAGE_FIELDS, LIST_INPUTS, MODE_NAMES, MODES, OPTIONS
from acetate.protocol import GenerateParameters

REPO = Path(__file__).resolve().parents[2]

#: Every flag `acetate generate` had before its flags were derived: none may change name.
FLAGS_BEFORE = {
    "--mode", "--model", "--prompt", "--negative-prompt", "--fg-prompt", "--bg-prompt",
    "--blend-prompt", "--seed", "--steps", "--cfg", "--scheduler", "--width", "--height",
    "--batch", "--strength", "--layer-weight", "--stop-at", "--decode", "--scale", "--margin",
    "--feather", "--control", "--controlnet", "--control-strength", "--control-image", "--fg",
    "--bg", "--image", "--mask", "--canvas", "--selection", "--out", "--psd",
    "--transparent-decoder", "--transparent-encoder", "--layer-model", "--server", "--token",
    "--models-dir", "--extra-models-dir", "--device", "--dtype", "--offload",
}  # fmt: skip


@pytest.fixture(autouse=True)
def only_generate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only this sub-command is under test; the others are built by other modules."""
    monkeypatch.setattr(acetate.cli, "COMMANDS", ("generate",))


def build(fields=None, images=IMAGE_FIELDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="acetate generate")
    cli_generate.add_arguments(parser, fields or GenerateParameters.model_fields, images)
    return parser


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings}


def generate(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`acetate generate ARGV` in-process: exit code, stdout, stderr."""
    try:
        code = acetate.cli.main(["generate", *argv])
    except SystemExit as exit_:  # argparse usage errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# -- the parser ----------------------------------------------------------------------------


def test_every_request_field_and_image_has_a_flag_and_no_flag_was_renamed() -> None:
    flags = options(build())
    assert set(flags) >= FLAGS_BEFORE, f"renamed or lost: {FLAGS_BEFORE - set(flags)}"
    for name in GenerateParameters.model_fields:
        if name in ("layer_prompts", "selection_bounds", "client_id", "layer_files", "loras"):
            assert "--" + name.replace("_", "-") not in flags
        else:
            assert flags["--" + name.replace("_", "-")].dest == name
    for name in IMAGE_FIELDS:
        action = flags["--" + name.replace("_", "-")]
        assert action.dest == name and action.metavar == "PNG"
    for name in LIST_INPUTS:
        assert flags["--" + name.replace("_", "-")].metavar == "JSON|@FILE"


def test_choices_and_help_come_from_the_schema_and_specs() -> None:
    flags = options(build())
    assert tuple(flags["--mode"].choices) == MODE_NAMES
    assert tuple(flags["--decode"].choices) == OPTIONS["decode"].choices
    assert tuple(flags["--control"].choices) == OPTIONS["control"].choices
    assert set(flags["--scheduler"].choices) >= {"euler_a", "unipc", "ddim"}
    assert flags["--steps"].type is int and flags["--cfg"].type is float
    assert flags["--strength"].help.startswith(OPTIONS["strength"].help)
    readers = [spec.name for spec in MODES.values() if "strength" in spec.options]
    assert f"modes: {', '.join(readers)}" in flags["--strength"].help
    assert "default 0.7" in flags["--strength"].help
    assert "default 64" in flags["--margin"].help
    # every built-in mode is named in --mode's help, and each image's modes in its help
    assert all(name in flags["--mode"].help for name in MODE_NAMES)
    assert "(bg2fg, scene optional)" in flags["--bg"].help


def test_help_is_grouped(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        acetate.cli.main(["generate", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    headings = ["request", "input images", "output", "server", "models and engine"]
    positions = [text.index(f"\n{heading}") for heading in headings]
    assert positions == sorted(positions)
    assert text.index("--steps") < text.index("--fg PNG") < text.index("--out DIR")
    assert text.index("--token") < text.index("--layer-model") < text.index("--device")


def test_only_given_flags_end_up_in_the_request(tmp_path: Path) -> None:
    parser = build()
    args = parser.parse_args(["--out", str(tmp_path), "--prompt", "cat", "--steps", "3"])
    assert cli_generate.request_fields(args) == {"prompt": "cat", "steps": 3}
    args = parser.parse_args(
        ["--out", str(tmp_path), "--mode", "joint", "--fg-prompt", "a", "--blend-prompt", "b"]
    )
    assert cli_generate.request_fields(args) == {
        "mode": "joint",
        "layer_prompts": {"foreground": "a", "blended": "b"},
    }
    # absent flags keep the schema's defaults
    params = cli_generate.validate({"prompt": "x"})
    assert params.batch == 1 and params.strength == OPTIONS["strength"].default
    assert params.model_fields_set == {"prompt"}


def test_a_request_flag_duplicating_a_cli_flag_is_refused_at_build_time() -> None:
    clashing = create_model("WithOut", __base__=GenerateParameters, out=(str | None, None))
    with pytest.raises(ValueError, match="--out"):
        build(clashing.model_fields)
    with pytest.raises(ValueError, match="--psd"):
        build(images=(*IMAGE_FIELDS, "psd"))
    settings = create_model("WithRun", __base__=GenerateParameters, run=(str | None, None))
    with pytest.raises(ValueError, match="run"):
        build(settings.model_fields)


class _Part(BaseModel):
    prompt: str = ""
    seed: int | None = Field(None, ge=0)


def test_bools_and_lists_from_the_field_types(tmp_path: Path) -> None:
    extended = create_model(
        "Extended",
        __base__=GenerateParameters,
        tile=(bool | None, Field(None, description="Tile the result.")),
        parts=(list[_Part] | None, Field(None, description="Parts.")),
    )
    parser = build(extended.model_fields)
    out = ["--out", str(tmp_path)]
    assert parser.parse_args(out).tile is None
    assert parser.parse_args([*out, "--tile"]).tile is True
    assert parser.parse_args([*out, "--no-tile"]).tile is False
    items = [{"prompt": "a"}, {"prompt": "b", "seed": 3}]
    assert parser.parse_args([*out, "--parts", json.dumps(items)]).parts == items
    (tmp_path / "parts.json").write_text(json.dumps(items))
    assert parser.parse_args([*out, "--parts", f"@{tmp_path / 'parts.json'}"]).parts == items
    args = parser.parse_args([*out, "--parts", '[{"prompt": "a"}]', "--no-tile"])
    assert cli_generate.request_fields(args) == {"tile": False, "parts": [{"prompt": "a"}]}


# -- every mode, in-process on the tiny models ---------------------------------------------


def _save(path: Path, array: np.ndarray) -> str:
    Image.fromarray(array).save(path)
    return str(path)


def _mask(width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 255
    return mask


def mode_args(mode: str, folder: Path) -> tuple[list[str], tuple[int, int]]:
    """Flags for `mode` on the tiny models, and the canvas size it should give."""
    width, height = 96, 64
    image = _save(folder / "image.png", rgba(width, height, seed=1))
    opaque = _save(folder / "opaque.png", rgba(width, height, seed=2, opaque=True))
    mask = _save(folder / "mask.png", _mask(width, height))
    return {
        "fg": (["--width", "128", "--height", "64"], (128, 64)),
        "fg2bg": (["--fg", image], (width, height)),
        "bg2fg": (["--bg", opaque], (width, height)),
        "joint": (["--width", "64", "--height", "128", "--bg-prompt", "a street"], (64, 128)),
        "img2img": (["--image", image, "--strength", "0.5"], (width, height)),
        "inpaint": (["--image", image, "--mask", mask, "--feather", "2"], (width, height)),
        "layer_on_artwork": (["--canvas", opaque, "--selection", mask], (width, height)),
        "upscale": (["--image", image, "--scale", "1.5"], (144, 96)),
        "scene": (
            ["--width", "192", "--height", "128", "--object", "a crow@4,6,60,40",
             "--object", f"a lantern@{mask}@40,10"],
            (192, 128),
        ),
    }[mode]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


# decompose runs on its own model family: tests/cli/test_decompose_cli.py
@pytest.mark.parametrize("mode", [spec.name for spec in BUILTIN_MODES if spec.name != "decompose"])
def test_every_mode_writes_its_layers(
    mode: str, tiny_models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra, (canvas_w, canvas_h) = mode_args(mode, tmp_path)
    out = tmp_path / "out"
    # fg: no --model, so the default base (tiny-sdxl, with a warning); the rest on tiny-sd15
    model = [] if mode == "fg" else ["--model", "tiny-sd15"]
    code, stdout, stderr = generate(
        "--mode", mode, *model, "--prompt", "glass bottle", "--seed", "5",
        "--steps", "2", "--decode", "fast", "--device", "cpu",
        "--models-dir", str(tiny_models_dir), "--out", str(out), *extra,
        capsys=capsys,
    )  # fmt: skip
    assert code == 0, stderr
    record = json.loads((out / "result.json").read_text())
    assert record["mode"] == mode
    assert record["model"] == ("tiny-sdxl" if mode == "fg" else "tiny-sd15")
    warnings = [line for line in stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [f"warning: {text}" for text in record["warnings"]]  # each once
    if mode == "fg":
        assert len(warnings) == 1 and "tiny-sdxl" in warnings[0]
    assert (record["canvas"]["width"], record["canvas"]["height"]) == (canvas_w, canvas_h)
    parameters = record["parameters"]
    assert (parameters["steps"], parameters["seed"], parameters["decode"]) == (2, 5, "fast")
    spec = MODES[mode]
    counts = {"objects": len(parameters.get("objects") or [])}
    keys = [layer.get("key") or layer["name"] for layer in record["layers"]]
    assert sorted(keys) == sorted(spec.layer_names(counts, images=set()))
    for layer, key in zip(record["layers"], keys, strict=True):
        assert layer["batch_index"] == 0
        with Image.open(out / layer["file"]) as png:
            assert png.size == (layer["width"], layer["height"])
            if spec.layer_spec(key).keeps_alpha:
                assert png.mode == "RGBA"
        assert layer["left"] >= 0 and layer["top"] >= 0
        assert layer["left"] + layer["width"] <= canvas_w
        assert layer["top"] + layer["height"] <= canvas_h
    printed = stdout.split()
    assert printed[-1] == str(out / "result.json")
    assert sorted(printed[:-1]) == sorted(str(out / layer["file"]) for layer in record["layers"])
    if mode == "joint":
        assert parameters["layer_prompts"]["background"] == "a street"
    if mode == "upscale":
        assert parameters["scale"] == 1.5
    if mode == "scene":
        assert [layer["name"] for layer in record["layers"]][1:3] == ["a crow", "a lantern"]
        mask = parameters["objects"][1]["region"]["mask"]
        assert (mask["width"], mask["height"]) == (96, 64)


# -- errors: one line naming the flag, exit code 2 -----------------------------------------


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("acetate generate: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "flag", "words"),
    [
        (["--mode", "nope"], "--mode", "invalid choice"),
        (["--mode", "bg2fg", "--prompt", "cat"], "--bg", "needs an image"),
        (["--mode", "fg2bg", "--prompt", "cat", "--fg", "missing.png"], "--fg", "no such file"),
        (["--prompt", "cat", "--width", "100"], "--width", "multiple of 64 (got 100; try 128)"),
        (["--prompt", "cat", "--steps", "many"], "--steps", "invalid int value"),
        (["--prompt", "cat", "--steps", "0"], "--steps", "greater than or equal to 1"),
        (["--prompt", "cat", "--fg-prompt", "x" * 5000], "--fg-prompt", "at most 4000"),
        (["--mode", "fg"], "--prompt", "needs a prompt"),
        (["--prompt", "cat", "--control", "image"], "--control-image", "needs a control_image"),
        (["--mode", "scene", "--prompt", "x", "--object", "a crow@1,2"], "--object[0]",
         "expected PROMPT@"),
        (["--mode", "scene", "--prompt", "x", "--width", "128", "--height", "64",
          "--object", "a crow@0,0,8,8", "--object", "a bat@100,10,60,20"],
         "objects[1].region", "extends past the 128×64 canvas"),
        (["--mode", "scene", "--prompt", "x", "--object", "a crow@m.png@1,2"], "objects.0.mask",
         "no such file"),
        (["--mode", "scene", "--prompt", "x", "--scene", "missing.json"], "--scene",
         "cannot read"),
    ],
)  # fmt: skip
def test_errors_are_one_line_naming_the_flag(
    argv: list[str],
    flag: str,
    words: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, stderr = generate(*argv, "--out", str(tmp_path / "out"), capsys=capsys)
    assert code == 2
    line = _one_line(stderr)
    assert flag in line and words in line, line
    assert not (tmp_path / "out").exists()


def test_scene_json_takes_the_api_objects_and_mask_files(
    tiny_models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _save(tmp_path / "moon.png", _mask(40, 30))
    objects = [
        {"prompt": "a crow", "region": {"left": 2, "top": 2, "width": 50, "height": 30}},
        {"prompt": "a moon", "region": {"left": 70, "top": 20, "mask": "moon.png"}, "seed": 4},
    ]
    (tmp_path / "scene.json").write_text(json.dumps(objects), encoding="utf-8")
    out = tmp_path / "out"
    code, _, stderr = generate(
        "--mode", "scene", "--model", "tiny-sdxl", "--prompt", "night", "--steps", "1",
        "--decode", "fast", "--device", "cpu", "--width", "128", "--height", "64",
        "--models-dir", str(tiny_models_dir), "--scene", str(tmp_path / "scene.json"),
        "--bg", _save(tmp_path / "bg.png", rgba(128, 64, seed=3, opaque=True)),
        "--out", str(out), "--psd",
        capsys=capsys,
    )  # fmt: skip
    assert code == 0, stderr
    record = json.loads((out / "result.json").read_text())
    assert [layer["file"] for layer in record["layers"]] == [
        "object_0.png",
        "object_1.png",
        "blended.png",
    ]
    moon = record["layers"][1]
    assert moon["name"] == "a moon" and moon["left"] >= 70 and moon["top"] >= 20
    assert moon["left"] + moon["width"] <= 110 and moon["top"] + moon["height"] <= 50
    assert record["parameters"]["objects"][1]["seed"] == 4
    assert (out / "layers.psd").is_file()


def test_missing_out_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, stderr = generate("--prompt", "cat", capsys=capsys)
    assert code == 2 and "--out" in _one_line(stderr)


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "acetate", "generate", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def test_list_inputs_of_extra_modes_take_json(tmp_path: Path) -> None:
    """A mode loaded from ACETATE_EXTRA_MODES gets its list flag; bad values are one line."""
    env = {
        "ACETATE_EXTRA_MODES": "tests.support.dummy_mode",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    shown = run_cli("--help", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "--parts JSON|@FILE" in shown.stdout and "dummy_parts" in shown.stdout
    canvas = _save(tmp_path / "canvas.png", rgba(64, 64, opaque=True))
    base = ["--mode", "dummy_parts", "--canvas", canvas, "--out", str(tmp_path / "out")]
    for value, words in [
        ('[{"prompt": "a"', "argument --parts: invalid JSON"),
        ('{"prompt": "a"}', "argument --parts: expected a JSON list"),
        ('[{"prompt": 5}]', "--parts[0].prompt: Input should be a valid string"),
        ("[]", "--parts: List should have at least 1 item"),
        ("@nothing.json", "argument --parts: cannot read nothing.json"),
    ]:
        result = run_cli(*base, "--parts", value, env=env)
        assert result.returncode == 2, (value, result.stderr)
        assert words in _one_line(result.stderr), (value, result.stderr)


def test_python_m_acetate_generate_smoke(tiny_models_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli(
        "--model", "tiny-sdxl", "--prompt", "glass bottle", "--width", "64", "--height", "64",
        "--steps", "2", "--decode", "fast", "--batch", "2", "--device", "cpu", "--psd", "--ora",
        "--models-dir", str(tiny_models_dir), "--out", str(out),
        env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.split() == [
        str(out / "foreground.png"),
        str(out / "foreground_1.png"),
        str(out / "layers.psd"),
        str(out / "layers.ora"),
        str(out / "result.json"),
    ]
    record = json.loads((out / "result.json").read_text())
    assert record["parameters"]["batch"] == 2 and record["psd"] == "layers.psd"
    assert record["ora"] == "layers.ora"


def test_server_runs_get_only_the_given_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--server`: the request carries the flags given, so the server fills the defaults."""
    import acetate.client
    from acetate.protocol import ResultRecord

    sent: dict = {}

    async def fake_run_job(url, token, request, images, out_dir, *, psd=False, ora=False):
        sent.update(url=url, token=token, request=request, images=images, psd=psd, ora=ora)
        return ResultRecord(
            id="j_1", mode=request["mode"], model="m", parameters={}, canvas={"width": 96,
            "height": 64}, layers=[], warnings=["from the server"],
        )  # fmt: skip

    monkeypatch.setattr(acetate.client, "run_job", fake_run_job)
    monkeypatch.setenv("ACETATE_TOKEN", "secret")
    image = _save(tmp_path / "bg.png", rgba(96, 64, opaque=True))
    code, stdout, stderr = generate(
        "--server", "http://127.0.0.1:9", "--mode", "bg2fg", "--bg", image, "--prompt", "cat",
        "--fg-prompt", "tabby", "--psd", "--out", str(tmp_path / "out"),
        capsys=capsys,
    )  # fmt: skip
    assert code == 0, stderr
    assert sent["request"] == {
        "mode": "bg2fg",
        "prompt": "cat",
        "layer_prompts": {"foreground": "tabby"},
    }
    assert sent["url"] == "http://127.0.0.1:9" and sent["token"] == "secret" and sent["psd"]
    assert not sent["ora"]
    assert list(sent["images"]) == ["bg"] and sent["images"]["bg"].shape == (64, 96, 4)
    assert stderr.strip() == "warning: from the server"
    assert stdout.split() == [str(tmp_path / "out" / "result.json")]


def test_server_run_on_a_live_server(
    tiny_models_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--server URL` against a real server (in a thread) writes the same result folder."""
    import asyncio
    import threading

    monkeypatch.syspath_prepend(str(REPO / "tests" / "api"))
    from server_helpers import free_port, start_server

    from acetate.api.config import ServerConfig
    from acetate.engine.engine import Engine
    from acetate.engine.options import EngineOptions
    from acetate.engine.store.models import ModelStore

    store = ModelStore(tiny_models_dir)
    engine = Engine(store, EngineOptions(device="cpu"))
    config = ServerConfig(output_dir=tmp_path / "server", port=free_port())
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    live = asyncio.run_coroutine_threadsafe(start_server(config, engine, store), loop).result(60)
    try:
        image = _save(tmp_path / "bg.png", rgba(96, 64, opaque=True))
        out = tmp_path / "out"
        code, stdout, stderr = generate(
            "--server", live.url, "--mode", "bg2fg", "--model", "tiny-sd15", "--bg", image,
            "--prompt", "cat", "--steps", "2", "--decode", "fast", "--ora", "--out", str(out),
            capsys=capsys,
        )  # fmt: skip
    finally:
        asyncio.run_coroutine_threadsafe(live.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
    assert code == 0, stderr
    record = json.loads((out / "result.json").read_text())
    assert sorted(layer["name"] for layer in record["layers"]) == ["blended", "foreground"]
    assert record["ora"] == "layers.ora" and (out / "layers.ora").is_file()
    assert record["parameters"]["steps"] == 2 and record["parameters"]["decode"] == "fast"
    assert stdout.split()[-1] == str(out / "result.json")
