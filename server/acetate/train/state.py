"""What a training run writes: official-layout weight files with metadata, and resume state.

The encoder and decoder are saved as their plain state dicts (the official key names and
shapes, fp32), so Acetate, Forge and ComfyUI load them unchanged; safetensors metadata tells
them apart from the released files (`acetate.kind`, `acetate.family`, `acetate.base_vae`,
`acetate.data_hash`, `acetate.steps` …) and their names never equal an official name.
Resume state (optimizers, discriminator, RNG, the flags) is safetensors + JSON, never pickle.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from acetate import __version__
from acetate.engine.store.family import Family
from acetate.errors import InputError, ModelFileError

#: Official file kind replaced by a trained file, per family and role (offset scale 1).
KINDS: dict[tuple[Family, str], str] = {
    ("sd15", "transparent_decoder"): "layer_sd15_vae_transparent_decoder",
    ("sd15", "transparent_encoder"): "layer_sd15_vae_transparent_encoder",
    ("sdxl", "transparent_decoder"): "vae_transparent_decoder",
    ("sdxl", "transparent_encoder"): "vae_transparent_encoder",
}
ROLES = ("transparent_decoder", "transparent_encoder")
STATE_FILE = "train_state.safetensors"
STATE_JSON = "train_state.json"
CHECKPOINTS = "checkpoints"


def file_name(prefix: str, family: Family, role: str) -> str:
    """`<prefix>-<family>-transparent-<decoder|encoder>.safetensors` (never an official name)."""
    return f"{prefix}-{family}-{role.replace('_', '-')}.safetensors"


def save_safetensors(
    tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]
) -> None:
    """Atomic safetensors write (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        contiguous = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        save_file(contiguous, temporary, metadata=metadata)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def export_model(
    module: torch.nn.Module, path: Path, *, family: Family, role: str, info: dict[str, str]
) -> Path:
    """Write `module`'s state dict (fp32) with the metadata that identifies a trained file."""
    metadata = {
        "format": "pt",
        "acetate.kind": KINDS[(family, role)],
        "acetate.family": family,
        "acetate.role": role,
        "acetate.version": __version__,
        **info,
    }
    tensors = {k: v.float() for k, v in module.state_dict().items()}
    save_safetensors(tensors, path, metadata)
    return path


def read_metadata(path: Path) -> dict[str, str]:
    """A safetensors file's metadata (empty when it has none)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (OSError, ValueError) as error:
        raise ModelFileError(f"{path}: not a readable safetensors file ({error})") from error


def _flatten(prefix: str, value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Tensors out into `tensors` (replaced by a reference), the rest kept for JSON."""
    if isinstance(value, torch.Tensor):
        tensors[prefix] = value
        return {"__tensor__": prefix}
    if isinstance(value, dict):
        return {str(k): _flatten(f"{prefix}.{k}", v, tensors) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_flatten(f"{prefix}.{i}", v, tensors) for i, v in enumerate(value)]
    return value


def _unflatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            return tensors[value["__tensor__"]]
        return {k: _unflatten(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_unflatten(v, tensors) for v in value]
    return value


def _int_keys(state: dict[str, Any]) -> dict[str, Any]:
    """JSON made the optimizer's integer parameter ids strings; torch wants them back."""
    state["state"] = {int(k): v for k, v in state["state"].items()}
    return state


def save_state(folder: Path, parts: dict[str, Any], info: dict[str, Any]) -> None:
    """`parts`: name → a state dict (of tensors, nested dicts/lists and plain values)."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = {name: _flatten(name, value, tensors) for name, value in parts.items()}
    save_safetensors(tensors, folder / STATE_FILE, {"format": "pt"})
    text = json.dumps({"info": info, "parts": skeleton}, indent=1, sort_keys=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{STATE_JSON}.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temporary, folder / STATE_JSON)


def load_state(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(parts, info) written by `save_state`; optimizer parts get integer ids back."""
    try:
        document = json.loads((folder / STATE_JSON).read_text(encoding="utf-8"))
        tensors = load_file(folder / STATE_FILE)
    except (OSError, ValueError) as error:
        message = f"{folder} holds no readable training state ({error})"
        raise InputError(message, field="--resume") from error
    parts = {name: _unflatten(v, tensors) for name, v in document["parts"].items()}
    for name, part in parts.items():
        if name.startswith("optimizer"):
            _int_keys(part)
    return parts, document["info"]


def latest_checkpoint(resume: Path) -> Path:
    """`resume` itself when it is a checkpoint, else the newest `checkpoints/step-*` in it."""
    if (resume / STATE_JSON).is_file():
        return resume
    candidates = sorted((resume / CHECKPOINTS).glob("step-*/" + STATE_JSON))
    if not candidates:
        raise InputError(f"{resume} holds no training checkpoint", field="--resume")
    return candidates[-1].parent


def find_pair(folder: Path, flag: str = "--init") -> dict[str, Path]:
    """role → file of the one trained encoder and decoder in a checkpoint/run folder."""
    found: dict[str, list[Path]] = {role: [] for role in ROLES}
    for path in sorted(folder.glob("*.safetensors")):
        if path.name == STATE_FILE:
            continue
        role = read_metadata(path).get("acetate.role") or _role_from_keys(path)
        if role in found:
            found[role].append(path)
    for role, paths in found.items():
        if len(paths) != 1:
            what = "no" if not paths else f"{len(paths)}"
            message = f"{folder} holds {what} {role.replace('_', ' ')} file(s)"
            raise InputError(message, field=flag)
    return {role: paths[0] for role, paths in found.items()}


def _role_from_keys(path: Path) -> str | None:
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
    if "latent_conv_in.weight" in keys:
        return "transparent_decoder"
    if keys and all(k.startswith("blocks.") for k in keys):
        return "transparent_encoder"
    return None
