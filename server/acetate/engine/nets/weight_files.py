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
import os
import struct
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
from acetate.errors import ModelFileError

#: safetensors dtype names → torch dtypes (the float types weight files use; others refused).
DTYPES = {
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
}
#: A header longer than this is not a weight file's (safetensors itself caps it at 100 MB).
MAX_HEADER = 100_000_000


@dataclass(frozen=True)
class StoredTensor:
    """Where one tensor's bytes lie in its file."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


class TensorFile:
    """A `.safetensors` file open for reading single tensors (positioned reads, no map)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            size = os.fstat(self._fd).st_size
            (length,) = struct.unpack("<Q", self._read(0, 8))
            if not 2 <= length <= min(MAX_HEADER, size - 8):
                raise ValueError(f"header length {length}")
            header = json.loads(self._read(8, length))
            base = 8 + length
            self.tensors = {
                key: StoredTensor(
                    str(info["dtype"]),
                    tuple(int(n) for n in info["shape"]),
                    base + int(info["data_offsets"][0]),
                    base + int(info["data_offsets"][1]),
                )
                for key, info in header.items()
                if key != "__metadata__"
            }
        except (OSError, ValueError, KeyError, TypeError, struct.error) as error:
            os.close(self._fd)
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
        stored = self.tensors[key]
        dtype = DTYPES.get(stored.dtype)
        itemsize = torch.empty((), dtype=dtype).element_size() if dtype else 0
        count = 1
        for side in stored.shape:
            count *= side
        if dtype is None or stored.end - stored.start != count * itemsize:
            raise ModelFileError(f"{self.path.name}: key {key!r} is not a float tensor")
        if count == 0:
            return torch.empty(stored.shape, dtype=dtype)
        data = bytearray(self._read(stored.start, stored.end - stored.start))
        return torch.frombuffer(data, dtype=dtype).reshape(stored.shape)

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
        with TensorFile(single) as handle:
            return cls({key: (single, key) for key in handle.tensors})

    @classmethod
    def from_single_file(cls, checkpoint: Path, unet_config: Mapping[str, Any]) -> UNetWeightFiles:
        """The UNet weights inside an LDM checkpoint (`model.diffusion_model.<LDM key>`)."""
        with TensorFile(checkpoint) as handle:
            present = set(handle.tensors)
        locations = {}
        for key in _unet_parameter_names(unet_config):
            try:
                ldm = f"model.diffusion_model.{diffusers_to_ldm_key(key, unet_config)}"
            except KeyError:
                continue
            if ldm in present:
                locations[key] = (checkpoint, ldm)
        return cls(locations)


def _unet_parameter_names(unet_config: Mapping[str, Any]) -> list[str]:
    return list(unet_parameter_shapes(unet_config))


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
