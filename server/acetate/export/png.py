"""Layer PNGs: 8-bit straight-alpha RGBA (RGB when opaque) carrying the generation parameters.

Two text chunks: `parameters`, an AUTOMATIC1111-style infotext that A1111, Forge, Civitai and
other SD tools read, and `acetate`, the full parameters as JSON (iTXt, UTF-8).
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from acetate import __version__
from acetate.export.atomic import write_bytes_atomic
from acetate.modes import MODES

#: zlib level for files kept on disk (Pillow's default).
DEFAULT_COMPRESS_LEVEL = 6
#: zlib level for transfer, used with the Z_RLE strategy: several times faster; on noisy
#: generated pixels as small as the default, on smooth ones somewhat larger.
FAST_COMPRESS_LEVEL = 1
PARAMETERS_KEY = "parameters"
ACETATE_KEY = "acetate"

#: Our scheduler names → the sampler names A1111 writes (combined "Sampler Schedule" form).
SAMPLER_NAMES: dict[str, str] = {
    "dpm++_2m_karras": "DPM++ 2M Karras",
    "dpm++_2m_sde_karras": "DPM++ 2M SDE Karras",
    "euler_a": "Euler a",
    "euler": "Euler",
    "unipc": "UniPC",
    "ddim": "DDIM",
}


def _reads(mode: object, option: str) -> bool:
    spec = MODES.get(str(mode))
    return spec is not None and option in spec.options


def infotext(parameters: Mapping[str, Any], size: tuple[int, int] | None = None) -> str:
    """A1111 infotext: prompt, `Negative prompt: …`, then one `Key: value, …` line.

    `size` (width, height) stands in for `Size` when the parameters have no width/height
    (editor modes, whose size follows their input image).
    """
    lines = [str(parameters.get("prompt") or "")]
    negative = parameters.get("negative_prompt")
    if negative:
        lines.append(f"Negative prompt: {negative}")
    width, height = parameters.get("width"), parameters.get("height")
    if (width is None or height is None) and size is not None:
        width, height = size
    scheduler = parameters.get("scheduler")
    mode = parameters.get("mode")
    fields: dict[str, Any] = {
        "Steps": parameters.get("steps"),
        "Sampler": SAMPLER_NAMES.get(scheduler, scheduler) if scheduler else None,
        "CFG scale": parameters.get("cfg"),
        "Seed": parameters.get("seed"),
        "Size": f"{width}x{height}" if width and height else None,
        "Model": parameters.get("model"),
        "Denoising strength": parameters.get("strength") if _reads(mode, "strength") else None,
        "Batch size": parameters.get("batch") if (parameters.get("batch") or 1) > 1 else None,
        "Mode": mode,
        "Layer weight": parameters.get("layer_weight"),
        "Version": f"acetate {__version__}",
    }
    lines.append(
        ", ".join(f"{key}: {_quote(value)}" for key, value in fields.items() if value is not None)
    )
    return "\n".join(lines)


def _quote(value: Any) -> str:
    """Quote a value the way A1111 does when it would break the `k: v, k: v` syntax."""
    text = str(value)
    if any(char in text for char in ',:"\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


def encode_png(
    rgba: np.ndarray,
    *,
    parameters: Mapping[str, Any] | None,
    opaque: bool | None = None,
    compress_level: int = DEFAULT_COMPRESS_LEVEL,
) -> bytes:
    """H×W×4 uint8 straight RGBA → PNG bytes.

    `opaque`: True writes RGB (alpha must be all 255), False always RGBA, None decides from the
    pixels. `parameters` (the result's parameters) go into the `parameters`/`acetate` chunks.
    """
    if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected H×W×4 uint8 RGBA, got {rgba.dtype} {rgba.shape}")
    alpha = rgba[..., 3]
    fully_opaque = bool(alpha.min() == 255)
    if opaque and not fully_opaque:
        raise ValueError("opaque=True but the alpha channel has values below 255")
    rgb_only = fully_opaque if opaque is None else opaque
    image = Image.fromarray(np.ascontiguousarray(rgba[..., :3] if rgb_only else rgba))
    info = PngImagePlugin.PngInfo()
    if parameters is not None:
        size = (int(rgba.shape[1]), int(rgba.shape[0]))
        info.add_text(PARAMETERS_KEY, infotext(parameters, size))
        info.add_itxt(ACETATE_KEY, json.dumps(dict(parameters), ensure_ascii=False))
    options: dict[str, Any] = {"compress_level": compress_level}
    if 0 < compress_level <= FAST_COMPRESS_LEVEL:
        options["compress_type"] = zlib.Z_RLE  # else Pillow's choice for PNG (Z_FILTERED)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, **options)
    return buffer.getvalue()


def write_png(
    path: Path,
    rgba: np.ndarray,
    *,
    parameters: Mapping[str, Any] | None,
    opaque: bool | None = None,
    compress_level: int = DEFAULT_COMPRESS_LEVEL,
) -> None:
    """`encode_png` written atomically to `path`."""
    data = encode_png(rgba, parameters=parameters, opaque=opaque, compress_level=compress_level)
    write_bytes_atomic(path, data)


def read_png_parameters(data: bytes) -> dict[str, Any] | None:
    """The `acetate` JSON parameters of a PNG written by `encode_png`, or None."""
    with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
        text = image.text.get(ACETATE_KEY)  # type: ignore[attr-defined]
    return json.loads(text) if text else None
