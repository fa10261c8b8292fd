"""Official LayerDiffusion UNet patch files merged into a diffusers UNet, reversibly.

Two formats are released:
- Forge "frozen patcher" files (`layer_xl_*`): keys `diffusion_model.<LDM key>::<type>::<slot>`.
  `lora` has slot 0 = up `[out, r]`, slot 1 = down `[r, in]`, scale 1: `W += s * up @ down`
  (the factors are told apart by shape, as Forge's `slot0 @ slot1` only fits one way round);
  `diff` has slot 0 = a full-shape delta: `W += s * diff`. A `conv_in` diff with more input
  channels than the UNet widens `conv_in` first (new channels zero), so the patched UNet takes
  `cat([latents, cond_latents], 1)`.
- diffusers-keyed offsets (`ld_diffusers_sdxl_attn`): `W += s * offset`.

Every key must land on a parameter of the UNet with a compatible shape, or the file is refused
naming the key. Merging happens in fp32 one tensor at a time, in place, and removing a patch
restores the UNet bit-exactly. Neither side is held in memory: a patch's tensors are read from
its file when it is applied, and a touched parameter that still equals its value in the base
model's file is read back from that file on removal (`weight_files`); only parameters that
differ from their file (another patch or a LoRA applied first, an unknown file) are copied.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import torch
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from torch import nn

from acetate.engine.nets.unet_patch_plan import (
    ATTENTION_TARGET,
    CONV_IN,
    QKV_WEIGHT,
    STRENGTH_RANGE,
    PatchFormat,
    PlannedWeight,
    patch_format,
    plan_unet_patch,
    unet_parameter_shapes,
    widens_conv_in,
)
from acetate.engine.nets.weight_files import DTYPES, TensorFile, WeightReader, weight_files
from acetate.engine.nets.weights import read_header, read_shapes
from acetate.errors import InputError, ModelFileError

#: The plan's names are part of this module's interface too.
__all__ = [
    "ATTENTION_TARGET",
    "CONV_IN",
    "QKV_WEIGHT",
    "STRENGTH_RANGE",
    "PatchFormat",
    "PatchHandle",
    "PlannedWeight",
    "UNetPatch",
    "WeightPatch",
    "active_patches",
    "apply_unet_patch",
    "check_strength",
    "load_unet_patch",
    "needs_reload",
    "patch_format",
    "plan_unet_patch",
    "unet_parameter_shapes",
]


@dataclass(frozen=True)
class WeightPatch:
    """One parameter's change: `diff` → (delta,), `lora` → (up, down) with up @ down ≅ delta,
    named by their keys in the patch file and read from it when applied."""

    key: str
    kind: Literal["diff", "lora"]
    sources: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    def delta(self, handle: TensorFile, shape: torch.Size, device: torch.device) -> torch.Tensor:
        """The fp32 delta on `device` (a LoRA product reshaped to `shape`), read from `handle`."""
        tensors = [handle.get(key).to(device=device, dtype=torch.float32) for key in self.sources]
        if self.kind == "diff":
            return tensors[0]
        up, down = tensors
        return (up.flatten(1) @ down.flatten(1)).reshape(shape)

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The delta's shape for `diff` (None for `lora`, whose shape is the parameter's)."""
        return self.shapes[0] if self.kind == "diff" else None


def _identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return (info.st_size, info.st_mtime_ns)


@dataclass(frozen=True)
class UNetPatch:
    """A validated patch file; its tensors stay in the file until the patch is applied."""

    name: str
    format: PatchFormat
    weights: Mapping[str, WeightPatch]
    path: Path
    #: (size, modification time) when validated: a changed file must be validated again.
    identity: tuple[int, int]

    def is_current(self) -> bool:
        """Whether the file is still the one validated (else load it again)."""
        try:
            return _identity(self.path) == self.identity
        except OSError:
            return False

    def open(self) -> TensorFile:
        """The patch file, open for reading; `ModelFileError` if it changed since validation."""
        if not self.is_current():
            raise ModelFileError(f"{self.path.name} changed on disk since it was loaded")
        return TensorFile(self.path)

    @property
    def conv_in_channels(self) -> int | None:
        """Input channels of `conv_in` this patch needs when it carries a `conv_in` diff."""
        patch = self.weights.get(CONV_IN)
        shape = patch.shape if patch is not None else None
        return shape[1] if shape is not None else None


