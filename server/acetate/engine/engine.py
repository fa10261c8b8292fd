"""The engine facade: one request in, transparent layers out.

`Engine.generate` checks the request, resolves the base model and LayerDiffusion files from the
model store, keeps the last base loaded (switching when a request names another), loads layer
files on demand and runs the mode's pipeline. It knows nothing of HTTP or asyncio: progress and
cancellation come in through a callback and a `threading.Event`.
"""

from __future__ import annotations

import gc
import logging
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from acetate.checks import check_request
from acetate.engine.framing import Rect
from acetate.engine.nets.attention_sharing import AttentionSharing
from acetate.engine.nets.transparent_vae import load_transparent_decoder, load_transparent_encoder
from acetate.engine.nets.unet_patch import load_unet_patch
from acetate.engine.options import EngineOptions
from acetate.engine.outputs import GenerationResult
from acetate.engine.pipelines import MODE_PIPELINES, denoising_stages
from acetate.engine.pipelines.context import LayerModels, ModeContext, Progress, Settings, StepInfo
from acetate.engine.pipelines.sampler import Sampler
from acetate.engine.schedulers import sampling_defaults
from acetate.engine.store.models import ModelStore, load_base_pipeline, load_controlnet
from acetate.errors import InputError, OutOfMemory
from acetate.images import image_record
from acetate.protocol import EDITOR_MODES, GenerateParameters

log = logging.getLogger(__name__)

__all__ = ["Engine", "StepInfo"]


@dataclass
class _LoadedBase:
    name: str
    family: str
    sampler: Sampler
    layer_files: dict[tuple[str, Path], Any]
    controlnets: dict[Path, Any]


def resolve_device(options: EngineOptions) -> tuple[torch.device, torch.dtype]:
    """`auto` picks CUDA, then MPS, then CPU; half precision on accelerators, fp32 on CPU."""
    name = options.device
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available", field="device")
    if name == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps: no MPS device is available", field="device")
    device = torch.device(name)
    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    if options.dtype == "auto":
        dtype = torch.float32 if device.type == "cpu" else torch.float16
    else:
        dtype = dtypes[options.dtype]
    return device, dtype


