"""The download catalog (`catalog.json`): official LayerDiffusion files, suggested bases and
ControlNets by name, and `download(name)` for `acetate models get` (huggingface_hub)."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from acetate.errors import AcetateError, InputError

CATALOG_FILE = Path(__file__).resolve().parent / "catalog.json"
SECTIONS = ("layer_files", "bases", "controlnets", "tokenizers")


@lru_cache(maxsize=1)
def load_catalog() -> dict[str, dict[str, dict[str, Any]]]:
    data = json.loads(CATALOG_FILE.read_text(encoding="utf-8"))
    return {section: data.get(section, {}) for section in SECTIONS}


def entry(name: str) -> dict[str, Any]:
    """The catalog entry for `name` (any section); `InputError` listing the names if unknown."""
    for section in load_catalog().values():
        if name in section:
            return section[name]
    known = ", ".join(n for section in load_catalog().values() for n in section)
    raise InputError(f"unknown model name {name!r}; known: {known}", field="name")


def where_to_get(kind: str, models_dir: Path) -> dict[str, str]:
    """File name, destination folder, source URL and command for an official layer file."""
    item = load_catalog()["layer_files"][kind]
    (source, target), *_ = item["files"].items()
    return {
        "file": target,
        "folder": str(Path(models_dir) / item["folder"]),
        "url": f"https://huggingface.co/{item['repo']}/resolve/main/{source}",
        "command": f"acetate models get {kind}",
    }


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def download(name: str, models_dir: Path) -> list[Path]:
    """Download a catalog entry (and what it lists under `also`); returns the written paths.

    Files with a `folder` land in `<models_dir>/<folder>/`; `cache` files go to the Hugging Face
    cache, where the store finds them (tokenizers). Offline or failed downloads raise an
    `AcetateError` with a one-line message.
    """
    item = entry(name)
    if _offline():
        raise AcetateError(
            f"cannot download {name}: offline (HF_HUB_OFFLINE is set); get "
            f"{', '.join(item.get('files', item.get('cache', [])))} from "
            f"huggingface.co/{item['repo']} by hand",
            code="offline",
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    written: list[Path] = []
    try:
        for also in item.get("also", []):
            written += download(also, models_dir)
        for source in item.get("cache", []):
            written.append(Path(hf_hub_download(item["repo"], source)))
        folder = Path(models_dir) / item.get("folder", "")
        for source, target in item.get("files", {}).items():
            folder.mkdir(parents=True, exist_ok=True)
            got = Path(hf_hub_download(item["repo"], source, local_dir=folder))
            final = folder / target
            if got != final:
                os.replace(got, final)
            written.append(final)
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise AcetateError(
            f"download of {name} from huggingface.co/{item['repo']} failed: {first_line}",
            code="download_failed",
        ) from error
    return written
