"""Engine options that are per server/CLI run, not per job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Device = Literal["auto", "cuda", "mps", "cpu"]
DType = Literal["auto", "fp16", "bf16", "fp32"]
Offload = Literal["none", "model", "sequential"]


@dataclass(frozen=True)
class EngineOptions:
    device: Device = "auto"
    dtype: DType = "auto"
    offload: Offload = "none"
