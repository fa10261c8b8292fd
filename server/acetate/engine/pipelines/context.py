"""What a mode pipeline is given: the resolved request, loaded layer models, progress."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch
from diffusers.models.controlnets.controlnet import ControlNetModel

from acetate.engine.framing import Rect
from acetate.engine.pipelines.sampler import Sampler
from acetate.errors import GenerationCancelled
from acetate.protocol import GenerateParameters, ResolvedRequest, StageSettings

if TYPE_CHECKING:
    from acetate.engine.nets.attention_sharing import AttentionSharing
    from acetate.engine.nets.transparent_vae import TransparentDecoder, TransparentEncoder
    from acetate.engine.nets.unet_patch import UNetPatch

T = TypeVar("T")


@dataclass
class LayerModels:
    """The loaded LayerDiffusion files one request uses, by role (`FamilySupport.files`)."""

    unet_patch: UNetPatch | None = None
    blend_patch: UNetPatch | None = None
    attention_sharing: AttentionSharing | None = None
    decoder: TransparentDecoder | None = None
    encoder: TransparentEncoder | None = None
    encoder_offset_scale: float = 1.0
    kinds: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StepInfo:
    """Progress after one denoising step; `preview(max_side)` is a cheap latent→RGB image."""

    step: int
    total: int
    eta_s: float | None
    preview: Callable[[int], np.ndarray | None]
    #: The running stage's name and label, where a mode names them (decompose: `caption`
    #: "Describing the image", then `decompose`); None: not named.
    stage: str | None = None
    label: str | None = None


def _no_preview(_max_side: int) -> np.ndarray | None:
    return None


class Progress:
    """Counts denoising steps over every stage of a mode, reports them, honours cancel."""

    def __init__(
        self,
        total: int,
        family: str,
        callback: Callable[[StepInfo], None] | None,
        cancel: threading.Event | None,
    ) -> None:
        self.total = max(1, total)
        self.family = family
        self.callback = callback
        self.cancel = cancel
        self.done = 0
        self.done_at_start = 0
        self.started = time.monotonic()
        #: The stage being run, as `StepInfo.stage` / `label` report it (`enter_stage`).
        self.stage: str | None = None
        self.label: str | None = None

    def enter_stage(self, stage: str, label: str) -> None:
        """Name the stage that runs next; steps report it from now on. The ETA counts from here
        (a stage without denoising steps, such as captioning, must not slow the estimate)."""
        self.stage, self.label = stage, label
        self.started = time.monotonic()
        self.done_at_start = self.done

    def report(self) -> None:
        """A progress event without a step (a stage that does not denoise); raises when
        cancelled."""
        if self.callback is not None:
            self.callback(
                StepInfo(
                    step=min(self.done, self.total),
                    total=self.total,
                    eta_s=None,
                    preview=_no_preview,
                    stage=self.stage,
                    label=self.label,
                )
            )
        self.check_cancel()

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise GenerationCancelled("cancelled")

    def hook(self, _index: int, latents: torch.Tensor) -> None:
        """Called by `Sampler.denoise` after every step."""
        self.done += 1
        if self.callback is not None:
            from acetate.engine.preview import latents_to_rgb

            elapsed = time.monotonic() - self.started
            remaining = max(0, self.total - self.done)
            counted = self.done - self.done_at_start
            eta = elapsed / counted * remaining if counted else None
            snapshot = latents[:1].detach()
            self.callback(
                StepInfo(
                    step=min(self.done, self.total),
                    total=self.total,
                    eta_s=eta,
                    preview=lambda max_side: latents_to_rgb(snapshot, self.family, max_side),
                    stage=self.stage,
                    label=self.label,
                )
            )
        self.check_cancel()


@dataclass
class ModeContext:
    """Everything a mode pipeline reads; pipelines yield `LayerImage`s as they finish."""

    sampler: Sampler
    request: ResolvedRequest
    models: LayerModels
    images: dict[str, np.ndarray]
    progress: Progress
    controlnet: ControlNetModel | None = None
    #: Index of this context's stage 0 in the request's stages (a mode that runs another
    #: mode's stages after its own, as `scene` runs bg→fg per object after its background).
    stage_offset: int = 0

    @property
    def params(self) -> GenerateParameters:
        """The request's fields, every default filled (`acetate.engine.resolve`)."""
        return self.request.parameters

    @property
    def mode(self) -> str:
        return self.request.parameters.mode

    @property
    def native_size(self) -> int:
        return self.request.native_size

    @property
    def seed(self) -> int:
        return _filled(self.params.seed, "seed")

    @property
    def steps(self) -> int:
        return _filled(self.params.steps, "steps")

    @property
    def cfg(self) -> float:
        return _filled(self.params.cfg, "cfg")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of modes that generate at a requested size (fg, joint)."""
        return _filled(self.params.width, "width"), _filled(self.params.height, "height")

    def stage(self, index: int) -> StageSettings:
        return self.request.stages[self.stage_offset + index]

    def prompt_for(self, layer: str) -> str:
        """The main prompt with a layer's extra text in front (the official convention)."""
        prompts = self.params.layer_prompts
        extra = (getattr(prompts, layer, None) or "").strip() if prompts is not None else ""
        return f"{extra}, {self.params.prompt}" if extra else self.params.prompt

    def has_layer_prompt(self, layer: str) -> bool:
        prompts = self.params.layer_prompts
        return prompts is not None and bool(getattr(prompts, layer, None))

    @property
    def selection_bounds(self) -> Rect | None:
        bounds = self.params.selection_bounds
        if bounds is None:
            return None
        return Rect(bounds.left, bounds.top, bounds.width, bounds.height)


def loaded(model: T | None, role: str) -> T:
    """A layer model the mode needs; the plan names every file a mode's roles need."""
    if model is None:
        raise RuntimeError(f"{role} not loaded")  # a bug: the plan lists the mode's files
    return model


def _filled(value: T | None, name: str) -> T:
    if value is None:
        raise ValueError(f"{name} was not resolved")  # a bug: resolve_request fills it
    return value
