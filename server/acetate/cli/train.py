"""`acetate train transparency`: fine-tune the latent transparency encoder/decoder.

Runs as is on one device, or under `accelerate launch` (data parallel on N GPUs or nodes):
    accelerate launch --num_processes 2 -m acetate train transparency --data DIR …
"""

from __future__ import annotations

import argparse
from pathlib import Path

from acetate.cli import train_layer
from acetate.cli.common import add_store_options, models_dir

DESCRIPTION = """\
Train a transparency encoder/decoder pair (arXiv 2402.17113 §3) on a folder of RGBA images
(PNG/WebP/TIFF, nested folders, straight alpha) against the frozen VAE of --base. Writes
checkpoints in the official layouts (they load unchanged in Acetate, Forge and ComfyUI) with
metadata telling them apart from the released files, a contact sheet per evaluation, and the
final pair in --out. --resume OUT continues a run exactly.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune the transparency encoder/decoder on your RGBA images",
        description="Training commands.",
    )
    what = parser.add_subparsers(dest="train_command", metavar="WHAT", required=True)
    sub = what.add_parser(
        "transparency",
        help="train the latent transparency encoder/decoder",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("--data", type=Path, required=True, metavar="DIR", help="RGBA images")
    sub.add_argument("--base", default=None, help="base model name/path or AutoencoderKL folder")
    sub.add_argument(
        "--init",
        default="official",
        metavar="official|FILE|scratch",
        help="start from the released files (default), a trained folder or "
        "DECODER,ENCODER files, or random weights",
    )
    sub.add_argument("--arch", choices=("full", "tiny"), default="full", help="widths for scratch")
    sub.add_argument("--steps", type=int, default=1000)
    sub.add_argument("--batch", type=int, default=4, help="images per step and process")
    sub.add_argument("--size", type=int, default=256, help="crop side, a multiple of 64")
    sub.add_argument("--lr", type=float, default=1e-4)
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    sub.add_argument("--gradient-checkpointing", action="store_true")
    sub.add_argument("--save-every", type=int, default=500, metavar="N")
    sub.add_argument("--eval-every", type=int, default=0, metavar="N", help="default: --save-every")
    sub.add_argument("--eval-data", type=Path, metavar="DIR", help="held-out images for sheets")
    sub.add_argument("--disc-start", type=int, default=1000, metavar="STEP")
    sub.add_argument("--disc-width", type=int, default=64, help="PatchGAN filters")
    sub.add_argument("--workers", type=int, default=2, help="data loading processes")
    sub.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="run folder (default: a new one in <models>/training/, the final pair also "
        "copied to <models>/layer_model/)",
    )
    sub.add_argument("--resume", type=Path, default=None, metavar="DIR")
    sub.add_argument("--cpu", action="store_true", help="train on the CPU even with a GPU")
    sub.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_store_options(sub)
    sub.set_defaults(run=run)
    train_layer.add_parser(what)


def run(args: argparse.Namespace) -> int:
    from acetate.errors import InputError
    from acetate.train.loop import TrainConfig, Trainer

    if args.resume is not None and not args.resume.is_dir():
        raise InputError(f"--resume: {args.resume} is not a folder", field="--resume")
    if args.init not in ("official", "scratch") and not Path(args.init.split(",")[0]).exists():
        raise InputError(
            f"--init must be official, scratch or a file/folder; {args.init} does not exist",
            field="--init",
        )
    config = TrainConfig(
        data=args.data,
        base=args.base,
        models_dir=models_dir(args),
        extra_dirs=list(args.extra_models_dir),
        out=args.out,
        init=args.init,
        arch=args.arch,
        steps=args.steps,
        batch=args.batch,
        size=args.size,
        lr=args.lr,
        seed=args.seed,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing,
        save_every=args.save_every,
        eval_every=args.eval_every,
        eval_data=args.eval_data,
        disc_start=args.disc_start,
        disc_width=args.disc_width,
        workers=args.workers,
        resume=args.resume,
        cpu=args.cpu,
        progress=not args.no_progress,
    )
    trainer = Trainer(config)
    final = trainer.run()
    if trainer.accelerator.is_main_process:
        for role, path in final.items():
            print(f"{role.replace('_', ' ')}: {path}")
        for path in trainer.published.values():
            print(f"published to the model store: {path}")
    return 0
