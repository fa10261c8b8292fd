"""Which official LayerDiffusion files each mode needs, per base family.

`MODE_REQUIREMENTS[family][mode]` (from the mode specs' `FamilySupport.files`) maps a role to
the official kinds (file stems) that can fill it, preferred first. Roles: `unet_patch` (SDXL
UNet patch applied while sampling the layer), `blend_patch` (SDXL first stage of a two-stage
mode: the blended image), `attention_sharing` (SD1.5 multi-frame attention model), `decoder` /
`encoder` (transparent VAE).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Final

from acetate.engine.store.discovery import BaseCheckpoint, LayerFile
from acetate.engine.store.family import FAMILY_LABEL, Family
from acetate.errors import InputError, ModelFileError
from acetate.modes import FAMILIES, MODES

Role = str
Requirements = dict[Role, tuple[str, ...]]

ROLES: Final = ("unet_patch", "blend_patch", "attention_sharing", "decoder", "encoder")
LAYER_FOLDER: Final = "layer_model"


def _tables() -> tuple[dict[Family, dict[str, Requirements]], dict[Family, dict[str, str]]]:
    needs: dict[Family, dict[str, Requirements]] = {family: {} for family in FAMILIES}
    unsupported: dict[Family, dict[str, str]] = {family: {} for family in FAMILIES}
    for spec in MODES.values():
        for family, support in spec.families.items():
            needs.setdefault(family, {})[spec.name] = dict(support.files)
        for family, reason in spec.unsupported.items():
            unsupported.setdefault(family, {})[spec.name] = reason
    return needs, unsupported


#: family → mode → role → official kinds, derived from the mode specs.
#: Modes a family cannot run, whatever files are present, and why (also from the specs).
MODE_REQUIREMENTS, UNSUPPORTED_MODES = _tables()


def requirements(family: Family, mode: str) -> Requirements:
    """The roles and kinds `mode` needs on `family`; `KeyError` for an unsupported pair."""
    return MODE_REQUIREMENTS[family][mode]


def file_name(kind: str) -> str:
    """The official file name of a kind."""
    return f"{kind}.safetensors"


def describe_missing(kinds: tuple[str, ...]) -> str:
    """`a.safetensors` or `a.safetensors (or b.safetensors)` for a role's alternatives."""
    first, *others = (file_name(k) for k in kinds)
    return f"{first} (or {' / '.join(others)})" if others else first


def select(
    needs: Requirements, candidates: Iterable[LayerFile], chosen: dict[Role, LayerFile]
) -> list[tuple[str, ...]]:
    """Fill every role of `needs` not yet in `chosen` with the most preferred candidate
    (in place); returns the alternatives of the roles nothing fills."""
    candidates = list(candidates)
    missing = []
    for role, kinds in needs.items():
        if role in chosen:
            continue
        # A trained file (`acetate train`) is used when named, never as a default.
        ranked = sorted(
            (f for f in candidates if f.kind in kinds),
            key=lambda f: (kinds.index(f.kind), getattr(f.identity, "trained", None) is not None),
        )
        if ranked:
            chosen[role] = ranked[0]
        else:
            missing.append(kinds)
    return missing


def override_role(
    layer: LayerFile,
    base: BaseCheckpoint,
    mode: str,
    needs: Requirements,
    field: str = "layer_model",
) -> Role:
    """The role an explicitly given file fills for `mode` on `base`, or why it cannot (an error
    on `field`)."""
    label = FAMILY_LABEL[base.family]
    if layer.family != base.family:
        raise ModelFileError(
            f"{layer.name} is an {FAMILY_LABEL[layer.family]} file ({layer.kind}); "
            f"the base {base.name} is {label}",
            field=field,
        )
    if layer.tiny != base.tiny:
        what = "a tiny test file" if layer.tiny else "a full-size file"
        size = "a tiny test model" if base.tiny else "full size"
        raise ModelFileError(f"{layer.name} is {what}; the base {base.name} is {size}", field=field)
    for role, kinds in needs.items():
        if layer.kind in kinds:
            return role
    wanted = ", ".join(file_name(k) for kinds in needs.values() for k in kinds)
    raise InputError(
        f"{layer.name} ({layer.kind}) is not used by mode {mode} on {label}; it uses {wanted}",
        field=field,
    )


def missing_message(
    base: BaseCheckpoint, mode: str, missing: list[tuple[str, ...]], models_dir: Path
) -> str:
    """Every missing official file name, where to put it and how to get it."""
    names = " and ".join(describe_missing(kinds) for kinds in missing)
    if base.tiny:
        return f"tiny layer files for {mode} are missing ({names}): run `acetate models tiny`"
    gets = ", ".join(f"`acetate models get {kinds[0]}`" for kinds in missing)
    return (
        f"mode {mode} on {base.name} ({FAMILY_LABEL[base.family]}) needs {names}: put "
        f"{'it' if len(missing) == 1 else 'them'} in {models_dir / LAYER_FOLDER}/ "
        f"(download with {gets}, or from huggingface.co/LayerDiffusion/layerdiffusion-v1)"
    )
