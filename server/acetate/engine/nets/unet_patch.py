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
naming the key. Merging happens in fp32 one tensor at a time, in place; only the touched
tensors' originals are kept, so removing a patch restores the UNet bit-exactly.
"""

from __future__ import annotations

import json
import math
import os
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import torch
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from safetensors import safe_open
from torch import nn

from acetate.engine.nets.keymap import LDM_PREFIXES, ldm_to_diffusers_key
from acetate.engine.nets.weights import Shapes, read_shapes
from acetate.errors import InputError, ModelFileError

PatchFormat = Literal["forge", "diffusers"]

#: The Forge "Weight" slider's range.
STRENGTH_RANGE = (0.0, 2.0)
#: Attention projections the transparent-attention LoRA targets (attn1 and attn2 of every block).
ATTENTION_TARGET = re.compile(r"\.attn[12]\.(to_q|to_k|to_v|to_out\.0)\.weight$")
#: What the conv-injection file leaves out: "all layers that are not q, k, v of any attention".
QKV_WEIGHT = re.compile(r"\.attn[12]\.(to_q|to_k|to_v)\.weight$")
CONV_IN = "conv_in.weight"


@lru_cache(maxsize=8)
def _parameter_shapes_cached(config_json: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(json.loads(config_json))
    return {key: tuple(value.shape) for key, value in unet.state_dict().items()}


def unet_parameter_shapes(unet_config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Parameter name → shape of a UNet with this config (built on the meta device, cached)."""
    return _parameter_shapes_cached(json.dumps(dict(unet_config), sort_keys=True, default=str))


@dataclass(frozen=True)
class PlannedWeight:
    """Where one UNet parameter's change comes from in the file (header-level plan)."""

    key: str
    kind: Literal["diff", "lora"]
    #: `diff`: (delta key,); `lora`: (up key, down key), already told apart by shape.
    sources: tuple[str, ...]


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _widens_conv_in(key: str, delta: tuple[int, ...], base: tuple[int, ...]) -> bool:
    return (
        key == CONV_IN
        and len(delta) == len(base) == 4
        and delta[1] > base[1]
        and delta[:1] + delta[2:] == base[:1] + base[2:]
    )


def _lora_order(
    first: tuple[int, ...], second: tuple[int, ...], target: tuple[int, ...]
) -> tuple[int, int] | None:
    """(up index, down index) among (slot 0, slot 1) such that up @ down has `target`'s shape."""
    out, inner = target[0], _numel(target[1:])

    def fits(up: tuple[int, ...], down: tuple[int, ...]) -> bool:
        return (
            len(up) >= 2
            and len(down) >= 2
            and up[0] == out
            and _numel(up[1:]) == down[0]
            and _numel(down[1:]) == inner
        )

    if fits(first, second):  # Forge's own order wins when a square shape fits both ways
        return (0, 1)
    if fits(second, first):
        return (1, 0)
    return None


def _forge_sources(
    shapes: Shapes, config: Mapping[str, Any], params: Shapes, name: str
) -> dict[str, dict[str, dict[int, str]]]:
    """diffusers key → patch type → slot → file key, every key mapped or refused."""
    grouped: dict[str, dict[str, dict[int, str]]] = {}
    for file_key in shapes:
        parts = file_key.split("::")
        if len(parts) != 3 or parts[1] not in ("lora", "diff") or not parts[2].isdigit():
            raise ModelFileError(
                f"{name}: key {file_key!r} is not a Forge patch key "
                "('diffusion_model.<key>::lora|diff::<slot>')"
            )
        ldm_key, patch_type, slot = parts[0], parts[1], int(parts[2])
        if not ldm_key.startswith(LDM_PREFIXES):
            raise ModelFileError(f"{name}: key {file_key!r} does not start with 'diffusion_model.'")
        try:
            key = ldm_to_diffusers_key(ldm_key, config)
        except KeyError:
            raise ModelFileError(f"{name}: key {file_key!r} has no place in this UNet") from None
        if key not in params:
            raise ModelFileError(
                f"{name}: key {file_key!r} ({key}) is not a parameter of this UNet"
            )
        slots = grouped.setdefault(key, {}).setdefault(patch_type, {})
        if slot in slots:
            raise ModelFileError(f"{name}: keys {slots[slot]!r} and {file_key!r} patch {key} twice")
        slots[slot] = file_key
    return grouped


