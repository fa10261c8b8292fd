"""Every generation mode, declared once.

A `ModeSpec` says everything the rest of Acetate needs to know about a mode: its label and help,
the images it takes (and which one sets the result frame), list inputs whose items carry their
own fields, whether it needs a prompt, the layers it returns (fixed names or a pattern counted
from the request), the options it reads with their defaults per model family, the families it
runs on (the official files each needs, or why it cannot) and its denoising stages. The request
schema, the CLI flags, `GET /api/modes`, both editors' controls, result ordering, visibility and
alpha rules, the model requirements and the engine's pipeline table are all derived from here.

Adding a mode = one `ModeSpec` here + one pipeline function (named by `pipeline`) + its tests.
Modules named in `ACETATE_EXTRA_MODES` (comma-separated, each with a `MODES` list) are loaded
before anything else reads the registry; the test suite uses it for a dummy mode.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from dataclasses import field as default_field
from typing import Any, Literal, get_args

#: A base model family; `acetate.engine.store.family` identifies checkpoints as one of these.
Family = Literal["sd15", "sdxl"]
#: `region`: where a list item goes on the canvas, a box `{left, top, width, height}` or a mask
#: `{mask, left, top}` cropped to its bounds (multipart part `<list>.<i>.mask`).
OptionType = Literal["int", "float", "bool", "enum", "text", "prompts", "region"]
ImageKind = Literal["rgba", "mask"]
#: Where an editor reads an image input from: the visible composite of the document, one
#: layer (the active one unless the user picks another), or the selection as a mask.
ImageSource = Literal["canvas", "layer", "selection"]

#: Sampler names (`acetate.engine.schedulers` maps each to a diffusers scheduler).
Scheduler = Literal["dpm++_2m_karras", "dpm++_2m_sde_karras", "euler_a", "euler", "unipc", "ddim"]
SCHEDULERS: tuple[Scheduler, ...] = get_args(Scheduler)
FAMILIES: tuple[Family, ...] = ("sdxl", "sd15")
FAMILY_LABELS: dict[Family, str] = {"sdxl": "SDXL", "sd15": "SD1.5"}
#: Test models generate at this size so every mode runs on a CPU in seconds.
TINY_SIZE = 256


@dataclass(frozen=True)
class Option:
    """A request field a mode may read: type, range, default and per-family defaults."""

    name: str
    label: str
    help: str
    type: OptionType
    default: Any = None
    family_defaults: Mapping[Family, Any] = default_field(default_factory=dict)
    minimum: float | None = None
    maximum: float | None = None
    #: True: `minimum` itself is not allowed (strength > 0).
    exclusive_minimum: bool = False
    multiple_of: int | None = None
    choices: tuple[str, ...] = ()
    max_length: int | None = None
    #: Editors show basic options in the main form, the rest under "Advanced".
    advanced: bool = False
    #: Option names this one only matters with (controlnet only with control ≠ none).
    depends_on: str | None = None

    def default_for(self, family: Family | None) -> Any:
        if family is not None and family in self.family_defaults:
            return self.family_defaults[family]
        return self.default

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "help": self.help,
            "type": self.type,
            "default": self.default,
            "advanced": self.advanced,
        }
        optional = {
            "family_defaults": dict(self.family_defaults) or None,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "exclusive_minimum": self.exclusive_minimum or None,
            "multiple_of": self.multiple_of,
            "choices": list(self.choices) or None,
            "max_length": self.max_length,
            "depends_on": self.depends_on,
        }
        data.update({key: value for key, value in optional.items() if value is not None})
        return data


@dataclass(frozen=True)
class ImageInput:
    """An image or mask request field."""

    field: str
    label: str
    help: str
    kind: ImageKind = "rgba"
    source: ImageSource = "layer"
    required: bool = True
    #: The result frame is this image's pixel frame (editor modes).
    frame: bool = False
    #: A mask's reference image: same size, or placed by `selection_bounds`.
    relative_to: str | None = None
    #: Only used when these options have one of these values (control_image with control).
    when: Mapping[str, tuple[str, ...]] = default_field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "field": self.field,
            "label": self.label,
            "help": self.help,
            "kind": self.kind,
            "source": self.source,
            "required": self.required,
            "frame": self.frame,
        }
        if self.relative_to:
            data["relative_to"] = self.relative_to
        if self.when:
            data["when"] = {key: list(values) for key, values in self.when.items()}
        return data


@dataclass(frozen=True)
class ListInput:
    """A list-valued request field whose items carry their own fields (and images)."""

    field: str
    label: str
    help: str
    item_options: tuple[Option, ...]
    min_items: int = 1
    max_items: int = 16
    item_images: tuple[ImageInput, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "label": self.label,
            "help": self.help,
            "min_items": self.min_items,
            "max_items": self.max_items,
            "item_options": [option.to_json() for option in self.item_options],
            "item_images": [image.to_json() for image in self.item_images],
        }


@dataclass(frozen=True)
class LayerOut:
    """One layer (or a numbered run of layers) a mode returns per result set."""

    name: str
    label: str
    #: A pattern `object_{i}` is repeated for i = 0 … count-1, the count taken from this request
    #: field (a list's length, or an int option's value).
    count_from: str | None = None
    visible: bool = True
    #: Written with an alpha channel even when fully opaque (transparent layers).
    keeps_alpha: bool = False
    #: Returned only when this image input is not sent (a background generated when none is
    #: given).
    only_without: str | None = None
    #: Counted layers: the item field of the `count_from` list whose text names each layer in
    #: records and editors (`title`); the file keeps the pattern name (`object_0.png`).
    title_from: str | None = None

    def names(self, count: int) -> list[str]:
        if self.count_from is None:
            return [self.name]
        return [self.name.format(i=i) for i in range(count)]

    def number(self, name: str) -> int | None:
        """`i` of a layer named by this pattern (0 for a fixed name); None if it is not one."""
        if self.count_from is None:
            return 0 if name == self.name else None
        prefix, _, suffix = self.name.partition("{i}")
        if len(name) <= len(prefix) + len(suffix):
            return None
        if not (name.startswith(prefix) and name.endswith(suffix)):
            return None
        middle = name[len(prefix) : len(name) - len(suffix)]
        return int(middle) if middle.isdigit() else None

    def matches(self, name: str) -> bool:
        return self.number(name) is not None

    def titles(self, items: list[Mapping[str, Any]]) -> list[str]:
        """Display names of a counted layer's items: the `title_from` text, first 60
        characters, made unique with " (2)", " (3)"; the label and number when empty."""
        titles: list[str] = []
        for index, item in enumerate(items):
            text = str(item.get(self.title_from or "") or "").strip()[:TITLE_LENGTH].strip()
            base = text or f"{self.label} {index + 1}"
            title, copy = base, 1
            while title in titles:
                copy += 1
                title = f"{base} ({copy})"
            titles.append(title)
        return titles

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "visible": self.visible,
            "keeps_alpha": self.keeps_alpha,
        }
        if self.count_from:
            data["count_from"] = self.count_from
        if self.only_without:
            data["only_without"] = self.only_without
        if self.title_from:
            data["title_from"] = self.title_from
        return data


#: Layer titles taken from text (`LayerOut.title_from`) keep this many characters.
TITLE_LENGTH = 60


@dataclass(frozen=True)
class Stage:
    """One denoising run of a mode on a family."""

    name: str
    label: str
    #: This stage's default scheduler; None: the family's.
    scheduler: Scheduler | None = None
    #: Default fraction of the steps run with the layer model.
    stop_at: float = 1.0
    #: Whether the request's `stop_at` applies to this stage.
    takes_stop_at: bool = True
    #: Run once per item of this list input (progress counts every run).
    per_item: str | None = None
    #: Run only when this image input is not sent.
    only_without: str | None = None

    def runs(self, counts: Mapping[str, int], images: Collection[str]) -> int:
        """How many times this stage runs for a request with these list lengths and images."""
        if self.only_without is not None and self.only_without in images:
            return 0
        return counts.get(self.per_item, 0) if self.per_item is not None else 1

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "scheduler": self.scheduler,
            "stop_at": self.stop_at,
            "takes_stop_at": self.takes_stop_at,
        }
        if self.per_item:
            data["per_item"] = self.per_item
        if self.only_without:
            data["only_without"] = self.only_without
        return data


@dataclass(frozen=True)
class FamilySupport:
    """How a mode runs on one family: the official files per role, stages, default overrides."""

    #: role → official kinds (file stems) that can fill it, preferred first.
    files: Mapping[str, tuple[str, ...]]
    stages: tuple[Stage, ...]
    defaults: Mapping[str, Any] = default_field(default_factory=dict)


@dataclass(frozen=True)
class ModeSpec:
    """Everything about one mode; see the module docstring."""

    name: str
    label: str
    help: str
    #: `module:function` of the pipeline (imported by the engine only).
    pipeline: str
    layers: tuple[LayerOut, ...]
    options: tuple[str, ...]
    families: Mapping[Family, FamilySupport]
    inputs: tuple[ImageInput, ...] = ()
    lists: tuple[ListInput, ...] = ()
    prompt_required: bool = True
    #: Families this mode can never run on, and why.
    unsupported: Mapping[Family, str] = default_field(default_factory=dict)
    #: Per-mode default overrides for options (family-independent).
    defaults: Mapping[str, Any] = default_field(default_factory=dict)
    #: The result frame is the frame image multiplied by this option (upscale).
    frame_scale: str | None = None

    # -- derived ----------------------------------------------------------------------------

    @property
    def frame_image(self) -> str | None:
        return next((image.field for image in self.inputs if image.frame), None)

    @property
    def is_editor_mode(self) -> bool:
        """Modes with an image input: layers come back in that input's pixel frame."""
        return self.frame_image is not None

    @property
    def required_images(self) -> tuple[str, ...]:
        return tuple(image.field for image in self.inputs if image.required)

    @property
    def allowed_images(self) -> tuple[str, ...]:
        return tuple(image.field for image in self.inputs)

    def option(self, name: str) -> Option:
        return OPTIONS[name]

    def default(self, name: str, family: Family | None = None) -> Any:
        """The default of option `name` for this mode on `family`."""
        if family is not None and family in self.families:
            overrides = self.families[family].defaults
            if name in overrides:
                return overrides[name]
        if name in self.defaults:
            return self.defaults[name]
        return OPTIONS[name].default_for(family)

    def stages(self, family: Family) -> tuple[Stage, ...]:
        return self.families[family].stages

    def denoise_runs(
        self, family: Family, counts: Mapping[str, int], images: Collection[str], batch: int
    ) -> int:
        """Denoising runs of one request (what progress counts, times the steps). A mode with a
        per-item stage runs its result sets one after another, each repeating every stage;
        other modes denoise all result sets together, once per stage."""
        stages = self.stages(family)
        runs = sum(stage.runs(counts, images) for stage in stages)
        per_result_set = any(stage.per_item is not None for stage in stages)
        return runs * batch if per_result_set else runs

    def layer_spec(self, name: str) -> LayerOut | None:
        return next((layer for layer in self.layers if layer.matches(name)), None)

    def stack_position(self, name: str) -> tuple[int, int]:
        """Where a layer stacks in its result set, bottom first: its declaration's index, then
        its number within a counted pattern; undeclared names go on top."""
        for index, layer in enumerate(self.layers):
            number = layer.number(name)
            if number is not None:
                return index, number
        return len(self.layers), 0

    def layer_names(
        self, counts: Mapping[str, int], images: Collection[str] | None = None
    ) -> list[str]:
        """Layer names per result set, bottom → top, for the given `count_from` values (and,
        when given, the image inputs sent: `only_without` layers drop out)."""
        names: list[str] = []
        for layer in self.layers:
            if images is not None and layer.only_without in images:
                continue
            names += layer.names(counts.get(layer.count_from or "", 0))
        return names

    def to_json(self) -> dict[str, Any]:
        """The `GET /api/modes` entry of this mode."""
        options = []
        for name in self.options:
            data = OPTIONS[name].to_json()
            data["default"] = self.default(name)
            family_defaults = {
                family: self.default(name, family)
                for family in self.families
                if self.default(name, family) != data["default"]
            }
            if family_defaults:
                data["family_defaults"] = family_defaults
            else:
                data.pop("family_defaults", None)
            options.append(data)
        families = [
            {
                "family": family,
                "label": FAMILY_LABELS.get(family, family),
                "supported": True,
                "stages": [stage.to_json() for stage in support.stages],
            }
            for family, support in self.families.items()
        ]
        families += [
            {
                "family": family,
                "label": FAMILY_LABELS.get(family, family),
                "supported": False,
                "reason": reason,
            }
            for family, reason in self.unsupported.items()
        ]
        return {
            "name": self.name,
            "label": self.label,
            "help": self.help,
            "prompt_required": self.prompt_required,
            "inputs": [image.to_json() for image in self.inputs],
            "lists": [item.to_json() for item in self.lists],
            "frame": self.frame_image,
            "frame_scale": self.frame_scale,
            "layers": [layer.to_json() for layer in self.layers],
            "options": options,
            "families": families,
        }


