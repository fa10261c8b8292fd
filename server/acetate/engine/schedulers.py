"""Sampler names → diffusers schedulers, and the sampling defaults per model family and mode.

Defaults follow the official LayerDiffusion sanity checks (reference §6): SDXL DPM++ 2M SDE
Karras, CFG 5–7 at 1024²; SD1.5 DPM++ 2M Karras, CFG 7 at 512²; the SDXL second-stage
conditional models prefer UniPC / Euler a (DPM samplers give artefacts there) and `fgble2bg`
stops the layer model at half the steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from acetate.errors import InputError
from acetate.protocol import SCHEDULERS

#: The SD noise schedule every LayerDiffusion model was trained with.
SD_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
}

_FACTORIES: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "dpm++_2m_karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "dpm++_2m_sde_karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "euler_a": (EulerAncestralDiscreteScheduler, {"timestep_spacing": "trailing"}),
    "euler": (EulerDiscreteScheduler, {"timestep_spacing": "trailing"}),
    "unipc": (UniPCMultistepScheduler, {"timestep_spacing": "trailing"}),
    "ddim": (DDIMScheduler, {"timestep_spacing": "trailing", "set_alpha_to_one": False}),
}
assert set(_FACTORIES) == set(SCHEDULERS)


def make_scheduler(name: str, base_config: dict[str, Any] | None = None) -> SchedulerMixin:
    """A fresh scheduler (schedulers are stateful: one per denoising run)."""
    if name not in _FACTORIES:
        raise InputError(
            f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}", field="scheduler"
        )
    cls, options = _FACTORIES[name]
    config = {**(base_config or {}), **SD_SCHEDULE, **options}
    return cls.from_config(config)


@dataclass(frozen=True)
class SamplingDefaults:
    steps: int
    cfg: float
    scheduler: str
    size: int
    stop_at: float = 1.0


_SDXL = SamplingDefaults(steps=20, cfg=5.0, scheduler="dpm++_2m_sde_karras", size=1024)
_SD15 = SamplingDefaults(steps=20, cfg=7.0, scheduler="dpm++_2m_karras", size=512)


def sampling_defaults(family: str, mode: str, *, tiny: bool = False) -> SamplingDefaults:
    """Defaults for a request that leaves steps/cfg/scheduler/size/stop_at unset."""
    base = _SDXL if family == "sdxl" else _SD15
    if family == "sdxl" and mode in ("fg2bg", "bg2fg", "layer_on_artwork"):
        base = SamplingDefaults(steps=20, cfg=7.0, scheduler=base.scheduler, size=base.size)
    if tiny:
        # Test models: small images so every mode runs on a CPU in seconds.
        base = SamplingDefaults(base.steps, base.cfg, base.scheduler, 256, base.stop_at)
    return base


def second_stage_defaults(kind: str) -> tuple[str, float]:
    """Scheduler and stop-at for the SDXL second-stage conditional models."""
    if kind == "layer_xl_fgble2bg":
        return "unipc", 0.5
    return "unipc", 1.0
