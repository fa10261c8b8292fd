"""The wire protocol: request fields, result and job records, WebSocket events.

One schema serves the CLI (flags map 1:1 to fields), the HTTP API (validation and the
OpenAPI document) and the result files. The JavaScript and Krita clients mirror it by hand
(see docs/protocol.md); change it on purpose and everywhere at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    create_model,
    field_validator,
    model_validator,
)

from acetate.modes import (
    IMAGE_FIELDS,
    LIST_INPUTS,
    MAX_PROMPT,
    MODE_NAMES,
    OPTIONS,
    ModeSpec,
    Option,
    Scheduler,
)
from acetate.modes import MODES as MODE_SPECS

Mode = str  # a name in `acetate.modes.MODES`
MODES: tuple[str, ...] = MODE_NAMES
#: Modes with an image input: their layers come back in that input's pixel frame.
EDITOR_MODES: frozenset[str] = frozenset(m.name for m in MODE_SPECS.values() if m.is_editor_mode)
Decode = Literal["tta", "fast"]
Control = Literal["none", "canny", "image"]
assert get_args(Decode) == OPTIONS["decode"].choices
assert get_args(Control) == OPTIONS["control"].choices

MAX_SEED = 2**32 - 1
MAX_SIDE = 8192
MAX_PIXELS = 64 * 1024 * 1024


def layer_file_name(name: str, batch_index: int) -> str:
    """`foreground.png` for batch item 0, `foreground_2.png` for item 2."""
    return f"{name}.png" if batch_index == 0 else f"{name}_{batch_index}.png"


def group_name(prompt: str, batch_index: int, mode: str | None = None) -> str:
    """Group name for one result set, the same in the PSD and in both editors: the prompt's
    first 60 characters (the mode's label when the prompt is empty) and `#<batch_index + 1>`."""
    text = prompt.strip()[:60]
    if not text and mode in MODE_SPECS:
        text = MODE_SPECS[mode].label
    return f"{text} #{batch_index + 1}"


class _Strict(BaseModel):
    """Requests: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")


class _Lenient(BaseModel):
    """Records a client receives: unknown fields are ignored, so a newer server adding a field
    never breaks an older client."""

    model_config = ConfigDict(extra="ignore")


class LayerPrompts(_Strict):
    """Extra text per layer, prepended to the main prompt for that layer."""

    foreground: str | None = Field(None, max_length=MAX_PROMPT)
    background: str | None = Field(None, max_length=MAX_PROMPT)
    blended: str | None = Field(None, max_length=MAX_PROMPT)


class Bounds(_Strict):
    """A rectangle in canvas pixels."""

    left: int = Field(ge=0, le=MAX_SIDE)
    top: int = Field(ge=0, le=MAX_SIDE)
    width: int = Field(ge=1, le=MAX_SIDE)
    height: int = Field(ge=1, le=MAX_SIDE)


def _bounds(option: Option) -> dict[str, Any]:
    """An `Option`'s range and length as pydantic `Field` constraints."""
    bounds: dict[str, Any] = {}
    if option.minimum is not None:
        bounds["gt" if option.exclusive_minimum else "ge"] = option.minimum
    if option.maximum is not None:
        bounds["le"] = option.maximum
    if option.max_length is not None:
        bounds["max_length"] = option.max_length
    return bounds


def option_field(name: str) -> Any:
    """The pydantic field of a mode option: constraints, help and default from its `Option`.

    Options whose default depends on the family or mode default to None in the request
    ("the default for this model family and mode"); `acetate.engine.resolve` fills them.
    """
    option = OPTIONS[name]
    bounds = _bounds(option)
    varies = bool(option.family_defaults) or any(
        name in spec.defaults or any(name in s.defaults for s in spec.families.values())
        for spec in MODE_SPECS.values()
    )
    return Field(
        None if varies else option.default,
        title=option.label,
        description=option.help,
        json_schema_extra={"enum": list(option.choices)} if option.choices else None,
        **bounds,
    )


#: A LayerDiffusion file's name as `/api/models` lists it (never a path).
LayerFileName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^/\\]+$")]
#: One file per part at most: SDXL's two-stage modes use four (two patches, encoder, decoder).
MAX_LAYER_FILES = 8
#: LoRAs one request may stack.
MAX_LORAS = 8


def _not_a_path(value: str) -> str:
    if any(part in (".", "..") for part in value.split("/")):
        raise ValueError("a LoRA name from /api/models, not a path")
    return value