def load_unet_patch(path: str | os.PathLike[str], unet_config: Mapping[str, Any]) -> UNetPatch:
    """Read and validate an official UNet patch file (Forge or diffusers-keyed) for a UNet."""
    path = Path(path)
    shapes = read_shapes(path)
    dtypes = read_header(path).dtypes
    plan = plan_unet_patch(shapes, unet_config, path.name)
    weights = {}
    for planned in plan:
        for source in planned.sources:
            if dtypes[source] not in DTYPES:
                raise ModelFileError(f"{path.name}: key {source!r} is not a float tensor")
        shapes_of = tuple(shapes[source] for source in planned.sources)
        weights[planned.key] = WeightPatch(planned.key, planned.kind, planned.sources, shapes_of)
    return UNetPatch(path.stem, patch_format(shapes, path.name), weights, path, _identity(path))


def check_strength(strength: float, field: str = "layer_weight") -> float:
    low, high = STRENGTH_RANGE
    if not (low <= strength <= high):
        raise InputError(
            f"{field} must be between {low:g} and {high:g}, got {strength}", field=field
        )
    return float(strength)


_ACTIVE: weakref.WeakKeyDictionary[nn.Module, list[PatchHandle]] = weakref.WeakKeyDictionary()
#: UNets a patch could not be removed from exactly: they must be loaded again.
_STALE: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def needs_reload(unet: nn.Module | None) -> bool:
    """Whether a patch could not be removed from `unet` exactly (then load the base again)."""
    return unet is not None and unet in _STALE


