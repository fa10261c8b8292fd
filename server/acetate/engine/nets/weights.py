"""Reading `.safetensors` headers and checking a file's layout, shared by every weight loader.

Only safetensors are ever read (pickle-based formats can run code when loaded); the header gives
every key and shape without reading tensor data, so files are checked before anything is built.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from safetensors import SafetensorError, safe_open

from acetate.errors import MissingWeightFile, ModelFileError

Shapes = Mapping[str, tuple[int, ...]]


def read_shapes(path: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    """Key → shape from a `.safetensors` header; no tensor data is read."""
    path = Path(path)
    if not path.is_file():
        raise MissingWeightFile(f"weight file not found: {path} (no such file)")
    if path.suffix != ".safetensors":
        raise ModelFileError(f"{path}: only .safetensors weight files are accepted")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(f"{path.name} is not a readable safetensors file: {error}") from error


def check_layout(expected: Shapes, found: Shapes, name: str, what: str = "LayerDiffusion") -> None:
    """Raise `ModelFileError` naming the first few missing, unexpected and mis-shaped keys."""
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    wrong = [key for key in expected if key in found and tuple(found[key]) != tuple(expected[key])]
    problems = []
    if missing:
        problems.append("missing key " + ", ".join(repr(key) for key in missing[:5]))
    if unexpected:
        problems.append("unexpected key " + ", ".join(repr(key) for key in unexpected[:5]))
    for key in wrong[:5]:
        problems.append(f"key {key!r} has shape {list(found[key])}, expected {list(expected[key])}")
    if problems:
        raise ModelFileError(f"{name} is not a {what} file: " + "; ".join(problems))