#: A LoRA's name as `/api/models` lists it: `/`-separated sub-folders allowed, never a path
#: (no leading `/`, no `\`, `:`, `.` or `..` parts); the store only ever looks names up.
LoraName = Annotated[
    str,
    Field(min_length=1, max_length=200, pattern=r"^[^/\\:]+(/[^/\\:]+)*$"),
    AfterValidator(_not_a_path),
]


class LoraRequest(_Strict):
    """One LoRA applied to the base for this job, at a strength (negative: the opposite)."""

    name: LoraName = Field(description="A LoRA name from /api/models `loras`")
    strength: float = Field(1.0, ge=-2.0, le=2.0, description="LoRA weight, -2 to 2")


class GenerateParameters(_Strict):
    """Every non-image request field. `None` means "the default for this model family and mode";
    option constraints and help come from `acetate.modes.OPTIONS`."""

    mode: Mode = Field("fg", json_schema_extra={"enum": list(MODE_NAMES)})
    model: str | None = Field(None, max_length=200, description="Base model name from /api/models")
    prompt: str = Field("", max_length=MAX_PROMPT, description="Required unless the mode says not")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Random when absent; recorded")
    batch: int = Field(1, ge=1, le=16, description="Number of result sets")
    negative_prompt: str = option_field("negative_prompt")
    layer_prompts: LayerPrompts | None = option_field("layer_prompts")
    steps: int | None = option_field("steps")
    cfg: float | None = option_field("cfg")
    scheduler: Scheduler | None = option_field("scheduler")
    width: int | None = option_field("width")
    height: int | None = option_field("height")
    strength: float = option_field("strength")
    layer_weight: float = option_field("layer_weight")
    stop_at: float | None = option_field("stop_at")
    decode: Decode = option_field("decode")
    scale: float = option_field("scale")
    margin: int = option_field("margin")
    feather: int = option_field("feather")
    control: Control = option_field("control")
    controlnet: str | None = option_field("controlnet")
    control_strength: float = option_field("control_strength")
    layer_count: int = option_field("layer_count")
    resolution: int | None = option_field("resolution")
    bit_depth: int = option_field("bit_depth")
    layer_files: list[LayerFileName] | None = Field(
        None,
        max_length=MAX_LAYER_FILES,
        description="LayerDiffusion files from /api/models (official or trained) replacing the "
        "defaults for the parts they fill; unset: the official file for each part",
    )
    loras: list[LoraRequest] | None = Field(
        None,
        max_length=MAX_LORAS,
        description="Style/character LoRAs from /api/models `loras` applied to the base for this "
        "job only, each {name, strength}; they must be of the base's family",
    )
    selection_bounds: Bounds | None = None
    client_id: str | None = Field(None, max_length=128)

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value: str) -> str:
        if value not in MODE_SPECS:
            raise ValueError(f"unknown mode {value!r}; choose one of {', '.join(MODE_NAMES)}")
        return value

    @field_validator("bit_depth")
    @classmethod
    def _allowed_bit_depth(cls, value: int) -> int:
        allowed = OPTIONS["bit_depth"].choices
        if value not in allowed:
            raise ValueError(f"must be {' or '.join(map(str, allowed))} (got {value})")
        return value

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_64(cls, value: int | None) -> int | None:
        if value is not None and value % 64:
            nearest = max(64, round(value / 64) * 64)
            raise ValueError(f"must be a multiple of 64 (got {value}; try {nearest})")
        return value


class RgbaImage(_Strict):
    """8-bit straight RGBA, row-major, base64."""

    rgba: str
    width: int = Field(ge=1, le=MAX_SIDE)
    height: int = Field(ge=1, le=MAX_SIDE)


class GrayImage(_Strict):
    """8-bit grayscale mask (0 = not selected, 255 = selected), row-major, base64."""

    gray: str
    width: int = Field(ge=1, le=MAX_SIDE)
    height: int = Field(ge=1, le=MAX_SIDE)


ImageValue = Annotated[
    str | RgbaImage | GrayImage,
    Field(description="base64 PNG string, {rgba,width,height} or, for masks, {gray,width,height}"),
]


class Region(_Strict):
    """Where a list item goes on the canvas: a box `{left, top, width, height}`, or a mask
    `{mask, left, top}` cropped to its bounds (in multipart bodies the mask may come as the part
    `<list>.<i>.mask` instead). Once a request is parsed, masks are images keyed
    `<list>.<i>.mask` (`item_image_key`) and `width`/`height` are the mask's."""

    left: int = Field(ge=0, le=MAX_SIDE)
    top: int = Field(ge=0, le=MAX_SIDE)
    width: int | None = Field(None, ge=1, le=MAX_SIDE)
    height: int | None = Field(None, ge=1, le=MAX_SIDE)
    mask: ImageValue | None = None

    @model_validator(mode="after")
    def _both_sides(self) -> Region:
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height (a box), or neither (a mask)")
        return self


