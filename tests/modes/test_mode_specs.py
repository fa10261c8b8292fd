"""The mode specs are the single declaration of every mode; these tests keep what is derived
from them (the published document, the docs table, the request schema) in step."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from acetate.api.routes import published_modes
from acetate.modes import BUILTIN_MODES, MODES, ModeSpec
from acetate.protocol import (
    EDITOR_MODES,
    GenerateParameters,
    JobMessage,
    JobRecord,
    ResultRecord,
    group_name,
)

ROOT = Path(__file__).resolve().parents[2]
MODES_JSON = ROOT / "tests" / "data" / "modes.json"
PROTOCOL_DOC = ROOT / "docs" / "protocol.md"
UPDATE = os.environ.get("ACETATE_UPDATE_SNAPSHOTS") == "1"
BUILTIN_NAMES = [spec.name for spec in BUILTIN_MODES]


def _builtin_document() -> dict:
    """The published document without modes a test run loaded through ACETATE_EXTRA_MODES."""
    document = published_modes()
    document["modes"] = [m for m in document["modes"] if m["name"] in BUILTIN_NAMES]
    return document


def test_committed_modes_json_is_current() -> None:
    """`tests/data/modes.json` is what `GET /api/modes` serves; both editor suites read it."""
    expected = json.dumps(_builtin_document(), indent=2, ensure_ascii=False) + "\n"
    if UPDATE:
        MODES_JSON.write_text(expected, encoding="utf-8")
    assert MODES_JSON.read_text(encoding="utf-8") == expected, (
        "tests/data/modes.json is stale: run `ACETATE_UPDATE_SNAPSHOTS=1 pytest "
        "tests/modes/test_mode_specs.py` and commit it"
    )


def modes_table(specs: list[ModeSpec]) -> str:
    rows = [
        "| mode | required | optional | layers out (per batch item, bottom → top) |",
        "|---|---|---|---|",
    ]
    for spec in specs:
        required = ", ".join(f"`{f}`" for f in spec.required_images) or "—"
        optional = [i.field for i in spec.inputs if not i.required]
        layers = ", ".join(f"`{layer.name}`" for layer in spec.layers)
        unsupported = ", ".join(spec.unsupported)
        name = f"`{spec.name}`" + (f" (not {unsupported})" if unsupported else "")
        rows.append(
            f"| {name} | {required} | {', '.join(f'`{f}`' for f in optional) or '—'} | {layers} |"
        )
    return "\n".join(rows)


def test_protocol_doc_table_is_derived_from_the_specs() -> None:
    begin, end = "<!-- modes-table:begin -->\n", "<!-- modes-table:end -->"
    text = PROTOCOL_DOC.read_text(encoding="utf-8")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    specs = [spec for spec in MODES.values() if spec.name in BUILTIN_NAMES]
    expected = head + begin + modes_table(specs) + "\n" + end + tail
    if UPDATE:
        PROTOCOL_DOC.write_text(expected, encoding="utf-8")
    assert text == expected, "docs/protocol.md's mode table is stale (ACETATE_UPDATE_SNAPSHOTS=1)"


def test_derived_rules_match_the_behaviour_before_specs() -> None:
    """The tables every part used to keep by hand, now derived: same values as before."""
    assert set(EDITOR_MODES) >= {
        "fg2bg",
        "bg2fg",
        "img2img",
        "inpaint",
        "layer_on_artwork",
        "upscale",
    }
    assert {m for m in EDITOR_MODES if m in BUILTIN_NAMES} == {
        "fg2bg",
        "bg2fg",
        "img2img",
        "inpaint",
        "layer_on_artwork",
        "upscale",
        "scene",  # its frame image `bg` is optional: without it, width/height
        "decompose",
    }
    frames = {name: MODES[name].frame_image for name in BUILTIN_NAMES}
    assert frames == {
        "fg": None,
        "fg2bg": "fg",
        "bg2fg": "bg",
        "joint": None,
        "img2img": "image",
        "inpaint": "image",
        "layer_on_artwork": "canvas",
        "upscale": "image",
        "scene": "bg",
        "decompose": "image",
    }
    required = {name: MODES[name].required_images for name in BUILTIN_NAMES}
    assert required == {
        "fg": (),
        "fg2bg": ("fg",),
        "bg2fg": ("bg",),
        "joint": (),
        "img2img": ("image",),
        "inpaint": ("image", "mask"),
        "layer_on_artwork": ("canvas",),
        "upscale": ("image",),
        "scene": (),
        "decompose": ("image",),
    }
    stacks = {name: MODES[name].layer_names({}) for name in BUILTIN_NAMES}
    assert stacks["joint"] == ["background", "foreground", "blended"]
    assert stacks["fg2bg"] == ["background", "blended"]
    scene = MODES["scene"]
    assert scene.layer_names({"objects": 2}) == ["background", "object_0", "object_1", "blended"]
    assert scene.layer_names({"objects": 1}, images={"bg"}) == ["object_0", "blended"]
    # decompose captions an empty prompt (or refuses it naming what captioning needs)
    assert [n for n in BUILTIN_NAMES if not MODES[n].prompt_required] == ["upscale", "decompose"]
    decompose = MODES["decompose"]  # numbered from 1, counted from an int option
    assert decompose.layer_names({"layer_count": 2}) == ["layer_1", "layer_2", "blended"]
    assert decompose.stack_position("layer_10") > decompose.stack_position("layer_9")
    hidden = {layer.name for spec in MODES.values() for layer in spec.layers if not layer.visible}
    alpha = {layer.name for spec in MODES.values() for layer in spec.layers if layer.keeps_alpha}
    assert "blended" in hidden and "foreground" in alpha and "background" not in alpha


def test_counted_layers_expand_from_the_request() -> None:
    from acetate.modes import LayerOut

    pattern = LayerOut("object_{i}", "Object", count_from="objects")
    assert pattern.names(3) == ["object_0", "object_1", "object_2"]
    assert pattern.number("object_12") == 12
    assert pattern.number("object_") is None and pattern.number("objects_1") is None
    assert pattern.number("foreground") is None


def test_titled_layers_take_unique_names_from_their_items() -> None:
    from acetate.modes import LayerOut

    pattern = LayerOut("object_{i}", "Object", count_from="objects", title_from="prompt")
    items = [{"prompt": "a crow"}, {"prompt": "a crow"}, {"prompt": ""}, {"prompt": "é" * 90}]
    assert pattern.titles(items) == ["a crow", "a crow (2)", "Object 3", "é" * 60]


def test_scene_progress_counts_every_object_stage() -> None:
    scene = MODES["scene"]
    assert scene.denoise_runs("sdxl", {"objects": 3}, set(), 1) == 1 + 2 * 3
    assert scene.denoise_runs("sd15", {"objects": 3}, {"bg"}, 2) == 3 * 2
    assert MODES["bg2fg"].denoise_runs("sdxl", {}, {"bg"}, 4) == 2


def test_group_name_uses_the_mode_label_for_an_empty_prompt() -> None:
    assert group_name("  a red fox  ", 0, "fg") == "a red fox #1"
    assert group_name("x" * 80, 2, "fg") == "x" * 60 + " #3"
    assert group_name("", 1, "upscale") == f"{MODES['upscale'].label} #2"


def test_requests_stay_strict_and_name_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        GenerateParameters.model_validate({"mode": "fg", "prompt": "x", "colour": "red"})
    assert caught.value.errors()[0]["loc"] == ("colour",)
    with pytest.raises(ValidationError) as caught:
        GenerateParameters.model_validate({"mode": "paint_by_numbers"})
    assert caught.value.errors()[0]["loc"] == ("mode",)
    assert "choose one of fg, fg2bg" in str(caught.value)


def test_records_a_client_receives_ignore_unknown_fields() -> None:
    """A newer server may add fields: a client built against this one ignores them."""
    layer = {
        "name": "foreground",
        "batch_index": 0,
        "file": "foreground.png",
        "left": 1,
        "top": 2,
        "width": 3,
        "height": 4,
        "visible": True,
        "blend_mode": "normal",
    }
    result = {
        "id": "j_1",
        "mode": "fg",
        "model": "tiny-sdxl",
        "parameters": {},
        "canvas": {"width": 3, "height": 4, "dpi": 72},
        "layers": [layer],
        "psd": None,
        "ora": "layers.ora",
        "metrics": [{"psnr": 30.0}],
        "from_a_newer_server": {"anything": 1},
    }
    record = ResultRecord.model_validate(result)
    assert record.layers[0].left == 1 and not hasattr(record, "from_a_newer_server")
    job = JobRecord.model_validate(
        {"id": "j_1", "status": "done", "result": result, "owner": "ana", "queued_at": 1.0}
    )
    assert job.result == record
    message = JobMessage.from_json(
        {"type": "layer_ready", "job_id": "j_1", "layer": layer, "sent_at": 5}
    )
    assert message.layer.file == "foreground.png"
    done = JobMessage.from_json({"type": "done", "job_id": "j_1", "result": result})
    assert done.result == record
