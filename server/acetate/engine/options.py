"""Engine options that are per server/CLI run, not per job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Device = Literal["auto", "cuda", "mps", "cpu"]
DType = Literal["auto", "fp16", "bf16", "fp32"]
#: `group`: diffusers group offloading (block by block; Qwen-Image-Layered on CUDA).
Offload = Literal["none", "model", "sequential", "group"]
#: Weight quantisation at load time (bitsandbytes, CUDA only; Qwen-Image-Layered).
Quantize = Literal["none", "nf4", "int8"]
#: Transparent decoder: `auto` runs the prepared (ONNX Runtime) network where it can (CPU, fp32,
#: `acetate[fast-decoder]` installed; see `nets/decoder_paths.py`), `eager` never does.
DecoderPath = Literal["auto", "eager"]


@dataclass(frozen=True)
class EngineOptions:
    device: Device = "auto"
    dtype: DType = "auto"
    offload: Offload = "none"
    quantize: Quantize = "none"
    decoder: DecoderPath = "auto"