def item_image_key(list_field: str, index: int) -> str:
    """The images-dict key (and multipart part name) of a list item's region mask."""
    return f"{list_field}.{index}.mask"


def region_fields(list_field: str) -> tuple[str, ...]:
    """The item fields of type `region` of a list input."""
    spec = LIST_INPUTS.get(list_field)
    if spec is None:
        return ()
    return tuple(option.name for option in spec.item_options if option.type == "region")


def split_item_images(params: GenerateParameters) -> tuple[GenerateParameters, dict[str, Any]]:
    """Take region masks out of a request's list items: the parameters without them (each
    region's `mask` null) and the mask values by `item_image_key`."""
    found: dict[str, Any] = {}
    updates: dict[str, Any] = {}
    for list_field in LIST_INPUTS:
        items = getattr(params, list_field, None)
        names = region_fields(list_field)
        if not items or not names:
            continue
        new_items = []
        for index, item in enumerate(items):
            changes: dict[str, Any] = {}
            for name in names:
                region = getattr(item, name, None)
                if isinstance(region, Region) and region.mask is not None:
                    found[item_image_key(list_field, index)] = region.mask
                    changes[name] = region.model_copy(update={"mask": None})
            new_items.append(item.model_copy(update=changes) if changes else item)
        if found:
            updates[list_field] = new_items
    return (params.model_copy(update=updates) if updates else params), found


_PYTHON_TYPES: dict[str, Any] = {
    "int": int,
    "float": float,
    "bool": bool,
    "enum": str,
    "text": str,
    "region": Region,
}


def _option_annotation(name: str) -> Any:
    option = OPTIONS[name]
    return _PYTHON_TYPES[option.type] | None


def _item_field(option: Option) -> Any:
    """A list item's field: default, bounds and help from its `Option`."""
    return Field(option.default, title=option.label, description=option.help, **_bounds(option))


def _list_item_model(name: str) -> type[BaseModel]:
    spec = LIST_INPUTS[name]
    fields: dict[str, Any] = {
        option.name: (_PYTHON_TYPES[option.type] | None, _item_field(option))
        for option in spec.item_options
    }
    fields.update({image.field: (ImageValue | None, None) for image in spec.item_images})
    model_name = "".join(part.title() for part in name.split("_")) + "Item"
    return create_model(model_name, __base__=_Strict, __doc__=spec.help, **fields)


def _extend_parameters(base: type[GenerateParameters]) -> type[GenerateParameters]:
    """Fields that only modes loaded from `ACETATE_EXTRA_MODES` declare (lists, new options)."""
    fields: dict[str, Any] = {}
    for name in OPTIONS:
        if name not in base.model_fields:
            fields[name] = (_option_annotation(name), option_field(name))
    for name, spec in LIST_INPUTS.items():
        if name not in base.model_fields:
            item = _list_item_model(name)
            fields[name] = (
                list[item] | None,  # type: ignore[valid-type]
                Field(None, min_length=spec.min_items, max_length=spec.max_items,
                      description=spec.help),
            )  # fmt: skip
    if not fields:
        return base
    return create_model("GenerateParameters", __base__=base, __doc__=base.__doc__, **fields)


# The models are extended at import time with `create_model` (fields from `ACETATE_EXTRA_MODES`,
# image fields), which mypy cannot follow: statically `GenerateParameters` stays the class above
# and `GenerateRequest` is a subclass of it with no extra declared fields.
if not TYPE_CHECKING:
    GenerateParameters = _extend_parameters(GenerateParameters)


def _request_model() -> type[GenerateParameters]:
    images: dict[str, Any] = {name: (ImageValue | None, None) for name in IMAGE_FIELDS}
    return create_model(
        "GenerateRequest",
        __base__=GenerateParameters,
        __doc__="The JSON body of POST /api/jobs: parameters plus images (`IMAGE_FIELDS`).",
        **images,
    )


if TYPE_CHECKING:

    class GenerateRequest(GenerateParameters):
        """The JSON body of POST /api/jobs: parameters plus images (`IMAGE_FIELDS`)."""

else:
    #: The JSON body of POST /api/jobs: parameters plus every image field any mode declares.
    GenerateRequest = _request_model()


