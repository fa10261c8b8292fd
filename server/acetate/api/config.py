"""Server settings that are not per job: where to bind, who may connect, limits, retention."""

from __future__ import annotations

import ipaddress
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
    max_body_bytes: int = 256 * MiB
    max_ws_message_bytes: int = 16 * MiB
    max_queued_per_client: int = 16
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

    def check(self) -> None:
        """Refuse unsafe settings before binding anything."""
        if self.exposed and not self.token:
            where = "--listen" if self.listen else f"--host {self.host}"
            raise InputError(
                f"{where} exposes the server beyond this computer; set --token or ACETATE_TOKEN",
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
        if not is_loopback(self.host) and self.host not in ("0.0.0.0", "::"):
            names.add(self.host.lower())
        names.update(name.lower() for name in self.allowed_hosts)
        return frozenset(names)