def _plan_forge(
    shapes: Shapes, config: Mapping[str, Any], params: Shapes, name: str
) -> list[PlannedWeight]:
    plan = []
    for key, by_type in _forge_sources(shapes, config, params, name).items():
        if len(by_type) != 1:
            keys = sorted(k for slots in by_type.values() for k in slots.values())
            raise ModelFileError(f"{name}: key {keys[0]!r}: {key} has both lora and diff patches")
        ((patch_type, slots),) = by_type.items()
        base = params[key]
        if patch_type == "diff":
            if set(slots) != {0}:
                bad = next(k for s, k in slots.items() if s != 0)
                raise ModelFileError(f"{name}: key {bad!r}: a diff patch has only slot 0")
            source = slots[0]
            delta = shapes[source]
            if delta != base and not _widens_conv_in(key, delta, base):
                raise ModelFileError(
                    f"{name}: key {source!r} has shape {list(delta)}, "
                    f"which does not fit {key} {list(base)}"
                )
            plan.append(PlannedWeight(key, "diff", (source,)))
            continue
        if set(slots) != {0, 1}:
            bad = next(iter(slots.values()))
            raise ModelFileError(
                f"{name}: key {bad!r}: a lora patch needs exactly slots 0 and 1 (up, down), "
                f"found {sorted(slots)}"
            )
        order = _lora_order(shapes[slots[0]], shapes[slots[1]], base)
        if order is None:
            raise ModelFileError(
                f"{name}: key {slots[0]!r}: lora factors {list(shapes[slots[0]])} and "
                f"{list(shapes[slots[1]])} do not make {key} {list(base)}"
            )
        plan.append(PlannedWeight(key, "lora", (slots[order[0]], slots[order[1]])))
    return plan


def _plan_diffusers(shapes: Shapes, params: Shapes, name: str) -> list[PlannedWeight]:
    plan = []
    for key, shape in shapes.items():
        if key not in params:
            raise ModelFileError(f"{name}: key {key!r} is not a parameter of this UNet")
        if shape != params[key]:
            raise ModelFileError(
                f"{name}: key {key!r} has shape {list(shape)}, expected {list(params[key])}"
            )
        plan.append(PlannedWeight(key, "diff", (key,)))
    return plan


def patch_format(shapes: Shapes, name: str = "patch") -> PatchFormat:
    """'forge' when every key has `::` parts, 'diffusers' when none has; else refused."""
    if not shapes:
        raise ModelFileError(f"{name}: the file holds no tensors")
    forge = [key for key in shapes if "::" in key]
    if forge and len(forge) != len(shapes):
        odd = next(key for key in shapes if "::" not in key)
        raise ModelFileError(f"{name}: key {odd!r} lacks the '::type::slot' of the other keys")
    return "forge" if forge else "diffusers"


def plan_unet_patch(
    shapes: Shapes, unet_config: Mapping[str, Any], name: str = "patch"
) -> list[PlannedWeight]:
    """Check a patch file's header against a UNet config; raise `ModelFileError` naming a key.

    Every key must map onto a parameter of a UNet with this config, with a compatible shape
    (equal; the LoRA product equal; or a wider `conv_in` input). Reads no tensor data.
    """
    params = unet_parameter_shapes(unet_config)
    if patch_format(shapes, name) == "forge":
        return _plan_forge(shapes, unet_config, params, name)
    return _plan_diffusers(shapes, params, name)


