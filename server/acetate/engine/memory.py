"""Memory options for large models: offloading and on-the-fly weight quantisation.

Qwen-Image-Layered's 20B transformer needs ~41 GB in bf16. `--offload group` streams its blocks
to the GPU one group at a time (diffusers group offloading), `--offload model` moves whole
components; `--quantize nf4|int8` loads the transformer and text encoder in 4-bit NF4 or 8-bit
with bitsandbytes (CUDA kernels only). Both are refused up front, with the reason, where they
cannot work, instead of failing or silently doing nothing later.
"""

from __future__ import annotations

import importlib.util
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
