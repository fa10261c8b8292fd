"""The layer-model training loop on `accelerate` (1 CPU, 1 GPU, N GPUs, several nodes).

Per step: RGBA batch (one aspect bucket) → latent transparency latents (frozen VAE posterior
of the image plus the transparency encoder's offset, as Acetate encodes for img2img) → noise at
random timesteps of the SD schedule → the UNet with the adapter predicts the noise (epsilon
MSE, optional min-SNR weighting and noise offset). Noise, timesteps and data are pure functions
of (seed, step, process), so `--resume` continues exactly. Text encoders, VAE, transparency
encoder and the base UNet stay frozen; only the adapter trains.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_snr
from PIL import Image
from torch import nn
from tqdm import tqdm

from acetate.engine.engine import quiet_library_progress
from acetate.engine.nets.transparency_codec import encode_transparent
from acetate.engine.nets.transparent_vae import load_transparent_encoder
from acetate.engine.schedulers import SD_SCHEDULE
from acetate.engine.store.loading import load_base_pipeline
from acetate.engine.store.models import ModelStore
from acetate.errors import InputError
from acetate.train import data as train_data
from acetate.train.layer import captions as captioned
from acetate.train.layer.adapters import LayerAdapter, build_adapter
from acetate.train.layer.config import LayerTrainConfig, check_resume
from acetate.train.layer.setup import RunSetup, resolve_setup
from acetate.train.runs import TRAINING_DIR, run_folder, tensorboard
from acetate.train.state import (
    CHECKPOINTS,
    latest_checkpoint,
    load_state,
    save_safetensors,
    save_state,
)

#: Tiny test bases train at this side (their UNets are built for small latents).
TINY_RESOLUTION = 64
NATIVE_RESOLUTION = {"sdxl": 1024, "sd15": 512}
MAX_GRAD_NORM = 1.0


class Denoiser(nn.Module):
    """The UNet with its adapter, as one module: `accelerate.prepare` wraps it (DDP sees the
    forward call and syncs the adapter's gradients)."""

    def __init__(self, unet: nn.Module, extra: nn.Module | None) -> None:
        super().__init__()
        self.unet = unet
        self.extra = extra  # SD1.5: the attention-sharing units (their parameters train)

    def forward(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, cond: dict[str, Any]
    ) -> torch.Tensor:
        return self.unet(noisy, timesteps, **cond).sample


def _optimizer(params: list[nn.Parameter], config: LayerTrainConfig, device: torch.device) -> Any:
    if not config.use_8bit_adam:
        return torch.optim.AdamW(params, lr=config.lr)
    if device.type != "cuda" or importlib.util.find_spec("bitsandbytes") is None:
        raise InputError(
            "--use-8bit-adam needs a CUDA GPU and bitsandbytes (pip install bitsandbytes)",
            field="--use-8bit-adam",
        )
    import bitsandbytes as bnb  # type: ignore[import-not-found]

    return bnb.optim.AdamW8bit(params, lr=config.lr)


class LayerTrainer:
    """Set up from a `LayerTrainConfig`; `run()` trains and returns the final file."""

    def __init__(self, config: LayerTrainConfig) -> None:
        config.check()
        self.config = config
        try:
            self.accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=config.cpu)
        except (ValueError, RuntimeError) as error:
            raise InputError(f"--mixed-precision: {error}", field="--mixed-precision") from None
        self.store = ModelStore(config.models_dir, config.extra_dirs, hf_cache=False)
        self.setup: RunSetup = resolve_setup(config, self.store)
        family = self.setup.base.family
        self.resolution = config.resolution or (
            TINY_RESOLUTION if self.setup.base.tiny else NATIVE_RESOLUTION[family]
        )
        self.data = captioned.caption_folder(
            train_data.scan_folder(config.data), config.default_caption
        )
        captioned.assign_buckets(self.data, self.resolution)
        self.data_hash = train_data.data_hash(train_data.DataScan(config.data, self.data.images))
        self.out = self._out_dir()
        self.step = 0
        self.tracker: Any = None
        self.published: Path | None = None
        self._latents: dict[int, torch.Tensor] = {}
        self._text: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        #: The engine drawing validation samples (`samples.write_samples`), made on first use.
        self.sample_engine: Any = None
        self._build()

    # ---- setup --------------------------------------------------------------------------------

    def _out_dir(self) -> Path:
        config = self.config
        return run_folder(
            self.accelerator,
            resume=config.resume,
            out=config.out,
            models_dir=config.models_dir,
            stem=f"acetate-layer-{self.data_hash[:8]}-s{config.seed}",
        )

    def _build(self) -> None:
        config, accelerator, setup = self.config, self.accelerator, self.setup
        device = accelerator.device
        quiet_library_progress()
        pipe = load_base_pipeline(setup.base, torch.float32)
        self.pipe = pipe
        family = setup.base.family
        # Frozen parts in the compute dtype (the SDXL UNet is 10 GB in fp32); the VAE stays
        # fp32 (SDXL's overflows in fp16); the adapter's own weights stay fp32.
        weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
            config.mixed_precision, torch.float32
        )
        for name in ("text_encoder", "text_encoder_2"):
            encoder = getattr(pipe, name, None)
            if encoder is not None:
                encoder.requires_grad_(False).to(device, weight_dtype)
        pipe.vae.requires_grad_(False).to(device)  # loaded in fp32
        unet = pipe.unet.requires_grad_(False)
        if family == "sdxl" and weight_dtype != torch.float32:
            unet.to(device, weight_dtype)
        else:
            unet.to(device)  # SD1.5: the sharing units take the UNet's dtype when attached
        if config.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        self.adapter: LayerAdapter = build_adapter(family, unet, setup.rank, config.seed)
        if setup.init_path is not None:
            self.adapter.load_official(setup.init_path)  # type: ignore[attr-defined]
        for parameter in self.adapter.trainable():
            parameter.data = parameter.data.to(device, torch.float32)
        self.attached = self.adapter.active()
        self.attached.__enter__()
        extra = getattr(self.adapter, "model", None)
        self.denoiser = Denoiser(unet, extra)
        self.optimizer = _optimizer(self.adapter.trainable(), config, device)
        if config.resume is not None:
            self._load(latest_checkpoint(config.resume))
        self.denoiser, self.optimizer = accelerator.prepare(self.denoiser, self.optimizer)
        # safetensors names CPUs "cpu" only (accelerate's multi-process CPU device is "cpu:0").
        load_device = "cpu" if device.type == "cpu" else device
        self.encoder = load_transparent_encoder(setup.encoder.path, device=load_device)
        self.offset_scale = float(setup.encoder.identity.encoder_offset_scale)
        # diffusers' scheduler classes declare neither `config` nor `add_noise` to type checkers.
        self.noise_scheduler: Any = DDPMScheduler(**SD_SCHEDULE)

    def _load(self, folder: Path) -> None:
        parts, info = load_state(folder)
        check_resume(self.config, info["flags"])
        saved = parts["adapter"]
        with torch.no_grad():  # fp32, in `trainable()` order (the exported file is fp16)
            for i, parameter in enumerate(self.adapter.trainable()):
                parameter.copy_(saved[f"p{i}"])
        self.optimizer.load_state_dict(parts["optimizer"])
        self.step = int(info["step"])
        if self.step >= self.config.steps:
            raise InputError(
                f"--steps {self.config.steps}: the run is already at step {self.step}",
                field="--steps",
            )

    # ---- one step -----------------------------------------------------------------------------

    @torch.no_grad()
    def latents(self, batch: dict[str, Any]) -> torch.Tensor:
        """Latent transparency latents of the batch (cached per image with --cache-latents)."""
        device = self.accelerator.device
        indices: list[int] = batch["indices"]
        if self.config.cache_latents and all(i in self._latents for i in indices):
            return torch.stack([self._latents[i] for i in indices]).to(device)
        rgba = batch["rgba"].to(device)
        latents = encode_transparent(self.pipe.vae, self.encoder, rgba, self.offset_scale).clone()
        if self.config.cache_latents:
            for i, latent in zip(indices, latents, strict=True):
                self._latents[i] = latent.cpu()
        return latents.float()

    @torch.no_grad()
    def _encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Text embeddings (and SDXL's pooled ones); cached per caption with --cache-latents."""
        device = self.accelerator.device
        cache = self._text if self.config.cache_latents else {}
        todo = list(dict.fromkeys(c for c in captions if c not in cache))
        if todo:
            encoded = self.pipe.encode_prompt(
                todo, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
            )
            pooled = encoded[2] if self.setup.base.family == "sdxl" else None
            for i, caption in enumerate(todo):
                cache[caption] = (encoded[0][i], None if pooled is None else pooled[i])
        embeds = torch.stack([cache[c][0] for c in captions]).to(device)
        pooled_rows = [cache[c][1] for c in captions]
        if pooled_rows[0] is None:
            return embeds, None
        return embeds, torch.stack([p for p in pooled_rows if p is not None]).to(device)

    def conditioning(self, captions: list[str], height: int, width: int) -> dict[str, Any]:
        """UNet keyword arguments for the captions (SDXL: pooled text and size ids too)."""
        embeds, pooled = self._encode(captions)
        if pooled is None:
            return {"encoder_hidden_states": embeds}
        ids = torch.tensor([[height, width, 0, 0, height, width]], device=pooled.device)
        added = {"text_embeds": pooled, "time_ids": ids.repeat(len(captions), 1).to(pooled)}
        return {"encoder_hidden_states": embeds, "added_cond_kwargs": added}

    def _noise(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's slice of the step's global noise and timesteps, drawn from a
        generator seeded by (seed, step): N processes see what one process with the global
        batch sees."""
        accelerator, config = self.accelerator, self.config
        entropy = [config.seed, self.step]
        seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)
        generator = torch.Generator("cpu").manual_seed(seed)
        rows = config.batch * accelerator.num_processes
        shape = (rows, *latents.shape[1:])
        noise = torch.randn(shape, generator=generator)
        if config.noise_offset:
            noise += config.noise_offset * torch.randn((*shape[:2], 1, 1), generator=generator)
        steps = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (rows,), generator=generator)
        mine = slice(
            accelerator.process_index * config.batch, (accelerator.process_index + 1) * config.batch
        )
        return noise[mine].to(latents.device), timesteps[mine].to(latents.device)

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        config, accelerator = self.config, self.accelerator
        latents = self.latents(batch)
        height, width = batch["rgba"].shape[-2:]
        cond = self.conditioning(batch["captions"], int(height), int(width))
        noise, timesteps = self._noise(latents)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        with accelerator.autocast():
            predicted = self.denoiser(noisy, timesteps, cond)
        loss = F.mse_loss(predicted.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3))
        if config.snr_gamma is not None:
            snr = compute_snr(self.noise_scheduler, timesteps)
            loss = loss * torch.minimum(snr, torch.full_like(snr, config.snr_gamma)) / snr
        loss = loss.mean()
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(self.adapter.trainable(), MAX_GRAD_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        value = accelerator.reduce(loss.detach().reshape(1), reduction="mean")
        return {"loss": float(value)}

    # ---- the run ------------------------------------------------------------------------------

    def run(self) -> Path:
        """Train to `config.steps`; returns the final official-format file."""
        config, accelerator = self.config, self.accelerator
        if accelerator.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            print(self.data.summary(), flush=True)
            self.tracker = tensorboard(self.out / "logs", "acetate-train-layer")
        dataset = captioned.CaptionedBatches(
            self.data,
            batch=config.batch,
            seed=config.seed,
            caption_dropout=config.caption_dropout,
            flip=config.random_flip,
            centre=config.cache_latents,
            process_index=accelerator.process_index,
            num_processes=accelerator.num_processes,
        )
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=None,
            sampler=range(self.step, config.steps),
            num_workers=config.workers,
            prefetch_factor=2 if config.workers else None,
        )
        bar = tqdm(
            total=config.steps,
            initial=self.step,
            disable=not (config.progress and accelerator.is_local_main_process),
            desc="train layer-model",
        )
        validate_every = config.validate_every or config.save_every
        self.losses: list[float] = []
        started = time.perf_counter()
        for batch in loader:
            scalars = self.train_step(batch)
            self.losses.append(scalars["loss"])
            self.step += 1
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in scalars.items()})
            if self.tracker is not None:
                self.tracker.log(scalars, step=self.step)
            last = self.step == config.steps
            if self.step % config.save_every == 0 or last:
                self.save_checkpoint()
            if self.step % validate_every == 0 or last:
                self.validate()
        bar.close()
        self.seconds = time.perf_counter() - started
        final = self.export(self.out)
        if self.out.parent == config.models_dir / TRAINING_DIR:
            self.published = self.export(config.models_dir / "layer_model")
        if self.setup.base.family == "sdxl" and accelerator.is_main_process:
            self.adapter.save_diffusers(self.out / "diffusers-lora")  # type: ignore[attr-defined]
        accelerator.wait_for_everyone()
        self.attached.__exit__(None, None, None)
        if self.tracker is not None:
            self.tracker.finish()
        return final

    # ---- outputs ------------------------------------------------------------------------------

    def file_name(self) -> str:
        name = self.out.name
        prefix = name if name.startswith("acetate") else f"acetate-{name}"
        return f"{prefix}-{self.setup.base.family}-transparent-attn.safetensors"

    def metadata(self) -> dict[str, str]:
        from acetate import __version__

        setup = self.setup
        return {
            "format": "pt",
            "acetate.kind": setup.kind,
            "acetate.family": setup.base.family,
            "acetate.role": "layer_model",
            "acetate.version": __version__,
            "acetate.base": setup.base_label,
            "acetate.data_hash": self.data_hash,
            "acetate.steps": str(self.step),
            "acetate.rank": str(setup.rank),
            "acetate.init": setup.init_label,
            "acetate.encoder": setup.encoder.name,
            "acetate.resolution": str(self.resolution),
        }

    def export(self, folder: Path) -> Path:
        """The adapter as an official-format file in `folder` (main process writes)."""
        path = folder / self.file_name()
        if self.accelerator.is_main_process:
            save_safetensors(self.adapter.official_tensors(), path, self.metadata())
        return path

    def save_checkpoint(self) -> Path:
        folder = self.out / CHECKPOINTS / f"step-{self.step:07d}"
        if self.accelerator.is_main_process:
            folder.mkdir(parents=True, exist_ok=True)
            self.export(folder)
            adapter = {
                f"p{i}": p.detach().float().cpu() for i, p in enumerate(self.adapter.trainable())
            }
            parts = {"adapter": adapter, "optimizer": self.optimizer.state_dict()}
            info = {"step": self.step, "flags": self.config.recorded()}
            save_state(folder, parts, info)
        self.accelerator.wait_for_everyone()
        return folder

    def validate(self) -> Path | None:
        """Samples through Acetate's `fg` pipeline with the current adapter (main process)."""
        if not self.accelerator.is_main_process:
            return None
        from acetate.train.layer.samples import write_samples

        sheet = write_samples(self)
        if self.tracker is not None:
            with Image.open(sheet) as image:
                pixels = np.asarray(image.convert("RGB"))[None]  # one NHWC image
            self.tracker.log_images({"samples": pixels}, step=self.step, dataformats="NHWC")
        return sheet
