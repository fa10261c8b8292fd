"""Issue 19: any unexpected exception is one line (`--debug` shows the traceback), and a base
whose tokenizer config is unusable is refused when it is loaded, naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import acetate.cli
import acetate.cli.doctor
from acetate.errors import ModelFileError


def boom(args: Any) -> int:
    raise OverflowError("int too big to convert")


def test_an_unexpected_exception_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(acetate.cli, "COMMANDS", ("doctor",))
    monkeypatch.setattr(acetate.cli.doctor, "run", boom)
    assert acetate.cli.main(["doctor"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "acetate doctor: unexpected error: OverflowError: int too big to convert" in err
    assert "--debug" in err and "Traceback" not in err

    assert acetate.cli.main(["--debug", "doctor"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "def boom" not in err
    assert err.strip().splitlines()[-1].startswith("acetate doctor: unexpected error")


@pytest.mark.parametrize("value", [None, 1e30, "77", 0])
def test_a_base_with_an_unusable_tokenizer_config_is_refused_naming_the_file(
    tiny_models_dir: Path, tmp_path: Path, value: Any
) -> None:
    import torch

    from acetate.engine.store.loading import load_base_pipeline
    from acetate.engine.store.models import ModelStore

    source = next(tiny_models_dir.rglob("tiny-sd15"))
    models = tmp_path / "models"
    target = models / "checkpoints" / "broken-sd15"
    shutil.copytree(source, target)
    config_file = target / "tokenizer" / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    if value is None:
        config.pop("model_max_length", None)
    else:
        config["model_max_length"] = value
    config_file.write_text(json.dumps(config))
    store = ModelStore(models)
    base = next(b for b in store.bases() if b.name == "broken-sd15")
    with pytest.raises(ModelFileError) as caught:
        load_base_pipeline(base, torch.float32)
    message = caught.value.message
    assert "broken-sd15/tokenizer/tokenizer_config.json" in message
    assert "model_max_length" in message
