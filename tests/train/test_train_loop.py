"""Training on synthetic data: it learns, exports official layouts, and resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TinyRun, tiny_config
from safetensors import safe_open
from safetensors.torch import load_file

MANIFESTS = Path(__file__).resolve().parents[1] / "data" / "manifests"


def test_sixty_steps_improve_held_out_alpha_and_reconstruction(tiny_run: TinyRun) -> None:
    before, after = tiny_run.before, tiny_run.after
    print(f"before {before}\nafter {after}\ntrain seconds {tiny_run.seconds:.1f}")
    assert after["alpha_psnr"] >= before["alpha_psnr"] + 3.0
    assert after["rec"] <= 0.7 * before["rec"]


def test_exports_carry_metadata_and_load_in_the_engine(tiny_run: TinyRun) -> None:
    from acetate.engine.nets.transparent_vae import (
        TINY_DECODER_WIDTHS,
        TransparentDecoder,
        load_transparent_decoder,
        load_transparent_encoder,
    )
    from acetate.engine.store.identify import KINDS

    decoder_file = tiny_run.files["transparent_decoder"]
    encoder_file = tiny_run.files["transparent_encoder"]
    for path in (decoder_file, encoder_file):
        assert path.stem not in KINDS  # never an official name
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
        assert metadata["acetate.family"] == "sd15"
        assert metadata["acetate.steps"] == "60"
        assert metadata["acetate.base_vae"].startswith("tiny-sd15 (sha256:")
        assert len(metadata["acetate.data_hash"]) == 64
    with safe_open(str(decoder_file), framework="pt") as handle:
        assert handle.metadata()["acetate.kind"] == "layer_sd15_vae_transparent_decoder"
    reference = TransparentDecoder(block_out_channels=TINY_DECODER_WIDTHS).state_dict()
    saved = load_file(decoder_file)
    assert {k: tuple(v.shape) for k, v in saved.items()} == {
        k: tuple(v.shape) for k, v in reference.items()
    }
    load_transparent_decoder(decoder_file)  # strict, as generation loads it
    load_transparent_encoder(encoder_file)
    sheets = sorted((tiny_run.out / "sheets").glob("*.png"))
    assert [p.name for p in sheets] == ["step-0000030.png", "step-0000060.png"]


@pytest.mark.parametrize(
    ("role", "manifest"),
    [("decoder", "vae_transparent_decoder.json"), ("encoder", "vae_transparent_encoder.json")],
)
def test_full_size_training_nets_have_the_official_layouts(role: str, manifest: str) -> None:
    from acetate.engine.nets.transparent_vae import TransparentDecoder, TransparentEncoder
    from acetate.train.init import ARCHS
    from acetate.train.losses import TransparencyPair

    decoder_widths, encoder_widths = ARCHS["full"]
    with torch.device("meta"):
        pair = TransparencyPair(
            TransparentEncoder(block_out_channels=encoder_widths),
            TransparentDecoder(block_out_channels=decoder_widths),
        )
    module = pair.decoder if role == "decoder" else pair.encoder
    expected = json.loads((MANIFESTS / manifest).read_text())["keys"]
    assert {k: list(v.shape) for k, v in module.state_dict().items()} == expected


def test_zero_offset_identity_is_the_vae_reconstruction_error(
    tiny_models_dir: Path, train_data: Path
) -> None:
    from acetate.engine.store.models import ModelStore
    from acetate.train import data as train_data_module
    from acetate.train.base_vae import load_base_vae
    from acetate.train.evaluate import objective
    from acetate.train.init import build_pair

    base = load_base_vae("tiny-sd15", tiny_models_dir)
    store = ModelStore(tiny_models_dir, hf_cache=False)
    encoder, decoder, _ = build_pair("scratch", "tiny", "sd15", True, store, seed=0)
    scan = train_data_module.scan_folder(train_data)
    crops = [
        train_data_module.centre_crop(train_data_module.read_rgba(p), 64) for p in scan.images[:4]
    ]
    padded = train_data_module.sample_tensors(crops)["padded"]
    with torch.no_grad():
        assert float(encoder(torch.zeros(1, 4, 64, 64)).abs().max()) == 0.0  # official zero init
        plain = base.vae.decode(base.vae.encode(padded * 2 - 1).latent_dist.mean).sample
        expected = float(((plain * 0.5 + 0.5 - padded) ** 2).mean())
    assert objective(base.vae, encoder, decoder, crops)["identity"] == pytest.approx(
        expected, rel=1e-5
    )


def test_resume_equals_an_uninterrupted_run(
    tiny_models_dir: Path, train_data: Path, tmp_path: Path
) -> None:
    from acetate.errors import InputError
    from acetate.train.loop import Trainer

    changes = dict(steps=6, save_every=3, disc_start=2, batch=2)
    whole = Trainer(tiny_config(train_data, tiny_models_dir, tmp_path / "whole", **changes)).run()
    Trainer(
        tiny_config(train_data, tiny_models_dir, tmp_path / "split", **{**changes, "steps": 3})
    ).run()
    resumed = Trainer(
        tiny_config(train_data, tiny_models_dir, None, resume=tmp_path / "split", **changes)
    ).run()
    for role, path in whole.items():
        a, b = load_file(path), load_file(resumed[role])
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError) as raised:
        Trainer(
            tiny_config(
                train_data,
                tiny_models_dir,
                None,
                resume=tmp_path / "split",
                **{**changes, "steps": 9, "lr": 5e-4},
            )
        )
    assert raised.value.field == "--lr"


def test_gradient_checkpointing_trains_the_same_weights(
    tiny_models_dir: Path, train_data: Path, tmp_path: Path
) -> None:
    from acetate.train.loop import Trainer

    results = []
    for checkpointing in (False, True):
        config = tiny_config(
            train_data,
            tiny_models_dir,
            tmp_path / str(checkpointing),
            steps=2,
            save_every=2,
            batch=2,
            gradient_checkpointing=checkpointing,
        )
        results.append(Trainer(config).run())
    for role, path in results[0].items():
        plain, recomputed = load_file(path), load_file(results[1][role])
        for key, value in plain.items():
            torch.testing.assert_close(recomputed[key], value, rtol=0, atol=0)
