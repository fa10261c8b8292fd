"""What `acetate serve` sets up and says before it starts serving."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from acetate import __version__
from acetate.api.config import ServerConfig
from acetate.jobs.worker import GenerationEngine


def open_models(models_dir: Path, extra_dirs: Sequence[Path]) -> tuple[Any, list[str]]:
    """The model store, and notes for the first lines when only the tiny test models exist
    (the store builds them on first use)."""
    from acetate.engine.store.models import ModelStore

    store = ModelStore(models_dir, list(extra_dirs))
    if any(not base.tiny for base in store.bases()):
        return store, []
    return store, [
        f"No real base model found in {models_dir}: serving the TINY TEST MODELS tiny-sdxl and "
        "tiny-sd15 (random weights: they make noise, not pictures; built on first use).",
        "Put checkpoints and LayerDiffusion files under models/ (see `acetate models`).",
    ]


def startup_lines(config: ServerConfig, engine: GenerationEngine, store: Any) -> list[str]:
    """URL, device, models found and the modes each can run."""
    shown = "[::1]" if config.host == "::1" else config.host
    url = f"http://{'127.0.0.1' if config.listen else shown}:{config.port}"
    lines = [f"Acetate {__version__} server on {url} (device {engine.device_name})"]
    if config.listen:
        lines.append(f"Listening on all interfaces, port {config.port}; token required.")
    elif config.token:
        lines.append("Token required (Authorization: Bearer …).")
    lines.append(f"Results kept in {config.output_dir}")
    bases = store.describe().get("bases", [])
    lines.append(f"Models ({len(bases)}):")
    for base in bases:
        usable = [mode for mode, missing in base.get("modes", {}).items() if not missing]
        flag = " [test model]" if base.get("tiny") else ""
        modes = ", ".join(usable) or "no usable mode"
        lines.append(f"  {base.get('name')} ({base.get('family')}){flag}: {modes}")
    if not bases:
        lines.append("  none — see `acetate models` for what to download")
    lines.append("Press Ctrl-C to stop.")
    return lines
