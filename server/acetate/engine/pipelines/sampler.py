"""The shared denoising machinery every mode is built from.

A `Sampler` wraps one loaded SD1.5 or SDXL diffusers pipeline (its text encoders, UNet, VAE)
and offers the stages of a diffusers `__call__` as methods — encode prompt, prepare latents,
denoise, VAE encode/decode — so each mode reads top to bottom as a short sequence of them.
The denoising loop is ours because LayerDiffusion needs things the stock pipelines lack:
channel-concatenated condition latents, a layer model switched off part-way (`stop_at`),
attention-sharing frames whose CFG rows must stay grouped, and a mask-blended inpaint loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch

# The concrete module: mypy resolves `diffusers.ControlNetModel` to the torch-less dummy class.
from diffusers.models.controlnets.controlnet import ControlNetModel
from diffusers.utils.torch_utils import randn_tensor

from acetate.engine.nets import banded_vae
from acetate.engine.nets.sharing_unit import SharingProcessor
from acetate.engine.nets.transparency_codec import vae_precision
from acetate.engine.schedulers import NoiseScheduler, make_scheduler

if TYPE_CHECKING:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import (
        StableDiffusionPipeline,
    )
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import (
        StableDiffusionXLPipeline,
    )

    #: The pipelines `acetate.engine.store.loading.load_base_pipeline` makes.
    BasePipeline = StableDiffusionPipeline | StableDiffusionXLPipeline


@dataclass
class PromptEmbeds:
    """Text conditioning for a batch, CFG rows first-uncond-then-cond when `cfg` is on."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def added_cond_kwargs(self) -> dict[str, torch.Tensor] | None:
        if self.pooled is None or self.time_ids is None:
            return None
        return {"text_embeds": self.pooled, "time_ids": self.time_ids}


@dataclass
class ControlInput:
    """A ControlNet and its conditioning image, already at the generation size."""

    model: ControlNetModel
    image: torch.Tensor  # [1, 3, H, W] in [0, 1]
    strength: float


@dataclass
class InpaintInput:
    """Keep the unmasked area on the original's noise trajectory (mask 1 = regenerate)."""

    init_latents: torch.Tensor
    noise: torch.Tensor
    mask: torch.Tensor  # [B, 1, h, w] at latent resolution


@dataclass
class DenoiseSpec:
    """Everything one denoising run needs besides the UNet itself."""

    latents: torch.Tensor
    scheduler: NoiseScheduler
    timesteps: torch.Tensor
    prompt: PromptEmbeds
    cfg: float
    concat: torch.Tensor | None = None
    control: ControlInput | None = None
    inpaint: InpaintInput | None = None
    switch_at: int | None = None
    on_switch: Callable[[], None] | None = None
    generator: list[torch.Generator] | None = None
    extra: dict[str, object] = field(default_factory=dict)


StepHook = Callable[[int, torch.Tensor], None]

#: On the CPU, from this latent size on (768² images), the two CFG halves of a step go through
#: the UNet one after the other: half the activations (SDXL at 1024²: 0.66 → 0.33 GB), for
#: nothing, since a CPU gains nothing from a batch's second row. GPUs keep the one batch.
CFG_APART_PIXELS = 96 * 96


def _half(values: tuple[Any, ...], index: int) -> tuple[Any, ...]:
    """Half `index` (0: uncond, 1: cond) of each CFG-doubled tensor, or of a dict's tensors."""

    def half(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: half(item) for key, item in value.items()}
        return None if value is None else value.chunk(2)[index]

    return tuple(half(value) for value in values)


