"""The training loop on `accelerate`: one command on 1 CPU, 1 GPU, N GPUs or several nodes.

Data parallel: each process takes its slice of every global batch (`StepBatches`), the
encoder/decoder pair is wrapped by `accelerator.prepare` (gradients all-reduced); the
discriminator stays unwrapped and its gradients are averaged with `accelerator.reduce`, because
it runs forward twice per step (generator and discriminator phases), which DDP's one-forward-
one-backward bookkeeping does not allow. Only the main process writes files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from tqdm import tqdm

from acetate.engine.store.models import ModelStore
from acetate.errors import InputError
from acetate.train import data as train_data
from acetate.train import evaluate as train_eval
from acetate.train.base_vae import BaseVae, load_base_vae
from acetate.train.config import TrainConfig, check_resume
from acetate.train.init import build_pair
from acetate.train.losses import (
    NLayerDiscriminator,
    TransparencyPair,
    generator_terms,
    hinge_d_loss,
    posterior,
    premultiplied,
)
from acetate.train.runs import TRAINING_DIR, run_folder, tensorboard
from acetate.train.state import (
    CHECKPOINTS,
    export_model,
    file_name,
    latest_checkpoint,
    load_state,
    save_state,
)

#: Betas of both optimizers, as in the LDM autoencoder.
BETAS = (0.5, 0.9)
EVAL_IMAGES = 4


class Trainer:
    """Set up from a `TrainConfig`; `run()` trains and returns the final files."""

    def __init__(self, config: TrainConfig) -> None:
        config.check()
        self.config = config
        try:
            self.accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=config.cpu)
        except (ValueError, RuntimeError) as error:
            raise InputError(f"--mixed-precision: {error}", field="--mixed-precision") from None
        self.scan = train_data.scan_folder(config.data)
        self.data_hash = train_data.data_hash(self.scan)
        self.store = ModelStore(config.models_dir, config.extra_dirs, hf_cache=False)
        self.base: BaseVae = load_base_vae(config.base, config.models_dir, config.extra_dirs)
        self.out = self._out_dir()
        encoder, decoder, self.init_label = build_pair(
            config.init, config.arch, self.base.family, self.base.tiny, self.store, config.seed
        )
        self.step = 0
        self.tracker: Any = None
        self.published: dict[str, Path] = {}
        self._build(encoder, decoder)

    # ---- setup --------------------------------------------------------------------------------

    def _out_dir(self) -> Path:
        config = self.config
        return run_folder(
            self.accelerator,
            resume=config.resume,
            out=config.out,
            models_dir=config.models_dir,
            stem=f"acetate-{self.data_hash[:8]}-s{config.seed}",
        )

    def _build(self, encoder: Any, decoder: Any) -> None:
        config, accelerator = self.config, self.accelerator
        self.pair = TransparencyPair(encoder, decoder)
        self.pair.gradient_checkpointing = config.gradient_checkpointing
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed + 1)
            self.disc = NLayerDiscriminator(width=config.disc_width)
        self.opt_g = torch.optim.Adam(self.pair.parameters(), lr=config.lr, betas=BETAS)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=config.lr, betas=BETAS)
        if config.resume is not None:
            self._load(latest_checkpoint(config.resume))
        # channels_last: cuDNN's fast layout for half-precision convs; on the CPU it costs
        # nothing (measured equal CPU time at 128², fp32). `Module.to`'s stubs omit the keyword.
        layout: Any = {"memory_format": torch.channels_last}
        modules: list[Any] = [self.pair, self.disc, self.base.vae]
        for module in modules:
            module.to(accelerator.device, **layout)
        self.pair, self.opt_g, self.opt_d = accelerator.prepare(self.pair, self.opt_g, self.opt_d)
        self.vae = self.base.vae

    def _extra(self) -> dict[str, Any]:
        return {
            "data_hash": self.data_hash,
            "base_vae": self.base.label,
            "num_processes": self.accelerator.num_processes,
        }

    def _load(self, folder: Path) -> None:
        parts, info = load_state(folder)
        check_resume(self.config, info, self._extra())
        from safetensors.torch import load_file

        from acetate.train.state import find_pair

        files = find_pair(folder)
        self.pair.decoder.load_state_dict(load_file(files["transparent_decoder"]))
        self.pair.encoder.load_state_dict(load_file(files["transparent_encoder"]))
        self.disc.load_state_dict(parts["disc"])
        self.opt_g.load_state_dict(parts["optimizer_g"])
        self.opt_d.load_state_dict(parts["optimizer_d"])
        torch.set_rng_state(parts["rng"]["torch"])
        self.step = int(info["step"])
        if self.step >= self.config.steps:
            raise InputError(
                f"--steps {self.config.steps}: the run is already at step {self.step}",
                field="--steps",
            )

    # ---- the loop -----------------------------------------------------------------------------

    def run(self) -> dict[str, Path]:
        """Train to `config.steps`; returns role → final file."""
        config, accelerator = self.config, self.accelerator
        if accelerator.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            print(self.scan.summary(), flush=True)
            self.tracker = tensorboard(self.out / "logs", "acetate-train")
        dataset = train_data.StepBatches(
            self.scan.images,
            size=config.size,
            batch=config.batch,
            seed=config.seed,
            process_index=accelerator.process_index,
            num_processes=accelerator.num_processes,
        )
        bar = tqdm(
            total=config.steps,
            initial=self.step,
            disable=not (config.progress and accelerator.is_local_main_process),
            desc="train",
        )
        eval_every = config.eval_every or config.save_every
        for batch in train_data.step_loader(dataset, self.step, config.steps, config.workers):
            scalars = self.train_step(batch)
            self.step += 1
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in scalars.items()})
            if self.tracker is not None:
                self.tracker.log(scalars, step=self.step)
            if self.step % config.save_every == 0 or self.step == config.steps:
                self.save_checkpoint()
            if self.step % eval_every == 0 or self.step == config.steps:
                self.evaluate_sheet()
        bar.close()
        final = self.export(self.out)
        if self.out.parent == config.models_dir / TRAINING_DIR:
            self.published = self.export(config.models_dir / "layer_model")
        accelerator.wait_for_everyone()
        if self.tracker is not None:
            self.tracker.finish()
        return final

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimisation step of the pair, then (after `disc_start`) of the discriminator."""
        config, accelerator = self.config, self.accelerator
        layout = torch.channels_last
        rgba = batch["rgba"].to(accelerator.device, memory_format=layout)
        padded = batch["padded"].to(accelerator.device, memory_format=layout)
        disc_on = self.step >= config.disc_start
        pair = accelerator.unwrap_model(self.pair)
        with accelerator.autocast():
            stats = posterior(self.vae, padded)
            out = self.pair(self.vae, rgba, padded, stats)
            terms = generator_terms(
                out,
                rgba,
                padded,
                self.disc if disc_on else None,
                pair.decoder.conv_out.weight,
                identity_weight=config.identity_weight,
                disc_weight=config.disc_weight,
            )
        self.opt_g.zero_grad(set_to_none=True)
        accelerator.backward(terms.total)
        self.opt_g.step()
        scalars = terms.scalars()
        if disc_on:
            self.opt_d.zero_grad(set_to_none=True)  # drop what the generator phase left
            predicted = out["predicted"].detach()
            with accelerator.autocast():
                real = self.disc(premultiplied(rgba[:, 3:], rgba[:, :3]))
                fake = self.disc(
                    premultiplied(predicted[:, :1].clamp(0, 1), predicted[:, 1:].clamp(0, 1))
                )
                d_loss = hinge_d_loss(real.float(), fake.float())
            accelerator.backward(d_loss)
            for parameter in self.disc.parameters():
                if parameter.grad is not None and accelerator.num_processes > 1:
                    parameter.grad = accelerator.reduce(parameter.grad, reduction="mean")
            self.opt_d.step()
            scalars["d"] = float(d_loss.detach())
        values = torch.tensor(list(scalars.values()), device=accelerator.device)
        values = accelerator.reduce(values, reduction="mean")
        return dict(zip(scalars, values.tolist(), strict=True))

    # ---- outputs ------------------------------------------------------------------------------

    def _info(self) -> dict[str, str]:
        return {
            "acetate.base_vae": self.base.label,
            "acetate.data_hash": self.data_hash,
            "acetate.steps": str(self.step),
            "acetate.init": self.init_label,
            "acetate.image_size": str(self.config.size),
        }

    def export(self, folder: Path) -> dict[str, Path]:
        """The current encoder/decoder in the official layouts (main process writes)."""
        pair = self.accelerator.unwrap_model(self.pair)
        name = self.out.name
        prefix = name if name.startswith("acetate") else f"acetate-{name}"
        paths = {
            role: folder / file_name(prefix, self.base.family, role)
            for role in ("transparent_decoder", "transparent_encoder")
        }
        if self.accelerator.is_main_process:
            info, family = self._info(), self.base.family
            for role, module in (
                ("transparent_decoder", pair.decoder),
                ("transparent_encoder", pair.encoder),
            ):
                export_model(module, paths[role], family=family, role=role, info=info)
        return paths

    def save_checkpoint(self) -> Path:
        folder = self.out / CHECKPOINTS / f"step-{self.step:07d}"
        if self.accelerator.is_main_process:
            folder.mkdir(parents=True, exist_ok=True)
            self.export(folder)
            parts = {
                "disc": self.disc.state_dict(),
                "optimizer_g": self.opt_g.state_dict(),
                "optimizer_d": self.opt_d.state_dict(),
                "rng": {"torch": torch.get_rng_state()},
            }
            info = {
                "step": self.step,
                "flags": self.config.recorded(),
                "extra": self._extra(),
            }
            save_state(folder, parts, info)
        self.accelerator.wait_for_everyone()
        return folder

    def eval_crops(self) -> tuple[list[Any], list[str]]:
        config = self.config
        scan = (
            self.scan
            if config.eval_data is None
            else train_data.scan_folder(config.eval_data, flag="--eval-data")
        )
        paths = scan.images[:EVAL_IMAGES]
        crops = [train_data.centre_crop(train_data.read_rgba(p), config.size) for p in paths]
        return crops, [p.name for p in paths]

    def evaluate_sheet(self) -> dict[str, Any] | None:
        """Metrics (fast decode) and a contact sheet of a few images, main process only."""
        if not self.accelerator.is_main_process:
            return None
        pair = self.accelerator.unwrap_model(self.pair)
        crops, names = self.eval_crops()
        prediction = train_eval.predict(self.vae, pair.encoder, pair.decoder, crops, tta=False)
        train_eval.contact_sheet(prediction, self.out / "sheets" / f"step-{self.step:07d}.png")
        metrics = {
            key: float(sum(train_eval.image_metrics(prediction, i)[key] for i in range(len(names))))
            / len(names)
            for key in ("alpha_psnr", "rgb_psnr_weighted", "harmless_psnr_vs_plain")
        }
        if self.tracker is not None:
            self.tracker.log({f"eval/{k}": v for k, v in metrics.items()}, step=self.step)
        return metrics
