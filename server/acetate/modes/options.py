"""The request options a mode may read, each declared once: type, range, defaults, help.

`acetate.protocol.GenerateParameters` takes each field's constraints and help from here; a mode
lists the option names it reads (`ModeSpec.options`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as default_field
from typing import Any, Literal, get_args

#: A base model family; `acetate.engine.store.family` identifies checkpoints as one of these.
Family = Literal["sd15", "sdxl", "qwen_layered"]
#: `region`: where a list item goes on the canvas, a box `{left, top, width, height}` or a mask
#: `{mask, left, top}` cropped to its bounds (multipart part `<list>.<i>.mask`).
OptionType = Literal["int", "float", "bool", "enum", "text", "prompts", "region"]

#: Sampler names (`acetate.engine.schedulers` maps each to a diffusers scheduler).
Scheduler = Literal["dpm++_2m_karras", "dpm++_2m_sde_karras", "euler_a", "euler", "unipc", "ddim"]
SCHEDULERS: tuple[Scheduler, ...] = get_args(Scheduler)
FAMILIES: tuple[Family, ...] = ("sdxl", "sd15", "qwen_layered")
FAMILY_LABELS: dict[Family, str] = {
    "sdxl": "SDXL",
    "sd15": "SD1.5",
    "qwen_layered": "Qwen-Image-Layered",
}
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
    #: The only values allowed (enum names; for an int option, its allowed numbers).
    choices: tuple[str | int, ...] = ()
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


MAX_PROMPT = 4000
#: The `bit_depth` values: result layers at 8 or 16 bits per channel.
BIT_DEPTHS: tuple[int, ...] = (8, 16)

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
        Option("layer_count", "Layers", "How many layers to split the image into.", "int",
               default=4, minimum=2, maximum=10),
        Option("resolution", "Resolution",
               "The model's working size, about this many pixels square: 640 or 1024 (the "
               "test model: 64 or 128); layers come back at the input's size.", "int",
               family_defaults={"qwen_layered": 640}, minimum=64, maximum=1024,
               advanced=True),
        Option("bit_depth", "Bit depth",
               "Bits per channel of the result layers: 8, or 16 kept from the decoder (soft "
               "alpha such as smoke or glass without banding; files twice as large).", "int",
               default=8, choices=BIT_DEPTHS, advanced=True),
    )
}  # fmt: skip