class PatchHandle:
    """An applied patch; `remove()` (or leaving the `with` block) restores the UNet bit-exactly."""

    def __init__(self, unet: UNet2DConditionModel, patch: UNetPatch, strength: float) -> None:
        self.unet = unet
        self.patch = patch
        self.strength = strength
        #: key → a copy of the original tensor, for parameters edited in place that differ
        #: from their base model file.
        self._originals: dict[str, torch.Tensor] = {}
        #: Parameters edited in place that equalled their value in the base model's file,
        #: which stays open until they are restored from it.
        self._from_file: set[str] = set()
        self._reader: WeightReader | None = None
        #: A widened conv_in replaces the Parameter: keep the old one and the config value.
        self._conv_in: nn.Parameter | None = None
        self._in_channels: int | None = None
        self.active = False

    def __enter__(self) -> PatchHandle:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.remove()

    # inference_mode (not no_grad): also edits UNets whose weights were made in inference mode.
    @torch.inference_mode()
    def _apply(self, backup_device: torch.device | str | None) -> None:
        params = dict(self.unet.named_parameters())
        for key, weight in self.patch.weights.items():
            _check_fits(self.patch.name, key, weight, params)
        self._reader = reader = WeightReader(weight_files(self.unet))
        try:
            with self.patch.open() as handle:
                for key, weight in self.patch.weights.items():
                    param = params[key]
                    if weight.shape is not None and weight.shape != tuple(param.shape):
                        self._widen_conv_in(weight, param, handle)
                        continue
                    stored = reader.stored(key, param)
                    if stored is not None and torch.equal(stored, param):
                        self._from_file.add(key)
                    else:
                        copy = param.detach().to(backup_device or param.device, copy=True)
                        self._originals[key] = copy
                    del stored
                    delta = weight.delta(handle, param.shape, param.device)
                    param.copy_((param.float() + self.strength * delta).to(param.dtype))
        except BaseException:
            self._restore()
            raise

    def _widen_conv_in(self, weight: WeightPatch, param: nn.Parameter, handle: TensorFile) -> None:
        conv = self.unet.conv_in
        # A new weight made inside inference mode could not take part in a grad-enabled forward.
        with torch.inference_mode(False), torch.no_grad():
            shape = weight.shapes[0]
            widened = torch.zeros(shape, dtype=torch.float32, device=param.device)
            widened[:, : param.shape[1]] = param.float()
            widened += self.strength * weight.delta(handle, widened.shape, param.device)
            new = nn.Parameter(widened.to(param.dtype), requires_grad=param.requires_grad)
        self._conv_in = param
        self._in_channels = int(self.unet.config["in_channels"])
        conv.weight = new
        conv.in_channels = widened.shape[1]
        self.unet.register_to_config(in_channels=widened.shape[1])

    @torch.inference_mode()
    def _restore(self) -> None:
        for key, original in self._originals.items():
            self.unet.get_parameter(key).copy_(original)
        self._originals.clear()
        if self._reader is not None:
            try:
                for key in sorted(self._from_file):
                    param = self.unet.get_parameter(key)
                    stored = self._reader.stored(key, param)
                    if stored is None:  # the open file became unreadable: no exact restore
                        _STALE.add(self.unet)
                        raise ModelFileError(
                            f"{self.patch.name}: {key} could not be read back from the base "
                            "model's file; the base model will be loaded again"
                        )
                    param.copy_(stored)
            finally:
                self._from_file.clear()
                self._reader.close()
                self._reader = None
        if self._conv_in is not None:
            conv, original = self.unet.conv_in, self._conv_in
            if original.device != conv.weight.device:  # the UNet moved while patched
                original = nn.Parameter(original.to(conv.weight.device), original.requires_grad)
            conv.weight = original
            conv.in_channels = original.shape[1]
            self.unet.register_to_config(in_channels=self._in_channels)
            self._conv_in = None

    def remove(self) -> None:
        """Undo the patch. Patches stacked on one UNet come off in reverse order."""
        if not self.active:
            return
        stack = _ACTIVE.get(self.unet, [])
        if stack and stack[-1] is not self:
            raise RuntimeError(
                f"remove the later patch {stack[-1].patch.name!r} before {self.patch.name!r}"
            )
        self._restore()
        if stack:
            stack.pop()
        self.active = False


def _check_fits(
    name: str, key: str, weight: WeightPatch, params: Mapping[str, nn.Parameter]
) -> None:
    """The UNet as it is now (maybe already patched) must still take this patch."""
    if key not in params:
        raise ModelFileError(f"{name}: {key} is not a parameter of this UNet")
    current = tuple(params[key].shape)
    if weight.shape is None or weight.shape == current:
        return
    if not widens_conv_in(key, weight.shape, current):
        raise ModelFileError(
            f"{name}: {key} delta {list(weight.shape)} does not fit the UNet's {list(current)} "
            "(is another conv_in patch applied?)"
        )


def apply_unet_patch(
    unet: UNet2DConditionModel,
    patch: UNetPatch,
    strength: float = 1.0,
    *,
    backup_device: torch.device | str | None = "cpu",
) -> PatchHandle:
    """Merge `patch` into `unet` in place with Forge's weight `strength` (0–2).

    Returns a handle whose `remove()` restores every touched parameter (and a widened
    `conv_in`, with `unet.config.in_channels`) bit-exactly; it is also a context manager.
    Touched parameters equal to their value in the base model's file (`weight_files`) are read
    back from it; copies of the others are kept on `backup_device` (None: where the parameter
    is).
    """
    handle = PatchHandle(unet, patch, check_strength(strength))
    handle._apply(backup_device)
    handle.active = True
    _ACTIVE.setdefault(unet, []).append(handle)
    return handle


def active_patches(unet: nn.Module) -> list[PatchHandle]:
    """The patches applied to `unet`, oldest first."""
    return list(_ACTIVE.get(unet, []))
