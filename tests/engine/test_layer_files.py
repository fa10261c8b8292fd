"""A request's `layer_files`: listed LayerDiffusion files (official or trained) chosen by name,
never by path, named with their SHA-256 in the result record; the CLI flags take a name or a
local path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.trained import SD15_DECODER, TRAINED_NAME, models_with_trained_decoder, sha256_of

import acetate.cli
from acetate.errors import InputError, ModelNotFoundError
from acetate.protocol import GenerateParameters


@pytest.fixture(scope="module")
def models(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trained-store") / "models"
    models_with_trained_decoder(tiny_models_dir, root)
    return root


def _store(models: Path):
    from acetate.engine.store.models import ModelStore

    return ModelStore(models, hf_cache=False)


def test_a_listed_name_replaces_the_default_for_its_part(models: Path) -> None:
    store = _store(models)
    base = store.base("tiny-sd15").model
    assert store.resolve(base, "fg")["decoder"].name == f"{SD15_DECODER}.safetensors"
    for name in (TRAINED_NAME, TRAINED_NAME.removesuffix(".safetensors")):
        chosen = store.resolve(base, "fg", names=[name])
        assert chosen["decoder"].name == TRAINED_NAME
        assert chosen["decoder"].kind == SD15_DECODER
        assert chosen["unet_patch" if "unet_patch" in chosen else "attention_sharing"].name != (
            TRAINED_NAME
        )


@pytest.mark.parametrize(
    ("names", "error", "words"),
    [
        (["nosuch.safetensors"], ModelNotFoundError, "no LayerDiffusion file named 'nosuch"),
        # An SDXL test file on an SD1.5 base: the message says both families.
        (["vae_transparent_decoder"], InputError, "SDXL file"),
        # Two decoders for one part.
        ([TRAINED_NAME, f"{SD15_DECODER}.safetensors"], InputError, "two files given"),
        # A file this mode does not use (fg on SD1.5 decodes only).
        (["layer_sd15_vae_transparent_encoder"], InputError, "not used by mode fg"),
    ],
)
def test_bad_names_are_input_errors_on_layer_files(
    models: Path, names: list[str], error: type[Exception], words: str
) -> None:
    store = _store(models)
    base = store.base("tiny-sd15").model
    with pytest.raises(error, match=words) as raised:
        store.resolve(base, "fg", names=names)
    assert getattr(raised.value, "field", None) == "layer_files"


@pytest.mark.parametrize("bad", ["../models/x.safetensors", "a\\b", "", "x" * 201])
def test_layer_files_are_names_never_paths(bad: str) -> None:
    with pytest.raises(ValueError, match="layer_files"):
        GenerateParameters.model_validate({"prompt": "a", "layer_files": [bad]})
    with pytest.raises(ValueError, match="layer_files"):
        GenerateParameters.model_validate({"prompt": "a", "layer_files": ["a"] * 9})


def _alpha(out: Path) -> np.ndarray:
    return np.asarray(Image.open(out / "foreground.png"))[..., 3]


def test_cli_flags_take_a_name_or_a_path_and_the_record_names_the_files(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["generate", "--mode", "fg", "--model", "tiny-sd15", "--prompt", "glass",
              "--seed", "5", "--steps", "2", "--decode", "fast", "--device", "cpu",
              "--width", "64", "--height", "64", "--models-dir", str(models)]  # fmt: skip
    trained = models / "tiny" / "layer_model" / TRAINED_NAME
    runs = {
        "official": [],
        "by_name": ["--transparent-decoder", TRAINED_NAME.removesuffix(".safetensors")],
        "by_path": ["--layer-model", str(trained)],
    }
    for out, flags in runs.items():
        code = acetate.cli.main([*common, *flags, "--out", str(tmp_path / out)])
        assert code == 0, capsys.readouterr().err
    assert np.array_equal(_alpha(tmp_path / "by_name"), _alpha(tmp_path / "by_path"))
    assert not np.array_equal(_alpha(tmp_path / "official"), _alpha(tmp_path / "by_name"))

    official = json.loads((tmp_path / "official" / "result.json").read_text())
    by_name = json.loads((tmp_path / "by_name" / "result.json").read_text())
    official_file = models / "tiny" / "layer_model" / f"{SD15_DECODER}.safetensors"
    assert official["files"][SD15_DECODER] == {
        "name": official_file.name,
        "sha256": sha256_of(official_file),
    }
    assert by_name["files"][SD15_DECODER] == {"name": TRAINED_NAME, "sha256": sha256_of(trained)}
    assert by_name["parameters"]["layer_files"] == [TRAINED_NAME.removesuffix(".safetensors")]
    # The attention-sharing file is named too, whichever decoder was chosen.
    assert set(official["files"]) == set(by_name["files"]) and len(official["files"]) == 2


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--transparent-decoder", "nosuch"], "--layer-model: no LayerDiffusion file named"),
        (["--layer-model", "missing/file.safetensors"], "--layer-model: no such file"),
        (["--transparent-decoder", "x/y.safetensors", "--server", "http://127.0.0.1:9"],
         "--transparent-decoder: a server cannot read this machine's files"),
    ],
)  # fmt: skip
def test_cli_bad_layer_file_flags_are_one_line_errors(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], words: str
) -> None:
    code = acetate.cli.main(
        ["generate", "--mode", "fg", "--model", "tiny-sd15", "--prompt", "x", "--steps", "1",
         "--models-dir", str(models), "--out", str(tmp_path / "out"), *flags]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and words in err, err
    assert "Traceback" not in err
