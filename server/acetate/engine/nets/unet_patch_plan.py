"""Checking an official UNet patch file's header against a UNet, before reading any tensor.

Every key of a Forge file (`diffusion_model.<LDM key>::lora|diff::<slot>`) or a diffusers-keyed
file must map onto a parameter of a UNet with the given config, with a compatible shape: equal,
a LoRA pair whose product has it, or a wider `conv_in`. `unet_patch` applies what passes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import torch
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

from acetate.engine.nets.keymap import LDM_PREFIXES, ldm_to_diffusers_key
from acetate.engine.nets.weights import Shapes
from acetate.errors import ModelFileError

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


def widens_conv_in(key: str, delta: tuple[int, ...], base: tuple[int, ...]) -> bool:
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
            if delta != base and not widens_conv_in(key, delta, base):
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
