"""Who is asking: bearer tokens (one shared, or one per person from `--tokens FILE`), the
owners they map to, and the short-lived WebSocket tickets of the Photoshop panel.

- No token configured (loopback only): one user, no ownership checks (`Principal.LOCAL`).
- `--token T`: one admin named `admin`.
- `--tokens FILE`: `name token [admin]` per line; the file must not be readable by group or
  others and every token needs ≥ 128 bits of entropy; re-read on SIGHUP (a bad file keeps the
  tokens in force and logs why).
A job belongs to the principal that submitted it; only its owner or an admin may see, follow,
cancel or delete it.
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import secrets
import stat
import string
import time
from dataclasses import dataclass
from pathlib import Path

from acetate.api.redact import add_secret
from acetate.errors import InputError

log = logging.getLogger(__name__)

#: Minimum estimated entropy of a token from `--tokens FILE`.
MIN_TOKEN_BITS = 128
NAME_CHARS = frozenset(string.ascii_letters + string.digits + "._-@")


@dataclass(frozen=True)
class Principal:
    """The caller: `name` owns the jobs it submits; `admin` may touch every job."""

    name: str
    admin: bool = False
    #: False when the server has no token at all: a single user, no ownership checks.
    authenticated: bool = True

    def may_touch(self, owner: str | None) -> bool:
        return not self.authenticated or self.admin or owner == self.name


#: The one user of a loopback server without tokens.
LOCAL = Principal("local", admin=True, authenticated=False)


def token_bits(token: str) -> float:
    """Estimated entropy: length × log2 of the alphabet its character classes span (hex
    counts as 16 symbols)."""
    if len(set(token)) < 8:
        return 0.0
    if set(token) <= set(string.hexdigits) and (token.lower() == token or token.upper() == token):
        return len(token) * 4.0
    alphabet = 0
    classes = (string.ascii_lowercase, string.ascii_uppercase, string.digits, "-_")
    rest = set(token)
    for chars in classes:
        if rest & set(chars):
            alphabet += len(chars)
            rest -= set(chars)
    if rest:
        alphabet += 33  # other printable symbols
    return len(token) * math.log2(alphabet)


def parse_tokens_file(path: Path) -> dict[str, Principal]:
    """token → principal from a tokens file; `InputError` naming the file and line otherwise."""
    path = Path(path)
    try:
        info = path.stat()
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"--tokens: cannot read {path}: {error}", field="tokens") from None
    # Windows reports every file as 0o666/0o444 (NTFS ACLs are not mode bits): no check there.
    if os.name != "nt" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(
            f"--tokens: {path} is readable by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):o}); run: chmod 600 {path}",
            field="tokens",
        )
    tokens: dict[str, Principal] = {}
    names: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"--tokens: {path} line {number}"
        if len(words) not in (2, 3) or (len(words) == 3 and words[2] != "admin"):
            raise InputError(f"{where}: expected `name token [admin]`", field="tokens")
        name, token = words[0], words[1]
        if not set(name) <= NAME_CHARS or len(name) > 64:
            raise InputError(f"{where}: names use letters, digits and . _ - @", field="tokens")
        if name in names:
            raise InputError(f"{where}: the name {name!r} appears twice", field="tokens")
        if token_bits(token) < MIN_TOKEN_BITS:
            raise InputError(
                f"{where}: the token of {name!r} is too weak (under {MIN_TOKEN_BITS} bits); "
                "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
                field="tokens",
            )
        if token in tokens:
            raise InputError(f"{where}: the token of {name!r} is not unique", field="tokens")
        names.add(name)
        tokens[token] = Principal(name, admin=len(words) == 3)
    if not tokens:
        raise InputError(f"--tokens: {path} has no tokens", field="tokens")
    return tokens


class TokenRegistry:
    """The tokens in force; `authenticate` compares in constant time per token."""

    def __init__(self, token: str | None = None, tokens_file: Path | None = None) -> None:
        self.tokens_file = tokens_file
        self._single = token
        self._tokens: dict[bytes, Principal] = {}
        self.load()

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def load(self) -> None:
        """(Re-)read the tokens; raises `InputError` (the old tokens stay) when invalid."""
        tokens: dict[str, Principal] = {}
        if self._single:
            tokens[self._single] = Principal("admin", admin=True)
        if self.tokens_file is not None:
            tokens.update(parse_tokens_file(self.tokens_file))
        for token in tokens:
            add_secret(token)
        self._tokens = {token.encode(): principal for token, principal in tokens.items()}

    def reload(self) -> bool:
        """SIGHUP: re-read the tokens file; False (old tokens kept, reason logged) if bad."""
        try:
            self.load()
        except InputError as error:
            log.error("tokens not reloaded, the previous ones stay in force: %s", error.message)
            return False
        log.info("tokens reloaded: %d in force", len(self._tokens))
        return True

    def authenticate(self, supplied: str) -> Principal | None:
        # surrogateescape: a non-UTF-8 header byte is just a wrong token, not a server error.
        candidate = supplied.encode("utf-8", "surrogateescape")
        found: Principal | None = None
        for token, principal in self._tokens.items():
            if hmac.compare_digest(candidate, token):
                found = principal
        return found


@dataclass
class _Ticket:
    principal: Principal
    expires: float


class TicketBook:
    """Single-use WebSocket tickets (`POST /api/ws-ticket`), valid for `ttl_s` seconds and
    bound to the principal that obtained them."""

    MAX_OUTSTANDING = 10_000

    def __init__(self, ttl_s: float = 60.0) -> None:
        self.ttl_s = ttl_s
        self._tickets: dict[str, _Ticket] = {}

    def issue(self, principal: Principal) -> str:
        self._prune()
        if len(self._tickets) >= self.MAX_OUTSTANDING:
            oldest = min(self._tickets, key=lambda key: self._tickets[key].expires)
            del self._tickets[oldest]
        ticket = secrets.token_urlsafe(32)
        self._tickets[ticket] = _Ticket(principal, time.monotonic() + self.ttl_s)
        return ticket

    def redeem(self, ticket: str) -> Principal | None:
        """The ticket's principal, once; None when unknown, used or expired."""
        entry = self._tickets.pop(ticket, None)
        if entry is None or time.monotonic() > entry.expires:
            return None
        return entry.principal

    def _prune(self) -> None:
        now = time.monotonic()
        for key in [key for key, entry in self._tickets.items() if entry.expires < now]:
            del self._tickets[key]
