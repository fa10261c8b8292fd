"""The model store: what is on disk, what each mode needs, and which files a request uses.

Discovery order (DESIGN.md "Model store"): explicitly added paths → `models/` → extra folders
(ComfyUI / Forge / A1111 installs) → the Hugging Face cache. The tiny test bases `tiny-sd15` and
`tiny-sdxl` are always listed (built on first need under `models/tiny/`) and flagged as test
models; they are the default only when no real base exists, with a warning. Tiny bases use only
tiny layer files and ControlNets, real bases only real ones.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from acetate.engine.store import discovery
from acetate.engine.store.discovery import (
    BaseCheckpoint,
    ControlNetInfo,
    Found,
    LayerFile,
    RefusedFile,
    hf_cache_dir,
    hf_snapshots,
)
from acetate.engine.store.embeddings import EmbeddingFile, listed_tiny_styles, plan_embeddings
from acetate.engine.store.family import CONFIGS_DIR, FAMILIES, FAMILY_LABEL, Family
from acetate.engine.store.loading import load_base_pipeline, load_controlnet
from acetate.engine.store.loras import (
    LoraFile,
    PlannedLora,
    explicit_lora,
    plan_loras,
)
from acetate.engine.store.qwen import (
    QWEN_FAMILY,
    check_family,
    default_base_name,
    files_to_get,
    tiny_qwen_warning,
)
from acetate.engine.store.qwen_split import pair_split_parts
from acetate.engine.store.requirements import (
    MODE_REQUIREMENTS,
    UNSUPPORTED_MODES,
    file_name,
    missing_message,
    override_role,
    select,
)
from acetate.engine.tiny.bases import (
    TINY_BASES,
    TINY_CONTROLNETS,
    ensure_tiny_models,
    tiny_models_current,
    tiny_root,
)
from acetate.engine.tiny.qwen_layered import TINY_QWEN_NAME, ensure_tiny_qwen, tiny_qwen_folder
from acetate.errors import InputError, ModelFileError, ModelNotFoundError
from acetate.modes import MODES

if TYPE_CHECKING:
    from collections.abc import Mapping

    from acetate.protocol import LoraRequest

__all__ = [
    "MODE_REQUIREMENTS",
    "BaseCheckpoint",
    "BaseChoice",
    "ControlNetInfo",
    "LayerFile",
    "ModelStore",
    "RefusedFile",
    "ensure_tiny_models",
    "load_base_pipeline",
    "load_controlnet",
]

#: Repos whose cached snapshots hold CLIP tokenizer files (root or `tokenizer*/`).
TOKENIZER_REPOS = (
    "openai/clip-vit-large-patch14",
    "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
    "stabilityai/stable-diffusion-xl-base-1.0",
    "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "runwayml/stable-diffusion-v1-5",
    "CompVis/stable-diffusion-v1-4",
)
LayerOverride = Path | str | tuple[Path | str, str]


class BaseChoice(NamedTuple):
    """`store.base()`'s answer: unpacks as `(model, warnings)`."""

    model: BaseCheckpoint
    warnings: list[str]


class Plan(NamedTuple):
    """Everything a request will use, resolved before any model is loaded."""

    base: BaseCheckpoint
    warnings: list[str]
    files: dict[str, LayerFile]
    controlnet: ControlNetInfo | None
    loras: tuple[PlannedLora, ...] = ()
    #: The embeddings the prompts name, loaded for the job (`acetate.engine.embeddings`).
    embeddings: tuple[EmbeddingFile, ...] = ()


