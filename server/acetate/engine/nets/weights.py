"""Reading `.safetensors` headers and checking a file's layout, shared by every weight loader.

Only safetensors are ever read (pickle-based formats can run code when loaded); the header gives
every key and shape without reading tensor data, so files are checked before anything is built.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from safetensors import SafetensorError, safe_open

from acetate.errors import MissingWeightFile, ModelFileError

Shapes = Mapping[str, tuple[int, ...]]
#: A longer header is not a weight file's (safetensors itself refuses over 100 MB).
MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class Header:
    """A safetensors header: tensor name → shape, dtype and (absolute) byte range in the file,
    plus the free-form metadata."""

    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]
    metadata: dict[str, str] = field(default_factory=dict)
    offsets: dict[str, tuple[int, int]] = field(default_factory=dict)


def parse_header(stream: BinaryIO, size: int, name: str) -> Header:
    """The header of the safetensors file `stream` (positioned at its start, `size` bytes long,
    called `name` in errors); `ModelFileError` if damaged or truncated."""
    try:
        prefix = stream.read(8)
        if len(prefix) < 8:
            raise ModelFileError(f"{name}: not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise ModelFileError(f"{name}: damaged safetensors file (bad header size)")
        raw = json.loads(stream.read(length))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        if isinstance(error, ModelFileError):
            raise
        raise ModelFileError(f"{name}: unreadable safetensors header ({error})") from error
    if not isinstance(raw, dict):
        raise ModelFileError(f"{name}: damaged safetensors header")
    metadata = raw.pop("__metadata__", None) or {}
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    offsets: dict[str, tuple[int, int]] = {}
    data_start = 8 + length
    for key, info in raw.items():
        try:
            begin, end = (int(offset) for offset in info["data_offsets"])
            shapes[key] = tuple(int(d) for d in info["shape"])
            dtypes[key] = str(info["dtype"])
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"{name}: damaged safetensors header at {key!r}") from error
        if not 0 <= begin <= end <= size - data_start:
            raise ModelFileError(f"{name}: truncated safetensors file ({key!r} out of range)")
        offsets[key] = (data_start + begin, data_start + end)
    return Header(shapes, dtypes, {str(k): str(v) for k, v in metadata.items()}, offsets)


def read_header(path: str | os.PathLike[str]) -> Header:
    """Parse a safetensors header without reading tensors; `ModelFileError` if damaged."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as stream:
            return parse_header(stream, size, path.name)
    except OSError as error:
        raise ModelFileError(f"{path.name}: unreadable safetensors header ({error})") from error


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
