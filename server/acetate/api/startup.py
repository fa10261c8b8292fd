"""What `acetate serve` sets up and says before it starts serving."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from acetate import __version__
from acetate.api.config import ServerConfig, is_loopback, local_addresses
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


def _url(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{scheme}://{shown}:{port}"


def server_urls(config: ServerConfig) -> list[str]:
    """URLs whose Host the server accepts: loopback first (or the bound address), then this
    computer's addresses for an all-interfaces bind, then `--allowed-host` names."""
    scheme = "https" if config.tls else "http"
    if config.wildcard:
        hosts = ["127.0.0.1", *local_addresses()]
    elif is_loopback(config.host):
        hosts = ["[::1]" if config.host == "::1" else config.host]
    else:
        hosts = [config.host]
    hosts += [name for name in config.allowed_hosts if name not in hosts]
    return [_url(scheme, host, config.port) for host in hosts]


def startup_lines(config: ServerConfig, engine: GenerationEngine, store: Any) -> list[str]:
    """URL, device, models found and the modes each can run."""
    urls = server_urls(config)
    lines = [f"Acetate {__version__} server on {urls[0]} (device {engine.device_name})"]
    if config.wildcard:
        lines.append(f"Listening on all interfaces, port {config.port}; token required.")
    if len(urls) > 1:
        lines.append("Reach it at: " + "  ".join(urls))
    if config.wildcard:
        lines.append("Other names or addresses: add them with --allowed-host NAME.")
    if config.tokens_file is not None:
        lines.append(f"Tokens per person from {config.tokens_file} (kill -HUP reloads it).")
    elif config.token and not config.wildcard:
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
