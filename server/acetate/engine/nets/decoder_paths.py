"""Which transparent decoder path a decode takes, prepared (ONNX Runtime) or eager, and why.

The engine attaches each transparent decoder it loads, with its file, to `PREPARED`; a decode
then asks `PREPARED.net_for` for a prepared network of its size. The first time a size is asked
for, a background thread loads it from the private cache or, failing that, prepares it (a
minute or so at 1024² on a loaded CPU); until then, and on any failure, the decode runs eagerly.
`acetate models optimize` prepares sizes ahead of time; `acetate doctor` prints `explain`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from acetate.engine.nets.prepared_decoder import (
    EXPORT_MODULES,
    PreparedCache,
    PreparedDecoder,
    current_key,
    missing_modules,
    private_folder_problem,
)
from acetate.engine.nets.transparent_vae import TransparentDecoder

log = logging.getLogger(__name__)

#: `0`: use prepared decoders already in the cache but never prepare one in the background (the
#: test suite: no export runs in `make test`).
PREPARE_ENV = "ACETATE_DECODER_PREPARE"
INSTALL_HINT = "pip install 'acetate[fast-decoder]'"


def prepared_path_problem(
    device: torch.device, dtype: torch.dtype, setting: str = "auto", *, export: bool = False
) -> str | None:
    """Why decodes on `device` in `dtype` stay eager, or None when the prepared path applies.

    `setting`: `EngineOptions.decoder` (`auto` or `eager`).
    `export`: also require what preparing needs, not just what running a prepared graph needs.
    """
    if setting == "eager":
        return "--decoder eager was chosen"
    if device.type != "cpu":
        return f"the prepared decoder is for the CPU; on {device.type} the eager decoder runs"
    if dtype != torch.float32:
        return f"the prepared decoder is fp32; {str(dtype).removeprefix('torch.')} runs eagerly"
    missing = missing_modules(EXPORT_MODULES if export else EXPORT_MODULES[:1])
    if missing:
        return f"{', '.join(missing)} not installed ({INSTALL_HINT})"
    return private_folder_problem(PreparedCache().root)


@dataclass
class _Attached:
    decoder: weakref.ref[TransparentDecoder]
    digest: Callable[[], str]
    sha256: str = ""
    ready: dict[tuple[int, int], PreparedDecoder] = field(default_factory=dict)
    failed: dict[tuple[int, int], str] = field(default_factory=dict)
    busy: set[tuple[int, int]] = field(default_factory=set)


class PreparedDecoders:
    """The prepared networks of the attached decoders, per size, loaded or prepared on demand."""

    def __init__(self, cache: PreparedCache | None = None) -> None:
        self._cache = cache
        self._attached: dict[int, _Attached] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def cache(self) -> PreparedCache:
        return self._cache or PreparedCache()  # the folder is read when used: tests move it

    def attach(self, decoder: TransparentDecoder, digest: Callable[[], str]) -> None:
        """Let decodes with `decoder` use prepared networks; `digest` gives the SHA-256 of the
        decoder's file (called once, in the background: `store.digest.file_sha256`)."""
        with self._lock:
            self._attached[id(decoder)] = _Attached(weakref.ref(decoder), digest)

    def detach(self, decoder: TransparentDecoder) -> None:
        with self._lock:
            self._attached.pop(id(decoder), None)

    def _entry(self, decoder: TransparentDecoder) -> _Attached | None:
        entry = self._attached.get(id(decoder))
        if entry is None or entry.decoder() is not decoder:
            return None  # never attached, or an id reused after the decoder was freed
        return entry

    def net_for(
        self, decoder: TransparentDecoder, height: int, width: int, *, background: bool = True
    ) -> PreparedDecoder | None:
        """The prepared network of an attached `decoder` at this size, or None: decode eagerly.

        The first call for a size starts loading or preparing it (in a background thread unless
        `background` is False); later calls get it once ready.
        """
        with self._lock:
            entry = self._entry(decoder)
            size = (height, width)
            if entry is None or size in entry.failed or size in entry.busy:
                return None
            if size in entry.ready:
                return entry.ready[size]
            problem = prepared_path_problem(decoder.device, decoder.dtype)
            if problem:
                entry.failed[size] = problem
                return None
            entry.busy.add(size)
        if not background:
            self._obtain(entry, decoder, size)
            return entry.ready.get(size)
        thread = threading.Thread(
            target=self._obtain, args=(entry, decoder, size), name="prepare-decoder", daemon=True
        )
        self._threads.append(thread)
        thread.start()
        return None

    def _obtain(self, entry: _Attached, decoder: TransparentDecoder, size: tuple[int, int]) -> None:
        started = time.perf_counter()
        try:
            entry.sha256 = entry.sha256 or entry.digest()
            key = current_key(entry.sha256, *size)
            loaded = self.cache.load(key, decoder)
            if isinstance(loaded, str):
                problem = prepared_path_problem(decoder.device, decoder.dtype, export=True)
                if os.environ.get(PREPARE_ENV) == "0":
                    problem = f"{PREPARE_ENV}=0"
                if problem:
                    raise RuntimeError(f"{loaded}, and cannot prepare it: {problem}")
                log.info("transparent decoder: %s; preparing it in the background", loaded)
                loaded, difference = self.cache.prepare(key, decoder)
                log.info(
                    "transparent decoder prepared for %dx%d in %.0f s (max |diff| %.1e)",
                    *size,
                    time.perf_counter() - started,
                    difference,
                )
            with self._lock:
                entry.ready[size] = loaded
        except Exception as error:  # whatever fails, decodes stay eager
            log.warning("transparent decoder at %dx%d stays eager: %s", *size, error)
            with self._lock:
                entry.failed[size] = str(error)
        finally:
            with self._lock:
                entry.busy.discard(size)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the background preparations started so far (tests, the CLI)."""
        for thread in list(self._threads):
            thread.join(timeout)

    def failures(self, decoder: TransparentDecoder) -> dict[tuple[int, int], str]:
        """Sizes of `decoder` that stay eager, with the reason."""
        entry = self._entry(decoder)
        return dict(entry.failed) if entry else {}


#: The process's prepared decoders (the engine attaches to it; `decode_transparent` reads it).
PREPARED = PreparedDecoders()


def explain(device: torch.device, dtype: torch.dtype, setting: str = "auto") -> list[str]:
    """Lines for `acetate doctor`: the decoder path this machine takes, why, and the cache."""
    cache = PreparedCache()
    problem = prepared_path_problem(device, dtype, setting)
    if problem:
        lines = [f"transparent decoder: eager ({problem})"]
    else:
        lines = ["transparent decoder: prepared (ONNX Runtime) for sizes in the cache below, "]
        lines[0] += "eager for other sizes until prepared in the background on first use"
        export_problem = prepared_path_problem(device, dtype, setting, export=True)
        if export_problem:
            lines.append(f"  cannot prepare new sizes: {export_problem}")
    here = current_key("", 0, 0)
    entries = cache.entries()
    lines.append(f"  decoder cache: {cache.root} ({len(entries)} prepared)")
    for record in entries:
        key = record.get("key", {})
        usable = all(
            key.get(name) == getattr(here, name)
            for name in ("format", "backend_version", "torch", "machine", "dtype")
        )
        state = "" if usable else " (stale: another torch, ONNX Runtime or CPU; rebuilt on use)"
        lines.append(
            f"    {key.get('height')}x{key.get('width')} of decoder "
            f"{str(key.get('decoder_sha256', ''))[:12]}{state}"
        )
    return lines
