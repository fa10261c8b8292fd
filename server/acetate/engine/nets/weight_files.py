"""Weights read back from their `.safetensors` file, so nothing needs a RAM copy to be undone.

Patching a UNet (`unet_patch`) must restore it bit-exactly afterwards. Keeping a copy of every
touched parameter costs as much memory as those parameters (3.8 GB for SDXL's attention LoRA in
fp32); reading them again from the base model's own file costs none. `TensorFile` reads one
tensor at a time with positioned reads on an open descriptor: no memory map, so nothing read
stays resident, and the descriptor keeps the data readable even if the file is replaced.
`UNetWeightFiles` remembers which file and key each UNet parameter was loaded from (a diffusers
folder or a single-file checkpoint); the loader attaches it to the UNet it built.
"""

from __future__ import annotations

import json
import math
import os
import weakref
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from acetate.engine.nets.keymap import diffusers_to_ldm_key
from acetate.engine.nets.unet_patch_plan import unet_parameter_shapes
from acetate.engine.nets.weights import parse_header, read_header
from acetate.errors import ModelFileError

#: safetensors dtype names → torch dtypes (the float types weight files use; others refused).
DTYPES = {
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
}


class TensorFile:
    """A `.safetensors` file open for reading single tensors (positioned reads, no map)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            # The header is read through the same descriptor as the data, so both are of one
            # file even if the path is replaced meanwhile.
            with os.fdopen(os.dup(self._fd), "rb") as stream:
                self.header = parse_header(stream, os.fstat(self._fd).st_size, self.path.name)
        except (OSError, ModelFileError) as error:
            os.close(self._fd)
            if isinstance(error, ModelFileError):
                raise
            message = f"{self.path.name} is not a readable safetensors file: {error}"
            raise ModelFileError(message) from error

    def _read(self, offset: int, size: int) -> bytes:
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise OSError(f"{self.path.name}: file ends early (wanted {size} bytes at {offset})")
        return data

    def get(self, key: str) -> torch.Tensor:
        """A new CPU tensor with the stored values (KeyError if absent; ModelFileError if its
        dtype is not a float type or its bytes do not match its shape)."""
        shape, (start, end) = self.header.shapes[key], self.header.offsets[key]
        dtype = DTYPES.get(self.header.dtypes[key])
        count = math.prod(shape)
        if dtype is None or end - start != count * dtype.itemsize:
            raise ModelFileError(f"{self.path.name}: key {key!r} is not a float tensor")
        if count == 0:
            return torch.empty(shape, dtype=dtype)
        data = bytearray(self._read(start, end - start))
        return torch.frombuffer(data, dtype=dtype).reshape(shape)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> TensorFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


@dataclass(frozen=True)
class UNetWeightFiles:
    """Parameter name → (file, key) it was loaded from, for parameters loaded unchanged."""

    locations: Mapping[str, tuple[Path, str]]

    @classmethod
    def from_diffusers_folder(cls, unet_folder: Path, variant: str | None) -> UNetWeightFiles:
        """The weights of a diffusers `unet/` folder (one file or shards with an index)."""
        stem = "diffusion_pytorch_model"
        suffix = f".{variant}.safetensors" if variant else ".safetensors"
        index = unet_folder / f"{stem}{suffix}.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            return cls({key: (unet_folder / name, key) for key, name in weight_map.items()})
        single = unet_folder / f"{stem}{suffix}"
        if not single.is_file():
            return cls({})
        return cls({key: (single, key) for key in read_header(single).shapes})

    @classmethod
    def from_single_file(cls, checkpoint: Path, unet_config: Mapping[str, Any]) -> UNetWeightFiles:
        """The UNet weights inside an LDM checkpoint (`model.diffusion_model.<LDM key>`)."""
        present = read_header(checkpoint).shapes
        locations = {}
        for key in unet_parameter_shapes(unet_config):
            try:
                ldm = f"model.diffusion_model.{diffusers_to_ldm_key(key, unet_config)}"
            except KeyError:
                continue
            if ldm in present:
                locations[key] = (checkpoint, ldm)
        return cls(locations)


class WeightReader:
    """Reads parameters' stored values; each file is opened on first use and stays open (its
    data readable even if the file is replaced meanwhile) until `close()`."""

    def __init__(self, files: UNetWeightFiles) -> None:
        self.files = files
        self._stack = ExitStack()
        self._open: dict[Path, TensorFile] = {}

    def close(self) -> None:
        self._open.clear()
        self._stack.close()

    def read(self, key: str) -> torch.Tensor | None:
        """Parameter `key`'s value as stored, or None when not loaded from a readable file."""
        location = self.files.locations.get(key)
        if location is None:
            return None
        path, file_key = location
        try:
            handle = self._open.get(path)
            if handle is None:
                handle = self._open[path] = self._stack.enter_context(TensorFile(path))
            return handle.get(file_key)
        except (OSError, KeyError, ModelFileError):
            return None

    def stored(self, key: str, like: torch.Tensor) -> torch.Tensor | None:
        """The stored value of parameter `key` as `like` holds it (dtype, shape, device), or
        None when it was not loaded from a known file or does not fit `like`."""
        value = self.read(key)
        if value is None or value.numel() != like.numel():
            return None
        return value.reshape(like.shape).to(device=like.device, dtype=like.dtype)


_FILES: weakref.WeakKeyDictionary[nn.Module, UNetWeightFiles] = weakref.WeakKeyDictionary()


def attach_weight_files(unet: nn.Module, files: UNetWeightFiles) -> None:
    """Record where `unet`'s parameters were loaded from (the model loader calls this)."""
    _FILES[unet] = files


def weight_files(unet: nn.Module) -> UNetWeightFiles:
    """Where `unet`'s parameters were loaded from; empty when unknown."""
    return _FILES.get(unet) or UNetWeightFiles({})
