"""The Acetate wire protocol as the plugin sees it: request fields, records, events.

The modes themselves are not here: the server publishes them (`GET /api/modes`, parsed into
`ModesInfo`) and the docker builds its mode list, controls and inputs from that. Records are
parsed leniently (unknown keys are ignored), so a newer server does not break the plugin.
Qt-free and Krita-free (Krita's Python has no pydantic), so it is unit-tested anywhere.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from .pixels import Rect

MAX_SEED = 2**32 - 1
#: The protocol version this plugin speaks (`/api/health` and `/api/modes` report theirs).
API_VERSION = 2
#: Image sources a plugin knows how to read from a document.
CANVAS, LAYER, SELECTION = "canvas", "layer", "selection"


def _known(cls: type, data: Any) -> dict[str, Any]:
    """The keys of `data` that are fields of dataclass `cls` (unknown keys are ignored)."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def group_name(prompt: str, batch_index: int, label: str = "") -> str:
    """Group name for one batch item, the same in the PSD and in both editors: the prompt's
    first 60 characters (the mode's label when the prompt is empty) and `#<batch_index + 1>`."""
    return f"{prompt.strip()[:60] or label} #{batch_index + 1}"


@dataclass(frozen=True)
class OptionInfo:
    """One option a mode reads (`GET /api/modes`): type, range, defaults, where it is shown."""

    name: str
    label: str = ""
    help: str = ""
    type: str = "text"  # int, float, bool, enum, text, prompts
    default: Any = None
    family_defaults: dict[str, Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool | None = None
    multiple_of: int | None = None
    choices: tuple[str, ...] | None = None
    max_length: int | None = None
    advanced: bool = False
    depends_on: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> OptionInfo:
        known = _known(cls, data)
        if known.get("choices") is not None:
            known["choices"] = tuple(str(c) for c in known["choices"])
        if known.get("family_defaults") is not None:
            known["family_defaults"] = dict(known["family_defaults"])
        return cls(**known)

    def default_for(self, family: str | None) -> Any:
        """The default on `family` (the family's own default when it has one)."""
        if family is not None and self.family_defaults and family in self.family_defaults:
            return self.family_defaults[family]
        return self.default

    def valid(self, value: Any) -> bool:
        """Whether `value` fits this option (used for values read back from settings)."""
        if value is None:
            return True
        if self.type in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False
            if self.type == "int" and not float(value).is_integer():
                return False
            low, high = self.minimum, self.maximum
            if low is not None and (value < low or (self.exclusive_minimum and value == low)):
                return False
            return high is None or value <= high
        if self.type == "bool":
            return isinstance(value, bool)
        if self.type == "enum":
            return value in (self.choices or ())
        if self.type == "text":
            return isinstance(value, str) and (
                self.max_length is None or len(value) <= self.max_length
            )
        if self.type == "prompts":
            return isinstance(value, dict)
        return False


@dataclass(frozen=True)
class ImageInputInfo:
    """An image or mask a mode takes, and where an editor reads it from."""

    field: str
    label: str = ""
    help: str = ""
    kind: str = "rgba"  # rgba, mask
    source: str = LAYER  # canvas, layer, selection
    required: bool = True
    frame: bool = False
    relative_to: str | None = None
    #: Only sent when each named option has one of the listed values.
    when: dict[str, tuple[str, ...]] | None = None
    #: The result replaces the layer this image is read from: it lands right above that
    #: layer, which is hidden (shown again by "Undo whole result").
    replaced: bool = False
    #: Sources the user may pick instead of `source` (the whole canvas instead of the layer).
    other_sources: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> ImageInputInfo:
        known = _known(cls, data)
        if known.get("when") is not None:
            known["when"] = {str(k): tuple(v) for k, v in dict(known["when"]).items()}
        known["replaced"] = bool(known.get("replaced"))
        known["other_sources"] = tuple(str(s) for s in known.get("other_sources") or ())
        return cls(**known)

    @property
    def sources(self) -> tuple[str, ...]:
        """Where this input can be read from, the declared `source` first."""
        return (self.source, *(s for s in self.other_sources if s != self.source))


@dataclass(frozen=True)
class ListInputInfo:
    """A list input: each item carries its own options (and images, unsupported here)."""

    field: str
    label: str = ""
    help: str = ""
    min_items: int = 0
    max_items: int | None = None
    item_options: tuple[OptionInfo, ...] = ()
    item_images: tuple[Any, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> ListInputInfo:
        known = _known(cls, data)
        known["item_options"] = tuple(
            OptionInfo.from_json(o) for o in known.get("item_options") or ()
        )
        known["item_images"] = tuple(known.get("item_images") or ())
        known["min_items"] = int(known.get("min_items") or 0)
        return cls(**known)

    def new_item(self) -> dict[str, Any]:
        return {option.name: option.default for option in self.item_options}


@dataclass(frozen=True)
class LayerInfo:
    """One layer (or a pattern of layers, `{i}` counted from a list) a mode returns."""

    name: str
    label: str = ""
    visible: bool = True
    keeps_alpha: bool = True
    count_from: str | None = None
    #: Returned only when this image input is not sent (a generated background).
    only_without: str | None = None
    #: Counted layers: the list item field whose text is each layer's name in records.
    title_from: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> LayerInfo:
        return cls(**_known(cls, data))

    @property
    def fixed(self) -> bool:
        return "{i}" not in self.name

    def number(self, name: str) -> int | None:
        """The pattern's `i` for a layer called `name`; 0 for the fixed name; None: no match."""
        if self.fixed:
            return 0 if name == self.name else None
        head, _, tail = self.name.partition("{i}")
        middle = name[len(head) : len(name) - len(tail)] if len(name) > len(head + tail) else ""
        if name.startswith(head) and name.endswith(tail) and middle.isdigit():
            return int(middle)
        return None


@dataclass(frozen=True)
class FamilyInfo:
    family: str
    label: str = ""
    supported: bool = True
    stages: tuple[Any, ...] | None = None
    reason: str | None = None
    #: part → the official kinds of LayerDiffusion file that fill it, preferred first.
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> FamilyInfo:
        known = _known(cls, data)
        if known.get("stages") is not None:
            known["stages"] = tuple(known["stages"])
        files = known.get("files") if isinstance(known.get("files"), dict) else {}
        known["files"] = {str(part): tuple(str(k) for k in kinds) for part, kinds in files.items()}
        return cls(**known)


@dataclass(frozen=True)
class ModeInfo:
    """One mode as the server declares it (`GET /api/modes`)."""

    name: str
    label: str = ""
    help: str = ""
    prompt_required: bool = True
    inputs: tuple[ImageInputInfo, ...] = ()
    lists: tuple[ListInputInfo, ...] = ()
    frame: str | None = None
    frame_scale: str | None = None
    layers: tuple[LayerInfo, ...] = ()
    options: tuple[OptionInfo, ...] = ()
    families: tuple[FamilyInfo, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> ModeInfo:
        known = _known(cls, data)
        known["name"] = str(known["name"])
        known["label"] = str(known.get("label") or known["name"])
        parts = (
            ("inputs", ImageInputInfo),
            ("lists", ListInputInfo),
            ("layers", LayerInfo),
            ("options", OptionInfo),
            ("families", FamilyInfo),
        )
        for key, kind in parts:
            known[key] = tuple(kind.from_json(item) for item in known.get(key) or ())  # type: ignore[attr-defined]
        return cls(**known)

    def option(self, name: str) -> OptionInfo | None:
        return next((option for option in self.options if option.name == name), None)

    def list_input(self, name: str) -> ListInputInfo | None:
        return next((item for item in self.lists if item.field == name), None)

    def family(self, name: str) -> FamilyInfo | None:
        return next((family for family in self.families if family.family == name), None)

    @property
    def fixed_layers(self) -> tuple[LayerInfo, ...]:
        return tuple(layer for layer in self.layers if layer.fixed)

    def layer_key(self, name: str) -> tuple[int, int]:
        """Where a layer called `name` stacks in its group (sorts bottom → top)."""
        for index, layer in enumerate(self.layers):
            number = layer.number(name)
            if number is not None:
                return index, number
        return len(self.layers), 0  # not declared: on top

    def layer_names(self, counts: dict[str, int], images: Iterable[str] | None = None) -> list[str]:
        """Layer names of one batch item, bottom → top (patterns repeated `counts[...]` times;
        with `images`, the image fields sent, layers `only_without` one of them drop out)."""
        sent = set(images) if images is not None else set()
        names: list[str] = []
        for layer in self.layers:
            if layer.only_without is not None and layer.only_without in sent:
                continue
            if layer.fixed:
                names.append(layer.name)
            else:
                count = counts.get(layer.count_from or "", 0)
                names += [layer.name.replace("{i}", str(i)) for i in range(count)]
        return names


@dataclass(frozen=True)
class ModesInfo:
    """GET /api/modes: every mode the server runs, in the order editors list them."""

    api_version: int = 0
    modes: tuple[ModeInfo, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> ModesInfo:
        known = _known(cls, data)
        return cls(
            api_version=int(known.get("api_version") or 0),
            modes=tuple(ModeInfo.from_json(mode) for mode in known.get("modes") or ()),
        )

    def get(self, name: str | None) -> ModeInfo | None:
        return next((mode for mode in self.modes if mode.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(mode.name for mode in self.modes)


@dataclass
class Parameters:
    """The non-image request fields: the fixed ones plus the options the chosen mode lists.

    `options` holds option and list values by field name; None means "the server's default".
    """

    mode: str = "fg"
    prompt: str = ""
    model: str | None = None
    seed: int | None = None
    batch: int = 1
    client_id: str | None = None
    selection_bounds: Rect | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"mode": self.mode, "prompt": self.prompt, "batch": self.batch}
        optional: dict[str, Any] = {
            "model": self.model,
            "seed": self.seed,
            "client_id": self.client_id,
            **self.options,
        }
        if self.selection_bounds is not None:
            optional["selection_bounds"] = self.selection_bounds.to_json()
        data.update({key: value for key, value in optional.items() if value not in (None, {})})
        return data


@dataclass(frozen=True)
class WireImage:
    """An image field as raw bytes: 8-bit straight RGBA (4 bytes/px) or a mask (1 byte/px)."""

    data: bytes
    width: int
    height: int

    @property
    def channels(self) -> int:
        return len(self.data) // (self.width * self.height)

    def __post_init__(self) -> None:
        if (
            self.width < 1
            or self.height < 1
            or len(self.data)
            not in (
                self.width * self.height,
                4 * self.width * self.height,
            )
        ):
            raise ValueError(f"{len(self.data)} bytes is not a {self.width}×{self.height} image")


def encode_multipart(
    request: dict[str, Any], images: dict[str, WireImage], boundary: str | None = None
) -> tuple[str, bytes]:
    """A POST /api/jobs body: the JSON `request` part plus one raw part per image.

    Returns (Content-Type header value, body).
    """
    boundary = boundary or f"acetate-{uuid.uuid4().hex}"
    chunks: list[bytes] = []

    def part(name: str, content_type: str, payload: bytes) -> None:
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        chunks.extend((head.encode(), payload, b"\r\n"))

    part("request", "application/json", json.dumps(request).encode())
    for name, image in images.items():
        part(name, "application/octet-stream", image.data)
        part(f"{name}_width", "text/plain", str(image.width).encode())
        part(f"{name}_height", "text/plain", str(image.height).encode())
    chunks.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(chunks)


@dataclass(frozen=True)
class LayerRecord:
    """One layer image of a result and where it goes on the canvas."""

    name: str
    batch_index: int
    file: str
    left: int
    top: int
    width: int
    height: int
    visible: bool = True
    #: The mode's layer name it comes from (`object_0`), when `name` is a title (a scene
    #: object's prompt); stacking uses it.
    key: str | None = None

    @property
    def stack_name(self) -> str:
        """The name the mode's `layers` declare for this layer (ordering, visibility)."""
        return self.key or self.name

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerRecord:
        return cls(
            name=str(data["name"]),
            batch_index=int(data["batch_index"]),
            file=str(data["file"]),
            left=int(data["left"]),
            top=int(data["top"]),
            width=int(data["width"]),
            height=int(data["height"]),
            visible=bool(data.get("visible", True)),
            key=None if data.get("key") is None else str(data["key"]),
        )

    @property
    def rect(self) -> Rect:
        return Rect(self.left, self.top, self.width, self.height)


@dataclass(frozen=True)
class ResultRecord:
    """The result of a finished job (`done` event, GET /api/jobs/{id} `result`)."""

    id: str
    mode: str
    model: str
    parameters: dict[str, Any]
    canvas_width: int
    canvas_height: int
    layers: tuple[LayerRecord, ...]
    psd: str | None = None
    warnings: tuple[str, ...] = ()
    #: Official kind → the LayerDiffusion file used for it: {name, sha256}.
    files: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResultRecord:
        canvas = data.get("canvas") or {}
        return cls(
            id=str(data["id"]),
            mode=str(data["mode"]),
            model=str(data.get("model", "")),
            parameters=dict(data.get("parameters") or {}),
            canvas_width=int(canvas.get("width", 0)),
            canvas_height=int(canvas.get("height", 0)),
            layers=tuple(LayerRecord.from_json(layer) for layer in data.get("layers", [])),
            psd=data.get("psd"),
            warnings=tuple(str(w) for w in data.get("warnings", [])),
            files={
                str(kind): {str(k): str(v) for k, v in file.items()}
                for kind, file in (data.get("files") or {}).items()
                if isinstance(file, dict)
            },
        )

    @property
    def prompt(self) -> str:
        return str(self.parameters.get("prompt") or "")

    def counts(self) -> dict[str, int]:
        """List lengths of the request (what `{i}` layer patterns are counted from)."""
        return {k: len(v) for k, v in self.parameters.items() if isinstance(v, list)}

    def groups(self, mode: ModeInfo | None = None) -> list[tuple[str, list[LayerRecord]]]:
        """(group name, layers bottom → top) per batch item, in batch order.

        With the mode's declaration, layers stack in the order it declares them (patterns by
        their number); without it, in the record's order.
        """
        by_batch: dict[int, list[LayerRecord]] = {}
        for layer in self.layers:
            by_batch.setdefault(layer.batch_index, []).append(layer)
        label = mode.label if mode is not None else self.mode
        groups = []
        for index in sorted(by_batch):
            layers = by_batch[index]
            if mode is not None:
                layers = sorted(layers, key=lambda layer: mode.layer_key(layer.stack_name))
            groups.append((group_name(self.prompt, index, label), layers))
        return groups


@dataclass(frozen=True)
class JobRecord:
    """GET /api/jobs/{id}: a job's status, queue position, result or error."""

    id: str
    status: str
    position: int | None = None
    result: ResultRecord | None = None
    error: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        result = data.get("result")
        position = data.get("position")
        return cls(
            id=str(data["id"]),
            status=str(data.get("status", "")),
            position=None if position is None else int(position),
            result=None if result is None else ResultRecord.from_json(result),
            error=dict(data["error"]) if data.get("error") else None,
        )


class JobEvent(str, Enum):
    """WebSocket event types, server → client."""

    queued = "queued"
    started = "started"
    progress = "progress"
    preview = "preview"
    layer_ready = "layer_ready"
    done = "done"
    error = "error"
    cancelled = "cancelled"


FINAL_EVENTS = frozenset({JobEvent.done, JobEvent.error, JobEvent.cancelled})


@dataclass
class Event:
    """One server event; `binary` is the image frame that follows a `preview` header."""

    type: JobEvent
    job_id: str | None
    fields: dict[str, Any] = field(default_factory=dict)
    binary: bytes | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        """A received message; unknown types raise ValueError."""
        fields = {key: value for key, value in data.items() if key not in ("type", "job_id")}
        job_id = data.get("job_id")
        return cls(JobEvent(data.get("type")), None if job_id is None else str(job_id), fields)

    @property
    def final(self) -> bool:
        return self.type in FINAL_EVENTS


def subscribe_message(job_ids: list[str]) -> str:
    return json.dumps({"type": "subscribe", "jobs": job_ids})


def unsubscribe_message(job_ids: list[str]) -> str:
    return json.dumps({"type": "unsubscribe", "jobs": job_ids})


@dataclass(frozen=True)
class BaseModelInfo:
    """One base model from GET /api/models."""

    name: str
    family: str
    tiny: bool
    #: mode → file names still missing for it (empty: usable)
    missing: dict[str, list[str]]
    #: mode → why it can never run on this family
    unsupported: dict[str, str]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BaseModelInfo:
        return cls(
            name=str(data["name"]),
            family=str(data.get("family", "sdxl")),
            tiny=bool(data.get("tiny", False)),
            missing={str(k): [str(f) for f in v] for k, v in (data.get("modes") or {}).items()},
            unsupported={str(k): str(v) for k, v in (data.get("unsupported_modes") or {}).items()},
        )

    @property
    def label(self) -> str:
        return f"{self.name} (test model)" if self.tiny else self.name


@dataclass(frozen=True)
class LayerFileInfo:
    """One LayerDiffusion file from GET /api/models (`layer_files`): official or trained."""

    name: str
    #: The official kind it fills (a trained file: the kind its metadata names).
    kind: str
    family: str
    tiny: bool = False
    #: None for a released file; else its `acetate.*` metadata (`acetate.steps`…).
    trained: dict[str, str] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerFileInfo:
        trained = data.get("trained")
        return cls(
            name=str(data["name"]),
            kind=str(data.get("kind", "")),
            family=str(data.get("family", "")),
            tiny=bool(data.get("tiny", False)),
            trained={str(k): str(v) for k, v in trained.items()}
            if isinstance(trained, dict)
            else None,
        )


@dataclass(frozen=True)
class ModelFileInfo:
    """A file GET /api/models lists for a family: a ControlNet (`controlnets`), a LoRA
    (`loras`) or a textual-inversion embedding (`embeddings`)."""

    name: str
    family: str
    tiny: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelFileInfo:
        return cls(
            name=str(data["name"]),
            family=str(data.get("family", "")),
            tiny=bool(data.get("tiny", False)),
        )

    def fits(self, base: BaseModelInfo | None) -> bool:
        """Whether it runs on `base`: the base's family, tiny with tiny."""
        return base is not None and self.family == base.family and self.tiny == base.tiny


def _model_files(items: Any) -> tuple[ModelFileInfo, ...]:
    return tuple(
        ModelFileInfo.from_json(item)
        for item in items or []
        if isinstance(item, dict) and "name" in item
    )


@dataclass(frozen=True)
class ModelsInfo:
    """GET /api/models, reduced to what the docker shows."""

    bases: tuple[BaseModelInfo, ...] = ()
    default: str | None = None
    #: missing file kind → {file, folder, url, command}
    where_to_get: dict[str, dict[str, str]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    layer_files: tuple[LayerFileInfo, ...] = ()
    controlnets: tuple[ModelFileInfo, ...] = ()
    loras: tuple[ModelFileInfo, ...] = ()
    #: None: the server does not list embeddings (the docker hides its embedding menu).
    embeddings: tuple[ModelFileInfo, ...] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelsInfo:
        return cls(
            bases=tuple(BaseModelInfo.from_json(b) for b in data.get("bases") or []),
            default=data.get("default_base"),
            where_to_get={str(k): dict(v) for k, v in (data.get("get") or {}).items()},
            warnings=tuple(str(w) for w in data.get("warnings") or []),
            layer_files=tuple(
                LayerFileInfo.from_json(f)
                for f in data.get("layer_files") or []
                if isinstance(f, dict) and "name" in f
            ),
            controlnets=_model_files(data.get("controlnets")),
            loras=_model_files(data.get("loras")),
            embeddings=_model_files(data["embeddings"]) if "embeddings" in data else None,
        )

    def base(self, name: str | None) -> BaseModelInfo | None:
        return next((b for b in self.bases if b.name == name), None)

    def mode_problem(self, name: str | None, mode: str) -> str | None:
        """Why `mode` cannot run on base `name` as installed, in plain words; None if it can."""
        base = self.base(name)
        if base is None:
            return None
        if mode in base.unsupported:
            return base.unsupported[mode]
        missing = base.missing.get(mode) or []
        if not missing:
            return None
        hints = []
        for file in missing:
            where = self.where_to_get.get(file.removesuffix(".safetensors"))
            hints.append(f"{file} (into {where['folder']})" if where else file)
        return f"{mode} on {base.name} needs " + ", ".join(hints)