class ModelStore:
    """Discovers models lazily (first use) and answers what a request will use.

    `hf_cache`: True = the Hub cache in effect (`HF_HUB_CACHE`…), a path = that cache folder,
    False = don't look there.
    """

    def __init__(
        self,
        models_dir: Path | str,
        extra_dirs: Sequence[Path | str] = (),
        *,
        hf_cache: bool | Path | str = True,
    ) -> None:
        self.models_dir = Path(models_dir).expanduser()
        self.extra_dirs = [Path(d).expanduser() for d in extra_dirs]
        self.hf_cache: Path | None = (
            None if hf_cache is False else hf_cache_dir() if hf_cache is True else Path(hf_cache)
        )
        self._explicit = Found()
        self._found: Found | None = None
        self._tiny: Found | None = None
        self._lock = threading.RLock()  # the server's worker and request threads share a store
        self.warnings: list[str] = []

    # ---- discovery ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Forget what was found; the next call scans again."""
        with self._lock:
            self._found = None
            self._tiny = None

    def _scan(self) -> Found:
        with self._lock:
            if self._found is None:
                self._found = self._discover()
            return self._found

    def _discover(self) -> Found:
        warnings: list[str] = []
        found = Found()
        found.extend(self._explicit)
        found.extend(discovery.scan_root(self.models_dir, "models"))
        for extra in self.extra_dirs:
            if not discovery.category_folders(extra):
                warnings.append(
                    f"{extra}: not a models folder or a ComfyUI / Forge / A1111 install "
                    "(no checkpoints/, Stable-diffusion/, controlnet/ or layer_model/ inside)"
                )
            found.extend(discovery.scan_root(extra, f"extra:{extra}"))
        snapshots = hf_snapshots(self.hf_cache) if self.hf_cache else {}
        found.extend(discovery.scan_hf_cache(snapshots))
        pair_split_parts(found)  # ComfyUI's Qwen transformer file + a folder without it
        found.bases = self._unique(found.bases, warnings)
        found.controlnets = self._unique(found.controlnets, warnings)
        found.loras = discovery.unique_names(found.loras, "LoRA", warnings)
        found.embeddings = discovery.unique_names(found.embeddings, "embedding", warnings)
        tokenizer_dirs = self._tokenizer_dirs(found, snapshots)
        found.bases = [self._complete(base, tokenizer_dirs) for base in found.bases]
        found.controlnets = [self._complete_controlnet(c) for c in found.controlnets]
        self.warnings = warnings
        return found

    @staticmethod
    def _unique(items: list[Any], warnings: list[str]) -> list[Any]:
        reserved = {*TINY_BASES, TINY_QWEN_NAME, *TINY_CONTROLNETS.values()}
        kept: dict[str, Any] = {}
        for item in items:
            if item.name in reserved or item.name in kept:
                warnings.append(f"{item.path}: the name {item.name!r} is already taken; skipped")
                continue
            kept[item.name] = item
        return list(kept.values())

    def _tokenizer_dirs(self, found: Found, snapshots: dict[str, Path]) -> tuple[Path, ...]:
        folders: list[Path] = []
        for base in found.bases:
            if base.format == "diffusers" and not base.tiny:
                folders += [base.path / "tokenizer", base.path / "tokenizer_2"]
        for repo in TOKENIZER_REPOS:
            if repo in snapshots:
                snapshot = snapshots[repo]
                folders += [snapshot, snapshot / "tokenizer", snapshot / "tokenizer_2"]
        for extra in self.extra_dirs:
            for root in (extra, extra.parent):  # an install folder, or its models/ folder
                folders.append(root / "comfy" / "sd1_tokenizer")  # ComfyUI ships the CLIP BPE
                forge = root / "backend" / "huggingface"
                if forge.is_dir():
                    folders += sorted(forge.glob("*/*/tokenizer*"))
        return tuple(dict.fromkeys(f for f in folders if f.is_dir()))

    def _complete(self, base: BaseCheckpoint, tokenizer_dirs: tuple[Path, ...]) -> BaseCheckpoint:
        if base.format != "single_file" or base.family == QWEN_FAMILY:
            return base
        if base.tiny:
            tiny_folder = tiny_root(self.models_dir) / "checkpoints" / f"tiny-{base.family}"
            return replace(
                base,
                config_dir=tiny_folder,
                tokenizer_dirs=(tiny_folder / "tokenizer", tiny_folder / "tokenizer_2"),
            )
        return replace(base, config_dir=CONFIGS_DIR / base.family, tokenizer_dirs=tokenizer_dirs)

    def _complete_controlnet(self, info: ControlNetInfo) -> ControlNetInfo:
        if info.format != "single_file":
            return info
        if info.tiny:
            folder = tiny_root(self.models_dir) / "controlnet" / TINY_CONTROLNETS[info.family]
            return replace(info, config_dir=folder)
        return replace(info, config_dir=CONFIGS_DIR / f"controlnet-{info.family}")

    def _tiny_found(self) -> Found:
        with self._lock:
            if self._tiny is None:
                root = tiny_root(self.models_dir)
                tiny = discovery.scan_root(root, "tiny") if root.is_dir() else Found()
                if not tiny.loras and not tiny.embeddings:  # not built yet (or built before)
                    tiny.loras, tiny.embeddings = listed_tiny_styles(root)
                self._tiny = tiny
            return self._tiny

    def ensure_tiny(self) -> Path:
        """Build the tiny models if needed (seconds) and pick up their files."""
        with self._lock:
            if not tiny_models_current(self.models_dir):
                ensure_tiny_models(self.models_dir)
                self._tiny = None
        return tiny_root(self.models_dir)

    def add_base(self, path: Path | str) -> str:
        """Register an explicit base file or diffusers folder (first in discovery order)."""
        return self._add(Path(path), "base")

    def add_controlnet(self, path: Path | str) -> str:
        """Register an explicit ControlNet file or folder; returns the name to request it by."""
        return self._add(Path(path), "controlnet")

    def add_lora(self, path: Path | str) -> str:
        """Register an explicit LoRA file (first in discovery order); returns its name."""
        lora = explicit_lora(Path(path).expanduser())
        with self._lock:
            explicit = self._explicit
            explicit.loras = [x for x in explicit.loras if x.name != lora.name] + [lora]
            self.refresh()
        return lora.name

    def _add(self, path: Path, category: discovery.Category) -> str:
        field = "model" if category == "base" else category
        if not path.exists():
            raise ModelNotFoundError(f"no such file or folder: {path}", field=field)
        found = discovery.scan_models_folder(category, path.parent, "path", [path])
        if not found.bases and not found.controlnets:
            reason = found.refused[0].reason if found.refused else "not a model file or folder"
            raise ModelFileError(f"{path}: {reason}", field=field)
        with self._lock:
            explicit = self._explicit
            explicit.bases = [m for m in explicit.bases if m.path != path]
            explicit.controlnets = [m for m in explicit.controlnets if m.path != path]
            explicit.bases += [replace(m, name=str(path)) for m in found.bases]
            explicit.controlnets += [replace(m, name=str(path)) for m in found.controlnets]
            self.refresh()
        return str(path)

    # ---- queries -----------------------------------------------------------------------------

    def tiny_bases(self) -> list[BaseCheckpoint]:
        root = tiny_root(self.models_dir) / "checkpoints"
        qwen = tiny_qwen_folder(self.models_dir)
        return [
            *(
                BaseCheckpoint(name, family, "diffusers", root / name, "tiny", tiny=True)
                for name, family in zip(TINY_BASES, FAMILIES, strict=True)
            ),
            BaseCheckpoint(TINY_QWEN_NAME, QWEN_FAMILY, "diffusers", qwen, "tiny", tiny=True),
        ]

    def bases(self) -> list[BaseCheckpoint]:
        """Every usable base: real ones in discovery order, then the tiny test models."""
        return [*self._scan().bases, *self.tiny_bases()]

    def layer_files(self) -> list[LayerFile]:
        return [*self._scan().layers, *self._tiny_found().layers]

    def controlnets(self) -> list[ControlNetInfo]:
        return [*self._scan().controlnets, *self._tiny_found().controlnets]

    def loras(self) -> list[LoraFile]:
        return [*self._scan().loras, *self._tiny_found().loras]

    def embeddings(self) -> list[EmbeddingFile]:
        return [*self._scan().embeddings, *self._tiny_found().embeddings]

    def refused(self) -> list[RefusedFile]:
        return [*self._scan().refused, *self._tiny_found().refused]

    def base(self, name: str | None = None, mode: str | None = None) -> BaseChoice:
        """The base named `name`, or `mode`'s default: the first real base of a family the mode
        runs on, else its test model (`tiny-sdxl`, or `tiny-qwen-image-layered` for Qwen modes)
        with a warning. Unknown names raise `ModelNotFoundError` (never a tiny stand-in), a base
        of the wrong family for `mode` an `InputError` on `model`."""
        bases = self.bases()
        warnings: list[str] = []
        if name is None:
            chosen = next(b for b in bases if b.name == default_base_name(mode, bases))
            if chosen.tiny:
                warnings.append(self.default_warning(chosen.name))
        else:
            chosen = self._named(bases, name)
        if mode is not None:
            check_family(chosen.family, chosen.name, mode)  # before building a test model
        if chosen.tiny:
            self._ensure_tiny_base(chosen)
        return BaseChoice(chosen, warnings)

    def _ensure_tiny_base(self, base: BaseCheckpoint) -> None:
        if base.family == QWEN_FAMILY:
            with self._lock:
                ensure_tiny_qwen(self.models_dir)
        else:
            self.ensure_tiny()

    def default_warning(self, tiny: str = "tiny-sdxl") -> str:
        if tiny == TINY_QWEN_NAME:
            return tiny_qwen_warning(self.models_dir)
        return (
            f"no real base model found (looked in {self.models_dir / 'checkpoints'}"
            f"{', ' + ', '.join(map(str, self.extra_dirs)) if self.extra_dirs else ''} and the "
            "Hugging Face cache); using the test model tiny-sdxl, whose random weights make "
            "noise, not pictures: put an SDXL or SD1.5 .safetensors checkpoint in "
            "models/checkpoints/"
        )

    def _named(self, bases: list[BaseCheckpoint], name: str) -> BaseCheckpoint:
        wanted = name.removesuffix(".safetensors")
        for base in bases:
            if wanted in (base.name, str(base.path)):
                return base
        for refused in self.refused():
            if refused.category == "base" and wanted in (refused.path.stem, str(refused.path)):
                raise ModelFileError(f"{name} cannot be used: {refused.reason}", field="model")
        available = ", ".join(b.name for b in bases)
        raise ModelNotFoundError(
            f"no base model named {name!r} (available: {available}); put checkpoints in "
            f"{self.models_dir / 'checkpoints'} or see `acetate models`",
            field="model",
        )

    def _candidates(self, base: BaseCheckpoint) -> list[LayerFile]:
        return [f for f in self.layer_files() if f.family == base.family and f.tiny == base.tiny]

    def usable_modes(self, base: BaseCheckpoint) -> dict[str, list[str]]:
        """mode → official file names still missing for it on `base` (empty: usable)."""
        if base.tiny and not tiny_root(self.models_dir).is_dir():
            return {mode: [] for mode in MODE_REQUIREMENTS[base.family]}  # built on first use
        kinds = {f.kind for f in self._candidates(base)}
        return {
            mode: [file_name(alts[0]) for alts in needs.values() if not kinds & set(alts)]
            for mode, needs in MODE_REQUIREMENTS[base.family].items()
        }

    def named_layer_file(self, name: str, base: BaseCheckpoint) -> LayerFile:
        """The listed layer file called `name` (with or without `.safetensors`), preferring one
        that fits `base` (same family, same test/full size); `ModelNotFoundError` on
        `layer_files` when none is listed. Only listed files: a request never names a path."""
        wanted = name if name.endswith(".safetensors") else f"{name}.safetensors"
        matches = [f for f in self.layer_files() if f.name == wanted]
        fitting = [f for f in matches if f.family == base.family and f.tiny == base.tiny]
        if fitting or matches:
            return (fitting or matches)[0]  # a misfit: `override_role` says why
        available = ", ".join(sorted({f.name for f in self._candidates(base)})) or "none"
        raise ModelNotFoundError(
            f"no LayerDiffusion file named {name!r} for {base.name} (available: {available}); "
            "the server's model list and `acetate models` name them",
            field="layer_files",
        )

    def resolve(
        self,
        base: BaseCheckpoint,
        mode: str,
        overrides: Sequence[LayerOverride] = (),
        names: Sequence[str] = (),
    ) -> dict[str, LayerFile]:
        """role → the layer file `mode` uses on `base`.

        `overrides` are explicit files (optionally `(path, kind)` for a renamed ambiguous file),
        identified and used for the role their kind fills; `names` (a request's `layer_files`)
        are listed files chosen the same way. Roles nothing names get the official default.
        """
        if mode in UNSUPPORTED_MODES[base.family]:
            raise InputError(UNSUPPORTED_MODES[base.family][mode], field="mode")
        needs = MODE_REQUIREMENTS[base.family].get(mode)
        if needs is None:
            raise InputError(f"unknown mode {mode!r}", field="mode")
        if base.tiny and needs:
            self.ensure_tiny()
        given: list[tuple[LayerFile, str]] = []
        for override in overrides:
            path, kind = override if isinstance(override, tuple) else (override, None)
            given.append((discovery.identify_layer(Path(path), "path", kind), "layer_model"))
        given += [(self.named_layer_file(name, base), "layer_files") for name in names]
        chosen: dict[str, LayerFile] = {}
        for layer, field in given:
            role = override_role(layer, base, mode, needs, field)
            if role in chosen:
                raise InputError(
                    f"two files given for the same part: {chosen[role].name} and {layer.name}",
                    field=field,
                )
            chosen[role] = layer
        missing = select(needs, self._candidates(base), chosen)
        if missing:
            raise ModelNotFoundError(
                missing_message(base, mode, missing, self.models_dir), field="mode"
            )
        return {role: chosen[role] for role in needs}

    def plan(
        self,
        model: str | None,
        mode: str,
        control: str = "none",
        controlnet: str | None = None,
        overrides: Sequence[LayerOverride] = (),
        names: Sequence[str] = (),
        loras: Sequence[LoraRequest] = (),
        prompts: Mapping[str, str] | None = None,
    ) -> Plan:
        """The base, layer files, ControlNet, LoRAs and embeddings (named in `prompts`, field →
        text) a request needs; `InputError`s name the field.

        Cheap (headers only): the server runs it before queuing a job, the engine before loading.
        """
        base, warnings = self.base(model, mode)
        files = self.resolve(base, mode, overrides, names)
        chosen = None
        if control != "none":
            chosen = self.controlnet(controlnet, base.family, control, tiny=base.tiny)
        planned = plan_loras(loras, self.loras(), self.refused(), base)
        embeddings = plan_embeddings(prompts or {}, self.embeddings(), base)
        return Plan(base, list(warnings), files, chosen, planned, embeddings)

    def controlnet(
        self, name: str | None, family: Family, control: str = "none", *, tiny: bool = False
    ) -> ControlNetInfo:
        """The ControlNet named `name`, or the family's default (one whose name mentions the
        `control` kind first, e.g. canny). `tiny` bases get the tiny ControlNets."""
        if tiny:
            self.ensure_tiny()
        available = self.controlnets()
        if name:
            match = next((c for c in available if name in (c.name, str(c.path))), None)
            if match is None:
                names = ", ".join(c.name for c in available) or "none"
                raise ModelNotFoundError(
                    f"no ControlNet named {name!r} (available: {names}); put ControlNets in "
                    f"{self.models_dir / 'controlnet'}",
                    field="controlnet",
                )
            if match.family != family or match.tiny != tiny:
                raise InputError(
                    f"{match.name} is an {FAMILY_LABEL[match.family]}"
                    f"{' test' if match.tiny else ''} ControlNet; the base is "
                    f"{FAMILY_LABEL[family]}{' (test model)' if tiny else ''}",
                    field="controlnet",
                )
            return match
        fitting = [c for c in available if c.family == family and c.tiny == tiny]
        fitting.sort(key=lambda c: control.lower() not in c.name.lower())
        if not fitting:
            raise ModelNotFoundError(
                f"no {FAMILY_LABEL[family]} ControlNet found: put one in "
                f"{self.models_dir / 'controlnet'} (e.g. `acetate models get "
                f"controlnet-canny-{family}`)",
                field="controlnet",
            )
        return fitting[0]

    # ---- summary -----------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (GET /api/models, `acetate models --json`)."""
        from acetate.engine.store.catalog import where_to_get

        bases = self.bases()
        default = next((b.name for b in bases if not b.tiny and b.family in FAMILIES), "tiny-sdxl")
        missing_kinds = sorted(
            {
                name.removesuffix(".safetensors")
                for b in bases
                for names in self.usable_modes(b).values()
                for name in names
            }
        )
        return {
            "models_dir": str(self.models_dir),
            "extra_dirs": [str(d) for d in self.extra_dirs],
            "hf_cache": str(self.hf_cache) if self.hf_cache else None,
            "default_base": default,
            "default_bases": {mode: default_base_name(mode, bases) for mode in MODES},
            "decompose_files": (
                None
                if any(b.family == QWEN_FAMILY and not b.tiny for b in bases)
                else files_to_get()
            ),
            "bases": [self._describe_base(b) for b in bases],
            "layer_files": [f.to_dict() for f in self.layer_files()],
            "controlnets": [c.to_dict() for c in self.controlnets()],
            "loras": [lora.to_dict() for lora in self.loras()],
            "embeddings": [embedding.to_dict() for embedding in self.embeddings()],
            "refused": [r.to_dict() for r in self.refused()],
            "get": {kind: where_to_get(kind, self.models_dir) for kind in missing_kinds},
            "warnings": list(self.warnings)
            + ([] if any(not b.tiny for b in bases) else [self.default_warning()]),
        }

    def _describe_base(self, base: BaseCheckpoint) -> dict[str, Any]:
        return {
            **base.to_dict(),
            "modes": self.usable_modes(base),
            "unsupported_modes": dict(UNSUPPORTED_MODES[base.family]),
        }
