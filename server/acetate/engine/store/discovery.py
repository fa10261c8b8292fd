"""Find base models, ControlNets, LayerDiffusion files, LoRAs and textual-inversion embeddings on
disk, without loading weights.

Roots are scanned in the order the store gives them (DESIGN.md: explicit paths → `models/` →
extra folders → the Hugging Face cache). A root may be an Acetate/ComfyUI-style models folder
(`checkpoints/`, `controlnet/`, `layer_model/`, `vae/`, `loras/`, `embeddings/`), a Forge/A1111
one (`Stable-diffusion/`, `ControlNet/`, `Lora/`), or the install folder above either (A1111 and
Forge keep `embeddings/` there, next to `models/`). Pickle files are listed as refused and never
opened.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from acetate.engine.store.family import (
    PICKLE_REASON,
    PICKLE_SUFFIXES,
    Detection,
    Family,
    detect_checkpoint,
    detect_controlnet_file,
    detect_controlnet_folder,
    detect_pipeline_folder,
    looks_like_checkpoint,
    read_header,
)
from acetate.errors import ModelFileError

if TYPE_CHECKING:
    from acetate.engine.store.embeddings import EmbeddingFile
    from acetate.engine.store.loras import LoraFile

Category = Literal["base", "controlnet", "layer", "lora", "embedding"]
Format = Literal["diffusers", "single_file"]

#: Sub-folder name (lower case) → what it holds, across Acetate/ComfyUI and Forge/A1111 layouts.
SUBFOLDERS: dict[str, Category] = {
    "checkpoints": "base",
    "stable-diffusion": "base",
    "diffusers": "base",
    "diffusion_models": "base",  # ComfyUI: Qwen-Image split transformers (listed as refused)
    "controlnet": "controlnet",
    "layer_model": "layer",
    "vae": "layer",  # only official transparent VAE file names are taken from here
    "loras": "lora",  # Acetate / ComfyUI
    "lora": "lora",  # A1111 / Forge `models/Lora` (see `loras.py`)
    "embeddings": "embedding",  # ComfyUI `models/embeddings`, A1111 / Forge `embeddings` (root)
}
LAYER_REPOS = ("LayerDiffusion/layerdiffusion-v1", "lllyasviel/LayerDiffuse_Diffusers")
MAX_DEPTH = 3


@dataclass(frozen=True)
class _Checkpoint:
    """What bases and ControlNets share: where the weights are and how to read them."""

    name: str
    family: Family
    format: Format
    path: Path
    source: str
    tiny: bool = False
    variant: str | None = None
    #: Single files: the config-only diffusers folder passed to `from_single_file(config=…)`.
    config_dir: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "format": self.format,
            "source": self.source,
            "path": str(self.path),
            "tiny": self.tiny,
        }


@dataclass(frozen=True)
class BaseCheckpoint(_Checkpoint):
    """A base checkpoint the engine can load (`load_base_pipeline`)."""

    #: Single files: folders that may hold the CLIP tokenizer files, best first.
    tokenizer_dirs: tuple[Path, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class ControlNetInfo(_Checkpoint):
    """A ControlNet the engine can load (`load_controlnet`)."""


@dataclass(frozen=True)
class LayerFile:
    """An identified official LayerDiffusion file (`identity`: see `identify.py`)."""

    path: Path
    kind: str
    family: Family
    tiny: bool
    source: str
    identity: Any = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.path.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "family": self.family,
            "tiny": self.tiny,
            "path": str(self.path),
            "source": self.source,
            "frames": getattr(self.identity, "frames", None),
            "use_control": getattr(self.identity, "use_control", None),
            # `acetate train` output: its metadata (kind replaced, base VAE, data hash, steps).
            "trained": getattr(self.identity, "trained", None),
        }


@dataclass(frozen=True)
class RefusedFile:
    path: Path
    category: Category
    reason: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "category": self.category,
            "reason": self.reason,
            "source": self.source,
        }


@dataclass
class Found:
    """What one root holds."""

    bases: list[BaseCheckpoint] = field(default_factory=list)
    controlnets: list[ControlNetInfo] = field(default_factory=list)
    layers: list[LayerFile] = field(default_factory=list)
    refused: list[RefusedFile] = field(default_factory=list)
    loras: list[LoraFile] = field(default_factory=list)
    embeddings: list[EmbeddingFile] = field(default_factory=list)

    def extend(self, other: Found) -> None:
        self.bases += other.bases
        self.controlnets += other.controlnets
        self.layers += other.layers
        self.refused += other.refused
        self.loras += other.loras
        self.embeddings += other.embeddings


def category_folders(root: Path) -> list[tuple[Category, Path]]:
    """The known sub-folders of `root`, or of `root/models` (an install folder; an A1111 or
    Forge one also has `embeddings/` beside `models/`)."""
    folders: list[tuple[Category, Path]] = []
    for candidate in (root, root / "models"):
        if not candidate.is_dir():
            continue
        folders += [
            (SUBFOLDERS[child.name.lower()], child)
            for child in sorted(candidate.iterdir())
            if child.is_dir() and child.name.lower() in SUBFOLDERS
        ]
        if any(category != "embedding" for category, _ in folders):
            break  # a models folder: its own `models/` sub-folder is no install's
    return folders


def _entries(folder: Path, depth: int = 0) -> Iterator[Path]:
    """Files and model folders under `folder`; a model folder is not descended into."""
    try:
        children = sorted(folder.iterdir())
    except OSError:
        return
    for child in children:
        if child.name.startswith("."):
            continue  # temporary files of atomic writes, hidden folders
        if child.is_dir():
            if (child / "model_index.json").is_file() or (child / "config.json").is_file():
                yield child
            elif depth < MAX_DEPTH:
                yield from _entries(child, depth + 1)
        elif child.is_file():
            yield child


def model_name(relative: PurePath, is_file: bool) -> str:
    """A model's name from its path under its category folder: `/`-separated on every OS (so
    `sdxl\\juju.safetensors` on Windows is `sdxl/juju`, as requests and settings spell it)."""
    text = relative.as_posix()
    return text.removesuffix(".safetensors") if is_file else text


Listed = TypeVar("Listed", "LoraFile", "EmbeddingFile")


def scan_model_files(
    folder: Path, source: str, category: Category, make: Callable[[Path, str], Listed]
) -> tuple[list[Listed], list[RefusedFile]]:
    """One-file models (LoRAs, embeddings) under `folder`, a few levels deep: `make(path, name)`
    reads one `.safetensors` file's header (a `ModelFileError` refuses it); pickle files are
    refused unopened."""
    found: list[Listed] = []
    refused: list[RefusedFile] = []
    for path in _entries(folder):
        if not path.is_file():
            continue
        suffix = path.suffix.lower()
        if suffix in PICKLE_SUFFIXES:
            refused.append(RefusedFile(path, category, PICKLE_REASON, source))
        elif suffix == ".safetensors":
            try:
                found.append(make(path, model_name(path.relative_to(folder), True)))
            except ModelFileError as error:
                refused.append(RefusedFile(path, category, error.message, source))
    return found, refused


def unique_names(items: Sequence[Listed], what: str, warnings: list[str]) -> list[Listed]:
    """The first item of each name in discovery order; later ones are skipped with a warning."""
    kept: dict[str, Listed] = {}
    for item in items:
        if item.name in kept:
            warnings.append(f"{item.path}: the {what} name {item.name!r} is already taken; skipped")
            continue
        kept[item.name] = item
    return list(kept.values())


def _name(path: Path, folder: Path) -> str:
    return model_name(path.relative_to(folder), path.is_file())


def _detect(category: Category, path: Path) -> Detection:
    try:
        if category == "base":
            if path.is_dir():
                return detect_pipeline_folder(path)
            return detect_checkpoint(path)
        return detect_controlnet_folder(path) if path.is_dir() else detect_controlnet_file(path)
    except ModelFileError as error:
        return Detection(None, reason=error.message)


def scan_models_folder(
    category: Category, folder: Path, source: str, entries: Iterable[Path] | None = None
) -> Found:
    """Bases or ControlNets under one category folder (recursively, a few levels), or just
    `entries` inside it."""
    found = Found()
    for path in _entries(folder) if entries is None else entries:
        if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
            found.refused.append(RefusedFile(path, category, PICKLE_REASON, source))
            continue
        if path.is_file() and path.suffix.lower() != ".safetensors":
            continue
        if path.is_dir() and category == "base" and not (path / "model_index.json").is_file():
            continue
        if path.is_dir() and category == "controlnet" and not (path / "config.json").is_file():
            continue
        detection = _detect(category, path)
        if detection.family is None:
            found.refused.append(RefusedFile(path, category, detection.reason or "", source))
            continue
        fmt: Format = "diffusers" if path.is_dir() else "single_file"
        fields = (_name(path, folder), detection.family, fmt, path, source, detection.tiny)
        if category == "base":
            found.bases.append(BaseCheckpoint(*fields, detection.variant))
        else:
            found.controlnets.append(ControlNetInfo(*fields, detection.variant))
    return found


#: (path, mtime, size, kind) → identity: rescans and new stores skip files already identified.
_IDENTITIES: dict[tuple[str, int, int, str | None], Any] = {}


def identify_layer(path: Path, source: str, kind: str | None = None) -> LayerFile:
    """Identify one layer file (raises `ModelFileError`)."""
    from acetate.engine.store.identify import identify_layer_file

    try:
        stat = path.stat()
    except OSError as error:
        raise ModelFileError(f"{path}: no such file", field="layer_model") from error
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, kind)
    identity = _IDENTITIES.get(key)
    if identity is None:
        identity = _IDENTITIES[key] = identify_layer_file(path, kind=kind)
    return LayerFile(path, identity.kind, identity.family, identity.tiny, source, identity)


def scan_layer_folder(folder: Path, source: str, *, official_names_only: bool = False) -> Found:
    """Official LayerDiffusion files in a folder (not recursive)."""
    from acetate.engine.store.identify import KINDS

    found = Found()
    for path in _entries(folder, MAX_DEPTH):
        if not path.is_file():
            continue
        suffix = path.suffix.lower()
        if official_names_only and path.stem.lower() not in KINDS:
            continue
        if suffix in PICKLE_SUFFIXES:
            found.refused.append(RefusedFile(path, "layer", PICKLE_REASON, source))
        elif suffix == ".safetensors":
            try:
                found.layers.append(identify_layer(path, source))
            except ModelFileError as error:
                found.refused.append(RefusedFile(path, "layer", error.message, source))
            except (KeyError, ValueError, RuntimeError) as error:  # one odd file must not
                reason = f"could not be identified ({type(error).__name__}: {error})"
                found.refused.append(RefusedFile(path, "layer", reason, source))
    return found


def scan_root(root: Path, source: str) -> Found:
    """Everything under one models folder or install folder."""
    found = Found()
    for category, folder in category_folders(root):
        if category == "lora":
            from acetate.engine.store.loras import scan_lora_folder

            loras, refused = scan_lora_folder(folder, source)
            found.loras += loras
            found.refused += refused
        elif category == "embedding":
            from acetate.engine.store.embeddings import scan_embedding_folder

            embeddings, refused = scan_embedding_folder(folder, source)
            found.embeddings += embeddings
            found.refused += refused
        elif category == "layer":
            only_official = folder.name.lower() == "vae"
            found.extend(scan_layer_folder(folder, source, official_names_only=only_official))
        else:
            found.extend(scan_models_folder(category, folder, source))
    return found


# ---- Hugging Face cache ------------------------------------------------------------------------


def hf_cache_dir() -> Path:
    """The Hub cache in effect now (`HF_HUB_CACHE`, else `HF_HOME/hub`, else the default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hf_snapshots(cache_dir: Path) -> dict[str, Path]:
    """repo id → newest cached snapshot folder, for model repos in the cache."""
    if not cache_dir.is_dir():
        return {}
    from huggingface_hub import scan_cache_dir

    try:
        info = scan_cache_dir(cache_dir)
    except Exception:  # a corrupt or foreign folder must not break model listing
        return {}
    snapshots = {}
    for repo in info.repos:
        if repo.repo_type != "model" or not repo.revisions:
            continue
        newest = max(repo.revisions, key=lambda revision: revision.last_modified)
        snapshots[repo.repo_id] = Path(newest.snapshot_path)
    return dict(sorted(snapshots.items()))


def _hf_single_files(repo_id: str, snapshot: Path, source: str) -> list[BaseCheckpoint]:
    """Base checkpoints downloaded as single files (e.g. `sd_xl_base_1.0.safetensors`); other
    files in cached repos are not listed (the cache holds much else)."""
    bases = []
    for path in sorted(snapshot.glob("*.safetensors")):
        try:
            if not looks_like_checkpoint(read_header(path)):
                continue
        except ModelFileError:
            continue
        detection = _detect("base", path)
        if detection.family is not None:
            name = f"{repo_id}/{path.stem}"
            bases.append(
                BaseCheckpoint(name, detection.family, "single_file", path, source, detection.tiny)
            )
    return bases


def scan_hf_cache(snapshots: dict[str, Path]) -> Found:
    """Diffusers pipelines, ControlNets, single-file bases and the two LayerDiffusion repos."""
    found = Found()
    for repo_id, snapshot in snapshots.items():
        source = f"hf:{repo_id}"
        if repo_id in LAYER_REPOS:
            found.extend(scan_layer_folder(snapshot, source))
            continue
        category: Category | None = None
        if (snapshot / "model_index.json").is_file():
            category = "base"
        elif (snapshot / "config.json").is_file() and '"ControlNetModel"' in (
            snapshot / "config.json"
        ).read_text(encoding="utf-8", errors="replace"):
            category = "controlnet"
        detection = _detect(category, snapshot) if category else Detection(None)
        if detection.family is None:
            if category is not None:
                found.refused.append(
                    RefusedFile(snapshot, category, detection.reason or "", source)
                )
            found.bases += _hf_single_files(repo_id, snapshot, source)
            continue
        fmt: Format = "diffusers"
        fields = (repo_id, detection.family, fmt, snapshot, source, detection.tiny)
        if category == "base":
            found.bases.append(BaseCheckpoint(*fields, detection.variant))
        else:
            found.controlnets.append(ControlNetInfo(*fields, detection.variant))
    return found
