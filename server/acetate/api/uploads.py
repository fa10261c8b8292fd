"""POST /api/jobs bodies (JSON or multipart) → validated parameters and decoded images.

Sizes are checked before anything is decoded: the body against `max_body_bytes` (from
Content-Length, then while reading), each image from its PNG header or its declared raw size
(`acetate.images`). Decoding runs in a thread so large uploads never stall the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError

from acetate.api.errors import ApiError, validation_error
from acetate.api.jsonsafe import loads
from acetate.checks import check_request
from acetate.errors import InputError
from acetate.images import decode_image_value, decode_png, decode_raw
from acetate.modes import IMAGE_FIELDS
from acetate.protocol import (
    GenerateParameters,
    GenerateRequest,
    region_fields,
    request_parameters,
    split_item_images,
)

REQUEST_FIELDS: frozenset[str] = frozenset(GenerateRequest.model_fields)
SIZE_FIELDS: frozenset[str] = frozenset(
    f"{name}_{side}" for name in IMAGE_FIELDS for side in ("width", "height")
)
MAX_FORM_FIELD = 64 * 1024

log = logging.getLogger(__name__)


class ClientDisconnected(Exception):
    """The client went away before its request body was complete (not a server error)."""


@dataclass
class Upload:
    """A parsed POST /api/jobs: parameters and images keyed by field (see acetate.images)."""

    params: GenerateParameters
    images: dict[str, np.ndarray] = field(default_factory=dict)


def too_large(limit: int) -> ApiError:
    return ApiError(
        f"request body exceeds {limit // (1024 * 1024)} MiB", field="body", code="body_too_large"
    )


async def read_upload(
    request: web.Request, max_body_bytes: int, body_timeout_s: float = 300.0
) -> Upload:
    """Parse and validate a job submission; every problem is an `InputError` naming a field.

    The body must arrive within `body_timeout_s` (408 `body_timeout`); a client that
    disconnects mid-body raises `ClientDisconnected`.
    """
    if request.content_length is not None and request.content_length > max_body_bytes:
        raise too_large(max_body_bytes)
    if request.content_type not in ("application/json", "multipart/form-data"):
        raise ApiError(
            "send application/json or multipart/form-data",
            field="Content-Type",
            code="unsupported_media_type",
        )
    try:
        async with asyncio.timeout(body_timeout_s):
            if request.content_type == "application/json":
                body = await request.read()
            else:
                parts = await read_multipart(request, max_body_bytes)
    except TimeoutError:
        raise ApiError(
            f"the request body did not arrive within {body_timeout_s:g} s",
            field="body",
            code="body_timeout",
        ) from None
    except ConnectionError as error:
        raise ClientDisconnected(str(error) or type(error).__name__) from None
    if request.content_type == "application/json":
        upload = await asyncio.to_thread(parse_json_body, body)
    else:
        upload = await asyncio.to_thread(parse_multipart, parts)
    # Images vs mode and mask sizes, before queuing (the engine checks again).
    check_request(upload.params, upload.images)
    return upload


def parse_request_object(data: Any) -> tuple[GenerateRequest, GenerateParameters]:
    if not isinstance(data, dict):
        raise InputError("the request must be a JSON object", field="body")
    try:
        # Strict: JSON numbers are numbers and booleans booleans ("5" is not 5, true is not 1).
        request = GenerateRequest.model_validate(data, strict=True)
        return request, request_parameters(request)
    except ValidationError as error:
        raise validation_error(error, REQUEST_FIELDS) from None


def parse_json_body(body: bytes) -> Upload:
    data = loads(body, "body")
    request, params = parse_request_object(data)
    images = {
        name: decode_image_value(getattr(request, name), name)
        for name in IMAGE_FIELDS
        if getattr(request, name) is not None
    }
    params, item_masks = split_item_images(params)
    images.update({key: decode_image_value(value, key) for key, value in item_masks.items()})
    return Upload(params, images)


def is_item_part(name: str) -> bool:
    """A list item's region mask part, `<list>.<i>.mask` (see `item_image_key`)."""
    list_field, _, rest = name.partition(".")
    index, _, leaf = rest.partition(".")
    return bool(region_fields(list_field)) and index.isdigit() and len(index) < 3 and leaf == "mask"


