"""Response shapes that exist only in the HTTP API (the rest live in `acetate.protocol`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ClientSeen(BaseModel):
    """The `Origin` and `Sec-Fetch-*` headers this very request carried (null: absent)."""

    model_config = ConfigDict(extra="forbid")

    origin: str | None = None
    sec_fetch_site: str | None = None
    sec_fetch_mode: str | None = None


class ImageLimits(BaseModel):
    """The image limits the server enforces (docs/protocol.md, Limits): editors refuse larger
    images before reading any pixel."""

    model_config = ConfigDict(extra="forbid")

    max_side: int = Field(description="Pixels per side, for every input and output image")
    max_pixels: int = Field(description="Pixels per image (width × height)")


class Health(BaseModel):
    """GET /api/health."""

    model_config = ConfigDict(extra="forbid")

    version: str
    api_version: int = Field(description="Protocol version; clients refuse a server without it")
    device: str
    queue_length: int = Field(description="Waiting jobs plus the running one")
    running: str | None = Field(description="Id of the running job")
    client_seen: ClientSeen = Field(
        default_factory=ClientSeen,
        description="Origin and Sec-Fetch-* headers of this request, as the server saw them",
    )
    limits: ImageLimits


class WsTicket(BaseModel):
    """POST /api/ws-ticket: a single-use ticket for `/api/ws?ticket=…`."""

    model_config = ConfigDict(extra="forbid")

    ticket: str
    expires_in: int = Field(description="Seconds the ticket stays valid (single use)")


class ModelsInfo(BaseModel):
    """GET /api/models: the model store's description (`ModelStore.describe()`)."""

    model_config = ConfigDict(extra="allow")

    bases: list[dict[str, Any]] = Field(default_factory=list)
    #: LoRAs a request may name in `loras`: {name, family, tiny, format, path, source}.
    loras: list[dict[str, Any]] = Field(default_factory=list)
    #: Textual-inversion embeddings a prompt may name (as a whole word, or `embedding:NAME`):
    #: {name, family, tiny, format, path, source, vectors}.
    embeddings: list[dict[str, Any]] = Field(default_factory=list)


class _Published(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OptionInfo(_Published):
    """An option a mode reads (`acetate.modes.Option`)."""

    name: str
    label: str
    help: str
    type: Literal["int", "float", "bool", "enum", "text", "prompts", "region"]
    default: Any = None
    family_defaults: dict[str, Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool | None = None
    multiple_of: int | None = None
    choices: list[str | int] | None = None
    max_length: int | None = None
    advanced: bool
    depends_on: str | None = None


class ImageInputInfo(_Published):
    """An image or mask a mode takes, and where an editor reads it from."""

    field: str
    label: str
    help: str
    kind: Literal["rgba", "mask"]
    source: Literal["canvas", "layer", "selection"]
    required: bool
    frame: bool
    relative_to: str | None = None
    when: dict[str, list[str]] | None = None
    #: The result replaces the layer this image is read from: editors insert it right above
    #: that layer and hide the layer (shown again when the result is undone).
    replaced: bool | None = None
    #: Sources the user may pick instead of `source`.
    other_sources: list[Literal["canvas", "layer", "selection"]] | None = None


class ListInputInfo(_Published):
    """A list-valued input whose items carry their own fields and images."""

    field: str
    label: str
    help: str
    min_items: int
    max_items: int
    item_options: list[OptionInfo]
    item_images: list[ImageInputInfo]


class LayerInfo(_Published):
    """A layer a mode returns per result set (bottom → top); `count_from` makes it a pattern."""

    name: str
    label: str
    visible: bool
    keeps_alpha: bool
    count_from: str | None = None
    #: Returned only when this image input is not sent.
    only_without: str | None = None
    #: The list item field whose text names each counted layer (records' `name`).
    title_from: str | None = None
    #: The first number of a counted pattern (`layer_1` …; absent: 0).
    first: int = 0


class StageInfo(_Published):
    name: str
    label: str
    scheduler: str | None
    stop_at: float
    takes_stop_at: bool
    #: Runs once per item of this list (in every result set).
    per_item: str | None = None
    #: Runs only when this image input is not sent.
    only_without: str | None = None


class FamilyInfo(_Published):
    family: str
    label: str
    supported: bool
    stages: list[StageInfo] | None = None
    #: Part → the official kinds that fill it, preferred first; a listed layer file (official
    #: or trained, `/api/models`) of one of these kinds may be named in `layer_files`.
    files: dict[str, list[str]] | None = None
    reason: str | None = None


class ModeInfo(_Published):
    """One mode as `GET /api/modes` publishes it (`acetate.modes.ModeSpec.to_json`)."""

    name: str
    label: str
    help: str
    prompt_required: bool
    inputs: list[ImageInputInfo]
    lists: list[ListInputInfo]
    frame: str | None
    frame_scale: str | None
    #: Setting an option the mode does not read is a 400 naming it.
    strict_options: bool = False
    layers: list[LayerInfo]
    options: list[OptionInfo]
    families: list[FamilyInfo]


class ModesInfo(_Published):
    """GET /api/modes."""

    api_version: int
    modes: list[ModeInfo]
