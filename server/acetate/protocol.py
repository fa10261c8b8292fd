"""The wire protocol: request fields, result and job records, WebSocket events.

One schema serves the CLI (flags map 1:1 to fields), the HTTP API (validation and the
OpenAPI document) and the result files. The JavaScript and Krita clients mirror it by hand
(see docs/protocol.md); change it on purpose and everywhere at once.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Mode = Literal["fg", "fg2bg", "bg2fg", "joint", "img2img", "inpaint", "layer_on_artwork", "upscale"]
MODES: tuple[Mode, ...] = (
    "fg",
    "fg2bg",
    "bg2fg",
    "joint",
    "img2img",
    "inpaint",
    "layer_on_artwork",
    "upscale",
)
#: Modes with an image input: their layers come back in that input's pixel frame.
EDITOR_MODES: frozenset[str] = frozenset(
    {"fg2bg", "bg2fg", "img2img", "inpaint", "layer_on_artwork", "upscale"}
)
#: The image input whose frame an editor mode's layers use.
FRAME_IMAGE: dict[str, str] = {
    "fg2bg": "fg",
    "bg2fg": "bg",
    "img2img": "image",
    "inpaint": "image",
    "layer_on_artwork": "canvas",
    "upscale": "image",
}
#: Image inputs each mode cannot run without.
REQUIRED_IMAGES: dict[str, tuple[str, ...]] = {
    "fg": (),
    "fg2bg": ("fg",),
    "bg2fg": ("bg",),
    "joint": (),
    "img2img": ("image",),
    "inpaint": ("image", "mask"),
    "layer_on_artwork": ("canvas",),
    "upscale": ("image",),
}
#: Image inputs each mode can use (anything else sent is an error, not silently ignored).
ALLOWED_IMAGES: dict[str, tuple[str, ...]] = {
    "fg": ("control_image",),
    "fg2bg": ("fg", "control_image"),
    "bg2fg": ("bg", "control_image"),
    "joint": ("control_image",),
    "img2img": ("image", "mask", "control_image"),
    "inpaint": ("image", "mask", "control_image"),
    "layer_on_artwork": ("canvas", "selection", "control_image"),
    "upscale": ("image", "control_image"),
}
IMAGE_FIELDS: tuple[str, ...] = (
    "canvas",
    "selection",
    "fg",
    "bg",
    "image",
    "mask",
    "control_image",
)
MASK_FIELDS: frozenset[str] = frozenset({"selection", "mask"})
LAYER_NAMES: tuple[str, ...] = ("foreground", "background", "blended")
#: Layers each mode returns per result set, bottom to top as stacked in a document.
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

Scheduler = Literal["dpm++_2m_karras", "dpm++_2m_sde_karras", "euler_a", "euler", "unipc", "ddim"]
SCHEDULERS: tuple[str, ...] = (
    "dpm++_2m_karras",
    "dpm++_2m_sde_karras",
    "euler_a",
    "euler",
    "unipc",
    "ddim",
)
Decode = Literal["tta", "fast"]
Control = Literal["none", "canny", "image"]

MAX_SEED = 2**32 - 1
MAX_SIDE = 8192
MAX_PIXELS = 64 * 1024 * 1024
MAX_PROMPT = 4000


def layer_file_name(name: str, batch_index: int) -> str:
    """`foreground.png` for batch item 0, `foreground_2.png` for item 2."""
    return f"{name}.png" if batch_index == 0 else f"{name}_{batch_index}.png"


def group_name(prompt: str, batch_index: int) -> str:
    """Group name for one result set, the same in the PSD and in both editors."""
    return f"{prompt[:60]} #{batch_index + 1}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


class GenerateParameters(_Strict):
    """Every non-image request field. `None` means "the default for this model family and mode"."""

    mode: Mode = "fg"
    model: str | None = Field(None, max_length=200, description="Base model name from /api/models")
    prompt: str = Field("", max_length=MAX_PROMPT, description="Required except for upscale")
    negative_prompt: str = Field("", max_length=MAX_PROMPT)
    layer_prompts: LayerPrompts | None = None
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Random when absent; recorded")
    steps: int | None = Field(None, ge=1, le=150)
    cfg: float | None = Field(None, ge=0.0, le=30.0)
    scheduler: Scheduler | None = None
    width: int | None = Field(None, ge=64, le=4096, description="Multiple of 64; fg and joint")
    height: int | None = Field(None, ge=64, le=4096, description="Multiple of 64; fg and joint")
    batch: int = Field(1, ge=1, le=16, description="Number of result sets")
    strength: float = Field(0.7, gt=0.0, le=1.0)
    layer_weight: float = Field(1.0, ge=0.0, le=2.0)
    stop_at: float | None = Field(None, gt=0.0, le=1.0)
    decode: Decode = "tta"
    scale: float = Field(2.0, gt=1.0, le=4.0)
    margin: int = Field(64, ge=0, le=2048)
    feather: int = Field(4, ge=0, le=256)
    control: Control = "none"
    controlnet: str | None = Field(None, max_length=200)
    control_strength: float = Field(1.0, ge=0.0, le=2.0)
    selection_bounds: Bounds | None = None
    client_id: str | None = Field(None, max_length=128)

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


class GenerateRequest(GenerateParameters):
    """The JSON body of POST /api/jobs: parameters plus images."""

    canvas: ImageValue | None = None
    selection: ImageValue | None = None
    fg: ImageValue | None = None
    bg: ImageValue | None = None
    image: ImageValue | None = None
    mask: ImageValue | None = None
    control_image: ImageValue | None = None

    def parameters(self) -> GenerateParameters:
        return GenerateParameters.model_validate(self.model_dump(exclude=set(IMAGE_FIELDS)))


class ImageRecord(_Strict):
    width: int
    height: int
    sha256: str


class CanvasSize(_Strict):
    width: int
    height: int


class LayerRecord(_Strict):
    """One layer image and where it goes on the canvas."""

    name: str
    batch_index: int
    file: str
    left: int
    top: int
    width: int
    height: int
    visible: bool = True


class ResultRecord(_Strict):
    """The one result shape: `DIR/result.json`, a job's `result`, the `done` event."""

    id: str
    mode: Mode
    model: str
    parameters: dict[str, Any]
    canvas: CanvasSize
    layers: list[LayerRecord]
    psd: str | None = None
    warnings: list[str] = Field(default_factory=list)


JobStatus = Literal["queued", "started", "done", "error", "cancelled"]


class JobError(_Strict):
    code: str
    message: str
    field: str | None = None


class JobRecord(_Strict):
    id: str
    status: JobStatus
    position: int | None = None
    result: ResultRecord | None = None
    error: JobError | None = None


class JobList(_Strict):
    jobs: list[JobRecord]


class JobCreated(_Strict):
    id: str
    position: int


class ErrorBody(_Strict):
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


def event_message(event: JobEvent, job_id: str, **fields: Any) -> dict[str, Any]:
    """A WebSocket JSON message: `{"type": event, "job_id": id, ...fields}`."""
    return {"type": event.value, "job_id": job_id, **fields}
