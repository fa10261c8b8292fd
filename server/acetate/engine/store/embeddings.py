"""Textual-inversion embeddings: found on disk, told apart by family, found in a request's prompts.

An embedding is a `.safetensors` file under `embeddings/` (Acetate and ComfyUI `models/embeddings`,
A1111 and Forge `embeddings/` in the install folder). Formats: A1111's `emb_params` (or a
converted `string_to_param.*`), diffusers' single `{token: vectors}` tensor, and the SDXL
`clip_l` + `clip_g` pair. The family comes from the vector widths: 768 alone is SD1.5, `clip_l`
768 with `clip_g` 1280 is SDXL (the tiny bases' 32, and 32 + 48, mark a `tiny` one); SD2's 1024
is refused. Pickle files (`.pt`, `.bin`) are listed as refused and never opened.

As in A1111, a prompt uses an embedding by naming it as a whole word (ComfyUI's
`embedding:name` too), in any prompt field of the request; case is ignored, as CLIP lowercases.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from acetate.engine.store.family import Family, read_header
from acetate.engine.store.loras import LoraFile, family_label
from acetate.engine.tiny.styles import (
    EMBEDDING_DIR,
    EMBEDDING_VECTORS,
    LORA_DIR,
    TINY_EMBEDDINGS,
    TINY_STYLE_LORAS,
)
from acetate.errors import InputError, ModelFileError

if TYPE_CHECKING:
    from acetate.engine.store.discovery import BaseCheckpoint, RefusedFile

EmbeddingFormat = Literal["a1111", "diffusers", "sdxl"]
#: Vector width → (family, tiny) for one-encoder (SD1.5) embeddings.
SD15_WIDTHS: dict[int, tuple[Family, bool]] = {768: ("sd15", False), 32: ("sd15", True)}
#: (clip_l, clip_g) widths → tiny? for SDXL embeddings (the tiny SDXL's encoders: 32 and 48).
SDXL_WIDTHS = {(768, 1280): False, (32, 48): True}
SDXL_KEYS = {"text_encoder": "clip_l", "text_encoder_2": "clip_g"}
#: Characters that continue a word or a path: an embedding name must not touch them.
_BEFORE = r"(?<![\w/:.\\-])"
_AFTER = r"(?![\w/\\-])"


@dataclass(frozen=True)
class EmbeddingFile:
    """An embedding the store lists; `name` is what a prompt writes to use it."""

    name: str
    family: Family
    tiny: bool
    format: EmbeddingFormat
    path: Path
    source: str
    #: Vectors (tokens) the embedding puts in the prompt.
    vectors: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


def vector_keys(keys: Sequence[str]) -> tuple[EmbeddingFormat, dict[str, str]]:
    """The file's format and which tensor holds each text encoder's vectors (`text_encoder`,
    `text_encoder_2`); `ModelFileError` when it is no embedding."""
    if set(SDXL_KEYS.values()) <= set(keys):
        return "sdxl", dict(SDXL_KEYS)
    if "emb_params" in keys:
        return "a1111", {"text_encoder": "emb_params"}
    converted = [key for key in keys if key.startswith("string_to_param.")]
    if len(converted) == 1:
        return "a1111", {"text_encoder": converted[0]}
    if len(keys) == 1:
        return "diffusers", {"text_encoder": keys[0]}
    raise ModelFileError(
        "not a textual-inversion embedding (no emb_params, no clip_l + clip_g, not one tensor)",
        field="prompt",
    )


def detect_embedding(path: Path) -> tuple[Family, bool, EmbeddingFormat, int]:
    """(family, tiny, format, vectors) of an embedding file from its header."""
    shapes = read_header(path).shapes
    fmt, keys = vector_keys(list(shapes))
    dims = {encoder: shapes[key] for encoder, key in keys.items()}
    if any(len(shape) not in (1, 2) or 0 in shape for shape in dims.values()):
        raise ModelFileError(f"{path.name}: embedding vectors must be 1-D or 2-D", field="prompt")
    counts = {shape[0] if len(shape) == 2 else 1 for shape in dims.values()}
    widths = tuple(shape[-1] for shape in dims.values())
    if len(counts) != 1:
        raise ModelFileError(f"{path.name}: clip_l and clip_g hold different vector counts")
    vectors = counts.pop()
    if fmt == "sdxl":
        tiny = SDXL_WIDTHS.get((widths[0], widths[1]))
        if tiny is None:
            raise ModelFileError(
                f"{path.name}: clip_l/clip_g widths {widths} are not SDXL's (768, 1280)"
            )
        return "sdxl", tiny, fmt, vectors
    if widths[0] == 1024:
        raise ModelFileError(
            f"{path.name}: an SD2.x embedding (width 1024); LayerDiffusion runs on SD1.5 and "
            "SDXL bases only"
        )
    if widths[0] not in SD15_WIDTHS:
        raise ModelFileError(
            f"{path.name}: vector width {widths[0]} fits neither SD1.5 (768) nor SDXL (clip_l "
            "768 + clip_g 1280)"
        )
    family, tiny = SD15_WIDTHS[widths[0]]
    return family, tiny, fmt, vectors


def scan_embedding_folder(
    folder: Path, source: str
) -> tuple[list[EmbeddingFile], list[RefusedFile]]:
    """The embeddings under one `embeddings/` folder (a few levels deep), and the refused."""
    from acetate.engine.store.discovery import scan_model_files

    def embedding(path: Path, name: str) -> EmbeddingFile:
        family, tiny, fmt, vectors = detect_embedding(path)
        return EmbeddingFile(name, family, tiny, fmt, path, source, vectors)

    return scan_model_files(folder, source, "embedding", embedding)


@lru_cache(maxsize=4096)  # every request checks every listed name
def name_pattern(name: str) -> re.Pattern[str]:
    """`name` as a whole word, or ComfyUI's `embedding:name` (either with `.safetensors`)."""
    return re.compile(
        rf"{_BEFORE}(?:embedding:)?{re.escape(name)}(?:\.safetensors)?{_AFTER}", re.IGNORECASE
    )