class Sampler:
    """Stages of an SD1.5 / SDXL generation over one loaded diffusers pipeline."""

    def __init__(
        self, pipe: BasePipeline, family: str, device: torch.device, dtype: torch.dtype
    ) -> None:
        self.pipe = pipe
        self.family = family
        self.device = device
        self.dtype = dtype

    @property
    def unet(self) -> UNet2DConditionModel:
        return self.pipe.unet

    @property
    def vae(self) -> AutoencoderKL:
        return self.pipe.vae

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config["scaling_factor"])

    # 1. Prompt -------------------------------------------------------------------------------

    # Without it the embeddings would keep the text encoders' autograd graph (every layer's
    # activations, 0.5 GB for SDXL) alive through the whole denoising loop.
    @torch.no_grad()
    def encode_prompt(
        self, prompts: list[str], negatives: list[str], cfg: float, size: tuple[int, int]
    ) -> PromptEmbeds:
        """One embedding row per prompt; with CFG the negatives come first (diffusers order)."""
        use_cfg = cfg > 1.0
        if self.family == "sdxl":
            # Untyped on purpose: diffusers annotates the SDXL `encode_prompt(prompt: str, ...)`,
            # though it takes lists like SD1.5's.
            xl: Any = self.pipe
            embeds, negative, pooled, negative_pooled = xl.encode_prompt(
                prompt=prompts,
                device=self.device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=use_cfg,
                negative_prompt=negatives,
            )
            width, height = size
            projection = xl.text_encoder_2.config.projection_dim
            time_ids = xl._get_add_time_ids(
                (height, width), (0, 0), (height, width), embeds.dtype, projection
            ).to(self.device)
            time_ids = time_ids.repeat(len(prompts), 1)
            if use_cfg:
                embeds = torch.cat([negative, embeds])
                pooled = torch.cat([negative_pooled, pooled])
                time_ids = torch.cat([time_ids, time_ids])
            return PromptEmbeds(embeds.to(self.dtype), pooled.to(self.dtype), time_ids)
        embeds, negative = self._sd15().encode_prompt(
            prompts, self.device, 1, use_cfg, negative_prompt=negatives
        )
        if use_cfg:
            embeds = torch.cat([negative, embeds])
        return PromptEmbeds(embeds.to(self.dtype))

    @torch.no_grad()
    def encode_texts(self, prompts: list[str]) -> torch.Tensor:
        """Positive-only embeddings (per-layer prompts of the SD1.5 attention-sharing models)."""
        embeds, _ = self._sd15().encode_prompt(prompts, self.device, 1, False)
        return embeds.to(self.dtype)

    def _sd15(self) -> StableDiffusionPipeline:
        # The family decides the pipeline class (`load_base_pipeline`): not SDXL → SD1.5.
        return cast("StableDiffusionPipeline", self.pipe)

    # 2. Latents ------------------------------------------------------------------------------

    def generators(self, seeds: list[int]) -> list[torch.Generator]:
        """CPU generators: the same seed gives the same noise on every device."""
        return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]

    def noise(self, generators: list[torch.Generator], height: int, width: int) -> torch.Tensor:
        shape = (len(generators), 4, height // 8, width // 8)
        noise = randn_tensor(shape, generator=generators, device=torch.device("cpu"))
        return noise.to(self.device, torch.float32)

    def timesteps(
        self, scheduler_name: str, steps: int, strength: float = 1.0
    ) -> tuple[NoiseScheduler, torch.Tensor]:
        """A fresh scheduler and the timesteps of the last `strength` fraction of `steps`."""
        scheduler = make_scheduler(scheduler_name, dict(self.pipe.scheduler.config))
        if strength >= 1.0:
            scheduler.set_timesteps(steps, device=self.device)
            return scheduler, scheduler.timesteps
        # img2img convention: `steps` are the steps actually run (at least one).
        total = max(steps, round(steps / strength))
        scheduler.set_timesteps(total, device=self.device)
        start = (total - steps) * scheduler.order
        timesteps = scheduler.timesteps[start:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)
        return scheduler, timesteps

    def start_latents(
        self,
        scheduler: NoiseScheduler,
        timesteps: torch.Tensor,
        noise: torch.Tensor,
        init: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pure noise scaled for the scheduler, or `init` noised to the first timestep."""
        if init is None:
            return noise * scheduler.init_noise_sigma
        return scheduler.add_noise(init, noise, timesteps[:1].repeat(init.shape[0]))

    # 3. Denoise ------------------------------------------------------------------------------

    @torch.inference_mode()
    def denoise(self, spec: DenoiseSpec, on_step: StepHook) -> torch.Tensor:
        """The denoising loop; `on_step(i, latents)` runs after every step (progress, cancel)."""
        latents = spec.latents
        concat = spec.concat
        use_cfg = spec.cfg > 1.0
        rows = 2 if use_cfg else 1
        added = spec.prompt.added_cond_kwargs()
        control_image = None
        if spec.control is not None:
            control_image = spec.control.image.to(self.device, self.dtype)
            control_image = control_image.expand(latents.shape[0] * rows, -1, -1, -1)
        apart = use_cfg and self._cfg_rows_apart(latents)
        step_kwargs = dict(spec.extra)
        if spec.generator is not None and _accepts_generator(spec.scheduler):
            # One generator per latent row keeps each result set's noise its own.
            matches = len(spec.generator) == latents.shape[0]
            step_kwargs["generator"] = spec.generator if matches else spec.generator[0]

        for i, t in enumerate(spec.timesteps):
            if spec.switch_at is not None and i == spec.switch_at:
                if spec.on_switch is not None:
                    spec.on_switch()
                concat = None
            model_input = torch.cat([latents] * rows) if use_cfg else latents
            model_input = spec.scheduler.scale_model_input(model_input, t).to(self.dtype)
            unet_input = model_input
            if concat is not None:
                condition = torch.cat([concat] * rows) if use_cfg else concat
                unet_input = torch.cat([model_input, condition.to(self.dtype)], dim=1)
            inputs = (model_input, unet_input, control_image, spec.prompt.embeds, added)
            if apart:  # the same rows, one CFG half after the other
                noise_pred = torch.cat(
                    [self._predict_noise(spec, t, *_half(inputs, half)) for half in range(rows)]
                )
            else:
                noise_pred = self._predict_noise(spec, t, *inputs)
            if use_cfg:
                uncond, cond = noise_pred.chunk(2)
                noise_pred = uncond + spec.cfg * (cond - uncond)
            latents = spec.scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=False)[
                0
            ]
            if spec.inpaint is not None:
                latents = self._keep_unmasked(spec, i, latents)
            on_step(i, latents)
        return latents

    def _cfg_rows_apart(self, latents: torch.Tensor) -> bool:
        """Whether the CFG halves go through the UNet one after the other (`CFG_APART_PIXELS`);
        never with attention sharing, whose frames need their CFG rows in one batch."""
        if self.device.type != "cpu" or latents.shape[-2] * latents.shape[-1] < CFG_APART_PIXELS:
            return False
        processors = self.unet.attn_processors.values()
        return not any(isinstance(processor, SharingProcessor) for processor in processors)

    def _predict_noise(
        self,
        spec: DenoiseSpec,
        t: torch.Tensor,
        model_input: torch.Tensor,
        unet_input: torch.Tensor,
        control_image: torch.Tensor | None,
        embeds: torch.Tensor,
        added: dict[str, torch.Tensor] | None,
    ) -> torch.Tensor:
        """The UNet's prediction for these rows, with the ControlNet's residuals if any."""
        residuals: dict[str, object] = {}
        if spec.control is not None and control_image is not None:
            down, mid = spec.control.model(
                model_input,
                t,
                encoder_hidden_states=embeds,
                controlnet_cond=control_image,
                conditioning_scale=spec.control.strength,
                added_cond_kwargs=added,
                return_dict=False,
            )
            residuals = {
                "down_block_additional_residuals": down,
                "mid_block_additional_residual": mid,
            }
        return self.unet(
            unet_input,
            t,
            encoder_hidden_states=embeds,
            added_cond_kwargs=added,
            return_dict=False,
            **residuals,
        )[0].float()

    def _keep_unmasked(self, spec: DenoiseSpec, i: int, latents: torch.Tensor) -> torch.Tensor:
        inpaint = spec.inpaint
        assert inpaint is not None
        if i + 1 < len(spec.timesteps):
            next_t = spec.timesteps[i + 1 : i + 2].repeat(latents.shape[0])
            original = spec.scheduler.add_noise(inpaint.init_latents, inpaint.noise, next_t)
        else:
            original = inpaint.init_latents
        return original * (1.0 - inpaint.mask) + latents * inpaint.mask

    # 4. VAE ----------------------------------------------------------------------------------

    @torch.inference_mode()
    def vae_encode(self, rgb: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] in [0,1] → scaled latents (posterior mean: deterministic)."""
        with vae_precision(self.vae) as dtype:
            posterior = self.vae.encode((rgb * 2.0 - 1.0).to(self.device, dtype)).latent_dist
        return posterior.mean.float() * self.scaling_factor

    @torch.inference_mode()
    def vae_decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents → [B,3,H,W] RGB in [0,1]."""
        with vae_precision(self.vae) as dtype:
            scaled = (latents / self.scaling_factor).to(self.device, dtype)
            image = banded_vae.vae_decode(self.vae, scaled)
        return (image.float() * 0.5 + 0.5).clamp(0.0, 1.0)


def _accepts_generator(scheduler: NoiseScheduler) -> bool:
    import inspect

    return "generator" in inspect.signature(scheduler.step).parameters
