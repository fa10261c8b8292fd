"""`acetate generate --bit-depth 16 --psd --ora`: 16-bit PNGs, a 16-bit PSD and ORA holding the
same pixels, `bit_depth` in the record; a bad depth is a one-line usage error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ora_reader import read_ora
from psd_tools import PSDImage

import acetate.cli
from acetate.export.png import decode_png16, png_bit_depth


@pytest.fixture(autouse=True)
def only_generate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only this sub-command is under test; the others are built by other modules."""
    monkeypatch.setattr(acetate.cli, "COMMANDS", ("generate",))
    torch.set_num_threads(1)


def generate(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = acetate.cli.main(["generate", *argv])
    except SystemExit as exit_:  # argparse usage errors
        code = int(exit_.code or 0)
    return code, capsys.readouterr().err


def test_bit_depth_16_writes_16_bit_png_psd_and_ora(
    tiny_models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, stderr = generate(
        "--model", "tiny-sdxl", "--prompt", "smoke", "--width", "64", "--height", "128",
        "--steps", "2", "--decode", "fast", "--seed", "3", "--device", "cpu",
        "--bit-depth", "16", "--psd", "--ora",
        "--models-dir", str(tiny_models_dir), "--out", str(out),
        capsys=capsys,
    )  # fmt: skip
    assert code == 0, stderr
    record = json.loads((out / "result.json").read_text())
    assert record["parameters"]["bit_depth"] == 16
    data = (out / "foreground.png").read_bytes()
    assert png_bit_depth(data) == 16
    pixels = decode_png16(data)
    assert pixels.shape == (128, 64, 4) and np.any(pixels[..., 3] % 257 != 0)
    psd = PSDImage.open(out / "layers.psd")
    assert psd.depth == 16
    (layer,) = list(psd.descendants(include_clip=False))[1:]  # the group, then its layer
    assert np.array_equal(np.rint(layer.numpy() * 65535.0).astype(np.uint16), pixels)
    (ora_layer,) = read_ora(out / "layers.ora").layers
    assert np.array_equal(ora_layer.pixels, pixels)


def test_a_bit_depth_other_than_8_or_16_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stderr = generate(
        "--prompt", "x", "--bit-depth", "12", "--out", str(tmp_path), capsys=capsys
    )
    assert code == 2 and "--bit-depth" in stderr and len(stderr.strip().splitlines()) == 1
