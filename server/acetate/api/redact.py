"""No secret in any log: tokens and WebSocket tickets are redacted from every log record.

`install()` wraps the logging record factory, so every record of every logger (ours, aiohttp's
access log and its "Error handling request" tracebacks, asyncio's) is cleaned when it is
created — before any handler formats it. A record's message and its formatted traceback are
rewritten; the exception object is dropped (its text is kept, redacted).

Redacted: every known token value (raw or percent-encoded), `Bearer …` values, and the value of
any query parameter whose *decoded* name mentions `token` or `ticket` (so `?tok%65n=` is caught
like `?token=`), or whose decoded value holds a known token.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from typing import Any
from urllib.parse import quote, unquote

REDACTED = "[redacted]"
SECRET_KEYS = ("token", "ticket")

_QUERY_PAIR = re.compile(r"([?&;])([^=&#\s'\"?;<>]{1,200})=([^&#\s'\";<>]*)")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s'\",;]+")
_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def add_secret(value: str) -> None:
    """Never log this value (a token); also its percent-encoded form."""
    if len(value) < 4:
        return
    with _lock:
        _secrets.add(value)
        _secrets.add(quote(value, safe=""))


def _pair(match: re.Match[str]) -> str:
    key = unquote(match[2]).lower()
    value = unquote(match[3])
    if any(word in key for word in SECRET_KEYS) or any(s in value for s in _secrets):
        return f"{match[1]}{match[2]}={REDACTED}"
    return match[0]


def redact(text: str) -> str:
    """`text` without secrets."""
    if not text:
        return text
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _BEARER.sub(lambda m: m[1] + REDACTED, text)
    if "=" in text:
        text = _QUERY_PAIR.sub(_pair, text)
    return text


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep what logging would show
        message = str(record.msg)
    record.msg = redact(message)
    record.args = None
    if record.exc_info and record.exc_info[0] is not None:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = redact(text)
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


def install() -> None:
    """Redact every log record from now on (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return redact_record(previous(*args, **kwargs))

        logging.setLogRecordFactory(factory)