# -- options -------------------------------------------------------------------------------

MAX_PROMPT = 4000

OPTIONS: dict[str, Option] = {
    option.name: option
    for option in (
        Option("negative_prompt", "Negative prompt", "What the image should not show.", "text",
               default="", max_length=MAX_PROMPT),
        Option("layer_prompts", "Layer prompts",
               "Extra text per layer, put in front of the main prompt for that layer.",
               "prompts"),
        Option("steps", "Steps", "Denoising steps per stage.", "int",
               family_defaults={"sdxl": 20, "sd15": 20}, minimum=1, maximum=150),
        Option("cfg", "CFG scale", "How strongly the prompt steers the image.", "float",
               family_defaults={"sdxl": 5.0, "sd15": 7.0}, minimum=0.0, maximum=30.0),
        Option("scheduler", "Sampler",
               "Sampler for every stage; unset, each stage uses its own default.", "enum",
               family_defaults={"sdxl": "dpm++_2m_sde_karras", "sd15": "dpm++_2m_karras"},
               choices=SCHEDULERS, advanced=True),
        Option("width", "Width", "Image width in pixels (a multiple of 64).", "int",
               family_defaults={"sdxl": 1024, "sd15": 512}, minimum=64, maximum=4096,
               multiple_of=64),
        Option("height", "Height", "Image height in pixels (a multiple of 64).", "int",
               family_defaults={"sdxl": 1024, "sd15": 512}, minimum=64, maximum=4096,
               multiple_of=64),
        Option("strength", "Strength",
               "How much of the source is regenerated (1 = all of it).", "float",
               default=0.7, minimum=0.0, exclusive_minimum=True, maximum=1.0),
        Option("layer_weight", "Layer weight", "Strength of the LayerDiffusion model.", "float",
               default=1.0, minimum=0.0, maximum=2.0, advanced=True),
        Option("stop_at", "Stop at",
               "Fraction of the steps run with the LayerDiffusion model.", "float",
               minimum=0.0, exclusive_minimum=True, maximum=1.0, advanced=True),
        Option("decode", "Alpha decoding",
               "tta: 8 flipped and rotated passes, cleanest edges; fast: one pass.", "enum",
               default="tta", choices=("tta", "fast")),
        Option("scale", "Scale", "Enlargement factor.", "float", default=2.0, minimum=1.0,
               exclusive_minimum=True, maximum=4.0),
        Option("margin", "Context margin",
               "Pixels of artwork around the selection the model sees.", "int", default=64,
               minimum=0, maximum=2048, advanced=True),
        Option("feather", "Feather", "Soft edge of the selection, in pixels.", "int",
               default=4, minimum=0, maximum=256, advanced=True),
        Option("control", "Structure",
               "ControlNet structure control: edges of an image (canny) or a ready image.",
               "enum", default="none", choices=("none", "canny", "image"), advanced=True),
        Option("controlnet", "ControlNet", "A ControlNet name from /api/models.", "text",
               max_length=200, advanced=True, depends_on="control"),
        Option("control_strength", "Structure strength", "How strongly the structure steers.",
               "float", default=1.0, minimum=0.0, maximum=2.0, advanced=True,
               depends_on="control"),
    )
}  # fmt: skip

