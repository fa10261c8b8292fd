"""Middlewares: errors → JSON, and the security rules of DESIGN.md (Host, Origin, token)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware

from acetate.api.config import LOOPBACK_NAMES, ServerConfig
from acetate.api.errors import CODE_BY_STATUS, ApiError, input_error_response, json_error
from acetate.errors import InputError

log = logging.getLogger(__name__)

WS_PATH = "/api/ws"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes `{"error": {"code", "message", "field"}}`; bugs are logged as 500."""
    try:
        response = await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = CODE_BY_STATUS.get(error.status, "http_error")
        message = error.text or error.reason
        field = "body" if error.status == 413 else None
        headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
        return json_error(error.status, code, message, field, headers=headers)
    except InputError as error:
        return input_error_response(error)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_error(500, "internal_error", "unexpected server error (see the server log)")
    if not response.prepared:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def split_host(value: str) -> tuple[str, int | None]:
    """`name:port`, `[v6]:port` or `name` → (lower-case name without brackets, port or None)."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return value, None
        name, rest = value[1:end], value[end + 1 :]
    else:
        name, sep, port = value.rpartition(":")
        if not sep:
            return value, None
        rest = f":{port}"
    if not rest:
        return name, None
    if not rest.startswith(":") or not rest[1:].isdigit() or len(rest) > 6:
        return value, -1
    return name, int(rest[1:])


def local_port(request: web.Request, config: ServerConfig) -> int:
    """The port this connection arrived on (the configured one may be 0 in tests)."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return int(sockname[1])
    return config.port


def security_middleware(config: ServerConfig) -> Middleware:
    """Host allow-list, Origin policy, `Sec-Fetch-Site`, bearer token — in that order."""
    host_names = config.host_names()
    allowed_origins = frozenset(config.allowed_origins)
    token = config.token.encode() if config.token else None
    logged_origins: set[str] = set()

    def check_host(request: web.Request, port: int) -> None:
        name, host_port = split_host(request.headers.get("Host", ""))
        if host_port is None:
            host_port = 80
        if name not in host_names or host_port != port:
            raise ApiError(
                "Host not allowed (add it with --allowed-host)",
                field="Host",
                code="forbidden_host",
            )

    def check_origin(request: web.Request, port: int) -> None:
        if request.headers.get("Sec-Fetch-Site", "").strip().lower() == "cross-site":
            raise ApiError(
                "cross-site requests are refused", field="Sec-Fetch-Site", code="forbidden_origin"
            )
        origin = request.headers.get("Origin")
        if origin is None or origin in allowed_origins:
            return
        scheme, sep, rest = origin.strip().partition("://")
        scheme = scheme.lower()
        if sep and scheme in ("http", "https"):
            name, origin_port = split_host(rest)
            if name in LOOPBACK_NAMES and origin_port == port:
                return
        elif sep and scheme and "/" not in scheme:
            # A non-web scheme (e.g. the Photoshop plugin's): allowed, and logged once.
            if origin not in logged_origins and len(logged_origins) < 100:
                logged_origins.add(origin)
                log.info("allowing request with Origin %r (not a web origin)", origin[:200])
            return
        raise ApiError(
            "Origin not allowed (add an exact value with --allow-origin)",
            field="Origin",
            code="forbidden_origin",
        )

    def check_token(request: web.Request) -> None:
        if token is None:
            return
        header = request.headers.get("Authorization", "")
        supplied = header[7:].strip() if header[:7].lower() == "bearer " else None
        if supplied is None and request.path == WS_PATH:
            supplied = request.query.get("token")
        # surrogateescape: a non-UTF-8 header byte is just a wrong token, not a server error.
        if supplied is None or not hmac.compare_digest(
            supplied.encode("utf-8", "surrogateescape"), token
        ):
            field = "Authorization" if supplied is None or header else "token"
            raise ApiError("missing or wrong token", field=field, code="unauthorized")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        port = local_port(request, config)
        check_host(request, port)
        check_origin(request, port)
        check_token(request)
        return await handler(request)

    return middleware


class RedactingAccessLogger(AbstractAccessLogger):
    """One line per request; `token=` query values never reach the log."""

    TOKEN = re.compile(r"(?i)(token=)[^&\s]*")

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = self.TOKEN.sub(r"\1[redacted]", request.path_qs)
        self.logger.info(
            '%s "%s %s" %d %s %.1fms',
            request.remote,
            request.method,
            path,
            response.status,
            response.body_length,
            time * 1000,
        )
