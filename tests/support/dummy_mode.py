"""A test-only mode, loaded with `ACETATE_EXTRA_MODES=tests.support.dummy_mode`.

It proves that a new mode is one spec plus one pipeline function (`dummy_pipeline.py`, imported
by the engine only, as the built-in pipelines are): two denoising stages, a list
input whose length sets how many layers come back, layers streamed as each stage finishes. No
other file of the server or of either editor plugin knows about it.

Stage one makes `part_0` (a transparent foreground from the first part's prompt) and yields it;
stage two makes every other part in one batch and the hidden `blended` composite of all parts
over the canvas. Batch is ignored (one result set).
"""

from __future__ import annotations

from acetate.modes import FamilySupport, ImageInput, LayerOut, ListInput, ModeSpec, Option, Stage

_FIRST = Stage("first", "The first part")
_SECOND = Stage("second", "The other parts")

MODES = [
    ModeSpec(
        name="dummy_parts",
        label="Parts over the canvas (test mode)",
        help="One transparent layer per listed part, over the canvas.",
        pipeline="tests.support.dummy_pipeline:run_dummy_parts",
        layers=(
            LayerOut("part_{i}", "Part", count_from="parts", keeps_alpha=True),
            LayerOut("blended", "Blended", visible=False),
        ),
        options=("negative_prompt", "steps", "cfg", "decode"),
        families={
            "sdxl": FamilySupport(
                {
                    "unet_patch": ("layer_xl_transparent_attn",),
                    "decoder": ("vae_transparent_decoder",),
                },
                (_FIRST, _SECOND),
            ),
            "sd15": FamilySupport(
                {
                    "attention_sharing": ("layer_sd15_transparent_attn",),
                    "decoder": ("layer_sd15_vae_transparent_decoder",),
                },
                (_FIRST, _SECOND),
            ),
        },
        inputs=(
            ImageInput(
                "canvas", "Canvas", "The artwork the parts go over.", source="canvas", frame=True
            ),
        ),
        lists=(
            ListInput(
                "parts",
                "Parts",
                "What each part shows, bottom to top.",
                item_options=(
                    Option("prompt", "Prompt", "What this part shows.", "text", default=""),
                    Option("seed", "Seed", "This part's own seed.", "int", minimum=0),
                ),
                min_items=1,
                max_items=4,
            ),
        ),
        prompt_required=False,
    )
]