@dataclass(frozen=True)
class WeightPatch:
    """One parameter's change: `diff` → (delta,), `lora` → (up, down) with up @ down ≅ delta."""

    key: str
    kind: Literal["diff", "lora"]
    tensors: tuple[torch.Tensor, ...]

    def delta(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        """The fp32 delta on `device` (a LoRA product reshaped to `shape`)."""
        tensors = [t.to(device=device, dtype=torch.float32) for t in self.tensors]
        if self.kind == "diff":
            return tensors[0]
        up, down = tensors
        return (up.flatten(1) @ down.flatten(1)).reshape(shape)

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The delta's shape for `diff` (None for `lora`, whose shape is the parameter's)."""
        return tuple(self.tensors[0].shape) if self.kind == "diff" else None


@dataclass(frozen=True)
class UNetPatch:
    """A validated patch file, tensors on the CPU in the file's dtype."""

    name: str
    format: PatchFormat
    weights: Mapping[str, WeightPatch]

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
    plan = plan_unet_patch(shapes, unet_config, path.name)
    weights = {}
    with safe_open(str(path), framework="pt") as handle:
        for planned in plan:
            tensors = tuple(handle.get_tensor(source) for source in planned.sources)
            for source, tensor in zip(planned.sources, tensors, strict=True):
                if not tensor.is_floating_point():
                    raise ModelFileError(f"{path.name}: key {source!r} is not a float tensor")
            weights[planned.key] = WeightPatch(planned.key, planned.kind, tensors)
    return UNetPatch(path.stem, patch_format(shapes, path.name), weights)


def check_strength(strength: float, field: str = "layer_weight") -> float:
    low, high = STRENGTH_RANGE
    if not (low <= strength <= high):
        raise InputError(
            f"{field} must be between {low:g} and {high:g}, got {strength}", field=field
        )
    return float(strength)


_ACTIVE: weakref.WeakKeyDictionary[nn.Module, list[PatchHandle]] = weakref.WeakKeyDictionary()


class PatchHandle:
    """An applied patch; `remove()` (or leaving the `with` block) restores the UNet bit-exactly."""

    def __init__(self, unet: UNet2DConditionModel, patch: UNetPatch, strength: float) -> None:
        self.unet = unet
        self.patch = patch
        self.strength = strength
        #: key → a copy of the original tensor, for parameters edited in place.
        self._originals: dict[str, torch.Tensor] = {}
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
        try:
            for key, weight in self.patch.weights.items():
                param = params[key]
                if weight.shape is not None and weight.shape != tuple(param.shape):
                    self._widen_conv_in(weight, param)
                    continue
                self._originals[key] = param.detach().to(backup_device or param.device, copy=True)
                merged = param.float() + self.strength * weight.delta(param.shape, param.device)
                param.copy_(merged.to(param.dtype))
        except BaseException:
            self._restore()
            raise

    def _widen_conv_in(self, weight: WeightPatch, param: nn.Parameter) -> None:
        conv = self.unet.conv_in
        # A new weight made inside inference mode could not take part in a grad-enabled forward.
        with torch.inference_mode(False), torch.no_grad():
            shape = weight.tensors[0].shape
            widened = torch.zeros(shape, dtype=torch.float32, device=param.device)
            widened[:, : param.shape[1]] = param.float()
            widened += self.strength * weight.delta(widened.shape, param.device)
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
    if not _widens_conv_in(key, weight.shape, current):
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
    Originals of touched tensors are kept on `backup_device` (None: where the parameter is).
    """
    handle = PatchHandle(unet, patch, check_strength(strength))
    handle._apply(backup_device)
    handle.active = True
    _ACTIVE.setdefault(unet, []).append(handle)
    return handle


def active_patches(unet: nn.Module) -> list[PatchHandle]:
    """The patches applied to `unet`, oldest first."""
    return list(_ACTIVE.get(unet, []))