def request_parameters(request: GenerateParameters) -> GenerateParameters:
    """The parameters of a validated `GenerateRequest`, without its images."""
    return GenerateParameters.model_validate(
        request.model_dump(exclude=set(IMAGE_FIELDS), exclude_unset=True)
    )


class ImageRecord(_Lenient):
    width: int
    height: int
    sha256: str


class CanvasSize(_Lenient):
    width: int
    height: int


class LayerRecord(_Lenient):
    """One layer image and where it goes on the canvas.

    `name` is what editors and the PSD call the layer; `key` is the mode's layer name it comes
    from (`object_0`; absent: the same as `name`), which orders it; `file` is its file — clients
    always use `file`, never derive it from `name`."""

    name: str
    batch_index: int
    file: str
    key: str | None = None
    left: int
    top: int
    width: int
    height: int
    visible: bool = True


class FileRecord(_Lenient):
    """A model file as a result record names it."""

    name: str
    sha256: str


class UsedFile(FileRecord):
    """A LayerDiffusion file a resolved request uses: the official kind it fills (a trained
    file fills the kind its metadata names)."""

    kind: str


class UsedLora(FileRecord):
    """A LoRA a resolved request applies (the result record's `files["lora:<name>"]`)."""

    strength: float


class ResultRecord(_Lenient):
    """The one result shape: `DIR/result.json`, a job's `result`, the `done` event."""

    id: str
    mode: Mode
    model: str
    parameters: dict[str, Any]
    canvas: CanvasSize
    layers: list[LayerRecord]
    psd: str | None = None
    #: The OpenRaster document's file name once written (`--ora`, or `result.ora` asked).
    ora: str | None = None
    warnings: list[str] = Field(default_factory=list)
    #: Measurements per result set, `{"batch_index": b, <name>: value}` (decompose: `psnr_db`,
    #: the recomposited layers against the input inside the region).
    metrics: list[dict[str, Any]] = Field(default_factory=list)
    #: Official kind → the LayerDiffusion file used for it (official or trained) and its SHA-256;
    #: `lora:<name>` → each LoRA applied; `embedding:<name>` → each embedding the prompts used.
    files: dict[str, FileRecord] = Field(default_factory=dict)


JobStatus = Literal["queued", "started", "done", "error", "cancelled"]


class JobError(_Lenient):
    code: str
    message: str
    field: str | None = None


class JobRecord(_Lenient):
    id: str
    status: JobStatus
    position: int | None = None
    result: ResultRecord | None = None
    error: JobError | None = None
    #: The name of the token that submitted the job; shown to admins only (`--tokens`).
    owner: str | None = None


class JobList(_Lenient):
    jobs: list[JobRecord]


class JobCreated(_Lenient):
    id: str
    position: int


class ErrorBody(_Lenient):
    error: JobError


class JobEvent(str, Enum):
    """WebSocket event types, server → client (plus subscribe/unsubscribe, client → server)."""

    queued = "queued"
    started = "started"
    progress = "progress"
    preview = "preview"
    layer_ready = "layer_ready"
    done = "done"
    error = "error"
    cancelled = "cancelled"


FINAL_EVENTS: frozenset[JobEvent] = frozenset({JobEvent.done, JobEvent.error, JobEvent.cancelled})


