"""A stand-in for an `acetate train` output: an official tiny file with changed weights and the
metadata a trained file carries (built in milliseconds, unlike a training run)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

#: The decoder the tiny SD1.5 fg mode uses, and the name of its trained stand-in.
SD15_DECODER = "layer_sd15_vae_transparent_decoder"
TRAINED_NAME = "studio-sd15-transparent-decoder.safetensors"


def write_trained_copy(official: Path, out: Path, *, kind: str, scale: float = 1.5) -> Path:
    """`official`'s tensors times `scale`, saved at `out` marked as a trained `kind` file."""
    tensors = {k: (v.float() * scale).contiguous() for k, v in load_file(official).items()}
    metadata = {"format": "pt", "acetate.kind": kind, "acetate.steps": "7"}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=metadata)
    return out


def models_with_trained_decoder(tiny_models: Path, models: Path) -> Path:
    """A copy of the tiny store whose test layer files include a trained SD1.5 decoder."""
    shutil.copytree(tiny_models, models, symlinks=True)
    layers = models / "tiny" / "layer_model"
    return write_trained_copy(
        layers / f"{SD15_DECODER}.safetensors", layers / TRAINED_NAME, kind=SD15_DECODER
    )


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
