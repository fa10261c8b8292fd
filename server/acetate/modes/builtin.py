"""The built-in modes, one `ModeSpec` each (add a mode here; see CONTRIBUTING.md)."""

from __future__ import annotations

from collections.abc import Mapping

from acetate.modes.options import MAX_PROMPT, Family, Option
from acetate.modes.spec import (
    FamilySupport,
    ImageInput,
    ImageSource,
    LayerOut,
    ListInput,
    ModeSpec,
    Stage,
)

_SAMPLING = ("negative_prompt", "steps", "cfg", "scheduler", "layer_weight", "stop_at")
_CONTROL = ("control", "controlnet", "control_strength")
#: How the result layers are stored (every mode outputs layers).
_OUTPUT = ("bit_depth",)

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

_DECOMPOSE_REASON = (
    "splitting an image into layers needs a Qwen-Image-Layered model, not a LayerDiffusion "
    "(SD) base"
)

BUILTIN_MODES: tuple[ModeSpec, ...] = (
    ModeSpec(
        name="fg",
        label="Foreground (new transparent layer)",
        help="A transparent layer from a prompt.",
        pipeline="acetate.engine.pipelines.transparent:run_fg",
        layers=(_FOREGROUND,),
        options=("width", "height", *_SAMPLING, "decode", "layer_prompts", *_CONTROL, *_OUTPUT),
        families={"sdxl": _transparent(_SDXL_FG_FILES), "sd15": _transparent(_SD15_FG_FILES)},
        inputs=(CONTROL_IMAGE,),
    ),
    ModeSpec(
        name="fg2bg",
        label="Background behind the active layer",
        help="A background that fits a transparent foreground, and the blended image.",
        pipeline="acetate.engine.pipelines.layered:run_fg2bg",
        layers=(_BACKGROUND, _BLENDED),
        options=(*_SAMPLING, "layer_prompts", *_CONTROL, *_OUTPUT),
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
        options=(*_SAMPLING, "decode", "layer_prompts", *_CONTROL, *_OUTPUT),
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
        options=("width", "height", *_SAMPLING, "decode", "layer_prompts", *_CONTROL, *_OUTPUT),
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
        options=("strength", "feather", *_SAMPLING, "decode", "layer_prompts", *_CONTROL, *_OUTPUT),
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
        options=("strength", "feather", *_SAMPLING, "decode", "layer_prompts", *_CONTROL, *_OUTPUT),
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
        options=("margin", "feather", *_SAMPLING, "decode", "layer_prompts", *_CONTROL, *_OUTPUT),
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
        options=("scale", "strength", *_SAMPLING, "decode", "layer_prompts", *_CONTROL, *_OUTPUT),
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
            *_OUTPUT,
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
    ModeSpec(
        name="decompose",
        label="Split into layers",
        help="A flat image (the active layer or the whole canvas, or the selected part of it) "
        "split into transparent layers, bottom to top, each cropped to its content; the "
        "blended layers are added hidden. They land right above the source, which is hidden. "
        "Describe the whole image in the prompt; left empty, the model describes it first "
        "(when its processor is installed). cfg > 1 is true CFG against the "
        "negative prompt (empty: against an empty description); cfg ≤ 1 turns CFG off.",
        pipeline="acetate.engine.pipelines.decompose:run_decompose",
        layers=(
            LayerOut("layer_{i}", "Layer", count_from="layer_count", keeps_alpha=True, first=1),
            _BLENDED,
        ),
        options=("layer_count", "resolution", "negative_prompt", "steps", "cfg", *_OUTPUT),
        families={
            "qwen_layered": FamilySupport(
                {},
                (Stage("decompose", "Splitting into layers", "euler", takes_stop_at=False),),
                {"steps": 50, "cfg": 4.0},
            )
        },
        unsupported={family: _DECOMPOSE_REASON for family in ("sdxl", "sd15")},
        prompt_required=False,  # empty: captioned, or a 400 naming what captioning needs
        inputs=(
            ImageInput(
                "image",
                "Image",
                "The image to split: the active layer (a group: its composite), or the whole "
                "canvas. Its layers land in a group right above it, and it is hidden.",
                frame=True,
                replaced=True,
                other_sources=("canvas",),
            ),
            ImageInput(
                "selection",
                "Selection",
                "Only the selected part is split; its layers come back at its place.",
                kind="mask",
                source="selection",
                required=False,
                relative_to="image",
            ),
        ),
        strict_options=True,
    ),
)
