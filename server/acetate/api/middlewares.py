"""Middlewares: errors → JSON, and the security rules of DESIGN.md (Host, Origin, token).

Order of the security checks: CORS preflights (always 403), Host, WebSocket ticket, Origin and
`Sec-Fetch-Site`, token. A request carrying `X-Acetate-Client: <name>/<version>` cannot come
from a web page (a page cannot send a custom header cross-origin without a preflight, and
every preflight is refused), so it may carry `Origin: null` or `Sec-Fetch-Site: cross-site`
(the Photoshop panel's UXP runtime may send either). A WebSocket, which a page can open with
`Origin: null` and which UXP cannot give custom headers, proves itself with a single-use ticket
from `POST /api/ws-ticket`.
"""

from __future__ import annotations

import asyncio
import logging
import re

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware

from acetate.api.auth import LOCAL, Principal, TicketBook, TokenRegistry
from acetate.api.config import LOOPBACK_NAMES, ServerConfig
from acetate.api.errors import CODE_BY_STATUS, ApiError, input_error_response, json_error
from acetate.api.redact import redact
from acetate.api.uploads import ClientDisconnected
from acetate.errors import InputError

log = logging.getLogger(__name__)

WS_PATH = "/api/ws"
TICKET_PATH = "/api/ws-ticket"
#: The header that proves a request is not a web page's (`photoshop/<version>`).
CLIENT_HEADER = "X-Acetate-Client"
CLIENT_VALUE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}/[A-Za-z0-9_.+-]{1,40}")
#: Who is asking (set by the security middleware on every request it lets through).
PRINCIPAL = web.RequestKey("principal", Principal)
#: Status logged for a request whose client went away mid-body (nginx's convention).
CLIENT_CLOSED = 499


def principal_of(request: web.Request) -> Principal:
    return request.get(PRINCIPAL, LOCAL)


def panel_client(request: web.BaseRequest) -> str | None:
    """The `X-Acetate-Client` value when well-formed (a proven non-browser client)."""
    value = request.headers.get(CLIENT_HEADER, "").strip()
    return value if CLIENT_VALUE.fullmatch(value) else None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes `{"error": {"code", "message", "field"}}`; bugs are logged as 500."""
    try:
        response = await handler(request)
    except ClientDisconnected as error:
        log.info(
            "client %s disconnected while sending %s %s (%s)",
            request.remote,
            request.method,
            request.path,
            error,
        )
        return web.Response(status=CLIENT_CLOSED, reason="Client Closed Request")
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


def security_middleware(
    config: ServerConfig, tokens: TokenRegistry, tickets: TicketBook
) -> Middleware:
    """Preflight refusal, Host allow-list, ticket, Origin policy, `Sec-Fetch-Site`, bearer token
    — in that order; the caller's `Principal` is stored in the request."""
    host_names = config.host_names()
    allowed_origins = frozenset(config.allowed_origins)
    logged_origins: set[str] = set()
    logged_panels: set[tuple[str, ...]] = set()

    def check_host(request: web.Request, port: int) -> None:
        name, host_port = split_host(request.headers.get("Host", ""))
        if host_port is None:
            host_port = 443 if config.tls else 80
        if name not in host_names or host_port != port:
            raise ApiError(
                "Host not allowed (add it with --allowed-host)",
                field="Host",
                code="forbidden_host",
            )

    def redeem_ticket(request: web.Request) -> Principal | None:
        if request.path != WS_PATH or "ticket" not in request.query:
            return None
        principal = tickets.redeem(request.query["ticket"])
        if principal is None:
            raise ApiError(
                "unknown, used or expired ticket (get a new one: POST /api/ws-ticket)",
                field="ticket",
                code="unauthorized",
            )
        return principal

    def log_panel(request: web.Request) -> None:
        seen = tuple(
            request.headers.get(name, "")[:200]
            for name in ("Origin", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-Dest")
        )
        if seen not in logged_panels and len(logged_panels) < 100:
            logged_panels.add(seen)
            log.info(
                "panel client %r sent Origin=%r Sec-Fetch-Site=%r Sec-Fetch-Mode=%r "
                "Sec-Fetch-Dest=%r",
                (panel_client(request) or "(WebSocket ticket)")[:80],
                *(value or None for value in seen),
            )

    def check_origin(request: web.Request, port: int, proven: bool) -> None:
        cross_site = request.headers.get("Sec-Fetch-Site", "").strip().lower() == "cross-site"
        if cross_site and not proven:
            raise ApiError(
                "cross-site requests are refused",
                field="Sec-Fetch-Site",
                code="forbidden_origin",
            )
        origin = request.headers.get("Origin")
        if origin is None or origin in allowed_origins:
            return
        if origin.strip().lower() == "null":
            if proven:
                return
            raise ApiError(
                "Origin null is refused without proof of a native client (the "
                f"{CLIENT_HEADER} header; for the WebSocket a ticket from POST {TICKET_PATH})",
                field="Origin",
                code="forbidden_origin",
            )
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

    def authenticate(request: web.Request, ticket: Principal | None) -> Principal:
        if not tokens.enabled:
            return LOCAL
        header = request.headers.get("Authorization", "")
        supplied = header[7:].strip() if header[:7].lower() == "bearer " else None
        if supplied is None and request.path == WS_PATH:
            supplied = request.query.get("token")
        if supplied is None and ticket is not None:
            return ticket  # the ticket was obtained with a token: it stands for it
        principal = tokens.authenticate(supplied) if supplied is not None else None
        if principal is None or (ticket is not None and ticket != principal):
            field = "Authorization" if supplied is None or header else "token"
            raise ApiError("missing or wrong token", field=field, code="unauthorized")
        return principal

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS":
            # CORS preflights are never granted: a page cannot send custom headers or JSON.
            raise ApiError(
                "cross-origin requests are refused", field="Origin", code="forbidden_origin"
            )
        port = local_port(request, config)
        check_host(request, port)
        ticket = redeem_ticket(request)
        proven = panel_client(request) is not None or ticket is not None
        if proven:
            log_panel(request)
        check_origin(request, port, proven)
        if request.path == TICKET_PATH and panel_client(request) is None:
            raise ApiError(
                f"POST {TICKET_PATH} needs the {CLIENT_HEADER} header",
                field=CLIENT_HEADER,
                code="forbidden_origin",
            )
        request[PRINCIPAL] = authenticate(request, ticket)
        return await handler(request)

    return middleware


class RedactingAccessLogger(AbstractAccessLogger):
    """One line per request; token and ticket values never reach the log (the query is
    matched after decoding, so `?tok%65n=` is redacted like `?token=`)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = redact(request.raw_path)
        self.logger.info(
            '%s "%s %s" %d %s %.1fms',
            request.remote,
            request.method,
            path,
            response.status,
            response.body_length,
            time * 1000,
        )
