"""Image inputs on the wire and on disk → numpy arrays, with size limits checked before decoding.

Colour images become H×W×4 uint8 straight RGBA (RGB gets alpha 255); masks (`selection`,
`mask`) become H×W uint8 (255 = selected). Every failure is an `InputError` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from acetate.errors import InputError
from acetate.modes import MASK_FIELDS
from acetate.protocol import MAX_PIXELS, MAX_SIDE, GrayImage, RgbaImage

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_mask_field(field: str) -> bool:
    """Whether an image field holds a mask: a mask input, or a list item's region mask
    (`objects.0.mask`, see `acetate.protocol.item_image_key`)."""
    return field in MASK_FIELDS or (field.count(".") == 2 and field.endswith(".mask"))


def check_size(width: int, height: int, field: str) -> None:
    """Reject images over the per-side and total pixel limits (DESIGN.md security rule 5)."""
    if width < 1 or height < 1:
        raise InputError(f"{field}: empty image ({width}×{height})", field=field)
    if width > MAX_SIDE or height > MAX_SIDE:
        raise InputError(
            f"{field}: {width}×{height} exceeds {MAX_SIDE} px per side",
            field=field,
            code="image_too_large",
        )
    if width * height > MAX_PIXELS:
        raise InputError(
            f"{field}: {width}×{height} exceeds {MAX_PIXELS // (1024 * 1024)} megapixels",
            field=field,
            code="image_too_large",
        )


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, without Pillow; None if there is none."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def decode_png(data: bytes, field: str, *, trusted: bool = False) -> np.ndarray:
    """PNG bytes → RGBA (or mask) array. Only PNG is accepted.

    The size is checked from the IHDR chunk before Pillow sees the data, so a decompression
    bomb is `image_too_large` (413), never a decode. `trusted` (the server's own result files,
    whose frames were checked at submit) skips the input limits.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise InputError(f"{field}: not a PNG image", field=field, code="bad_image")
    size = png_size(data)
    if size is not None and not trusted:
        check_size(*size, field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore" if trusted else "error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["PNG"])
            if not trusted:
                check_size(image.width, image.height, field)
            image.load()
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InputError(
            f"{field}: the image is too large to decode", field=field, code="image_too_large"
        ) from error
    except (OSError, ValueError, SyntaxError, Warning) as error:
        message = f"{field}: unreadable PNG ({error})"
        raise InputError(message, field=field, code="bad_image") from error
    return pil_to_array(image, mask=is_mask_field(field))


def pil_to_array(image: Image.Image, *, mask: bool) -> np.ndarray:
    if mask:
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(image, dtype=np.float64)
            peak = 65535.0 if image.mode.startswith("I;16") else max(1.0, float(array.max()))
            return np.clip(np.rint(array / peak * 255.0), 0, 255).astype(np.uint8)
        if image.mode in ("LA", "RGBA", "PA") and _alpha_is_the_mask(image):
            return np.asarray(image.getchannel("A"), dtype=np.uint8).copy()
        return np.asarray(image.convert("L"), dtype=np.uint8).copy()
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        gray = np.asarray(image, dtype=np.float64)
        gray8 = np.clip(np.rint(gray / 65535.0 * 255.0), 0, 255).astype(np.uint8)
        return np.dstack([gray8, gray8, gray8, np.full_like(gray8, 255)])
    return np.asarray(image.convert("RGBA"), dtype=np.uint8).copy()


def _alpha_is_the_mask(image: Image.Image) -> bool:
    """A mask PNG whose colour is flat but whose alpha varies carries the selection in alpha."""
    colour = np.asarray(image.convert("L"))
    alpha = np.asarray(image.getchannel("A"))
    return bool(colour.min() == colour.max() and alpha.min() != alpha.max())


def decode_raw(
    data: bytes, width: int, height: int, field: str, channels: int | None = None
) -> np.ndarray:
    """Raw 8-bit bytes: 4 bytes/px straight RGBA, or 1 byte/px for masks (the default per field)."""
    check_size(width, height, field)
    if channels is None:
        channels = 1 if is_mask_field(field) else 4
    expected = width * height * channels
    if len(data) != expected:
        raise InputError(
            f"{field}: raw data has {len(data)} bytes, expected {expected} "
            f"({width}×{height}×{channels})",
            field=field,
            code="bad_image",
        )
    array = np.frombuffer(data, dtype=np.uint8)
    shape = (height, width) if channels == 1 else (height, width, 4)
    return array.reshape(shape).copy()


def _b64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InputError(f"{field}: invalid base64", field=field, code="bad_image") from error


def decode_image_value(value: Any, field: str) -> np.ndarray:
    """A JSON image value: base64 PNG string, `{rgba,width,height}` or `{gray,width,height}`."""
    if isinstance(value, str):
        if value.startswith("data:"):
            value = value.split(",", 1)[-1]
        return decode_png(_b64(value, field), field)
    if isinstance(value, RgbaImage):
        rgba = decode_raw(_b64(value.rgba, field), value.width, value.height, field, channels=4)
        if is_mask_field(field):
            return pil_to_array(Image.fromarray(rgba, "RGBA"), mask=True)
        return rgba
    if isinstance(value, GrayImage):
        gray = decode_raw(_b64(value.gray, field), value.width, value.height, field, channels=1)
        if is_mask_field(field):
            return gray
        return np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    raise InputError(f"{field}: unsupported image value", field=field, code="bad_image")


def load_image_file(path: Path, field: str) -> np.ndarray:
    """An image file given on the command line (PNG, or anything Pillow reads for convenience)."""
    try:
        with Image.open(path) as image:
            check_size(image.width, image.height, field)
            image.load()
            return pil_to_array(image, mask=is_mask_field(field))
    except InputError:
        raise
    except FileNotFoundError as error:
        raise InputError(f"{field}: no such file: {path}", field=field) from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InputError(
            f"{field}: {path} is too large to decode", field=field, code="image_too_large"
        ) from error
    except (OSError, ValueError) as error:
        raise InputError(f"{field}: cannot read {path}: {error}", field=field) from error


def image_record(array: np.ndarray) -> dict[str, Any]:
    """How an input image is recorded in `parameters`: size and content hash."""
    return {
        "width": int(array.shape[1]),
        "height": int(array.shape[0]),
        "sha256": hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest(),
    }