@dataclass
class JobMessage:
    """One WebSocket event: a JSON message, plus a binary frame for `preview`.

    Built with one constructor per event (`JobMessage.progress(...)` …); clients read messages
    with `from_json`, which keeps unknown fields (and ignores them) so new fields never break them.
    """

    type: JobEvent
    job_id: str | None
    fields: dict[str, Any] = field(default_factory=dict)
    binary: bytes | None = None

    def json(self) -> dict[str, Any]:
        return {"type": self.type.value, "job_id": self.job_id, **self.fields}

    @classmethod
    def from_json(cls, data: dict[str, Any], binary: bytes | None = None) -> JobMessage:
        """A received message (the client side); an unknown type raises ValueError."""
        fields = {key: value for key, value in data.items() if key not in ("type", "job_id")}
        return cls(JobEvent(data.get("type")), data.get("job_id"), fields, binary)

    @classmethod
    def queued(cls, job_id: str, position: int | None) -> JobMessage:
        return cls(JobEvent.queued, job_id, {"position": position})

    @classmethod
    def started(cls, job_id: str) -> JobMessage:
        return cls(JobEvent.started, job_id)

    @classmethod
    def progress(
        cls,
        job_id: str,
        step: int,
        total: int,
        eta_s: float | None,
        stage: str | None = None,
        label: str | None = None,
    ) -> JobMessage:
        eta = None if eta_s is None else round(float(eta_s), 2)
        fields: dict[str, Any] = {"step": step, "total": total, "eta_s": eta}
        if stage is not None:  # only modes that name their stages (decompose)
            fields.update(stage=stage, label=label)
        return cls(JobEvent.progress, job_id, fields)

    @classmethod
    def preview(cls, job_id: str, width: int, height: int, jpeg: bytes) -> JobMessage:
        fields = {"width": width, "height": height, "format": "jpeg"}
        return cls(JobEvent.preview, job_id, fields, jpeg)

    @classmethod
    def layer_ready(cls, job_id: str, layer: LayerRecord) -> JobMessage:
        return cls(JobEvent.layer_ready, job_id, {"layer": layer.model_dump(mode="json")})

    @classmethod
    def done(cls, job_id: str, result: ResultRecord) -> JobMessage:
        return cls(JobEvent.done, job_id, {"result": result.model_dump(mode="json")})

    @classmethod
    def failed(
        cls, job_id: str | None, error: JobError, result: ResultRecord | None = None
    ) -> JobMessage:
        """The `error` event (`job_id` None: about the socket's own messages); `result`: the
        partial result, when layers were finished before the failure."""
        fields = error.model_dump(mode="json")
        if result is not None:
            fields["result"] = result.model_dump(mode="json")
        return cls(JobEvent.error, job_id, fields)

    @classmethod
    def cancelled(cls, job_id: str, result: ResultRecord | None = None) -> JobMessage:
        """The `cancelled` event; `result`: the partial result, when layers were finished."""
        fields = {} if result is None else {"result": result.model_dump(mode="json")}
        return cls(JobEvent.cancelled, job_id, fields)

    @property
    def layer(self) -> LayerRecord:
        """`layer_ready`'s layer."""
        return LayerRecord.model_validate(self.fields["layer"])

    @property
    def result(self) -> ResultRecord:
        """`done`'s result record."""
        return ResultRecord.model_validate(self.fields["result"])


# -- resolved requests -------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageSettings(_Frozen):
    """One denoising stage as it will run."""

    name: str
    scheduler: Scheduler
    stop_at: float


class ResolvedRequest(_Frozen):
    """A request with every default filled for its base model's family and its mode.

    Made once (`acetate.engine.resolve.resolve_request`), at submit time on the server; the
    engine, the result record and the PNG/PSD metadata all read it. Round-trips through JSON.
    """

    #: Every non-image field with its default filled (`stop_at`, `scheduler`: the layer stage's;
    #: `width`/`height`: null in editor modes, whose frame is the input's).
    parameters: GenerateParameters
    family: str
    tiny: bool
    stages: tuple[StageSettings, ...]
    #: The model's working size for this request (editor modes fit their frame to it).
    native_size: int
    canvas: CanvasSize
    images: dict[str, ImageRecord]
    #: role → each LayerDiffusion file the request uses.
    files: dict[str, UsedFile]
    warnings: tuple[str, ...] = ()
    #: The LoRAs applied to the base for this job, in request order.
    loras: tuple[UsedLora, ...] = ()
    #: The textual-inversion embeddings the prompts name, loaded for this job.
    embeddings: tuple[FileRecord, ...] = ()

    @property
    def mode(self) -> str:
        return self.parameters.mode

    @property
    def spec(self) -> ModeSpec:
        return MODE_SPECS[self.parameters.mode]

    def file_records(self) -> dict[str, FileRecord]:
        """The result record's `files`: official kind → the file used for it, and
        `lora:<name>` → each LoRA applied, `embedding:<name>` → each embedding used."""
        records = {
            used.kind: FileRecord(name=used.name, sha256=used.sha256)
            for used in self.files.values()
        }
        for lora in self.loras:
            records[f"lora:{lora.name}"] = FileRecord(name=lora.name, sha256=lora.sha256)
        for embedding in self.embeddings:
            records[f"embedding:{embedding.name}"] = embedding
        return records

    def record_parameters(self) -> dict[str, Any]:
        """The result record's `parameters`: every field, images as {width, height, sha256}."""
        record = self.parameters.model_dump(mode="json")
        for name, image in self.images.items():
            list_field, _, rest = name.partition(".")
            index, _, _ = rest.partition(".")
            items = record.get(list_field) if rest else None
            if isinstance(items, list) and index.isdigit() and int(index) < len(items):
                # A list item's region mask: recorded inside its region.
                for region in region_fields(list_field):
                    if isinstance(items[int(index)].get(region), dict):
                        items[int(index)][region]["mask"] = image.model_dump()
                continue
            record[name] = image.model_dump()
        return record
