"""Recent layers' raw pixels in memory, so `?format=rgba` downloads skip PNG decoding."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class LayerCache:
    """A byte-bounded LRU of RGBA arrays keyed by (job id, layer file); thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, job_id: str, file: str, pixels: np.ndarray) -> None:
        if pixels.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop((job_id, file), None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[(job_id, file)] = pixels
            self._bytes += pixels.nbytes
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes

    def get(self, job_id: str, file: str) -> np.ndarray | None:
        with self._lock:
            pixels = self._items.get((job_id, file))
            if pixels is not None:
                self._items.move_to_end((job_id, file))
            return pixels

    def drop(self, job_id: str) -> None:
        with self._lock:
            for key in [key for key in self._items if key[0] == job_id]:
                self._bytes -= self._items.pop(key).nbytes

    @property
    def nbytes(self) -> int:
        return self._bytes