def prompt_texts(params: Any) -> dict[str, str]:
    """Every prompt text of a request, by field (`prompt`, `negative_prompt`,
    `layer_prompts.foreground`, `objects[0].prompt`…): the places an embedding may be named."""
    return dict(_texts(params.model_dump(), "", False))


def _texts(value: Any, path: str, is_prompt: bool) -> Iterator[tuple[str, str]]:
    """Strings under a key that says `prompt` (or inside one, as `layer_prompts`)."""
    if isinstance(value, str) and is_prompt:
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            yield from _texts(item, inner, is_prompt or "prompt" in str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _texts(item, f"{path}[{index}]", is_prompt)


def plan_embeddings(
    texts: Mapping[str, str], available: Sequence[EmbeddingFile], base: BaseCheckpoint
) -> tuple[EmbeddingFile, ...]:
    """The listed embeddings the request's prompt texts name, checked against `base`; one of
    another family (or a test embedding on a real base) is an `InputError` on the field."""
    used: list[EmbeddingFile] = []
    for embedding in available:
        pattern = name_pattern(embedding.name)
        field = next((field for field, text in texts.items() if pattern.search(text)), None)
        if field is None:
            continue
        if (embedding.family, embedding.tiny) != (base.family, base.tiny):
            wanted = family_label(embedding.family, embedding.tiny)
            raise InputError(
                f"the embedding {embedding.name!r} named in {field} is for {wanted} bases, but "
                f"the base {base.name} is {family_label(base.family, base.tiny)}; remove it from "
                "the prompt or pick a base of its family",
                field=field,
            )
        used.append(embedding)
    return tuple(used)


def listed_tiny_styles(root: Path) -> tuple[list[LoraFile], list[EmbeddingFile]]:
    """The LoRAs and embeddings the tiny store `root` lists once built: listed before its first
    build too (as the tiny bases are), which the first job on a tiny base does."""
    loras = [
        LoraFile(
            name,
            _family(family),
            True,
            "diffusers",
            root / LORA_DIR / f"{name}.safetensors",
            "tiny",
        )
        for family, name in TINY_STYLE_LORAS.items()
    ]
    embeddings = [
        EmbeddingFile(
            name,
            _family(family),
            True,
            "sdxl" if family == "sdxl" else "a1111",
            root / EMBEDDING_DIR / f"{name}.safetensors",
            "tiny",
            EMBEDDING_VECTORS,
        )
        for family, name in TINY_EMBEDDINGS.items()
    ]
    return loras, embeddings


def _family(name: str) -> Family:
    if name not in ("sd15", "sdxl"):
        raise ValueError(f"not a LayerDiffusion family: {name}")
    return cast(Family, name)
