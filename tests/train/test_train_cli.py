"""The CLI of training: synthetic data, bad data and bad flags as one-line errors, eval."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TinyRun
from PIL import Image

import acetate.cli


def _digest(folder: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.iterdir()))).hexdigest()


def test_synth_is_deterministic_and_has_partial_alpha(tmp_path: Path) -> None:
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert (
            acetate.cli.main(
                [
                    "data",
                    "synth",
                    "--out",
                    str(tmp_path / name),
                    "--count",
                    "6",
                    "--seed",
                    str(seed),
                    "--size",
                    "64",
                ]
            )
            == 0
        )
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")
    pngs = sorted((tmp_path / "a").glob("*.png"))
    assert len(pngs) == 6 and all(p.with_suffix(".txt").read_text().strip() for p in pngs)
    alphas = [np.asarray(Image.open(p))[..., 3] for p in pngs]
    assert all(a.min() != a.max() for a in alphas)
    partial = np.mean([((a > 0) & (a < 255)).mean() for a in alphas])
    assert partial > 0.02  # soft edges, strands, smoke and glass, not cut-outs


def _bad_folder(root: Path) -> Path:
    root.mkdir()
    (root / "nested").mkdir()
    Image.new("RGB", (80, 80), "red").save(root / "no-alpha.png")
    Image.new("RGBA", (80, 80), (0, 0, 0, 128)).save(root / "nested" / "flat.png")
    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(root / "small.webp")
    (root / "broken.png").write_bytes(b"not a png")
    return root


def test_bad_data_is_summarised_in_one_line(
    tmp_path: Path, tiny_models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _bad_folder(tmp_path / "bad")
    code = acetate.cli.main(
        [
            "train",
            "transparency",
            "--data",
            str(folder),
            "--base",
            "tiny-sd15",
            "--models-dir",
            str(tiny_models_dir),
            "--steps",
            "1",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "--data" in err and "4 skipped" in err
    for reason in ("no alpha channel", "constant alpha", "smaller than 64 px", "unreadable"):
        assert reason in err


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--size", "100"], "--size"),
        (["--steps", "0"], "--steps"),
        (["--lr", "-1"], "--lr"),
        (["--init", "/no/such/pair"], "--init"),
        (["--base", "no-such-base"], "--base"),
        (["--resume", "/no/such/run"], "--resume"),
    ],
)
def test_bad_flags_are_one_line_naming_the_flag(
    flags: list[str],
    named: str,
    train_data: Path,
    tiny_models_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = [] if "--base" in flags else ["--base", "tiny-sd15"]
    code = acetate.cli.main(
        [
            "train",
            "transparency",
            "--data",
            str(train_data),
            "--models-dir",
            str(tiny_models_dir),
            "--out",
            str(tmp_path / "o"),
            "--workers",
            "0",
            *base,
            *flags,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and named in err, err


def test_official_init_without_the_files_names_them(
    train_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from diffusers import AutoencoderKL

    from acetate.engine.tiny.bases import SCALING_FACTOR, TINY_VAE

    AutoencoderKL(**TINY_VAE, scaling_factor=SCALING_FACTOR["sd15"]).save_pretrained(
        tmp_path / "vae"
    )
    code = acetate.cli.main(
        [
            "train",
            "transparency",
            "--data",
            str(train_data),
            "--base",
            str(tmp_path / "vae"),
            "--models-dir",
            str(tmp_path / "empty"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "layer_sd15_vae_transparent_decoder.safetensors" in err and "--init" in err


def test_eval_compares_official_and_trained(
    tiny_run: TinyRun,
    held_out: Path,
    tiny_models_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "eval"
    code = acetate.cli.main(
        [
            "eval",
            "transparency",
            "--data",
            str(held_out),
            "--base",
            "tiny-sd15",
            "--models-dir",
            str(tiny_models_dir),
            "--size",
            "64",
            "--limit",
            "4",
            "--compare",
            "official",
            str(tiny_run.out),
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    pairs = report["pairs"]
    assert list(pairs) == ["official", str(tiny_run.out)]
    for result in pairs.values():
        assert len(result["images"]) == 4
        assert {
            "alpha_psnr",
            "alpha_mae",
            "rgb_psnr_weighted",
            "composite_psnr_grey",
            "harmless_psnr_vs_plain",
            "harmless_psnr_vs_original",
            "fast_vs_tta_psnr",
        } <= set(result["mean"])
    assert pairs[str(tiny_run.out)]["mean"]["alpha_psnr"] > pairs["official"]["mean"]["alpha_psnr"]
    assert "| alpha PSNR |" in printed and (out / "report.md").is_file()
    assert len(list(out.glob("sheet-*.png"))) == 2


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--decoder", "d.safetensors"], "--encoder"),
        (["--compare", "official", "official"], "--compare"),
        (["--compare", "official", "/no/such/run"], "--compare"),
        (["--size", "96"], "--size"),
    ],
)
def test_eval_bad_flags_are_one_line_naming_the_flag(
    flags: list[str],
    named: str,
    held_out: Path,
    tiny_models_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    common = ["--data", str(held_out), "--base", "tiny-sd15", "--models-dir", str(tiny_models_dir)]
    code = acetate.cli.main(["eval", "transparency", *common, *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and named in err, err


def test_a_data_folder_inside_a_hidden_folder_is_read(tmp_path: Path) -> None:
    """Hidden files and folders below `--data` are skipped, but `--data` itself may live under
    one (`~/.cache/…`)."""
    from acetate.train.data import scan_folder
    from acetate.train.synth import write_synth

    data = tmp_path / ".cache" / "data"
    write_synth(data, 2, seed=0, size=64)
    write_synth(data / ".thumbnails", 1, seed=1, size=64)
    assert len(scan_folder(data).images) == 2
