"""What the engine hands back: straight-alpha RGBA layers placed on a canvas."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from acetate.modes import ModeSpec
from acetate.protocol import FileRecord, ResolvedRequest, layer_file_name


@dataclass
class LayerImage:
    """One output layer: `pixels` is H×W×4 straight RGBA (RGB layers have full alpha), uint8,
    or uint16 when the request asked for `bit_depth` 16 (`acetate.bitdepth`)."""

    name: str
    batch_index: int
    pixels: np.ndarray
    left: int = 0
    top: int = 0
    visible: bool = True
    #: A note about this layer for the result's warnings (an object that came out empty).
    warning: str | None = None
    #: Measurements of this layer's result set for the record's `metrics` (decompose's
    #: `blended` carries the recomposite's PSNR, and the caption when it captioned).
    metrics: dict[str, float | str] | None = None

    @property
    def file(self) -> str:
        return layer_file_name(self.name, self.batch_index)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


@dataclass
class GenerationResult:
    """Everything one request produced, before it is written anywhere."""

    mode: str
    model: str
    parameters: dict[str, Any]
    canvas_width: int
    canvas_height: int
    layers: list[LayerImage]
    warnings: list[str] = field(default_factory=list)
    #: Official kind → the LayerDiffusion file used for it (`ResultRecord.files`).
    files: dict[str, FileRecord] = field(default_factory=dict)

    @classmethod
    def of(cls, request: ResolvedRequest, layers: list[LayerImage]) -> GenerationResult:
        """The result of a resolved request (the record's parameters come from it)."""
        return cls(
            mode=request.mode,
            model=request.parameters.model or "",
            parameters=request.record_parameters(),
            canvas_width=request.canvas.width,
            canvas_height=request.canvas.height,
            layers=layers,
            warnings=[*request.warnings, *(layer.warning for layer in layers if layer.warning)],
            files=request.file_records(),
        )


def stacked(spec: ModeSpec, layers: list[LayerImage]) -> list[LayerImage]:
    """Layers in record order: by result set, then bottom → top as the mode declares them
    (stable: undeclared names keep the engine's order, on top)."""
    return sorted(layers, key=lambda layer: (layer.batch_index, spec.stack_position(layer.name)))
