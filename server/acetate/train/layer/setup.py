"""What a layer-model run starts from: the base, the `--init` file and rank, the encoder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from acetate.engine.store import discovery
from acetate.engine.store.discovery import BaseCheckpoint, LayerFile
from acetate.engine.store.models import ModelStore
from acetate.errors import InputError, ModelFileError
from acetate.train.layer.adapters import LAYER_KINDS, OFFICIAL_RANK, TINY_RANK, file_rank
from acetate.train.layer.config import LayerTrainConfig

#: The official transparency encoder of each family (the `ld_diffusers_` one is an alternative).
ENCODER_KINDS = {
    "sdxl": ("vae_transparent_encoder", "ld_diffusers_sdxl_vae_transparent_encoder"),
    "sd15": ("layer_sd15_vae_transparent_encoder",),
}


@dataclass(frozen=True)
class RunSetup:
    """The resolved starting point of a run."""

    base: BaseCheckpoint
    #: The base as given (`--base` name or path): recorded in the exported file.
    base_label: str
    kind: str
    init_path: Path | None
    init_label: str
    rank: int
    encoder: LayerFile


def _base(store: ModelStore, wanted: str | None) -> tuple[BaseCheckpoint, str]:
    try:
        path = Path(wanted).expanduser() if wanted else None
        if path is not None and path.exists():
            wanted = store.add_base(path)
        base = store.base(wanted).model
    except InputError as error:
        raise InputError(error.message, field="--base") from None
    if base.family not in LAYER_KINDS:
        raise InputError(
            f"{base.name} is a {base.family} model; layer models are trained on SDXL or SD1.5",
            field="--base",
        )
    return base, wanted or base.name


def _listed(store: ModelStore, base: BaseCheckpoint, kinds: tuple[str, ...]) -> LayerFile | None:
    """The released file of the first of `kinds` fitting `base` (never a trained one)."""
    fitting = [
        f
        for f in store.layer_files()
        if f.kind in kinds
        and f.family == base.family
        and f.tiny == base.tiny
        and getattr(f.identity, "trained", None) is None
    ]
    fitting.sort(key=lambda f: kinds.index(f.kind))
    return fitting[0] if fitting else None


def _named_or_file(store: ModelStore, base: BaseCheckpoint, value: str, flag: str) -> LayerFile:
    path = Path(value).expanduser()
    try:
        if path.is_file():
            return discovery.identify_layer(path, "path")
        if "/" in value or "\\" in value:
            raise InputError(f"{flag}: no such file: {path}", field=flag)
        return store.named_layer_file(value, base)
    except InputError as error:
        raise InputError(f"{flag}: {error.message}", field=flag) from None


def _fits(layer: LayerFile, base: BaseCheckpoint, kinds: tuple[str, ...], flag: str) -> None:
    if layer.kind not in kinds or layer.family != base.family or layer.tiny != base.tiny:
        size = "a test" if layer.tiny else "a full-size"
        raise InputError(
            f"{flag}: {layer.name} is {size} {layer.kind} file; the base {base.name} needs "
            f"{' or '.join(kinds)}{' (test size)' if base.tiny else ''}",
            field=flag,
        )


def resolve_setup(config: LayerTrainConfig, store: ModelStore) -> RunSetup:
    """Base, init file and rank, encoder; every problem an `InputError` naming its flag."""
    base, label = _base(store, config.base)
    kind = LAYER_KINDS[base.family]
    init_path: Path | None = None
    if config.init == "official":
        official = _listed(store, base, (kind,))
        if official is None:
            raise InputError(
                f"--init official needs {kind}.safetensors in {store.models_dir / 'layer_model'} "
                "(`acetate models get`), or use --init zero / --init FILE",
                field="--init",
            )
        init_path, init_label = official.path, f"official:{official.name}"
    elif config.init == "zero":
        init_label = "zero"
    else:
        layer = _named_or_file(store, base, config.init, "--init")
        _fits(layer, base, (kind,), "--init")
        init_path, init_label = layer.path, f"file:{layer.name}"
    try:
        init_rank = file_rank(init_path, base.family) if init_path is not None else None
    except ModelFileError as error:
        raise InputError(f"--init: {error.message}", field="--init") from None
    default = init_rank or (TINY_RANK if base.tiny else OFFICIAL_RANK)
    rank = config.rank or default
    if init_rank is not None and rank != init_rank:
        raise InputError(
            f"--rank {rank} does not match --init {init_path.name if init_path else ''} "
            f"(rank {init_rank}); leave --rank out or use --init zero",
            field="--rank",
        )
    kinds = ENCODER_KINDS[base.family]
    if config.encoder is None:
        encoder = _listed(store, base, kinds)
        if encoder is None:
            raise InputError(
                f"the latents need {kinds[0]}.safetensors in {store.models_dir / 'layer_model'}"
                " (`acetate models get`), or --encoder NAME|FILE",
                field="--encoder",
            )
    else:
        encoder = _named_or_file(store, base, config.encoder, "--encoder")
        _fits(encoder, base, kinds, "--encoder")
    return RunSetup(base, label, kind, init_path, init_label, rank, encoder)
