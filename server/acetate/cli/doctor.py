"""`acetate doctor`: what this machine has, what Acetate found, and what is missing."""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import shutil
import sys

from acetate.cli import places
from acetate.cli.common import (
    add_engine_options,
    add_store_options,
    engine_options,
    extra_models_dirs,
)

PACKAGES = ("torch", "diffusers", "transformers", "safetensors", "aiohttp", "psd-tools", "Pillow")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("doctor", help="check the installation and the model store")
    add_store_options(parser)
    add_engine_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from acetate import __version__

    print(f"acetate {__version__} on Python {platform.python_version()} ({sys.platform})")
    for package in PACKAGES:
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            version = "MISSING"
        print(f"  {package:<13} {version}")

    from acetate.engine.engine import resolve_device

    device, dtype = resolve_device(engine_options(args))
    print(f"device: {device} ({str(dtype).removeprefix('torch.')})")
    if device.type == "cuda":
        import torch

        free, total = torch.cuda.mem_get_info(device)
        name = torch.cuda.get_device_name(device)
        print(f"  {name}: {free / 2**30:.1f} of {total / 2**30:.1f} GiB free")
    from acetate.engine.nets.decoder_paths import explain

    for line in explain(device, dtype, engine_options(args).decoder):
        print(line)

    settings_file = places.config_file()
    settings = places.load_settings(settings_file)
    models = places.models_place(args.models_dir, settings)
    results = places.output_place(None, settings)
    if settings_file is None:
        print(f"settings: none ({places.CONFIG_ENV} is empty)")
    else:
        state = "present" if settings_file.is_file() else "not written yet"
        print(f"settings: {settings_file} ({state})")
    print(f"models folder: {models.path} (from {models.source})")
    extras = extra_models_dirs(args)
    for extra in extras:
        print(f"  linked folder: {extra}{'' if extra.is_dir() else ' (MISSING)'}")
    print(f"results folder: {results.path} (from {results.source})")

    from acetate.engine.store.models import ModelStore

    store = ModelStore(models.path, extras)
    summary = store.describe()
    bases = summary.get("bases", [])
    real = [base for base in bases if not base.get("tiny")]
    tiny = len(bases) - len(real)
    print(f"models: {len(real)} real base model(s), {tiny} test model(s)")
    for base in bases:
        usable = [mode for mode, missing in base.get("modes", {}).items() if not missing]
        flag = " [test model]" if base.get("tiny") else ""
        print(f"  {base['name']} ({base['family']}){flag}: {', '.join(usable) or 'no usable mode'}")
    for tool in ("krita", "gimp", "identify", "node"):
        print(f"{tool}: {shutil.which(tool) or 'not found'}")
    return 0
