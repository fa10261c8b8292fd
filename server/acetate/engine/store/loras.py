"""Style and character LoRAs: found on disk, told apart by family, resolved for a request.

A LoRA is a `.safetensors` file under `loras/` (Acetate, ComfyUI) or `Lora/` (A1111, Forge), in
diffusers/peft keys (`unet.….lora_A.weight`) or kohya keys (`lora_unet_….lora_down.weight`);
diffusers' loader reads both. Its family comes from header facts only: the width of the
cross-attention key/value inputs (768 SD1.5, 2048 SDXL, 1024 SD2 — refused), else a second text
encoder (SDXL), else a first text encoder alone (SD1.5). The tiny test bases have their own
widths (32 and 80), so a LoRA made for them is flagged `tiny` and fits only them. Pickle files
are listed as refused and never opened.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from acetate.engine.store.family import (
    FAMILY_LABEL,
    PICKLE_REASON,
    PICKLE_SUFFIXES,
    Family,
    read_header,
)
from acetate.errors import InputError, ModelFileError, ModelNotFoundError

if TYPE_CHECKING:
    from acetate.engine.store.discovery import BaseCheckpoint, RefusedFile
    from acetate.protocol import LoraRequest

LoraFormat = Literal["diffusers", "kohya"]
#: Folder names (lower case) holding LoRAs: ComfyUI `models/loras`, A1111/Forge `models/Lora`.
LORA_FOLDERS = ("loras", "lora")
#: Cross-attention key/value input width → (family, tiny); SD2's 1024 is refused by name.
CROSS_ATTENTION_WIDTHS: dict[int, tuple[Family, bool]] = {
    768: ("sd15", False),
    2048: ("sdxl", False),
    32: ("sd15", True),  # acetate.engine.tiny.bases.TINY_SD15
    80: ("sdxl", True),  # TINY_SDXL
}
#: Second text encoder width → tiny? (SDXL: OpenCLIP bigG 1280, the tiny one 48).
TEXT_ENCODER_2_WIDTHS = {1280: False, 48: True}
_DOWN = re.compile(r"(lora_A|lora_down|lora\.down|_lora\.down)\.weight$")
_CROSS_KV = re.compile(r"attn2[._](processor[._])?(to_k|to_v)[._]")
_TE2 = ("text_encoder_2.", "lora_te2_")
_TE1 = ("text_encoder.", "lora_te_", "lora_te1_")
#: First text encoder width → tiny? when a LoRA changes only it (768 for both families' CLIP-L:
#: such a LoRA is taken as SD1.5's, as SDXL trainers change both encoders).
TEXT_ENCODER_WIDTHS = {768: False, 32: True}
_LYCORIS = ("hada_w1_a", "lokr_w1", "oft_blocks")


@dataclass(frozen=True)
class LoraFile:
    """A LoRA the store lists; `name` is how requests name it (never a path)."""

    name: str
    family: Family
    tiny: bool
    format: LoraFormat
    path: Path
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


@dataclass(frozen=True)
class PlannedLora:
    """A LoRA a request applies, at the strength it asked for."""

    lora: LoraFile
    strength: float


def detect_lora(path: Path) -> tuple[Family, bool, LoraFormat]:
    """(family, tiny, format) of a LoRA file from its header; `ModelFileError` says why not."""
    shapes = read_header(path).shapes
    keys = list(shapes)
    downs = [key for key in keys if _DOWN.search(key)]
    if not downs:
        lycoris = any(
            any(marker in key for marker in _LYCORIS) or key.endswith((".diff", ".diff_b"))
            for key in keys
        )
        raise ModelFileError(
            f"{path.name}: "
            + (
                "LyCORIS (LoHa/LoKr/OFT) LoRAs are not supported; use a plain LoRA"
                if lycoris
                else "not a LoRA (no lora_A / lora_down weights)"
            ),
            field="loras",
        )
    fmt: LoraFormat = "kohya" if any(key.startswith("lora_") for key in downs) else "diffusers"
    widths = {shapes[key][1] for key in downs if _CROSS_KV.search(key) and len(shapes[key]) >= 2}
    if widths:
        if 1024 in widths:
            raise ModelFileError(
                f"{path.name}: an SD2.x LoRA (cross-attention width 1024); LayerDiffusion runs "
                "on SD1.5 and SDXL bases only",
                field="loras",
            )
        matches = {CROSS_ATTENTION_WIDTHS[w] for w in widths if w in CROSS_ATTENTION_WIDTHS}
        if len(matches) == 1 and len(widths) == 1:
            family, tiny = matches.pop()
            return family, tiny, fmt
        raise ModelFileError(
            f"{path.name}: cross-attention width {sorted(widths)} fits neither SD1.5 (768) nor "
            "SDXL (2048)",
            field="loras",
        )
    te2 = [key for key in downs if key.startswith(_TE2)]
    if te2:
        width = shapes[te2[0]][1] if len(shapes[te2[0]]) >= 2 else None
        return "sdxl", TEXT_ENCODER_2_WIDTHS.get(width or 0, False), fmt
    te1 = [key for key in downs if key.startswith(_TE1) and len(shapes[key]) >= 2]
    if te1 and len(te1) == len(downs) and shapes[te1[0]][1] in TEXT_ENCODER_WIDTHS:
        return "sd15", TEXT_ENCODER_WIDTHS[shapes[te1[0]][1]], fmt
    raise ModelFileError(
        f"{path.name}: cannot tell whether this LoRA is for SD1.5 or SDXL (it changes no "
        "cross-attention and no second text encoder)",
        field="loras",
    )


def scan_lora_folder(folder: Path, source: str) -> tuple[list[LoraFile], list[RefusedFile]]:
    """The LoRAs under one `loras/` or `Lora/` folder (a few levels deep), and the refused."""
    from acetate.engine.store.discovery import scan_model_files

    def lora(path: Path, name: str) -> LoraFile:
        return LoraFile(name, *detect_lora(path), path, source)

    return scan_model_files(folder, source, "lora", lora)


def explicit_lora(path: Path) -> LoraFile:
    """A LoRA file given by path (CLI `--lora FILE`): named after its stem."""
    if not path.is_file():
        raise ModelNotFoundError(f"no such LoRA file: {path}", field="loras")
    if path.suffix.lower() != ".safetensors":
        reason = PICKLE_REASON if path.suffix.lower() in PICKLE_SUFFIXES else "not .safetensors"
        raise ModelFileError(f"{path}: {reason}", field="loras")
    family, tiny, fmt = detect_lora(path)
    return LoraFile(path.stem, family, tiny, fmt, path, "path")


def family_label(family: str, tiny: bool) -> str:
    """`SD1.5`, `SDXL (test model)`…: how errors name a base's or an add-on's family."""
    return f"{FAMILY_LABEL.get(family, family)}{' (test model)' if tiny else ''}"


def plan_loras(
    requested: Sequence[LoraRequest],
    available: Sequence[LoraFile],
    refused: Sequence[RefusedFile],
    base: BaseCheckpoint,
) -> tuple[PlannedLora, ...]:
    """The listed LoRAs a request names, checked against `base`; errors name `loras`."""
    if not requested:
        return ()
    if base.family not in ("sd15", "sdxl"):
        raise InputError(
            f"LoRAs apply to SD1.5 and SDXL bases; {base.name} is "
            f"{FAMILY_LABEL.get(base.family, base.family)}",
            field="loras",
        )
    planned: list[PlannedLora] = []
    for item in requested:
        wanted = item.name.removesuffix(".safetensors")
        lora = next((lora for lora in available if lora.name == wanted), None)
        if lora is None:
            bad = next((r for r in refused if r.category == "lora" and wanted == r.path.stem), None)
            if bad is not None:
                raise ModelFileError(
                    f"LoRA {item.name!r} cannot be used: {bad.reason}", field="loras"
                )
            fitting = [x.name for x in available if (x.family, x.tiny) == (base.family, base.tiny)]
            raise ModelNotFoundError(
                f"no LoRA named {item.name!r} (available for {base.name}: "
                f"{', '.join(fitting) or 'none'}); put LoRAs in models/loras/",
                field="loras",
            )
        if (lora.family, lora.tiny) != (base.family, base.tiny):
            raise InputError(
                f"LoRA {lora.name!r} is for {family_label(lora.family, lora.tiny)} bases, but the "
                f"base {base.name} is {family_label(base.family, base.tiny)}",
                field="loras",
            )
        if any(p.lora.name == lora.name for p in planned):
            raise InputError(f"LoRA {lora.name!r} is named twice", field="loras")
        planned.append(PlannedLora(lora, float(item.strength)))
    return tuple(planned)