def _is_item_size_part(name: str) -> bool:
    base, _, side = name.rpartition("_")
    return side in ("width", "height") and is_item_part(base)


@dataclass
class Part:
    name: str
    content_type: str
    data: bytes


async def read_multipart(request: web.Request, max_body_bytes: int) -> list[Part]:
    """Read every part, counting bytes against the body limit as they arrive."""
    try:
        return await _read_parts(await request.multipart(), max_body_bytes)
    except (ValueError, AssertionError, HttpProcessingError) as error:
        if isinstance(error, InputError):
            raise
        message = getattr(error, "message", None) or str(error)
        raise InputError(f"malformed multipart body: {message[:200]}", field="body") from None


async def _read_parts(reader: MultipartReader, max_body_bytes: int) -> list[Part]:
    parts: list[Part] = []
    total = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise InputError("nested multipart is not supported", field="body")
        name = part.name or ""
        item_part = is_item_part(name)
        known = name in IMAGE_FIELDS or name == "request" or name in SIZE_FIELDS
        if not known and not item_part and not _is_item_size_part(name):
            raise InputError(f"unknown part {name[:60]!r}", field=name[:60] or "body")
        large = name in IMAGE_FIELDS or name == "request" or item_part
        limit = max_body_bytes if large else MAX_FORM_FIELD
        chunks: list[bytes] = []
        size = 0
        while chunk := await part.read_chunk(1 << 20):
            total += len(chunk)
            size += len(chunk)
            if total > max_body_bytes:
                raise too_large(max_body_bytes)
            if size > limit:
                raise InputError(f"part {name!r} is too large", field=name)
            chunks.append(chunk)
        content_type = part.headers.get("Content-Type", "text/plain").split(";")[0].strip()
        if any(existing.name == name for existing in parts):
            raise InputError(f"part {name!r} sent twice", field=name)
        parts.append(Part(name, content_type.lower(), b"".join(chunks)))
    return parts


def _size_field(parts: dict[str, Part], name: str) -> int:
    part = parts.get(name)
    if part is None:
        raise InputError(f"raw image data needs {name}", field=name)
    try:
        return int(part.data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise InputError(f"{name} must be an integer", field=name) from None


def parse_multipart(part_list: list[Part]) -> Upload:
    parts = {part.name: part for part in part_list}
    if "request" not in parts:
        raise InputError("multipart body needs a part named 'request'", field="request")
    data = loads(parts["request"].data, "request", "'request' part")
    request, params = parse_request_object(data)
    images: dict[str, np.ndarray] = {}
    for name in IMAGE_FIELDS:
        value = getattr(request, name)
        part = parts.get(name)
        if value is not None and part is not None:
            raise InputError(f"{name} sent both in 'request' and as a part", field=name)
        if value is not None:
            images[name] = decode_image_value(value, name)
        elif part is not None:
            images[name] = decode_part(part, parts)
    params, item_masks = split_item_images(params)
    for key, value in item_masks.items():
        if key in parts:
            raise InputError(f"{key} sent both in 'request' and as a part", field=key)
        images[key] = decode_image_value(value, key)
    for name in filter(is_item_part, parts):
        images[name] = decode_part(parts[name], parts)
    for size_name in (SIZE_FIELDS & parts.keys()) | set(filter(_is_item_size_part, parts)):
        if size_name.rsplit("_", 1)[0] not in images:
            raise InputError(f"{size_name} without raw image data", field=size_name)
    return Upload(params, images)


def decode_part(part: Part, parts: dict[str, Part]) -> np.ndarray:
    if part.content_type == "application/octet-stream":
        width = _size_field(parts, f"{part.name}_width")
        height = _size_field(parts, f"{part.name}_height")
        return decode_raw(part.data, width, height, part.name)
    if part.content_type == "image/png":
        return decode_png(part.data, part.name)
    raise InputError(
        f"{part.name}: send image/png or application/octet-stream (got {part.content_type})",
        field=part.name,
        code="bad_image",
    )
