"""HTTP errors as `{"error": {"code", "message", "field"}}` with the right status."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from acetate.errors import InputError
from acetate.public import public_message

#: Status for error codes that are not a plain 400.
STATUS_BY_CODE: dict[str, int] = {
    "unauthorized": 401,
    "forbidden": 403,
    "forbidden_host": 403,
    "forbidden_origin": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "body_timeout": 408,
    "not_ready": 409,
    "body_too_large": 413,
    "image_too_large": 413,
    "unsupported_media_type": 415,
    "too_many_jobs": 429,
}

CODE_BY_STATUS: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


class ApiError(InputError):
    """An error a handler or middleware raises with an explicit code (status from the code)."""


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def json_error(
    status: int, code: str, message: str, field: str | None = None, **kwargs: Any
) -> web.Response:
    return web.json_response(error_body(code, message, field), status=status, **kwargs)


def input_error_response(error: InputError) -> web.Response:
    status = STATUS_BY_CODE.get(error.code, 400)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    message = public_message(error.message)
    return json_error(status, error.code, message, error.field, headers=headers)


def validation_error(error: ValidationError, known_fields: frozenset[str]) -> InputError:
    """The first pydantic error as an `InputError` naming the request field."""
    first = error.errors(include_url=False)[0]
    loc = [str(part) for part in first.get("loc", ())]
    message = str(first.get("msg", "invalid value"))
    field: str | None
    if loc and loc[0] in known_fields:
        field = loc[0]
        # Keep nested names (layer_prompts.foreground) but not pydantic's union branch tags.
        for part in loc[1:]:
            if part.isidentifier() and part.islower() and part not in ("str", "int", "float"):
                field += f".{part}"
            else:
                break
    elif loc:
        field = ".".join(loc)
    else:
        # Whole-object checks (e.g. "prompt is required"): name the field the message names.
        field = next((name for name in sorted(known_fields) if name in message.split()), None)
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    kind = str(first.get("type", ""))
    code = "unknown_field" if kind == "extra_forbidden" else "invalid_input"
    if kind == "missing":
        code = "missing_field"
    return InputError(f"{field or 'request'}: {message}", field=field, code=code)
