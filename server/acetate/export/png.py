"""Layer PNGs: straight-alpha RGBA (RGB when opaque) carrying the generation parameters.

8 bits per channel (Pillow), or 16 for a `bit_depth` 16 result (OpenCV: Pillow cannot write
16-bit RGBA; the text chunks, built by Pillow, are carried over into OpenCV's file).
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

import cv2
import numpy as np
from PIL import Image, PngImagePlugin

from acetate import __version__
from acetate.export.atomic import write_bytes_atomic
from acetate.images import PNG_SIGNATURE
from acetate.modes import MODES

#: zlib level for files kept on disk (Pillow's default).
DEFAULT_COMPRESS_LEVEL = 6
#: zlib level for transfer, used with the Z_RLE strategy: several times faster; on noisy
#: generated pixels as small as the default, on smooth ones somewhat larger.
FAST_COMPRESS_LEVEL = 1
PARAMETERS_KEY = "parameters"
ACETATE_KEY = "acetate"
TEXT_CHUNKS = (b"tEXt", b"iTXt", b"zTXt")

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
    """H×W×4 straight RGBA, uint8 or uint16 → PNG bytes of that depth.

    `opaque`: True writes RGB (alpha must be all 255 / 65535), False always RGBA, None decides
    from the pixels. `parameters` (the result's parameters) go into the `parameters`/`acetate`
    chunks.
    """
    if rgba.dtype not in (np.uint8, np.uint16) or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected H×W×4 uint8 or uint16 RGBA, got {rgba.dtype} {rgba.shape}")
    alpha = rgba[..., 3]
    fully_opaque = bool(alpha.min() == np.iinfo(rgba.dtype).max)
    if opaque and not fully_opaque:
        raise ValueError("opaque=True but the alpha channel has values below full")
    rgb_only = fully_opaque if opaque is None else opaque
    info = PngImagePlugin.PngInfo()
    if parameters is not None:
        size = (int(rgba.shape[1]), int(rgba.shape[0]))
        info.add_text(PARAMETERS_KEY, infotext(parameters, size))
        info.add_itxt(ACETATE_KEY, json.dumps(dict(parameters), ensure_ascii=False))
    if rgba.dtype == np.uint16:
        return _encode_png16(rgba[..., :3] if rgb_only else rgba, info, compress_level)
    image = Image.fromarray(np.ascontiguousarray(rgba[..., :3] if rgb_only else rgba))
    options: dict[str, Any] = {"compress_level": compress_level}
    if 0 < compress_level <= FAST_COMPRESS_LEVEL:
        options["compress_type"] = zlib.Z_RLE  # else Pillow's choice for PNG (Z_FILTERED)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, **options)
    return buffer.getvalue()


def _encode_png16(pixels: np.ndarray, info: PngImagePlugin.PngInfo, level: int) -> bytes:
    """16-bit RGB(A) → PNG bytes by OpenCV, with `info`'s text chunks after IHDR."""
    channels = cv2.COLOR_RGBA2BGRA if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR
    strategy = cv2.IMWRITE_PNG_STRATEGY_FILTERED  # Pillow's default for PNG, as for 8 bits
    if 0 < level <= FAST_COMPRESS_LEVEL:
        strategy = cv2.IMWRITE_PNG_STRATEGY_RLE
    flags = [cv2.IMWRITE_PNG_COMPRESSION, level, cv2.IMWRITE_PNG_STRATEGY, strategy]
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(pixels), channels), flags)
    if not ok:
        raise ValueError("OpenCV could not encode the 16-bit PNG")
    data = encoded.tobytes()
    ihdr_end = len(PNG_SIGNATURE) + 8 + 13 + 4  # length, type, 13 bytes of IHDR, CRC
    return data[:ihdr_end] + _text_chunks(info) + data[ihdr_end:]


def _text_chunks(info: PngImagePlugin.PngInfo) -> bytes:
    """The tEXt/iTXt chunks Pillow writes for `info` (taken from a 1×1 PNG it encodes)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG", pnginfo=info)
    data, offset, chunks = buffer.getvalue(), len(PNG_SIGNATURE), []
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        end = offset + 12 + length  # length, type, data, CRC
        if data[offset + 4 : offset + 8] in TEXT_CHUNKS:
            chunks.append(data[offset:end])
        offset = end
    return b"".join(chunks)


def png_bit_depth(data: bytes) -> int:
    """Bits per channel a PNG's IHDR declares (0 if `data` is no PNG)."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 25:
        return 0
    return data[24]


def decode_png16(data: bytes) -> np.ndarray:
    """A 16-bit RGB/RGBA PNG (our own layer files) → H×W×4 uint16 straight RGBA."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint16 or pixels.ndim != 3:
        raise ValueError("not a 16-bit RGB or RGBA PNG")
    channels = cv2.COLOR_BGRA2RGBA if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGBA
    return cv2.cvtColor(pixels, channels)


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
