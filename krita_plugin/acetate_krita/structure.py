"""Structure from a layer (ControlNet), Qt-free: which modes take it, which ControlNets fit a
base, what goes into the request, and how the chosen layer becomes the `control_image`.

A mode takes structure when it reads the `control` option and has a `control_image` input
(`GET /api/modes`). The docker's Structure section picks a kind (`canny`: the server takes
the edges of the layer; `image`: the layer is a ready lineart/depth/pose image), a layer of
the document, a strength and a ControlNet (`GET /api/models` → `controlnets` of the base's
family, tiny bases with tiny ControlNets; "Default" lets the server pick). Without a layer,
or with kind `none`, nothing about structure is sent.

The layer is read like every other layer input: over the whole canvas frame (the frame the
mode's other inputs are read in), then composited over white: the server reads only the
RGB of a control image, and a sketch's transparent pixels are black in RGB, which would
hide black strokes from the edge detector.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from .protocol import BaseModelInfo, ModeInfo, ModelFileInfo

#: The image field ControlNet follows.
CONTROL_IMAGE = "control_image"
#: The options the Structure section edits (instead of one generic editor each).
STRUCTURE_OPTIONS = ("control", "controlnet", "control_strength")
NONE = "none"
KINDS = ("canny", "image")
KIND_LABELS = {NONE: "None", "canny": "Edges of the layer (canny)", "image": "Layer as is"}


def takes_structure(mode: ModeInfo | None) -> bool:
    """Whether `mode` reads the `control` option and a `control_image`."""
    if mode is None or mode.option("control") is None:
        return False
    return any(image.field == CONTROL_IMAGE for image in mode.inputs)


def fitting_controlnets(
    controlnets: Iterable[ModelFileInfo], base: BaseModelInfo | None
) -> tuple[str, ...]:
    """The ControlNets that run on `base`: its family, tiny with tiny (the combo's items
    after "Default")."""
    return tuple(c.name for c in controlnets if c.fits(base))


def structure_fields(
    kind: Any, layer: str, strength: Any, controlnet: Any, fitting: Iterable[str]
) -> dict[str, Any]:
    """The request's structure options: none without a layer or with kind `none`; a
    ControlNet only when it still fits the base (else the server's default)."""
    if kind not in KINDS or not layer:
        return {}
    fields: dict[str, Any] = {"control": kind}
    if strength is not None:
        fields["control_strength"] = float(strength)
    if controlnet and controlnet in set(fitting):
        fields["controlnet"] = controlnet
    return fields


@functools.lru_cache(maxsize=1)
def _over_white_table() -> bytes:
    """Index `alpha << 8 | channel` → the channel composited over white, rounded."""
    return bytes(
        (channel * alpha + 255 * (255 - alpha) + 127) // 255
        for alpha in range(256)
        for channel in range(256)
    )


def over_white(rgba: bytes) -> bytes:
    """8-bit straight RGBA composited over opaque white (still RGBA, alpha 255)."""
    table = _over_white_table()
    out = bytearray(rgba)
    alphas = rgba[3::4]
    for channel in range(3):
        out[channel::4] = bytes(
            table[alpha << 8 | value] for alpha, value in zip(alphas, rgba[channel::4], strict=True)
        )
    out[3::4] = b"\xff" * len(alphas)
    return bytes(out)
