"""Request checks that need no model: which images a mode needs, their sizes, control inputs.

Shared by the CLI, the server (before a job is queued) and the engine (before any heavy work),
so every front end rejects the same inputs with the same `InputError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from acetate.errors import InputError
from acetate.modes import MASK_FIELDS, MODES, OPTIONS
from acetate.protocol import (
    MAX_PIXELS,
    GenerateParameters,
    Region,
    item_image_key,
    region_fields,
)


def check_request(params: GenerateParameters, images: Mapping[str, np.ndarray]) -> None:
    """Raise `InputError` for the first problem found, naming its field."""
    mode = params.mode
    spec = MODES[mode]
    if spec.prompt_required and not params.prompt.strip():
        raise InputError(f"mode {mode} needs a prompt", field="prompt")
    if spec.strict_options:
        unread = sorted(set(params.model_fields_set) & set(OPTIONS) - set(spec.options))
        if unread:
            names = ", ".join(unread)
            raise InputError(f"mode {mode} does not read {names}; leave it out", field=unread[0])
    for field in spec.required_images:
        if field not in images:
            raise InputError(f"mode {mode} needs an image in {field!r}", field=field)
    item_masks = set(_item_mask_keys(params))
    for field in images:
        if field not in spec.allowed_images and field not in item_masks:
            raise InputError(f"mode {mode} does not use {field!r}", field=field)
    for field, array in images.items():
        expected_ndim = 2 if field in MASK_FIELDS or field in item_masks else 3
        if array.ndim != expected_ndim or array.dtype != np.uint8:
            raise InputError(f"{field}: wrong image layout", field=field)

    _check_masks(params, images)
    _check_control(params, images)
    _check_list_regions(params, images)
    frame = MODES[mode].frame_image
    if frame is not None and frame in images:
        check_regions(params, images, images[frame].shape[1], images[frame].shape[0])
    elif params.width is not None and params.height is not None:
        check_regions(params, images, params.width, params.height)


def _item_mask_keys(params: GenerateParameters) -> dict[str, str]:
    """Image keys a request's list items may send masks under → the item's field path."""
    keys: dict[str, str] = {}
    for item_list in MODES[params.mode].lists:
        names = region_fields(item_list.field)
        items = getattr(params, item_list.field, None) or []
        for index in range(len(items)) if names else ():
            keys[item_image_key(item_list.field, index)] = f"{item_list.field}[{index}].{names[0]}"
    return keys


def _check_list_regions(params: GenerateParameters, images: Mapping[str, np.ndarray]) -> None:
    """Each item's region is a box or a mask of the declared size; masks ≤ 64 MP in all."""
    total = 0
    for item_list in MODES[params.mode].lists:
        items = getattr(params, item_list.field, None) or []
        for name in region_fields(item_list.field):
            for index, item in enumerate(items):
                field = f"{item_list.field}[{index}].{name}"
                region: Region | None = getattr(item, name, None)
                mask = images.get(item_image_key(item_list.field, index))
                if region is None:
                    raise InputError(f"{field}: required (a box or a mask)", field=field)
                if mask is None:
                    if region.width is None or region.height is None:
                        raise InputError(
                            f"{field}: give width and height (a box), or a mask",
                            field=field,
                        )
                    continue
                rows, cols = mask.shape[:2]
                total += rows * cols
                if region.width is not None and (region.width, region.height) != (cols, rows):
                    raise InputError(
                        f"{field}.mask is {cols}×{rows} but the region is "
                        f"{region.width}×{region.height}",
                        field=f"{field}.mask",
                    )
                if not mask.any():
                    raise InputError(f"{field}.mask is empty", field=f"{field}.mask")
    if total > MAX_PIXELS:
        raise InputError(
            f"the region masks have {total} pixels in all (at most {MAX_PIXELS})",
            field=next(iter(MODES[params.mode].lists)).field,
        )


def check_regions(
    params: GenerateParameters, images: Mapping[str, np.ndarray], width: int, height: int
) -> None:
    """Every list item's region lies inside the `width`×`height` canvas (known once resolved)."""
    for item_list in MODES[params.mode].lists:
        items = getattr(params, item_list.field, None) or []
        for name in region_fields(item_list.field):
            for index, item in enumerate(items):
                region: Region | None = getattr(item, name, None)
                if region is None:
                    continue
                mask = images.get(item_image_key(item_list.field, index))
                rows, cols = mask.shape[:2] if mask is not None else (region.height, region.width)
                if rows is None or cols is None:
                    continue
                if region.left + cols > width or region.top + rows > height:
                    field = f"{item_list.field}[{index}].{name}"
                    raise InputError(
                        f"{field}: {cols}×{rows} at ({region.left}, {region.top}) extends past "
                        f"the {width}×{height} canvas",
                        field=field,
                    )


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
