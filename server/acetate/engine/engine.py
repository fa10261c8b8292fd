"""The engine facade: one request in, transparent layers out.

`Engine.generate` checks the request, resolves the base model and LayerDiffusion files from the
model store, keeps the last base loaded (switching when a request names another), loads layer
files on demand and runs the mode's pipeline, with the request's LoRAs fused into the base (and
the embeddings its prompts name loaded into the text encoders) for that job only. It knows
nothing of HTTP or asyncio: progress and cancellation come in through a callback and a
`threading.Event`.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from acetate.checks import check_request
from acetate.engine.lora_fusion import fused_loras
from acetate.engine.memory import (
    apply_group_offload,
    check_memory_options,
    release_unused_memory,
    return_large_frees_at_once,
)
from acetate.engine.nets.attention_sharing import AttentionSharing
from acetate.engine.nets.decoder_paths import PREPARED
from acetate.engine.nets.transparent_vae import (
    TransparentDecoder,
    TransparentEncoder,
    load_transparent_decoder,
    load_transparent_encoder,
)
from acetate.engine.nets.unet_patch import UNetPatch, load_unet_patch, needs_reload
from acetate.engine.options import EngineOptions
from acetate.engine.outputs import GenerationResult, LayerImage, stacked
from acetate.engine.pipelines import pipeline
from acetate.engine.pipelines.context import LayerModels, ModeContext, Progress, StepInfo
from acetate.engine.pipelines.sampler import Sampler
from acetate.engine.resolve import Prepared, resolve_request
from acetate.engine.store.digest import file_sha256
from acetate.engine.store.embeddings import prompt_texts
from acetate.engine.store.models import (
    BaseCheckpoint,
    ControlNetInfo,
    LayerFile,
    LayerOverride,
    ModelStore,
    load_base_pipeline,
    load_controlnet,
)
from acetate.engine.store.qwen import QWEN_FAMILY
from acetate.engine.textual_inversion import loaded_embeddings
from acetate.errors import InputError, OutOfMemory
from acetate.modes import Family
from acetate.protocol import GenerateParameters

if TYPE_CHECKING:
    from diffusers.models.controlnets.controlnet import ControlNetModel

log = logging.getLogger(__name__)

__all__ = ["Engine", "Prepared", "StepInfo"]

#: What an out-of-memory failure suggests (it fails the job only).
OOM_HINT = (
    " (try --offload model; for Qwen-Image-Layered --offload group, --quantize nf4 or "
    "resolution 640)"
)


@dataclass
class _LoadedBase:
    name: str
    family: str
    sampler: Sampler
    layer_files: dict[tuple[str, Path], UNetPatch | AttentionSharing]
    controlnets: dict[Path, ControlNetModel]


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
        quiet_library_progress()
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
        check_memory_options(self.options, self.device)
        return_large_frees_at_once()
        self._base: _LoadedBase | None = None
        self._transparency: dict[tuple[str, Path], TransparentDecoder | TransparentEncoder] = {}
        self._lock = threading.Lock()

    @property
    def device_name(self) -> str:
        if self.device.type == "cuda":
            return f"cuda:{self.device.index or 0} ({torch.cuda.get_device_name(self.device)})"
        return self.device.type

    def prepare(
        self,
        params: GenerateParameters,
        images: Mapping[str, np.ndarray],
        overrides: Sequence[LayerOverride] = (),
    ) -> Prepared:
        """Check a request and resolve it (defaults, base, layer files) without loading
        anything; `InputError`s name the field. The server does this when a job is submitted."""
        check_request(params, images)
        plan = self.store.plan(
            params.model,
            params.mode,
            params.control,
            params.controlnet,
            overrides,
            params.layer_files or (),
            params.loras or (),
            prompt_texts(params),
        )
        return Prepared(resolve_request(params, images, plan), plan)

    def stream(
        self,
        prepared: Prepared,
        images: Mapping[str, np.ndarray],
        callback: Callable[[StepInfo], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[LayerImage]:
        """Run a prepared request, yielding each layer as soon as it is final."""
        with self._lock:
            try:
                yield from self._run(prepared, dict(images), callback, cancel)
                release_unused_memory()  # a job's buffers, before the server idles
            except torch.cuda.OutOfMemoryError as error:
                self.release()
                raise OutOfMemory(f"out of device memory: {error}{OOM_HINT}") from error
            except RuntimeError as error:
                if "out of memory" not in str(error).lower():
                    raise
                self.release()
                raise OutOfMemory(f"out of memory: {error}{OOM_HINT}") from error

    def generate(
        self,
        params: GenerateParameters,
        images: Mapping[str, np.ndarray],
        callback: Callable[[StepInfo], None] | None = None,
        cancel: threading.Event | None = None,
        overrides: Sequence[LayerOverride] = (),
    ) -> GenerationResult:
        """Prepare and run one request, all layers at once (the CLI and tests).
        Input errors are raised before any model is loaded."""
        prepared = self.prepare(params, images, overrides)
        layers = list(self.stream(prepared, images, callback, cancel))
        return GenerationResult.of(prepared.request, stacked(prepared.request.spec, layers))

    def _run(
        self,
        prepared: Prepared,
        images: dict[str, np.ndarray],
        callback: Callable[[StepInfo], None] | None,
        cancel: threading.Event | None,
    ) -> Iterator[LayerImage]:
        request, plan = prepared
        # 1. Load (or reuse) the base, the layer files and the ControlNet the plan names
        loaded = self._load_base(plan.base)
        models = self._layer_models(loaded, plan.files)
        controlnet = self._controlnet(loaded, plan.controlnet) if plan.controlnet else None
        # 2. Run the mode's pipeline, counting steps over all of its stages
        params = request.parameters
        spec = request.spec
        counts = {item.field: len(getattr(params, item.field, None) or []) for item in spec.lists}
        family = cast("Family", request.family)
        total = (params.steps or 1) * spec.denoise_runs(family, counts, images, params.batch)
        progress = Progress(total, request.family, callback, cancel)
        progress.check_cancel()
        context = ModeContext(
            sampler=loaded.sampler,
            request=request,
            models=models,
            images=images,
            progress=progress,
            controlnet=controlnet,
        )
        # The request's LoRAs are fused into the base for this job only (restored bit-exactly
        # afterwards, also on error or cancel): LayerDiffusion's patches then apply on top. The
        # embeddings the prompts name are in the text encoders for this job only, likewise.
        with (
            fused_loras(loaded.sampler.pipe, plan.loras),
            loaded_embeddings(loaded.sampler.pipe, plan.embeddings),
        ):
            yield from pipeline(params.mode)(context)

    # Loading ---------------------------------------------------------------------------------

    def _load_base(self, base: BaseCheckpoint) -> _LoadedBase:
        if (
            self._base is not None
            and self._base.name == base.name
            and not needs_reload(getattr(self._base.sampler.pipe, "unet", None))
        ):
            return self._base
        self.release()
        log.info("loading base model %s (%s) on %s", base.name, base.family, self.device_name)
        if self.options.offload == "group" and base.family != QWEN_FAMILY:
            raise InputError(
                "--offload group is for Qwen-Image-Layered models; LayerDiffusion bases use "
                "--offload model",
                field="offload",
            )
        pipe = load_base_pipeline(base, self.dtype, quantize=self.options.quantize)
        if self.options.offload == "group" and self.device.type == "cuda":
            apply_group_offload(pipe, self.device)
        elif self.options.offload == "model" and self.device.type == "cuda":
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        release_unused_memory()  # what loading freed tensor by tensor
        sampler = Sampler(pipe, base.family, self.device, self.dtype)
        self._base = _LoadedBase(base.name, base.family, sampler, {}, {})
        return self._base

    def forget_layer_files(self) -> None:
        """Drop the loaded LayerDiffusion files (kept per path): a training run rewrites its
        in-progress file between validation samples."""
        with self._lock:
            self._transparency.clear()
            if self._base is not None:
                self._base.layer_files.clear()

    def _layer_models(self, loaded: _LoadedBase, files: Mapping[str, LayerFile]) -> LayerModels:
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
                    net = self._transparency[key]
                    if isinstance(net, TransparentDecoder) and self.options.decoder == "auto":
                        PREPARED.attach(net, partial(file_sha256, info.path))
                setattr(models, role, self._transparency[key])
                if role == "encoder":
                    models.encoder_offset_scale = float(info.identity.encoder_offset_scale)
                continue
            cached = loaded.layer_files.get(key)
            if cached is None or (isinstance(cached, UNetPatch) and not cached.is_current()):
                if role == "attention_sharing":
                    sharing = AttentionSharing.from_file(info.path)
                    loaded.layer_files[key] = sharing.to(self.device, self.dtype)
                else:
                    loaded.layer_files[key] = load_unet_patch(info.path, loaded.sampler.unet.config)
            setattr(models, role, loaded.layer_files[key])
        return models

    def _controlnet(self, loaded: _LoadedBase, info: ControlNetInfo) -> ControlNetModel:
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


def quiet_library_progress() -> None:
    """Our own progress reporting replaces diffusers/transformers loading bars."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
