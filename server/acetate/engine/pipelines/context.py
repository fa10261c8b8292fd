"""What a mode pipeline is given: resolved settings, loaded layer models, progress."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from diffusers import ControlNetModel

from acetate.engine.pipelines.sampler import Sampler
from acetate.errors import GenerationCancelled


@dataclass(frozen=True)
class Settings:
    """A request with every default filled for its model family and mode."""

    mode: str
    prompt: str
    negative_prompt: str
    layer_prompts: dict[str, str | None]
    seed: int
    steps: int
    cfg: float
    scheduler: str | None  # None: each stage's own default
    width: int
    height: int
    batch: int
    strength: float
    layer_weight: float
    stop_at: float | None  # None: each stage's own default
    decode: str
    scale: float
    margin: int
    feather: int
    control: str
    control_strength: float

    def prompt_for(self, layer: str) -> str:
        """The main prompt with a layer's extra text in front (the official convention)."""
        extra = (self.layer_prompts.get(layer) or "").strip()
        return f"{extra}, {self.prompt}" if extra else self.prompt


@dataclass
class LayerModels:
    """The loaded LayerDiffusion files one request uses, by role (see models.MODE_REQUIREMENTS)."""

    unet_patch: Any = None
    blend_patch: Any = None
    attention_sharing: Any = None
    decoder: Any = None
    encoder: Any = None
    encoder_offset_scale: float = 1.0
    kinds: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StepInfo:
    """Progress after one denoising step; `preview(max_side)` is a cheap latent→RGB image."""

    step: int
    total: int
    eta_s: float | None
    preview: Callable[[int], np.ndarray | None]


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
        self.started = time.monotonic()

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
            eta = elapsed / self.done * remaining if self.done else None
            snapshot = latents[:1].detach()
            self.callback(
                StepInfo(
                    step=min(self.done, self.total),
                    total=self.total,
                    eta_s=eta,
                    preview=lambda max_side: latents_to_rgb(snapshot, self.family, max_side),
                )
            )
        self.check_cancel()


@dataclass
class ModeContext:
    """Everything a mode pipeline reads; pipelines return `LayerImage`s."""

    sampler: Sampler
    settings: Settings
    models: LayerModels
    images: dict[str, np.ndarray]
    progress: Progress
    native_size: int
    controlnet: ControlNetModel | None = None
    selection_bounds: Any = None
