"""Request checks that need no model: which images a mode needs, their sizes, control inputs.

Shared by the CLI, the server (before a job is queued) and the engine (before any heavy work),
so every front end rejects the same inputs with the same `InputError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from acetate.errors import InputError
from acetate.modes import MASK_FIELDS, MODES
from acetate.protocol import GenerateParameters


def check_request(params: GenerateParameters, images: Mapping[str, np.ndarray]) -> None:
    """Raise `InputError` for the first problem found, naming its field."""
    mode = params.mode
    spec = MODES[mode]
    if spec.prompt_required and not params.prompt.strip():
        raise InputError(f"mode {mode} needs a prompt", field="prompt")
    for field in spec.required_images:
        if field not in images:
            raise InputError(f"mode {mode} needs an image in {field!r}", field=field)
    for field in images:
        if field not in spec.allowed_images:
            raise InputError(f"mode {mode} does not use {field!r}", field=field)
    for field, array in images.items():
        expected_ndim = 2 if field in MASK_FIELDS else 3
        if array.ndim != expected_ndim or array.dtype != np.uint8:
            raise InputError(f"{field}: wrong image layout", field=field)

    _check_masks(params, images)
    _check_control(params, images)


def _check_masks(params: GenerateParameters, images: Mapping[str, np.ndarray]) -> None:
    """Each mask has its reference image's size, or is placed inside it by `selection_bounds`."""
    spec = MODES[params.mode]
    placed = [m for m in spec.inputs if m.kind == "mask" and m.source == "selection"]
    if params.selection_bounds is not None and not any(m.field in images for m in placed):
        raise InputError("selection_bounds given without a selection", field="selection_bounds")
    for mask in spec.inputs:
        if mask.kind != "mask" or mask.field not in images or mask.relative_to is None:
            continue
        pixels, reference = images[mask.field], images[mask.relative_to]
        ref_h, ref_w = reference.shape[:2]
        bounds = params.selection_bounds if mask in placed else None
        if bounds is None:
            if pixels.shape != (ref_h, ref_w):
                hint = " (send a canvas-sized mask or selection_bounds)" if mask in placed else ""
                raise InputError(
                    f"{mask.field} is {pixels.shape[1]}×{pixels.shape[0]} but "
                    f"{mask.relative_to} is {ref_w}×{ref_h}{hint}",
                    field=mask.field,
                )
        else:
            if pixels.shape != (bounds.height, bounds.width):
                raise InputError(
                    f"{mask.field} must have the size of selection_bounds", field=mask.field
                )
            if bounds.left + bounds.width > ref_w or bounds.top + bounds.height > ref_h:
                raise InputError(
                    f"selection_bounds extends past the {mask.relative_to}",
                    field="selection_bounds",
                )
        if not mask.required and not pixels.any():
            raise InputError(f"the {mask.field} is empty", field=mask.field)


def _check_control(params: GenerateParameters, images: Mapping[str, np.ndarray]) -> None:
    has_control_image = "control_image" in images
    if params.control == "none":
        if has_control_image:
            raise InputError("control_image given but control is none", field="control")
        if params.controlnet is not None:
            raise InputError("controlnet given but control is none", field="control")
        return
    if params.control == "image" and not has_control_image:
        raise InputError("control=image needs a control_image", field="control_image")
    if params.control == "canny" and not has_control_image and not MODES[params.mode].frame_image:
        raise InputError(
            f"control=canny in mode {params.mode} needs a control_image to take edges from",
            field="control_image",
        )
