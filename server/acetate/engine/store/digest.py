"""SHA-256 of model files, computed once per file version.

Result records name every LayerDiffusion file a job used with its digest, so a result can be
traced to the exact weights. Hashing a 700 MB file takes a second or two: digests are cached by
(path, size, mtime) for the life of the process, and a file in the Hugging Face cache is not read
at all, since its blob is already named by its SHA-256.
"""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

_CHUNK = 8 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")
_cache: dict[tuple[str, int, int], str] = {}
_lock = threading.Lock()


def file_sha256(path: Path | str) -> str:
    """The lowercase hex SHA-256 of the file at `path` (cached; see the module docstring)."""
    real = Path(path).resolve()
    stat = real.stat()
    key = (str(real), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key in _cache:
            return _cache[key]
    if real.parent.name == "blobs" and _HEX64.fullmatch(real.name):
        digest = real.name  # huggingface_hub stores LFS files under their SHA-256
    else:
        hasher = hashlib.sha256()
        with real.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
        digest = hasher.hexdigest()
    with _lock:
        _cache[key] = digest
    return digest
