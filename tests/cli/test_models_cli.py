"""`acetate models`: listing, checking, building and (offline) downloading, with exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from acetate.cli import main

ENGINE_TESTS = Path(__file__).resolve().parents[1] / "engine"
sys.path.insert(0, str(ENGINE_TESTS))
from store_files import checkpoint_shapes, write_header_only, write_layer_file  # noqa: E402


@pytest.fixture
def models(tmp_path: Path, tiny_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "tiny").symlink_to(tiny_models_dir / "tiny")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # never the machine's real cache
    return folder


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "acetate", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def test_list_shows_what_each_mode_still_needs(
    models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_header_only(models / "checkpoints" / "juggernaut.safetensors", checkpoint_shapes("sdxl"))
    write_layer_file(models / "layer_model", "ld_diffusers_sdxl_attn")
    (models / "checkpoints" / "old.ckpt").write_bytes(b"x")
    assert main(["models", "--models-dir", str(models)]) == 0
    out = capsys.readouterr().out
    assert "juggernaut  SDXL  single_file" in out
    assert "fg needs: vae_transparent_decoder.safetensors" in out
    assert "joint: unavailable: no official SDXL joint model" in out
    assert "tiny-sd15  SD1.5  diffusers  built in  [test model" in out
    assert "old.ckpt: pickle checkpoint refused" in out
    assert f"to get: put these in {models / 'layer_model'}/ (`acetate models get NAME`)" in out
    assert (
        "  vae_transparent_decoder.safetensors  https://huggingface.co/"
        "LayerDiffusion/layerdiffusion-v1/resolve/main/vae_transparent_decoder.safetensors"
    ) in out
    assert "warning" not in out  # a real base exists: no tiny default warning


def test_list_shows_loras_embeddings_and_why_files_are_refused(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = models / "tiny"
    webui = tmp_path / "webui"  # A1111: embeddings/ beside models/
    (webui / "embeddings").mkdir(parents=True)
    (webui / "models" / "Lora").mkdir(parents=True)
    shutil.copy(
        tiny / "embeddings" / "tiny-emb-sdxl.safetensors", webui / "embeddings" / "x.safetensors"
    )
    shutil.copy(
        tiny / "loras" / "tiny-style-sd15.safetensors",
        webui / "models" / "Lora" / "ink.safetensors",
    )
    (webui / "embeddings" / "bad.pt").write_bytes(b"x")
    write_header_only(webui / "embeddings" / "sd2.safetensors", {"emb_params": (1, 1024)})
    args = ["models", "--models-dir", str(models), "--extra-models-dir", str(webui)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (
        f"LoRAs (request field `loras`):\n  ink  SD1.5  diffusers  extra:{webui}  "
        f"{webui / 'models' / 'Lora' / 'ink.safetensors'}  [test model]\n"
        "  tiny-style-sd15  SD1.5  diffusers  built in  [test model]\n"
    ) in out
    assert (
        f"embeddings (write the name in a prompt):\n  x  SDXL  sdxl  2 vectors  extra:{webui}  "
        f"{webui / 'embeddings' / 'x.safetensors'}  [test model]\n"
        "  tiny-emb-sd15  SD1.5  a1111  2 vectors  built in  [test model]\n"
    ) in out
    assert f"{webui / 'embeddings' / 'bad.pt'}: pickle checkpoint refused" in out
    assert f"{webui / 'embeddings' / 'sd2.safetensors'}: sd2.safetensors: an SD2.x embedding" in out


def test_list_json(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json", "--models-dir", str(models)]) == 0
    summary = json.loads(capsys.readouterr().out)
    names = [b["name"] for b in summary["bases"]]
    assert names == ["tiny-sd15", "tiny-sdxl", "tiny-qwen-image-layered"]
    assert all(b["tiny"] for b in summary["bases"])
    assert summary["default_base"] == "tiny-sdxl" and "tiny-sdxl" in summary["warnings"][0]
    assert summary["default_bases"]["decompose"] == "tiny-qwen-image-layered"


def test_extra_models_dir_option(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    comfy = tmp_path / "ComfyUI"
    write_header_only(
        comfy / "models" / "checkpoints" / "rv.safetensors", checkpoint_shapes("sd15")
    )
    assert (
        main(["models", "--json", "--models-dir", str(models), "--extra-models-dir", str(comfy)])
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["default_base"] == "rv"


def test_check_identifies_files_and_fails_on_bad_ones(
    models: Path, tmp_path: Path, tiny_models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layers = tiny_models_dir / "tiny" / "layer_model"
    real = write_layer_file(tmp_path, "layer_sd15_bg2fg")
    args = ["models", "check", str(layers / "layer_sd15_joint.safetensors"), str(real)]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert "layer_sd15_joint (SD1.5 attention sharing); 3 frame(s) without control image" in out[0]
    assert out[1].endswith(
        "layer_sd15_bg2fg (SD1.5 attention sharing); 2 frame(s) with control image; "
        "maps onto the full-size base: ok"
    )
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 16)
    assert main(["models", "check", str(real), str(junk)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("acetate models check: error:")
    ambiguous = tmp_path / "renamed.safetensors"
    shutil.copy(layers / "layer_xl_bgble2fg.safetensors", ambiguous)
    assert main(["models", "check", str(ambiguous)]) == 2
    assert "explicitly" in capsys.readouterr().err
    assert main(["models", "check", "--kind", "layer_xl_bgble2fg", str(ambiguous)]) == 0


def test_check_recognises_a_base_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_header_only(tmp_path / "xl.safetensors", checkpoint_shapes("sdxl"))
    assert main(["models", "check", str(path)]) == 0
    assert "SDXL base checkpoint (not a LayerDiffusion layer file)" in capsys.readouterr().out


@pytest.mark.parametrize("before", [True, False])
def test_tiny_prints_the_paths(
    models: Path, capsys: pytest.CaptureFixture[str], before: bool
) -> None:
    option = ["--models-dir", str(models)]
    assert main(["models", *option, "tiny"] if before else ["models", "tiny", *option]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert str(models / "tiny" / "checkpoints" / "tiny-sdxl") in lines
    assert str(models / "tiny" / "layer_model" / "vae_transparent_decoder.safetensors") in lines


def test_get_offline_is_one_clear_line_in_a_real_process(models: Path) -> None:
    result = run("models", "get", "layer_xl_fg2ble", "--models-dir", str(models))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "offline" in result.stderr and "layer_xl_fg2ble.safetensors" in result.stderr
    assert not (models / "layer_model").exists()
    unknown = run("models", "get", "juggernaut", "--models-dir", str(models))
    assert unknown.returncode == 2 and "unknown model name 'juggernaut'" in unknown.stderr


def test_check_in_a_real_process_exit_code(tmp_path: Path) -> None:
    missing = run("models", "check", str(tmp_path / "nope.safetensors"))
    assert missing.returncode == 2
    assert (
        missing.stderr.strip()
        == f"acetate models check: error: {tmp_path / 'nope.safetensors'}: no such file"
    )
