"""The frozen SD VAE a transparency encoder/decoder is trained against (`--base`).

`--base` is a base in the model store (by name, e.g. `tiny-sd15`), a base checkpoint file or
diffusers folder, or a diffusers `AutoencoderKL` folder. Only the VAE is loaded; its family
(SD1.5 or SDXL) decides which official file kinds the result replaces.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

from acetate.engine.store.family import CONFIGS_DIR, Family
from acetate.engine.store.models import ModelStore
from acetate.errors import InputError, ModelFileError

#: SDXL's VAE is the only one with this scaling factor; everything else is SD1.5-like.
SDXL_SCALING_FACTOR = 0.13025


@dataclass(frozen=True)
class BaseVae:
    """A loaded, frozen VAE and what identifies it in exported metadata."""

    vae: AutoencoderKL
    name: str
    family: Family
    tiny: bool
    digest: str

    @property
    def label(self) -> str:
        """`name (sha256:…)`: recorded as `acetate.base_vae`."""
        return f"{self.name} (sha256:{self.digest[:16]})"


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 over a module's state dict (keys, dtypes, shapes, bytes)."""
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        tensor = value.detach().to("cpu").contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _is_vae_folder(path: Path) -> bool:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("_class_name") == "AutoencoderKL"


def _load(path: Path, **kwargs: Any) -> AutoencoderKL:
    try:
        return AutoencoderKL.from_pretrained(path, local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise ModelFileError(f"{path}: cannot load its VAE ({error})", field="--base") from error


def load_base_vae(
    base: str | None, models_dir: Path, extra_dirs: list[Path] | None = None
) -> BaseVae:
    """Load the VAE of `base` (None: the store's default base) on the CPU in fp32, frozen
    (InputError naming `--base`)."""
    path = Path(base).expanduser() if base else None
    vae: AutoencoderKL
    if path is not None and path.is_dir() and _is_vae_folder(path):
        vae = _load(path)
        config: Any = vae.config
        family: Family = "sdxl" if config.scaling_factor == SDXL_SCALING_FACTOR else "sd15"
        name, tiny = path.name, sum(p.numel() for p in vae.parameters()) < 10_000_000
    else:
        store = ModelStore(models_dir, extra_dirs or [], hf_cache=False)
        try:
            explicit = path is not None and path.exists()
            wanted = store.add_base(path) if path is not None and explicit else base or None
            checkpoint = store.base(wanted).model
        except InputError as error:
            raise InputError(error.message, field="--base") from None
        family, tiny = checkpoint.family, checkpoint.tiny
        name = checkpoint.path.name if explicit else checkpoint.name
        if checkpoint.format == "diffusers":
            vae = _load(checkpoint.path, subfolder="vae")
        else:
            config_dir = checkpoint.config_dir or CONFIGS_DIR / checkpoint.family
            try:
                vae = AutoencoderKL.from_single_file(
                    str(checkpoint.path),
                    config=str(config_dir),
                    subfolder="vae",
                    local_files_only=True,
                )
            except (OSError, ValueError, KeyError, RuntimeError) as error:
                message = f"{checkpoint.path}: cannot load its VAE ({error})"
                raise ModelFileError(message, field="--base") from error
    model: Any = vae  # diffusers' `to` is typed loosely
    if model.dtype != torch.float32:
        model = model.to(torch.float32)
    model = model.eval().requires_grad_(False)
    return BaseVae(model, name, family, tiny, weights_digest(model))