_SAMPLING = ("negative_prompt", "steps", "cfg", "scheduler", "layer_weight", "stop_at")
_CONTROL = ("control", "controlnet", "control_strength")

# -- inputs --------------------------------------------------------------------------------

CONTROL_IMAGE = ImageInput(
    "control_image",
    "Structure image",
    "The image ControlNet follows (control=image) or takes edges from (control=canny).",
    required=False,
    when={"control": ("canny", "image")},
)


def _image(field: str, label: str, help: str, source: ImageSource = "layer") -> ImageInput:
    return ImageInput(field, label, help, source=source, frame=True)


# -- official files per role ---------------------------------------------------------------

_SDXL_DECODER = ("vae_transparent_decoder", "ld_diffusers_sdxl_vae_transparent_decoder")
_SDXL_ENCODER = ("vae_transparent_encoder", "ld_diffusers_sdxl_vae_transparent_encoder")
_SD15_DECODER = ("layer_sd15_vae_transparent_decoder",)
_SD15_ENCODER = ("layer_sd15_vae_transparent_encoder",)
_SDXL_FG_PATCHES = (
    "layer_xl_transparent_attn",
    "ld_diffusers_sdxl_attn",
    "layer_xl_transparent_conv",
)
_SDXL_FG_FILES = {"unet_patch": _SDXL_FG_PATCHES, "decoder": _SDXL_DECODER}
_SDXL_BG2FG_FILES = {
    "blend_patch": ("layer_xl_bg2ble",),
    "unet_patch": ("layer_xl_bgble2fg",),
    "decoder": _SDXL_DECODER,
}
_SD15_FG_FILES = {"attention_sharing": ("layer_sd15_transparent_attn",), "decoder": _SD15_DECODER}
_SD15_BG2FG_FILES = {"attention_sharing": ("layer_sd15_bg2fg",), "decoder": _SD15_DECODER}

