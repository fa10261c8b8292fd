"""Memory options for large models: offloading and on-the-fly weight quantisation.

Qwen-Image-Layered's 20B transformer needs ~41 GB in bf16. `--offload group` streams its blocks
to the GPU one group at a time (diffusers group offloading), `--offload model` moves whole
components; `--quantize nf4|int8` loads the transformer and text encoder in 4-bit NF4 or 8-bit
with bitsandbytes (CUDA kernels only). Both are refused up front, with the reason, where they
cannot work, instead of failing or silently doing nothing later.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import importlib.util
import os
import sys
from functools import cache
from typing import Any

import torch

from acetate.engine.options import EngineOptions
from acetate.errors import InputError

#: Components quantised with `--quantize` (the VAE is small and precision-sensitive).
QUANTIZED_COMPONENTS = ("transformer", "text_encoder")


def check_memory_options(options: EngineOptions, device: torch.device) -> None:
    """`InputError` naming `quantize` / `offload` when the option cannot run on `device`."""
    if options.quantize != "none":
        if device.type != "cuda":
            raise InputError(
                f"--quantize {options.quantize} needs a CUDA GPU (bitsandbytes' 4-/8-bit kernels "
                f"are CUDA-only); the device is {device.type}: leave --quantize out",
                field="quantize",
            )
        if importlib.util.find_spec("bitsandbytes") is None:
            raise InputError(
                f"--quantize {options.quantize} needs bitsandbytes: pip install bitsandbytes",
                field="quantize",
            )
    if options.offload == "group" and device.type != "cuda":
        raise InputError(
            f"--offload group moves weights onto a CUDA GPU block by block; the device is "
            f"{device.type}, where every weight already stays in main memory: leave it out",
            field="offload",
        )


def quantization_config(quantize: str) -> Any | None:
    """diffusers' `PipelineQuantizationConfig` for `--quantize`, or None."""
    if quantize == "none":
        return None
    from diffusers.quantizers import PipelineQuantizationConfig

    if quantize == "nf4":
        backend = "bitsandbytes_4bit"
        kwargs: dict[str, Any] = {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_compute_dtype": torch.bfloat16,
        }
    else:
        backend, kwargs = "bitsandbytes_8bit", {"load_in_8bit": True}
    return PipelineQuantizationConfig(
        quant_backend=backend,
        quant_kwargs=kwargs,
        components_to_quantize=list(QUANTIZED_COMPONENTS),
    )


def apply_group_offload(pipe: Any, device: torch.device) -> None:
    """Keep weights in CPU memory and onload one transformer block at a time."""
    pipe.enable_group_offload(
        onload_device=device,
        offload_device=torch.device("cpu"),
        offload_type="block_level",
        num_blocks_per_group=1,
    )


#: glibc's `mallopt` parameter for the size from which blocks get their own memory map.
M_MMAP_THRESHOLD = -3
#: Blocks of a tensor's size or more (1 MiB) are mapped, and unmapped when freed.
MMAP_THRESHOLD = 1 << 20


@cache
def _glibc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018  (glibc only: musl has neither)
    except (OSError, AttributeError):
        return None
    return libc


def return_large_frees_at_once() -> None:
    """Have glibc give large freed blocks back to the system when they are freed.

    glibc maps blocks from 128 kB on but raises that threshold, up to 32 MB, each time a mapped
    block is freed; after a model is loaded tensor by tensor, a layer's weights and activations
    then come from the heap, whose freed middle is not returned: gigabytes stay resident.
    A fixed threshold keeps its first behaviour. No-op off glibc.
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def system_memory() -> tuple[int, int] | None:
    """(available, total) bytes of main memory, or None where this cannot tell.

    Linux's `MemAvailable` counts the page cache the kernel can drop, as a new allocation sees
    it; elsewhere the free pages, where the platform reports them.
    """
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, total
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"), total
    except (ValueError, OSError, AttributeError):
        return None


def release_unused_memory() -> None:
    """Give memory the process freed back to the system.

    glibc keeps freed blocks below its (self-raising, up to 32 MB) mmap threshold in its heap,
    so after loading a model tensor by tensor, or merging a patch, gigabytes of freed memory can
    stay resident. `malloc_trim(0)` returns every free page; elsewhere this only collects.
    """
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
