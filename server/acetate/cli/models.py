"""`acetate models [--json] | check FILE… | tiny | get NAME | link DIR | unlink DIR | optimize`:
the model store from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from acetate.cli import optimize
from acetate.cli.common import add_store_options, extra_models_dirs, models_dir
from acetate.errors import InputError

FAMILY = {"sd15": "SD1.5", "sdxl": "SDXL", "qwen_layered": "Qwen-Image-Layered"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list models, what each mode still needs, check or download files",
        description="Without a sub-command: list base models, layer files, ControlNets, LoRAs, "
        "embeddings, refused files and, per base, the modes it can run and the files still "
        "missing.",
    )
    add_store_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run_list)
    commands = parser.add_subparsers(
        dest="models_command", metavar="{check,tiny,get,link,unlink,optimize}"
    )

    check = commands.add_parser(
        "check", help="identify LayerDiffusion files and check them against the full-size base"
    )
    check.add_argument("files", type=Path, nargs="+", metavar="FILE")
    check.add_argument(
        "--kind", help="official file stem, for a renamed file whose header is ambiguous"
    )
    check.add_argument("--json", action="store_true", help="print JSON instead of text")
    check.set_defaults(run=run_check)

    tiny = commands.add_parser("tiny", help="build the tiny test models and print their paths")
    _models_dir_option(tiny)
    tiny.set_defaults(run=run_tiny)

    get = commands.add_parser(
        "get", help="download an official layer file, a base or a ControlNet (needs internet)"
    )
    get.add_argument("name", metavar="NAME", help="a name from the catalog, e.g. layer_xl_fg2ble")
    _models_dir_option(get)
    get.set_defaults(run=run_get)

    link = commands.add_parser(
        "link",
        help="record an existing ComfyUI / Forge / A1111 models folder in the settings file",
        description="Adds DIR to extra_models_dirs of the settings file (`acetate doctor` shows "
        "where it is), so every later command searches it without --extra-models-dir.",
    )
    link.add_argument("folder", type=Path, metavar="DIR")
    link.set_defaults(run=run_link)
    unlink = commands.add_parser("unlink", help="forget a folder recorded with `link`")
    unlink.add_argument("folder", type=Path, metavar="DIR")
    unlink.set_defaults(run=run_unlink)
    optimize.add_parser(commands)


def _models_dir_option(parser: argparse.ArgumentParser) -> None:
    """`--models-dir` after the sub-command too; no default, so one given before it stays."""
    parser.add_argument(
        "--models-dir", type=Path, default=argparse.SUPPRESS, help="model store folder"
    )


def _store(args: argparse.Namespace) -> Any:
    from acetate.engine.store.models import ModelStore

    return ModelStore(models_dir(args), extra_models_dirs(args))


def run_list(args: argparse.Namespace) -> int:
    summary = _store(args).describe()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print("\n".join(format_summary(summary)))
    return 0


def format_summary(summary: dict[str, Any]) -> list[str]:
    """The text form of `ModelStore.describe()`."""
    lines = [f"models folder: {summary['models_dir']}"]
    lines += [f"extra folder: {extra}" for extra in summary["extra_dirs"]]
    lines += ["", "base models:"]
    for base in summary["bases"]:
        flag = "  [test model: random weights]" if base["tiny"] else ""
        where = "built in" if base["tiny"] and base["source"] == "tiny" else base["path"]
        lines.append(f"  {base['name']}  {FAMILY[base['family']]}  {base['format']}  {where}{flag}")
        lines += _split_parts(base.get("parts"))
        usable = [mode for mode, missing in base["modes"].items() if not missing]
        lines.append(f"    usable modes: {', '.join(usable) or 'none yet'}")
        for mode, missing in base["modes"].items():
            if missing:
                lines.append(f"    {mode} needs: {', '.join(missing)}")
        for mode, reason in base["unsupported_modes"].items():
            lines.append(f"    {mode}: unavailable: {reason}")
    real_layers = [f for f in summary["layer_files"] if not f["tiny"]]
    lines += ["", "layer files:" if real_layers else "layer files: none"]
    for layer in real_layers:
        extra = ""
        if layer["frames"] is not None:
            extra = f"  frames={layer['frames']} control={'yes' if layer['use_control'] else 'no'}"
        trained = layer.get("trained")
        if trained:  # `acetate train` output: used only where named (`layer_files`)
            steps, data = trained.get("acetate.steps", "?"), trained.get("acetate.data_hash", "")
            extra += f"  trained: {steps} steps, data {data[:8] or '?'}"
        lines.append(
            f"  {layer['name']}  {layer['kind']}  {FAMILY[layer['family']]}{extra}  {layer['path']}"
        )
    real_controlnets = [c for c in summary["controlnets"] if not c["tiny"]]
    lines += ["", "ControlNets:" if real_controlnets else "ControlNets: none"]
    for info in real_controlnets:
        lines.append(
            f"  {info['name']}  {FAMILY[info['family']]}  {info['format']}  {info['path']}"
        )
    tiny_files = len(summary["layer_files"]) - len(real_layers)
    if tiny_files:
        lines.append(f"(+ {tiny_files} tiny test layer files and the tiny ControlNets)")
    lines += _style_lines("LoRAs (request field `loras`)", summary.get("loras", []))
    lines += _style_lines("embeddings (write the name in a prompt)", summary.get("embeddings", []))
    if summary["refused"]:
        lines += ["", "refused:"]
        lines += [f"  {item['path']}: {item['reason']}" for item in summary["refused"]]
    if summary["get"]:
        folders = sorted({item["folder"] for item in summary["get"].values()})
        lines += ["", f"to get: put these in {', '.join(folders)}/ (`acetate models get NAME`):"]
        lines += [f"  {item['file']}  {item['url']}" for item in summary["get"].values()]
    qwen = summary.get("decompose_files")
    if qwen:
        size = qwen["bytes"] / 1e9
        lines += ["", f"to split images into layers (decompose): {qwen['repo']} ({size:.1f} GB, "
                  f"{qwen['url']}), put in {qwen['put_in']}:"]  # fmt: skip
        lines += [
            f"  {p['folder']}  " + (f"{p['bytes'] / 1e9:.3f} GB" if p["bytes"] else "small")
            for p in qwen["parts"]
        ]
        lines.append(f"  ({qwen['note']})")
        split = qwen.get("split")
        if split:
            lines += [
                f"  or: ComfyUI's {split['transformer_file']} "
                f"({split['transformer_bytes'] / 1e9:.1f} GB) in {split['put_file_in']}, plus "
                f"the folder without transformer/ ({split['folder_bytes'] / 1e9:.1f} GB):",
                f"    {split['folder_command']}",
            ]
    if summary["warnings"]:
        lines += [""] + [f"warning: {warning}" for warning in summary["warnings"]]
    return lines


def _style_lines(title: str, items: list[dict[str, Any]]) -> list[str]:
    """LoRAs or embeddings: name, family, format, where from; test ones flagged."""
    lines = ["", f"{title}:" if items else f"{title}: none"]
    for item in items:
        vectors = f"  {item['vectors']} vectors" if "vectors" in item else ""
        where = "built in" if item["source"] == "tiny" else f"{item['source']}  {item['path']}"
        flag = "  [test model]" if item["tiny"] else ""
        family = FAMILY.get(item["family"], item["family"])
        lines.append(f"  {item['name']}  {family}  {item['format']}{vectors}  {where}{flag}")
    return lines


def _split_parts(parts: dict[str, str] | None) -> list[str]:
    """Where a Qwen-Image-Layered base paired from ComfyUI's transformer file and a folder
    without transformer/ takes each part."""
    if not parts:
        return []
    rest = {name: path for name, path in parts.items() if name != "transformer"}
    folder = str(Path(next(iter(rest.values()))).parent) if rest else "?"
    return [
        f"    paired: transformer from the single file {parts['transformer']}",
        f"            {', '.join(rest)} from the folder {folder}",
    ]


def run_check(args: argparse.Namespace) -> int:
    results = [_check(path, args.kind) for path in args.files]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            if "error" in result:
                print(f"acetate models check: error: {result['error']}", file=sys.stderr)
            else:
                print(f"{result['path']}: {result['summary']}")
    return 0 if all("error" not in result for result in results) else 2


def _check(path: Path, kind: str | None) -> dict[str, Any]:
    from acetate.engine.store.family import PICKLE_REASON, PICKLE_SUFFIXES
    from acetate.engine.store.identify import describe, identify_layer_file, verify_full_size
    from acetate.errors import ModelFileError

    if not path.is_file():
        return {
            "path": str(path),
            "error": f"{path}: no such file" if not path.exists() else f"{path}: not a file",
        }
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return {"path": str(path), "error": f"{path.name}: {PICKLE_REASON}"}
    try:
        identity = identify_layer_file(path, kind=kind)
        if not identity.tiny:
            verify_full_size(identity)
    except ModelFileError as error:
        other = _other_model(path)
        if other is None or kind is not None:
            return {"path": str(path), "error": error.message}
        return {"path": str(path), "summary": other}
    facts = [f"{identity.kind} ({FAMILY[identity.family]} {identity.role.replace('_', ' ')})"]
    if identity.frames is not None:
        control = "with" if identity.use_control else "without"
        facts.append(f"{identity.frames} frame(s) {control} control image")
    if identity.role == "transparent_encoder":
        facts.append(f"offset scale x{identity.encoder_offset_scale:g}")
    facts.append("tiny test file" if identity.tiny else "maps onto the full-size base: ok")
    if identity.trained:
        trained = identity.trained
        made = ", ".join(
            f"{label} {trained[key]}"
            for key, label in (("acetate.steps", "steps"), ("acetate.base", "base"),
                               ("acetate.base_vae", "base VAE"), ("acetate.init", "init"))
            if key in trained
        )  # fmt: skip
        facts.append(f"trained by Acetate ({made})")
    return {**describe(identity), "summary": "; ".join(facts)}


def _other_model(path: Path) -> str | None:
    """A one-line description when `path` is a base checkpoint or ControlNet instead."""
    from acetate.engine.store.family import detect_checkpoint, detect_controlnet_file, read_header
    from acetate.errors import ModelFileError

    try:
        header = read_header(path)
    except ModelFileError:
        return None
    for what, detect in (
        ("base checkpoint", detect_checkpoint),
        ("ControlNet", detect_controlnet_file),
    ):
        detection = detect(path, header)
        if detection.family is not None:
            tiny = ", tiny test model" if detection.tiny else ""
            return f"{FAMILY[detection.family]} {what}{tiny} (not a LayerDiffusion layer file)"
    return None


def run_tiny(args: argparse.Namespace) -> int:
    from acetate.engine.tiny.bases import ensure_tiny_models
    from acetate.engine.tiny.qwen_layered import ensure_tiny_qwen

    root = ensure_tiny_models(models_dir(args))
    print(ensure_tiny_qwen(models_dir(args)))  # decompose's test model
    for path in sorted(
        p
        for sub in ("checkpoints", "controlnet", "layer_model", "loras", "embeddings")
        for p in (root / sub).iterdir()
    ):
        print(path)
    return 0


def run_get(args: argparse.Namespace) -> int:
    from acetate.engine.store.catalog import download

    if not args.name.strip():
        raise InputError("give a model name", field="name")
    for path in download(args.name, models_dir(args)):
        print(path)
    return 0


def run_link(args: argparse.Namespace) -> int:
    from acetate.cli import places
    from acetate.engine.store.discovery import category_folders

    folder: Path = args.folder
    if not folder.expanduser().is_dir():
        raise InputError(f"{folder}: no such folder", field="DIR")
    if not category_folders(folder.expanduser()):
        raise InputError(
            f"{folder}: not a models folder or a ComfyUI / Forge / A1111 install (no "
            "checkpoints/, Stable-diffusion/, controlnet/ or layer_model/ in it or its models/)",
            field="DIR",
        )
    settings_file, added = places.link(folder)
    state = "linked" if added else "already linked"
    print(f"{state}: {folder.expanduser().resolve()} (recorded in {settings_file})")
    return 0


def run_unlink(args: argparse.Namespace) -> int:
    from acetate.cli import places

    if not places.unlink(args.folder):
        raise InputError(f"{args.folder} is not linked (see {places.config_file()})", field="DIR")
    print(f"unlinked: {args.folder} (from {places.config_file()})")
    return 0
