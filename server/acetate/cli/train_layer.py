"""`acetate train layer-model`: fine-tune the transparent layer model on captioned RGBA images.

Runs as is on one device, or under `accelerate launch` (data parallel on N GPUs or nodes):
    accelerate launch --num_processes 2 -m acetate train layer-model --data DIR …
"""

from __future__ import annotations

import argparse
from pathlib import Path

from acetate.cli.common import add_store_options, models_dir

DESCRIPTION = """\
Fine-tune the transparent layer model (arXiv 2402.17113 §3.2) on RGBA images with captions
(a .txt next to each image, or a metadata.jsonl of {"file": …, "text": …} lines). The latents
are "latent transparency" latents: the frozen VAE's posterior plus the transparency encoder's
offset. SDXL trains a peft LoRA on the attention projections the official
layer_xl_transparent_attn patches; SD1.5 trains the attention-sharing units of
layer_sd15_transparent_attn. The result is a file in the official format (Forge, ComfyUI and
Acetate load it unchanged), named so it never replaces a released file; use it with
`acetate generate --layer-model NAME` or a job's `layer_files`.
"""


def add_parser(what: argparse._SubParsersAction) -> None:
    sub = what.add_parser(
        "layer-model",
        help="fine-tune the transparent layer model on captioned RGBA images",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = sub.add_argument_group("data")
    data.add_argument("--data", type=Path, required=True, metavar="DIR", help="RGBA images")
    data.add_argument("--default-caption", metavar="TEXT", help="for images without a caption")
    data.add_argument(
        "--caption-dropout", type=float, default=0.0, metavar="P",
        help="train this fraction of samples with an empty caption (for CFG)",
    )  # fmt: skip
    data.add_argument(
        "--resolution", type=int, metavar="PX",
        help="square bucket side; other buckets keep its area, sides multiples of 64, aspect "
        "≤ 2:1 (default: 1024 SDXL, 512 SD1.5, 64 test models)",
    )  # fmt: skip
    data.add_argument("--random-flip", action="store_true", help="flip samples horizontally")
    data.add_argument(
        "--cache-latents", action="store_true",
        help="encode each image once (centre crops; not with --random-flip)",
    )  # fmt: skip
    model = sub.add_argument_group("model")
    model.add_argument("--base", help="SDXL or SD1.5 base: a name, a single file or a folder")
    model.add_argument(
        "--init", default="official", metavar="official|zero|NAME|FILE",
        help="start from the released layer model (default), nothing, or a file of its format",
    )  # fmt: skip
    model.add_argument(
        "--encoder", metavar="NAME|FILE",
        help="transparency encoder making the latents (default: the released one)",
    )  # fmt: skip
    model.add_argument("--rank", type=int, help="LoRA rank (default: the --init file's, or 256)")
    train = sub.add_argument_group("training")
    train.add_argument("--steps", type=int, default=1000)
    train.add_argument("--batch", type=int, default=1, help="images per step and process")
    train.add_argument("--lr", type=float, default=1e-4)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    train.add_argument("--gradient-checkpointing", action="store_true")
    train.add_argument("--use-8bit-adam", action="store_true", help="CUDA + bitsandbytes")
    train.add_argument("--noise-offset", type=float, default=0.0, metavar="X")
    train.add_argument(
        "--snr-gamma", type=float, metavar="G", help="min-SNR loss weighting (5 is usual)"
    )
    train.add_argument("--workers", type=int, default=2, help="data loading processes")
    train.add_argument("--cpu", action="store_true", help="train on the CPU even with a GPU")
    out = sub.add_argument_group("outputs")
    out.add_argument(
        "--out", type=Path, metavar="DIR",
        help="run folder (default: a new one in <models>/training/, the final file also "
        "copied to <models>/layer_model/)",
    )  # fmt: skip
    out.add_argument("--save-every", type=int, default=500, metavar="N")
    out.add_argument(
        "--validate-every", type=int, default=0, metavar="N", help="default: --save-every"
    )
    out.add_argument(
        "--validation-prompt", action="append", default=[], metavar="TEXT",
        help="sample prompt (repeatable; default: the first captions)",
    )  # fmt: skip
    out.add_argument("--validation-steps", type=int, default=20, metavar="N")
    out.add_argument("--resume", type=Path, metavar="DIR", help="continue this run exactly")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_store_options(sub)
    sub.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from acetate.errors import InputError
    from acetate.train.layer.config import LayerTrainConfig
    from acetate.train.layer.loop import LayerTrainer

    if args.resume is not None and not args.resume.is_dir():
        raise InputError(f"--resume: {args.resume} is not a folder", field="--resume")
    config = LayerTrainConfig(
        data=args.data,
        base=args.base,
        models_dir=models_dir(args),
        extra_dirs=list(args.extra_models_dir),
        out=args.out,
        init=args.init,
        encoder=args.encoder,
        rank=args.rank,
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        resolution=args.resolution,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing,
        use_8bit_adam=args.use_8bit_adam,
        noise_offset=args.noise_offset,
        snr_gamma=args.snr_gamma,
        caption_dropout=args.caption_dropout,
        default_caption=args.default_caption,
        random_flip=args.random_flip,
        cache_latents=args.cache_latents,
        seed=args.seed,
        save_every=args.save_every,
        validate_every=args.validate_every,
        validation_prompts=list(args.validation_prompt),
        validation_steps=args.validation_steps,
        workers=args.workers,
        resume=args.resume,
        cpu=args.cpu,
        progress=not args.no_progress,
    )
    trainer = LayerTrainer(config)
    final = trainer.run()
    if trainer.accelerator.is_main_process:
        print(f"layer model: {final}")
        if trainer.published is not None:
            print(f"published to the model store: {trainer.published}")
    return 0
