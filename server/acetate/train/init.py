"""Where the trained encoder/decoder start (`--init official|FILE|scratch`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from acetate.engine.nets.transparent_vae import (
    DECODER_WIDTHS,
    ENCODER_WIDTHS,
    TINY_DECODER_WIDTHS,
    TINY_ENCODER_WIDTHS,
    TransparentDecoder,
    TransparentEncoder,
    load_transparent_decoder,
    load_transparent_encoder,
)
from acetate.engine.store.family import Family
from acetate.engine.store.models import ModelStore
from acetate.errors import InputError, ModelNotFoundError
from acetate.train.state import KINDS, ROLES, find_pair

ARCHS = {
    "full": (DECODER_WIDTHS, ENCODER_WIDTHS),
    "tiny": (TINY_DECODER_WIDTHS, TINY_ENCODER_WIDTHS),
}


def official_files(
    store: ModelStore, family: Family, tiny: bool, flag: str = "--init"
) -> dict[str, Path]:
    """role → the released encoder/decoder for this family (the tiny twins for a tiny base)."""
    wanted = {role: KINDS[(family, role)] for role in ROLES}
    found = {
        role: layer.path
        for layer in store.layer_files()
        for role, kind in wanted.items()
        if layer.kind == kind and layer.tiny == tiny
    }
    missing = [f"{wanted[role]}.safetensors" for role in ROLES if role not in found]
    if missing:
        raise ModelNotFoundError(
            f"{flag} official needs {' and '.join(missing)} in {store.models_dir / 'layer_model'} "
            "(or an --extra-models-dir); get them with `acetate models get`",
            field=flag,
        )
    return found


def pair_files(spec: str, flag: str = "--init") -> dict[str, Path]:
    """role → file for a run/checkpoint folder, or `DECODER.safetensors,ENCODER.safetensors`."""
    parts = [Path(p).expanduser() for p in spec.split(",")]
    if len(parts) == 1 and parts[0].is_dir():
        return find_pair(parts[0], flag)
    files: dict[str, Path] = {}
    for path in parts:
        if not path.is_file():
            raise InputError(f"{flag}: no such file or folder: {path}", field=flag)
        role = "transparent_decoder" if "decoder" in _keys_role(path) else "transparent_encoder"
        files[role] = path
    if set(files) != set(ROLES):
        raise InputError(
            f"{flag} needs a folder with a trained pair, or DECODER,ENCODER files", field=flag
        )
    return files


def _keys_role(path: Path) -> str:
    from acetate.engine.nets.weights import read_shapes

    shapes = read_shapes(path)
    return "decoder" if "latent_conv_in.weight" in shapes else "encoder"


def build_pair(
    init: str, arch: str, family: Family, tiny: bool, store: ModelStore, seed: int
) -> tuple[TransparentEncoder, TransparentDecoder, str]:
    """(encoder, decoder, a description of the init for metadata), trainable, fp32 CPU."""
    if init == "scratch":
        decoder_widths, encoder_widths = ARCHS[arch]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            decoder = TransparentDecoder(block_out_channels=decoder_widths)
            encoder = TransparentEncoder(block_out_channels=encoder_widths)
        described = f"scratch ({arch})"
    else:
        files = official_files(store, family, tiny) if init == "official" else pair_files(init)
        decoder = load_transparent_decoder(files["transparent_decoder"])
        encoder = load_transparent_encoder(files["transparent_encoder"])
        # Loading makes the decoder channels_last (faster inference); training keeps it plain.
        plain: Any = decoder
        decoder = plain.to(memory_format=torch.contiguous_format)
        described = ", ".join(p.name for p in files.values())
        described = f"official ({described})" if init == "official" else described
    for model in (encoder, decoder):
        model.train().requires_grad_(True)
    return encoder, decoder, described
