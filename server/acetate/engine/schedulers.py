"""Sampler names → diffusers schedulers. Which sampler a mode's stage uses by default is in its
spec (`acetate.modes`: the family's sampler, UniPC for the SDXL second-stage models)."""

from __future__ import annotations

from typing import Any, Literal, Protocol, cast

import torch

# The concrete modules: mypy resolves `diffusers.<Name>` to the torch-less dummy classes.
from diffusers.configuration_utils import ConfigMixin
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_euler_ancestral_discrete import (
    EulerAncestralDiscreteScheduler,
)
from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler
from diffusers.schedulers.scheduling_unipc_multistep import UniPCMultistepScheduler

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


class NoiseScheduler(Protocol):
    """What the denoising loop (`Sampler`) uses of a diffusers scheduler.

    diffusers' `SchedulerMixin` declares none of this (each scheduler class defines its own
    methods), so `make_scheduler` returns this interface instead.
    """

    order: int
    timesteps: torch.Tensor

    @property
    def init_noise_sigma(self) -> float | torch.Tensor: ...

    def set_timesteps(
        self, num_inference_steps: int, device: torch.device | str | None = None
    ) -> None: ...

    def scale_model_input(
        self, sample: torch.Tensor, timestep: float | torch.Tensor
    ) -> torch.Tensor: ...

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        *,
        return_dict: Literal[False],
        **kwargs: Any,
    ) -> tuple[torch.Tensor, ...]: ...

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor: ...


_FACTORIES: dict[str, tuple[type[ConfigMixin], dict[str, Any]]] = {
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


def make_scheduler(name: str, base_config: dict[str, Any] | None = None) -> NoiseScheduler:
    """A fresh scheduler (schedulers are stateful: one per denoising run)."""
    if name not in _FACTORIES:
        raise InputError(
            f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}", field="scheduler"
        )
    cls, options = _FACTORIES[name]
    config = {**(base_config or {}), **SD_SCHEDULE, **options}
    # `from_config` is typed `Self | tuple[Self, dict]` (the tuple only with
    # `return_unused_kwargs=True`) on `ConfigMixin`, which knows nothing of the scheduler methods.
    return cast(NoiseScheduler, cls.from_config(config))
