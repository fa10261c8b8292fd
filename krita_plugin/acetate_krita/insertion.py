"""How a result's layers are fetched for a document, Qt-free: at which bit depth, and whether
their alpha goes into an editable mask.

Bit depth follows the document, never a control: a 16- or 32-bit document (U16, F16, F32)
asks the server for `bit_depth: 16` and fetches its layers with `?format=rgba16`, so soft
alpha (smoke, glass) does not band; an 8-bit document sends no `bit_depth` and fetches 8-bit
layers, exactly as before the option existed. Layers of a 16-bit job inserted again into an
8-bit document are fetched at 8 bits (the server rounds them).

"Alpha as editable mask" (the docker's check box, remembered in kritarc) inserts each
transparent layer opaque, with its decoded colour everywhere, plus a transparency mask holding
its alpha (document.py; the bytes come from `pixels.LayerPixels`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .client import AcetateClient
from .pixels import LayerPixels
from .protocol import LayerRecord, ModeInfo

BIT_DEPTH = "bit_depth"
#: Request options the docker fills from the document instead of offering a control, and why.
DOCUMENT_OPTIONS: dict[str, str] = {
    BIT_DEPTH: "follows the document's colour depth: 16/32-bit documents get 16-bit layers, "
    "8-bit documents 8-bit ones",
}
#: Krita channel depths whose documents receive 16-bit layers.
HIGH_DEPTHS = frozenset({"U16", "F16", "F32"})


def document_bits(color_depth: str) -> int:
    """16 for a 16/32-bit document (Krita's U16, F16, F32), else 8."""
    return 16 if color_depth in HIGH_DEPTHS else 8


def document_options(mode: ModeInfo, color_depth: str) -> dict[str, Any]:
    """The request fields that follow the document: `bit_depth: 16` for a 16/32-bit one when
    `mode` reads it; nothing for an 8-bit one (its request stays as it always was)."""
    if document_bits(color_depth) == 16 and mode.option(BIT_DEPTH) is not None:
        return {BIT_DEPTH: 16}
    return {}


@dataclass
class Downloads:
    """A job's layer pixels as they are fetched (each once), and how they go in."""

    bits: int = 8
    alpha_mask: bool = False
    by_file: dict[str, LayerPixels] = field(default_factory=dict)

    @classmethod
    def of(cls, parameters: Mapping[str, Any], color_depth: str, alpha_mask: bool) -> Downloads:
        """For a job sent (or recorded) with `parameters`, inserted into a document of
        `color_depth`: 16-bit only when both the job and the document are."""
        high = parameters.get(BIT_DEPTH) == 16 and document_bits(color_depth) == 16
        return cls(16 if high else 8, alpha_mask)

    async def get(self, client: AcetateClient, job_id: str, layer: LayerRecord) -> LayerPixels:
        """The layer's pixels, downloaded on first use."""
        if layer.file not in self.by_file:
            data = await client.layer_pixels(job_id, layer, self.bits)
            self.by_file[layer.file] = LayerPixels(data, self.bits, self.alpha_mask)
        return self.by_file[layer.file]
