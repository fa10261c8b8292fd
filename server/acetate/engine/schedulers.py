"""Sampler names → diffusers schedulers. Which sampler a mode's stage uses by default is in its
spec (`acetate.modes`: the family's sampler, UniPC for the SDXL second-stage models)."""

from __future__ import annotations

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
from acetate.modes import SCHEDULERS

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