# -- stages --------------------------------------------------------------------------------

_LAYER = Stage("layer", "Generating the layer")
_FRAMES = Stage("frames", "Generating the layers together")
_BLEND = Stage("blend", "Generating the blended image", takes_stop_at=False)
# The SDXL second-stage models prefer UniPC (DPM samplers give artefacts there, reference §6);
# fgble2bg stops the layer model at half the steps.
_SDXL_BACKGROUND = Stage("background", "Generating the background", "unipc", stop_at=0.5)
_SDXL_FOREGROUND = Stage("foreground", "Generating the foreground", "unipc")
_CONDITIONAL_CFG = {"cfg": 7.0}


def _transparent(files: Mapping[str, tuple[str, ...]]) -> FamilySupport:
    return FamilySupport(files, (_LAYER,))


def _editing() -> dict[Family, FamilySupport]:
    return {
        "sdxl": _transparent({**_SDXL_FG_FILES, "encoder": _SDXL_ENCODER}),
        "sd15": _transparent({**_SD15_FG_FILES, "encoder": _SD15_ENCODER}),
    }


_FOREGROUND = LayerOut("foreground", "Foreground", keeps_alpha=True)
_BACKGROUND = LayerOut("background", "Background")
_BLENDED = LayerOut("blended", "Blended", visible=False)

