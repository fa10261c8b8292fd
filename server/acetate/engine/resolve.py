"""A request made complete once: every default filled for its base model's family and its mode.

`resolve_request` is the only place defaults are decided. The server runs it when a job is
submitted (so the worker, the result record and the PNG/PSD metadata all read the same values),
the CLI before it generates. Defaults come from the mode spec (`acetate.modes`); nothing here
lists request fields by hand.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from acetate.checks import check_regions
from acetate.engine.store.digest import file_sha256
from acetate.engine.store.models import Plan
from acetate.engine.store.qwen import QWEN_FAMILY, resolve_decompose
from acetate.images import image_record
from acetate.modes import MODES, TINY_SIZE, Family, ModeSpec
from acetate.protocol import (
    CanvasSize,
    FileRecord,
    GenerateParameters,
    ImageRecord,
    LoraRequest,
    ResolvedRequest,
    StageSettings,
    UsedFile,
    UsedLora,
)

__all__ = ["Prepared", "canvas_size", "resolve_request"]


class Prepared(NamedTuple):
    """A resolved request and the files it will load: what the worker hands the engine."""

    request: ResolvedRequest
    plan: Plan


def resolve_request(
    params: GenerateParameters, images: Mapping[str, np.ndarray], plan: Plan
) -> ResolvedRequest:
    """Fill every default of `params` for `plan`'s base; the seed is drawn when absent."""
    spec = MODES[params.mode]
    base = plan.base
    family = base.family
    filled: dict[str, object] = {"model": base.name}
    for name in spec.options:
        if getattr(params, name, None) is None:
            default = spec.default(name, family)
            if default is not None:
                filled[name] = default
    if params.seed is None:
        filled["seed"] = secrets.randbelow(2**32)
    native = TINY_SIZE if base.tiny else int(spec.default("width", family) or TINY_SIZE)
    if base.tiny and "width" in spec.options:
        # Test models: small images so every mode runs on a CPU in seconds.
        filled.update(width=params.width or TINY_SIZE, height=params.height or TINY_SIZE)
    if spec.frame_image is not None and spec.frame_image in images:
        filled.update(width=None, height=None)  # the frame is the input's
    if plan.controlnet is not None:
        filled["controlnet"] = plan.controlnet.name
    if plan.loras:  # the names as listed (`x.safetensors` → `x`; a CLI path → its name)
        filled["loras"] = [LoraRequest(name=p.lora.name, strength=p.strength) for p in plan.loras]
    if family == QWEN_FAMILY:
        filled.update(resolve_decompose(params, images, base.tiny, base.path))
    stages = _stages(spec, family, params)
    layer_stages = [stage for stage in stages if stage.name != "blend"] or list(stages)
    filled["scheduler"] = params.scheduler or stages[0].scheduler
    filled["stop_at"] = layer_stages[-1].stop_at
    resolved = params.model_copy(update=filled)
    records = {field: ImageRecord(**image_record(array)) for field, array in images.items()}
    width, height = canvas_size(spec, resolved, images)
    check_regions(resolved, images, width, height)
    return ResolvedRequest(
        parameters=GenerateParameters.model_validate(resolved.model_dump()),
        family=family,
        tiny=base.tiny,
        stages=stages,
        native_size=native,
        canvas=CanvasSize(width=width, height=height),
        images=records,
        files={
            role: UsedFile(kind=layer.kind, name=layer.name, sha256=file_sha256(layer.path))
            for role, layer in plan.files.items()
        },
        warnings=tuple(plan.warnings),
        loras=tuple(
            UsedLora(name=p.lora.name, sha256=file_sha256(p.lora.path), strength=p.strength)
            for p in plan.loras
        ),
        embeddings=tuple(
            FileRecord(name=e.name, sha256=file_sha256(e.path)) for e in plan.embeddings
        ),
    )


def _stages(
    spec: ModeSpec, family: Family, params: GenerateParameters
) -> tuple[StageSettings, ...]:
    """Each stage's scheduler and stop-at: the request's when given, else the stage's own."""
    family_scheduler = spec.default("scheduler", family)
    return tuple(
        StageSettings(
            name=stage.name,
            scheduler=params.scheduler or stage.scheduler or family_scheduler,
            stop_at=(
                params.stop_at if params.stop_at is not None and stage.takes_stop_at
                else stage.stop_at
            ),
        )
        for stage in spec.stages(family)
    )  # fmt: skip


def canvas_size(
    spec: ModeSpec, params: GenerateParameters, images: Mapping[str, np.ndarray]
) -> tuple[int, int]:
    """(width, height) of the result frame: the frame image's (times `frame_scale`), else the
    generated size."""
    field = spec.frame_image
    if field is None or field not in images:  # no frame image, or an optional one not sent
        return int(params.width or TINY_SIZE), int(params.height or TINY_SIZE)
    height, width = images[field].shape[:2]
    if spec.frame_scale is not None:
        scale = float(getattr(params, spec.frame_scale))
        return max(1, round(width * scale)), max(1, round(height * scale))
    return int(width), int(height)
