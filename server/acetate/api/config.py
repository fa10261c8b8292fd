"""Server settings that are not per job: where to bind, who may connect, limits, retention."""

from __future__ import annotations

import ipaddress
import socket
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from acetate.errors import InputError

MiB = 1024 * 1024
GiB = 1024 * MiB

LOOPBACK_NAMES: frozenset[str] = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost` (no DNS lookups)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    """Everything `acetate serve` decides before the app starts.

    `listen` binds all interfaces; any non-loopback bind needs a `token` (DESIGN.md security
    rule 1). Retention: finished jobs older than `max_age_s`, or the oldest ones past
    `max_total_bytes`, are deleted.
    """

    output_dir: Path
    host: str = "127.0.0.1"
    port: int = 7865
    listen: bool = False
    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    #: `--tokens FILE`: one `name token [admin]` per line (re-read on SIGHUP).
    tokens_file: Path | None = None
    #: `--tls-cert/--tls-key`: serve HTTPS/WSS.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_body_bytes: int = 256 * MiB
    max_ws_message_bytes: int = 16 * MiB
    max_queued_per_client: int = 16
    #: Queued jobs per peer address (a `client_id` is self-declared) and in all.
    max_queued_per_peer: int = 32
    max_queued_total: int = 256
    #: A connection must deliver a complete request head this soon after it opens or after
    #: its previous response (slow or stalled headers are dropped).
    header_timeout_s: float = 60.0
    #: The whole body of POST /api/jobs must arrive within this time (else 408).
    body_timeout_s: float = 300.0
    #: Lifetime of a WebSocket ticket from POST /api/ws-ticket.
    ws_ticket_ttl_s: float = 60.0
    max_age_s: float = 7 * 24 * 3600.0
    max_total_bytes: int = 20 * GiB
    expire_interval_s: float = 600.0
    preview_interval_s: float = 0.25
    preview_max_side: int = 256
    raw_cache_bytes: int = 256 * MiB
    shutdown_timeout_s: float = 30.0

    @property
    def bind_host(self) -> str:
        return "0.0.0.0" if self.listen else self.host

    @property
    def exposed(self) -> bool:
        """Whether the server listens on anything but loopback."""
        return self.listen or not is_loopback(self.host)

    @property
    def authenticated(self) -> bool:
        """Whether requests need a token (`--token` or `--tokens`)."""
        return bool(self.token) or self.tokens_file is not None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def wildcard(self) -> bool:
        """Whether the bind is all interfaces (`--listen`, `--host 0.0.0.0` or `::`)."""
        return self.listen or self.host in ("0.0.0.0", "::", "")

    def check(self) -> None:
        """Refuse unsafe settings before binding anything."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InputError("--tls-cert and --tls-key go together", field="tls_cert")
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise InputError(f"--{name.replace('_', '-')}: no such file: {path}", field=name)
        for name in ("header_timeout_s", "body_timeout_s", "ws_ticket_ttl_s"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be positive", field=name)
        if self.exposed and not self.authenticated:
            where = "--listen" if self.listen else f"--host {self.host}"
            raise InputError(
                f"{where} exposes the server beyond this computer; set --token or ACETATE_TOKEN"
                " (or --tokens FILE)",
                field="token",
                code="token_required",
            )
        if self.token is not None and len(self.token) < 8:
            raise InputError("the token must have at least 8 characters", field="token")
        if not 0 <= self.port <= 65535:
            raise InputError(f"port out of range: {self.port}", field="port")

    def host_names(self) -> frozenset[str]:
        """Host names (without port) a request's `Host` header may carry."""
        names = set(LOOPBACK_NAMES)
        if not is_loopback(self.host) and not self.wildcard:
            names.add(self.host.strip("[]").lower())
        names.update(name.strip("[]").lower() for name in self.allowed_hosts)
        if self.wildcard:
            # This computer's own addresses (IP literals cannot be DNS-rebound): the URLs
            # `acetate serve` prints for an all-interfaces bind must work.
            names.update(local_addresses())
        return frozenset(names)


def local_addresses() -> list[str]:
    """This computer's non-loopback IP addresses, best effort and without sending anything:
    the addresses its host name resolves to, and the source address of the default route."""
    found: list[str] = []

    def add(address: str) -> None:
        address = address.split("%", 1)[0].lower()
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return
        if ip.is_loopback or ip.is_link_local or ip.is_unspecified or address in found:
            return
        found.append(address)

    with suppress(OSError, UnicodeError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            add(str(info[4][0]))
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        with suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))  # UDP connect: picks a route, sends nothing
            add(str(sock.getsockname()[0]))
    return found