# -- scene: a background and N objects, each generated on the composite below it -----------

MAX_SCENE_OBJECTS = 16
_SCENE_BACKGROUND = Stage(
    "scene_background",
    "Generating the background",
    takes_stop_at=False,
    only_without="bg",
)
_SCENE_OBJECT_OPTIONS = (
    Option("prompt", "Prompt", "What this object shows (the scene prompt is appended).", "text",
           default="", max_length=MAX_PROMPT),
    Option("negative_prompt", "Negative prompt",
           "What this object should not show (default: the request's).", "text",
           max_length=MAX_PROMPT),
    Option("region", "Region",
           "Where the object goes: a box {left, top, width, height} in canvas pixels, or a "
           "mask {mask, left, top} cropped to its bounds (multipart part objects.<i>.mask).",
           "region"),
    Option("seed", "Seed",
           "This object's own seed (default: derived from the request seed and its index).",
           "int", minimum=0, maximum=2**32 - 1),
)  # fmt: skip
_SCENE_OBJECTS = ListInput(
    "objects",
    "Objects",
    "The objects, bottom to top; each is generated on the scene below it.",
    item_options=_SCENE_OBJECT_OPTIONS,
    min_items=1,
    max_items=MAX_SCENE_OBJECTS,
)


def _per_object(stage: Stage) -> Stage:
    return Stage(
        stage.name, stage.label, stage.scheduler, stage.stop_at, stage.takes_stop_at, "objects"
    )


