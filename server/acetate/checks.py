"""Request checks that need no model: which images a mode needs, their sizes, control inputs.

Shared by the CLI, the server (before a job is queued) and the engine (before any heavy work),
so every front end rejects the same inputs with the same `InputError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from acetate.errors import InputError
from acetate.protocol import (
    ALLOWED_IMAGES,
    FRAME_IMAGE,
    MASK_FIELDS,
    REQUIRED_IMAGES,
    GenerateParameters,
)


def check_request(params: GenerateParameters, images: Mapping[str, np.ndarray]) -> None:
    """Raise `InputError` for the first problem found, naming its field."""
    mode = params.mode
    if mode != "upscale" and not params.prompt.strip():
        raise InputError(f"mode {mode} needs a prompt", field="prompt")
    for field in REQUIRED_IMAGES[mode]:
        if field not in images:
            raise InputError(f"mode {mode} needs an image in {field!r}", field=field)
    for field in images:
        if field not in ALLOWED_IMAGES[mode]:
            raise InputError(f"mode {mode} does not use {field!r}", field=field)
    for field, array in images.items():
        expected_ndim = 2 if field in MASK_FIELDS else 3
        if array.ndim != expected_ndim or array.dtype != np.uint8:
            raise InputError(f"{field}: wrong image layout", field=field)

    if "mask" in images:
        image = images["image"]
        if images["mask"].shape != image.shape[:2]:
            raise InputError(
                f"mask is {images['mask'].shape[1]}×{images['mask'].shape[0]} but image is "
                f"{image.shape[1]}×{image.shape[0]}",
                field="mask",
            )
    if params.selection_bounds is not None and "selection" not in images:
        raise InputError("selection_bounds given without a selection", field="selection_bounds")
    if "selection" in images and params.selection_bounds is None:
        canvas = images["canvas"]
        if images["selection"].shape != canvas.shape[:2]:
            raise InputError(
                f"selection is {images['selection'].shape[1]}×{images['selection'].shape[0]} "
                f"but canvas is {canvas.shape[1]}×{canvas.shape[0]} "
                "(send a canvas-sized mask or selection_bounds)",
                field="selection",
            )
    if "selection" in images and params.selection_bounds is not None:
        bounds = params.selection_bounds
        canvas = images["canvas"]
        if images["selection"].shape != (bounds.height, bounds.width):
            raise InputError("selection must have the size of selection_bounds", field="selection")
        if (
            bounds.left + bounds.width > canvas.shape[1]
            or bounds.top + bounds.height > canvas.shape[0]
        ):
            raise InputError("selection_bounds extends past the canvas", field="selection_bounds")
    if "selection" in images and not images["selection"].any():
        raise InputError("the selection is empty", field="selection")

    _check_control(params, images)


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
    if params.control == "canny" and not has_control_image and params.mode not in FRAME_IMAGE:
        raise InputError(
            f"control=canny in mode {params.mode} needs a control_image to take edges from",
            field="control_image",
        )
