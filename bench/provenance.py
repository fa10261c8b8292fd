"""What every benchmark prints about the run: the commit measured."""

from __future__ import annotations

import subprocess


def commit() -> str:
    """`git describe --always --dirty` of the checkout, or "unknown" outside one."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"