_JOINT_REASON = (
    "no official SDXL joint model exists (LayerDiffusion released joint foreground/background "
    "generation for SD1.5 only); use an SD1.5 base, or fg then fg2bg"
)

BUILTIN_MODES: tuple[ModeSpec, ...] = (
    ModeSpec(
        name="fg",
        label="Foreground (new transparent layer)",
        help="A transparent layer from a prompt.",
        pipeline="acetate.engine.pipelines.transparent:run_fg",
        layers=(_FOREGROUND,),
        options=("width", "height", *_SAMPLING, "decode", "layer_prompts", *_CONTROL),
        families={"sdxl": _transparent(_SDXL_FG_FILES), "sd15": _transparent(_SD15_FG_FILES)},
        inputs=(CONTROL_IMAGE,),
    ),
    ModeSpec(
        name="fg2bg",
        label="Background behind the active layer",
        help="A background that fits a transparent foreground, and the blended image.",
        pipeline="acetate.engine.pipelines.layered:run_fg2bg",
        layers=(_BACKGROUND, _BLENDED),
        options=(*_SAMPLING, "layer_prompts", *_CONTROL),
        families={
            "sdxl": FamilySupport(
                {"blend_patch": ("layer_xl_fg2ble",), "unet_patch": ("layer_xl_fgble2bg",)},
                (_BLEND, _SDXL_BACKGROUND),
                _CONDITIONAL_CFG,
            ),
            "sd15": FamilySupport({"attention_sharing": ("layer_sd15_fg2bg",)}, (_FRAMES,)),
        },
        inputs=(
            _image("fg", "Foreground", "The transparent foreground to build a background for."),
            CONTROL_IMAGE,
        ),
    ),
    ModeSpec(
        name="bg2fg",
        label="Foreground over the canvas",
        help="A transparent foreground that fits a background, and the blended image.",
        pipeline="acetate.engine.pipelines.layered:run_bg2fg",
        layers=(_FOREGROUND, _BLENDED),
        options=(*_SAMPLING, "decode", "layer_prompts", *_CONTROL),
        families={
            "sdxl": FamilySupport(_SDXL_BG2FG_FILES, (_BLEND, _SDXL_FOREGROUND), _CONDITIONAL_CFG),
            "sd15": FamilySupport(_SD15_BG2FG_FILES, (_FRAMES,)),
        },
        inputs=(
            _image("bg", "Background", "The background to put a foreground on.", "canvas"),
            CONTROL_IMAGE,
        ),
    ),
    ModeSpec(
        name="joint",
        label="Foreground + background together",
        help="Foreground, background and blended image generated together (SD1.5).",
        pipeline="acetate.engine.pipelines.layered:run_joint",
        layers=(_BACKGROUND, _FOREGROUND, _BLENDED),
        options=("width", "height", *_SAMPLING, "decode", "layer_prompts", *_CONTROL),
        families={
            "sd15": FamilySupport(
                {"attention_sharing": ("layer_sd15_joint",), "decoder": _SD15_DECODER},
                (_FRAMES,),
            )
        },
        unsupported={"sdxl": _JOINT_REASON},
        inputs=(CONTROL_IMAGE,),
    ),
    ModeSpec(
        name="img2img",
        label="Vary the active layer",
        help="A transparent layer regenerated at a strength, still transparent.",
        pipeline="acetate.engine.pipelines.transparent:run_img2img",
        layers=(_FOREGROUND,),
        options=("strength", "feather", *_SAMPLING, "decode", "layer_prompts", *_CONTROL),
        families=_editing(),
        inputs=(
            _image("image", "Layer", "The transparent layer to vary."),
            ImageInput(
                "mask",
                "Mask",
                "Only the masked part is regenerated (optional).",
                kind="mask",
                source="selection",
                required=False,
                relative_to="image",
            ),
            CONTROL_IMAGE,
        ),
    ),
    ModeSpec(
        name="inpaint",
        label="Inpaint the active layer",
        help="The selected part of a transparent layer regenerated, the rest kept exactly.",
        pipeline="acetate.engine.pipelines.transparent:run_img2img",
        layers=(_FOREGROUND,),
        options=("strength", "feather", *_SAMPLING, "decode", "layer_prompts", *_CONTROL),
        families=_editing(),
        inputs=(
            _image("image", "Layer", "The transparent layer to inpaint."),
            ImageInput(
                "mask",
                "Mask",
                "The part to regenerate.",
                kind="mask",
                source="selection",
                relative_to="image",
            ),
            CONTROL_IMAGE,
        ),
    ),
    ModeSpec(
        name="layer_on_artwork",
        label="Layer on artwork (selection)",
        help="A transparent layer generated into a selection of your artwork, placed on it.",
        pipeline="acetate.engine.pipelines.artwork:run_layer_on_artwork",
        layers=(_FOREGROUND,),
        options=("margin", "feather", *_SAMPLING, "decode", "layer_prompts", *_CONTROL),
        families={
            "sdxl": FamilySupport(_SDXL_BG2FG_FILES, (_BLEND, _SDXL_FOREGROUND), _CONDITIONAL_CFG),
            "sd15": FamilySupport(_SD15_BG2FG_FILES, (_FRAMES,)),
        },
        inputs=(
            _image("canvas", "Artwork", "The artwork the layer goes on.", "canvas"),
            ImageInput(
                "selection",
                "Selection",
                "Where the layer goes (the whole canvas when absent).",
                kind="mask",
                source="selection",
                required=False,
                relative_to="canvas",
            ),
            CONTROL_IMAGE,
        ),
    ),
    ModeSpec(
        name="upscale",
        label="Upscale the active layer",
        help="A transparent layer enlarged, alpha kept.",
        pipeline="acetate.engine.pipelines.transparent:run_upscale",
        layers=(_FOREGROUND,),
        options=("scale", "strength", *_SAMPLING, "decode", "layer_prompts", *_CONTROL),
        families=_editing(),
        inputs=(_image("image", "Layer", "The transparent layer to enlarge."), CONTROL_IMAGE),
        prompt_required=False,
        frame_scale="scale",
    ),
    ModeSpec(
        name="scene",
        label="Scene (background + objects)",
        help="A background (given or generated) and one transparent layer per object, each "
        "generated inside its region on the scene below it.",
        pipeline="acetate.engine.pipelines.scene:run_scene",
        layers=(
            LayerOut("background", "Background", only_without="bg"),
            LayerOut(
                "object_{i}", "Object", count_from="objects", keeps_alpha=True, title_from="prompt"
            ),
            _BLENDED,
        ),
        options=(
            "width",
            "height",
            "margin",
            "feather",
            *_SAMPLING,
            "decode",
            "layer_prompts",
        ),
        families={
            "sdxl": FamilySupport(
                _SDXL_BG2FG_FILES,
                (_SCENE_BACKGROUND, _per_object(_BLEND), _per_object(_SDXL_FOREGROUND)),
                _CONDITIONAL_CFG,
            ),
            "sd15": FamilySupport(_SD15_BG2FG_FILES, (_SCENE_BACKGROUND, _per_object(_FRAMES))),
        },
        inputs=(
            ImageInput(
                "bg",
                "Background",
                "The scene's background (absent: generated first from the background layer "
                "prompt, else the prompt).",
                source="canvas",
                required=False,
                frame=True,
            ),
        ),
        lists=(_SCENE_OBJECTS,),
    ),
)