class Engine:
    """Runs generation requests on one device, one at a time (callers serialise)."""

    def __init__(self, store: ModelStore, options: EngineOptions | None = None) -> None:
        _quiet_library_progress()
        self.store = store
        self.options = options or EngineOptions()
        self.device, self.dtype = resolve_device(self.options)
        if self.options.offload == "sequential" and self.device.type != "cpu":
            # Sequential offload keeps weights off the modules between calls, so LayerDiffusion's
            # merged UNet patches and attention-sharing processors cannot reach them.
            raise InputError(
                "--offload sequential cannot carry LayerDiffusion's UNet changes; use "
                "--offload model (SDXL then fits an 8 GB GPU)",
                field="offload",
            )
        self._base: _LoadedBase | None = None
        self._transparency: dict[tuple[str, Path], Any] = {}
        self._lock = threading.Lock()

    @property
    def device_name(self) -> str:
        if self.device.type == "cuda":
            return f"cuda:{self.device.index or 0} ({torch.cuda.get_device_name(self.device)})"
        return self.device.type

    def generate(
        self,
        params: GenerateParameters,
        images: Mapping[str, np.ndarray],
        callback: Callable[[StepInfo], None] | None = None,
        cancel: threading.Event | None = None,
        overrides: Sequence[Path] = (),
    ) -> GenerationResult:
        """Run one request. Input errors are raised before any model is loaded."""
        with self._lock:
            try:
                return self._generate(params, dict(images), callback, cancel, overrides)
            except torch.cuda.OutOfMemoryError as error:
                self.release()
                raise OutOfMemory(f"out of device memory: {error}") from error
            except RuntimeError as error:
                if "out of memory" not in str(error).lower():
                    raise
                self.release()
                raise OutOfMemory(f"out of memory: {error}") from error

    def _generate(
        self,
        params: GenerateParameters,
        images: dict[str, np.ndarray],
        callback: Callable[[StepInfo], None] | None,
        cancel: threading.Event | None,
        overrides: Sequence[Path],
    ) -> GenerationResult:
        # 1. Check inputs and resolve every file before loading anything
        check_request(params, images)
        plan = self.store.plan(
            params.model, params.mode, params.control, params.controlnet, overrides
        )
        base, files, controlnet_info = plan.base, plan.files, plan.controlnet
        settings = resolve_settings(params, base.family, base.tiny, images)
        # 2. Load (or reuse) the base, the layer files and the ControlNet
        loaded = self._load_base(base)
        models = self._layer_models(loaded, files)
        controlnet = self._controlnet(loaded, controlnet_info) if controlnet_info else None
        # 3. Run the mode
        progress = Progress(
            settings.steps * denoising_stages(params.mode, base.family),
            base.family,
            callback,
            cancel,
        )
        progress.check_cancel()
        context = ModeContext(
            sampler=loaded.sampler,
            settings=settings,
            models=models,
            images=images,
            progress=progress,
            native_size=sampling_defaults(base.family, params.mode, tiny=base.tiny).size,
            controlnet=controlnet,
            selection_bounds=_rect(params),
        )
        layers = MODE_PIPELINES[params.mode](context)
        canvas_h, canvas_w = _canvas_size(params, settings, images)
        return GenerationResult(
            mode=params.mode,
            model=base.name,
            parameters=record_parameters(
                params, settings, base.name, base.family, images, controlnet_info
            ),
            canvas_width=canvas_w,
            canvas_height=canvas_h,
            layers=layers,
            warnings=plan.warnings,
        )

    # Loading ---------------------------------------------------------------------------------

    def _load_base(self, base: Any) -> _LoadedBase:
        if self._base is not None and self._base.name == base.name:
            return self._base
        self.release()
        log.info("loading base model %s (%s) on %s", base.name, base.family, self.device_name)
        pipe = load_base_pipeline(base, self.dtype)
        if self.options.offload == "model" and self.device.type == "cuda":
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        sampler = Sampler(pipe, base.family, self.device, self.dtype)
        self._base = _LoadedBase(base.name, base.family, sampler, {}, {})
        return self._base

    def _layer_models(self, loaded: _LoadedBase, files: Mapping[str, Any]) -> LayerModels:
        models = LayerModels()
        for role, info in files.items():
            models.kinds[role] = info.kind
            key = (role, Path(info.path))
            if role in ("decoder", "encoder"):
                if key not in self._transparency:
                    loader = (
                        load_transparent_decoder if role == "decoder" else load_transparent_encoder
                    )
                    self._transparency[key] = loader(
                        info.path, device=self.device, dtype=self.dtype
                    )
                setattr(models, role, self._transparency[key])
                if role == "encoder":
                    models.encoder_offset_scale = float(info.identity.encoder_offset_scale)
                continue
            if key not in loaded.layer_files:
                if role == "attention_sharing":
                    sharing = AttentionSharing.from_file(info.path)
                    loaded.layer_files[key] = sharing.to(self.device, self.dtype)
                else:
                    loaded.layer_files[key] = load_unet_patch(info.path, loaded.sampler.unet.config)
            setattr(models, role, loaded.layer_files[key])
        return models

    def _controlnet(self, loaded: _LoadedBase, info: Any) -> Any:
        path = Path(info.path)
        if path not in loaded.controlnets:
            model = load_controlnet(info, self.dtype)
            loaded.controlnets[path] = model.to(self.device)
        return loaded.controlnets[path]

    def release(self) -> None:
        """Drop every loaded model and free device memory."""
        self._base = None
        self._transparency.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _quiet_library_progress() -> None:
    """Our own progress reporting replaces diffusers/transformers loading bars."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def resolve_settings(
    params: GenerateParameters, family: str, tiny: bool, images: Mapping[str, np.ndarray]
) -> Settings:
    """Fill every default for this family and mode; the seed is drawn when absent."""
    defaults = sampling_defaults(family, params.mode, tiny=tiny)
    width = params.width or defaults.size
    height = params.height or defaults.size
    prompts = params.layer_prompts.model_dump() if params.layer_prompts else {}
    return Settings(
        mode=params.mode,
        prompt=params.prompt,
        negative_prompt=params.negative_prompt,
        layer_prompts=prompts,
        seed=params.seed if params.seed is not None else secrets.randbelow(2**32),
        steps=params.steps or defaults.steps,
        cfg=params.cfg if params.cfg is not None else defaults.cfg,
        scheduler=params.scheduler,
        width=width,
        height=height,
        batch=params.batch,
        strength=params.strength,
        layer_weight=params.layer_weight,
        stop_at=params.stop_at,
        decode=params.decode,
        scale=params.scale,
        margin=params.margin,
        feather=params.feather,
        control=params.control,
        control_strength=params.control_strength,
    )


def record_parameters(
    params: GenerateParameters,
    settings: Settings,
    model: str,
    family: str,
    images: Mapping[str, np.ndarray],
    controlnet_info: Any,
) -> dict[str, Any]:
    """Every request field with defaults filled; images as {width, height, sha256}."""
    record = params.model_dump(mode="json")
    record.update(
        model=model,
        seed=settings.seed,
        steps=settings.steps,
        cfg=settings.cfg,
        scheduler=settings.scheduler or sampling_defaults(family, params.mode).scheduler,
        width=settings.width,
        height=settings.height,
    )
    if params.mode in EDITOR_MODES:
        record["width"] = record["height"] = None
    if controlnet_info is not None:
        record["controlnet"] = controlnet_info.name
    for field, array in images.items():
        record[field] = image_record(array)
    return record


def _rect(params: GenerateParameters) -> Rect | None:
    bounds = params.selection_bounds
    if bounds is None:
        return None
    return Rect(bounds.left, bounds.top, bounds.width, bounds.height)


def _canvas_size(
    params: GenerateParameters, settings: Settings, images: Mapping[str, np.ndarray]
) -> tuple[int, int]:
    """The input frame (scaled for upscale), else the generated size."""
    from acetate.protocol import FRAME_IMAGE

    field = FRAME_IMAGE.get(params.mode)
    if field is None:
        return settings.height, settings.width
    height, width = images[field].shape[:2]
    if params.mode == "upscale":
        return max(1, round(height * settings.scale)), max(1, round(width * settings.scale))
    return height, width
