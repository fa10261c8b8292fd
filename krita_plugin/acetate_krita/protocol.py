"""The Acetate wire protocol as the plugin sees it: request fields, records, events.

Mirrors `server/acetate/protocol.py` and docs/protocol.md by hand (Krita's Python has no
pydantic). Qt-free and Krita-free, so it is unit-tested in the project's test suite.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .pixels import Rect

MODES: tuple[str, ...] = (
    "fg",
    "fg2bg",
    "bg2fg",
    "joint",
    "img2img",
    "inpaint",
    "layer_on_artwork",
    "upscale",
)
MODE_LABELS: dict[str, str] = {
    "fg": "Foreground (new transparent layer)",
    "fg2bg": "Background behind the active layer",
    "bg2fg": "Foreground over the canvas",
    "joint": "Foreground + background together",
    "img2img": "Vary the active layer",
    "inpaint": "Inpaint the active layer",
    "layer_on_artwork": "Layer on artwork (selection)",
    "upscale": "Upscale the active layer",
}
#: Layers each mode returns per batch item, bottom to top as stacked in a document.
MODE_LAYERS: dict[str, tuple[str, ...]] = {
    "fg": ("foreground",),
    "fg2bg": ("background", "blended"),
    "bg2fg": ("foreground", "blended"),
    "joint": ("background", "foreground", "blended"),
    "img2img": ("foreground",),
    "inpaint": ("foreground",),
    "layer_on_artwork": ("foreground",),
    "upscale": ("foreground",),
}
#: Where each image field comes from in the document: the composited canvas, the active
#: layer, or the selection (a mask).
CANVAS, LAYER, SELECTION = "canvas", "layer", "selection"
MODE_IMAGES: dict[str, dict[str, str]] = {
    "fg": {},
    "fg2bg": {"fg": LAYER},
    "bg2fg": {"bg": CANVAS},
    "joint": {},
    "img2img": {"image": LAYER, "mask": SELECTION},
    "inpaint": {"image": LAYER, "mask": SELECTION},
    "layer_on_artwork": {"canvas": CANVAS, "selection": SELECTION},
    "upscale": {"image": LAYER},
}
#: Form inputs each mode uses besides prompt, negative prompt, seed, steps, cfg, batch, decode.
SIZE, STRENGTH, SCALE, LAYER_PROMPTS = "size", "strength", "scale", "layer_prompts"
MODE_OPTIONS: dict[str, frozenset[str]] = {
    "fg": frozenset({SIZE}),
    "fg2bg": frozenset(),
    "bg2fg": frozenset(),
    "joint": frozenset({SIZE, LAYER_PROMPTS}),
    "img2img": frozenset({STRENGTH}),
    "inpaint": frozenset({STRENGTH}),
    "layer_on_artwork": frozenset(),
    "upscale": frozenset({STRENGTH, SCALE}),
}
#: Native generation size per model family (DESIGN.md request fields).
FAMILY_SIZE: dict[str, int] = {"sdxl": 1024, "sd15": 512}
DECODES: tuple[str, ...] = ("tta", "fast")
MAX_SEED = 2**32 - 1


def group_name(prompt: str, batch_index: int) -> str:
    """Group name for one batch item, the same in the PSD and in both editors."""
    return f"{prompt[:60]} #{batch_index + 1}"


@dataclass
class Parameters:
    """The non-image request fields the plugin sets; None means "the server's default"."""

    mode: str = "fg"
    prompt: str = ""
    negative_prompt: str = ""
    model: str | None = None
    seed: int | None = None
    steps: int | None = None
    cfg: float | None = None
    width: int | None = None
    height: int | None = None
    batch: int = 1
    strength: float | None = None
    scale: float | None = None
    decode: str = "tta"
    layer_prompts: dict[str, str] | None = None
    selection_bounds: Rect | None = None
    client_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The request object, without the fields this mode does not use."""
        options = MODE_OPTIONS[self.mode]
        data: dict[str, Any] = {
            "mode": self.mode,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "batch": self.batch,
            "decode": self.decode,
        }
        optional: dict[str, Any] = {
            "model": self.model,
            "seed": self.seed,
            "steps": self.steps,
            "cfg": self.cfg,
            "client_id": self.client_id,
        }
        if SIZE in options:
            optional.update(width=self.width, height=self.height)
        if STRENGTH in options:
            optional["strength"] = self.strength
        if SCALE in options:
            optional["scale"] = self.scale
        if LAYER_PROMPTS in options and self.layer_prompts:
            optional["layer_prompts"] = {k: v for k, v in self.layer_prompts.items() if v}
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
        )

    @property
    def prompt(self) -> str:
        return str(self.parameters.get("prompt") or "")

    def groups(self) -> list[tuple[str, list[LayerRecord]]]:
        """(group name, layers bottom → top) per batch item, in batch order."""
        by_batch: dict[int, list[LayerRecord]] = {}
        for layer in self.layers:
            by_batch.setdefault(layer.batch_index, []).append(layer)
        return [(group_name(self.prompt, index), by_batch[index]) for index in sorted(by_batch)]


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
    def native_size(self) -> int:
        return FAMILY_SIZE.get(self.family, 1024)

    @property
    def label(self) -> str:
        return f"{self.name} (test model)" if self.tiny else self.name


@dataclass(frozen=True)
class ModelsInfo:
    """GET /api/models, reduced to what the docker shows."""

    bases: tuple[BaseModelInfo, ...] = ()
    default: str | None = None
    #: missing file kind → {file, folder, url, command}
    where_to_get: dict[str, dict[str, str]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelsInfo:
        return cls(
            bases=tuple(BaseModelInfo.from_json(b) for b in data.get("bases") or []),
            default=data.get("default_base"),
            where_to_get={str(k): dict(v) for k, v in (data.get("get") or {}).items()},
            warnings=tuple(str(w) for w in data.get("warnings") or []),
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