def _load_extra_modes() -> tuple[ModeSpec, ...]:
    extra: list[ModeSpec] = []
    for module_name in filter(None, os.environ.get("ACETATE_EXTRA_MODES", "").split(",")):
        module = importlib.import_module(module_name.strip())
        extra += list(module.MODES)
        OPTIONS.update(getattr(module, "OPTIONS", {}))
    return tuple(extra)


#: Every mode by name, built-in first, in the order editors list them.
MODES: dict[str, ModeSpec] = {spec.name: spec for spec in (*BUILTIN_MODES, *_load_extra_modes())}
MODE_NAMES: tuple[str, ...] = tuple(MODES)


def _check_registry() -> None:
    """Spec consistency, checked at import so a bad spec fails every test at once."""
    for spec in MODES.values():
        unknown = [name for name in spec.options if name not in OPTIONS]
        if unknown:
            raise ValueError(f"mode {spec.name}: unknown options {unknown}")
        if sum(image.frame for image in spec.inputs) > 1:
            raise ValueError(f"mode {spec.name}: more than one frame image")
        if set(spec.families) & set(spec.unsupported):
            raise ValueError(f"mode {spec.name}: a family both supported and unsupported")
        lists = {item.field for item in spec.lists}
        for layer in spec.layers:
            if layer.count_from is not None and "{i}" not in layer.name:
                raise ValueError(f"mode {spec.name}: counted layer {layer.name} lacks {{i}}")
            if layer.title_from is not None and layer.count_from not in lists:
                raise ValueError(f"mode {spec.name}: {layer.name} titled from a non-list")
            if layer.only_without is not None and layer.only_without not in spec.allowed_images:
                raise ValueError(f"mode {spec.name}: {layer.name} depends on an unknown input")
        for support in spec.families.values():
            for stage in support.stages:
                if stage.per_item is not None and stage.per_item not in lists:
                    raise ValueError(f"mode {spec.name}: stage {stage.name} per unknown list")


_check_registry()

#: Every image field any mode takes, in declaration order.
IMAGE_FIELDS: tuple[str, ...] = tuple(
    dict.fromkeys(image.field for spec in MODES.values() for image in spec.inputs)
)
MASK_FIELDS: frozenset[str] = frozenset(
    image.field for spec in MODES.values() for image in spec.inputs if image.kind == "mask"
)
#: Every list input any mode takes: field → declaration (the first declaration wins).
LIST_INPUTS: dict[str, ListInput] = {}
for _spec in MODES.values():
    for _list in _spec.lists:
        LIST_INPUTS.setdefault(_list.field, _list)


#: The protocol version `/api/health` and `/api/modes` report (2: modes published by the server).
API_VERSION = 2


def modes_document() -> dict[str, Any]:
    """The body of `GET /api/modes`."""
    return {"api_version": API_VERSION, "modes": [spec.to_json() for spec in MODES.values()]}
