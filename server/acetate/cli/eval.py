"""`acetate eval transparency`: measure transparency encoder/decoder pairs on RGBA images."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from acetate.cli.common import add_store_options, models_dir

DESCRIPTION = """\
Per image and mean: alpha PSNR and MAE, RGB PSNR weighted by alpha, composite PSNR over
black/white/grey, harmlessness (the frozen SD decoder on the adjusted vs the plain latent, and
vs the original) and the fast-vs-tta decode difference. Prints a Markdown table; --out writes
report.json, report.md and a contact sheet per pair.

  acetate eval transparency --data DIR --base NAME                       the released pair
  acetate eval transparency --data DIR --decoder D.safetensors --encoder E.safetensors
  acetate eval transparency --data DIR --compare official RUN_DIR        side by side
A pair is `official`, a trained run/checkpoint folder, or DECODER,ENCODER files.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate transparency encoder/decoder pairs", description="Evaluations."
    )
    what = parser.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    sub = what.add_parser(
        "transparency",
        help="measure encoder/decoder pairs on RGBA images",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("--data", type=Path, required=True, metavar="DIR", help="RGBA images")
    sub.add_argument("--base", default=None, help="base model name/path or AutoencoderKL folder")
    sub.add_argument("--decoder", type=Path, metavar="FILE", help="transparent decoder file")
    sub.add_argument("--encoder", type=Path, metavar="FILE", help="transparency encoder file")
    sub.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two pairs side by side")
    sub.add_argument("--size", type=int, default=256, help="centre crop side (multiple of 64)")
    sub.add_argument("--limit", type=int, default=0, metavar="N", help="first N images only")
    sub.add_argument("--decode", choices=("tta", "fast"), default="tta", help="metrics from")
    sub.add_argument("--out", type=Path, metavar="DIR", help="write report.json/.md and sheets")
    add_store_options(sub)
    sub.set_defaults(run=run)


def _pairs(args: argparse.Namespace) -> dict[str, str]:
    from acetate.errors import InputError

    if args.compare and (args.decoder or args.encoder):
        raise InputError("--compare cannot be combined with --decoder/--encoder", field="--compare")
    if bool(args.decoder) != bool(args.encoder):
        flag = "--encoder" if args.decoder else "--decoder"
        raise InputError(f"{flag} is needed too: give both files of a pair", field=flag)
    if args.compare:
        a, b = args.compare
        if a == b:
            raise InputError("--compare needs two different pairs", field="--compare")
        return {a: a, b: b}
    if args.decoder:
        return {"given": f"{args.decoder},{args.encoder}"}
    return {"official": "official"}


def _load_pair(spec: str, base: Any, store: Any, flag: str) -> tuple[Any, Any]:
    from acetate.engine.nets.transparent_vae import (
        load_transparent_decoder,
        load_transparent_encoder,
    )
    from acetate.train.init import official_files, pair_files

    if spec == "official":
        files = official_files(store, base.family, base.tiny, flag)
    else:
        files = pair_files(spec, flag)
    return (
        load_transparent_encoder(files["transparent_encoder"]),
        load_transparent_decoder(files["transparent_decoder"]),
    )


def run(args: argparse.Namespace) -> int:
    import json

    from acetate.engine.store.models import ModelStore
    from acetate.errors import InputError
    from acetate.export.atomic import write_bytes_atomic
    from acetate.train import data as train_data
    from acetate.train import evaluate as train_eval
    from acetate.train.base_vae import load_base_vae

    if args.size < 64 or args.size % 64:
        raise InputError(f"--size must be a multiple of 64, got {args.size}", field="--size")
    pairs = _pairs(args)
    scan = train_data.scan_folder(args.data)
    images = scan.images[: args.limit] if args.limit > 0 else scan.images
    crops = [train_data.centre_crop(train_data.read_rgba(p), args.size) for p in images]
    names = [p.relative_to(scan.root).as_posix() for p in images]
    store = ModelStore(models_dir(args), args.extra_models_dir, hf_cache=False)
    base = load_base_vae(args.base, models_dir(args), args.extra_models_dir)
    results: dict[str, dict[str, Any]] = {}
    for label, spec in pairs.items():
        flag = "--compare" if args.compare else "--decoder" if args.decoder else "--base"
        encoder, decoder = _load_pair(spec, base, store, flag)
        results[label] = train_eval.evaluate(
            base.vae, encoder, decoder, crops, names, tta=args.decode == "tta"
        )
        if args.out is not None:
            prediction = train_eval.predict(base.vae, encoder, decoder, crops[:8], tta=False)
            safe = "".join(c if c.isalnum() else "-" for c in label)[-60:]
            train_eval.contact_sheet(prediction, args.out / f"sheet-{safe}.png")
    table = train_eval.markdown(results)
    report = {"base": base.label, "data": str(scan.root), "skipped": len(scan.skipped)}
    report["pairs"] = {label: {"spec": spec, **results[label]} for label, spec in pairs.items()}
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(args.out / "report.json", json.dumps(report, indent=1).encode())
        write_bytes_atomic(args.out / "report.md", table.encode())
    print(scan.summary())
    print(table, end="")
    return 0
