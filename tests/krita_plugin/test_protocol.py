"""The plugin's protocol: modes from the server's declaration, lenient records, requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acetate import protocol as server
from acetate_krita.pixels import Rect
from acetate_krita.protocol import (
    Event,
    JobEvent,
    JobRecord,
    LayerRecord,
    ModeInfo,
    ModelsInfo,
    ModesInfo,
    Parameters,
    ResultRecord,
    WireImage,
    encode_multipart,
    group_name,
)

MODES_JSON = Path(__file__).resolve().parents[1] / "data" / "modes.json"


def _layer_fields() -> dict:
    return {"name": "foreground", "batch_index": 0, "file": "foreground.png",
            "left": 1, "top": 2, "width": 3, "height": 4, "visible": True}  # fmt: skip


def load_modes() -> ModesInfo:
    return ModesInfo.from_json(json.loads(MODES_JSON.read_text()))


def test_modes_parse_from_the_servers_declaration() -> None:
    modes = load_modes()
    assert modes.api_version == 2
    assert modes.names == tuple(m["name"] for m in json.loads(MODES_JSON.read_text())["modes"])
    loa = modes.get("layer_on_artwork")
    assert loa is not None and loa.label == "Layer on artwork (selection)" and loa.help
    canvas, selection = loa.inputs[0], loa.inputs[1]
    assert (canvas.field, canvas.source, canvas.required, canvas.frame) == (
        "canvas", "canvas", True, True,
    )  # fmt: skip
    assert (selection.kind, selection.source, selection.relative_to) == (
        "mask", "selection", "canvas",
    )  # fmt: skip
    fg = modes.get("fg")
    assert fg is not None
    width = fg.option("width")
    assert width is not None and width.type == "int" and width.multiple_of == 64
    assert (width.default_for("sdxl"), width.default_for("sd15"), width.default_for(None)) == (
        1024, 512, None,
    )  # fmt: skip
    assert fg.inputs[0].when == {"control": ("canny", "image")}
    joint = modes.get("joint")
    assert joint is not None and [layer.name for layer in joint.fixed_layers] == [
        "background", "foreground", "blended",
    ]  # fmt: skip
    family = joint.family("sdxl")
    assert family is not None and not family.supported and "SD1.5" in (family.reason or "")


def test_modes_ignore_unknown_keys_and_absent_ones_are_null() -> None:
    data = {
        "api_version": 3,
        "future": {"x": 1},
        "modes": [
            {
                "name": "new_mode",
                "label": "New",
                "sparkle": True,
                "inputs": [{"field": "canvas", "source": "canvas", "glitter": 1}],
                "options": [{"name": "steps", "type": "int", "unit": "steps"}],
                "layers": [{"name": "part_{i}", "count_from": "parts", "z": 0}],
                "lists": [{"field": "parts", "item_options": [{"name": "prompt"}], "q": 1}],
                "families": [{"family": "sdxl", "supported": True, "new": 1}],
            }
        ],
    }
    (mode,) = ModesInfo.from_json(data).modes
    assert mode.frame is None and mode.frame_scale is None and mode.prompt_required
    assert mode.options[0].minimum is None and mode.options[0].default is None
    assert mode.lists[0].item_options[0].name == "prompt" and mode.lists[0].min_items == 0
    assert mode.layer_names({"parts": 3}) == ["part_0", "part_1", "part_2"]


def test_layer_order_follows_the_declaration_patterns_by_number() -> None:
    mode = ModeInfo.from_json(
        {
            "name": "dummy_parts",
            "layers": [
                {"name": "part_{i}", "count_from": "parts"},
                {"name": "blended", "visible": False},
            ],
        }
    )
    names = ["blended", "part_10", "part_2", "part_0", "unknown"]
    assert sorted(names, key=mode.layer_key) == [
        "part_0",
        "part_2",
        "part_10",
        "blended",
        "unknown",
    ]
    assert mode.layer_names({"parts": 2}) == ["part_0", "part_1", "blended"]


def test_group_names() -> None:
    assert group_name("  a cat  ", 0, "Foreground") == "a cat #1"
    assert group_name("x" * 100, 3, "Foreground") == "x" * 60 + " #4"
    assert group_name("   ", 1, "Upscale the active layer") == "Upscale the active layer #2"


def test_parameters_send_only_what_is_given() -> None:
    data = Parameters(mode="fg", prompt="x").to_json()
    assert data == {"mode": "fg", "prompt": "x", "batch": 1}
    params = Parameters(
        mode="layer_on_artwork",
        prompt="a ball",
        model="tiny-sdxl",
        seed=2**32 - 1,
        batch=2,
        client_id="krita-1",
        selection_bounds=Rect(4, 5, 6, 7),
        options={"steps": 3, "cfg": None, "layer_prompts": {}, "parts": [{"prompt": "a"}]},
    )
    assert params.to_json() == {
        "mode": "layer_on_artwork",
        "prompt": "a ball",
        "batch": 2,
        "model": "tiny-sdxl",
        "seed": 2**32 - 1,
        "client_id": "krita-1",
        "steps": 3,
        "parts": [{"prompt": "a"}],
        "selection_bounds": {"left": 4, "top": 5, "width": 6, "height": 7},
    }


def test_wire_image_checks_its_size() -> None:
    assert WireImage(b"\x00" * 24, 3, 2).channels == 4
    assert WireImage(b"\x00" * 6, 3, 2).channels == 1
    with pytest.raises(ValueError):
        WireImage(b"\x00" * 7, 3, 2)


def test_multipart_body_has_the_request_and_raw_parts() -> None:
    image = WireImage(bytes(range(24)), 3, 2)
    mask = WireImage(b"\xff\x00\x10\x20\x30\x40", 3, 2)
    content_type, body = encode_multipart({"mode": "fg"}, {"canvas": image, "selection": mask}, "B")
    assert content_type == "multipart/form-data; boundary=B"
    parts = body.split(b"--B")
    assert parts[0] == b"" and parts[-1] == b"--\r\n"
    named = {}
    for part in parts[1:-1]:
        head, _, payload = part.partition(b"\r\n\r\n")
        name = head.split(b'name="')[1].split(b'"')[0].decode()
        named[name] = (head, payload.removesuffix(b"\r\n"))
    assert json.loads(named["request"][1]) == {"mode": "fg"}
    assert named["canvas"][1] == image.data
    assert b"application/octet-stream" in named["canvas"][0]
    assert named["selection"][1] == mask.data
    assert named["canvas_width"][1] == b"3" and named["selection_height"][1] == b"2"


def _record(**extra: object) -> dict:
    layers = [
        {
            "name": name, "batch_index": index,
            "file": name + ("" if index == 0 else f"_{index}") + ".png",
            "left": 10, "top": 20, "width": 30, "height": 40, "visible": name != "blended",
            "opacity": 0.5,  # a field this plugin does not know
        }
        for index in (0, 1)
        for name in ("blended", "background")
    ]  # fmt: skip
    return {
        "id": "j_" + "0" * 32,
        "mode": "fg2bg",
        "model": "tiny-sdxl",
        "parameters": {"prompt": "p" * 70, "seed": 5},
        "canvas": {"width": 100, "height": 80, "dpi": 72},
        "layers": layers,
        "psd": "layers.psd",
        "ora": None,
        **extra,
    }


def test_result_record_groups_one_per_batch_item_bottom_to_top() -> None:
    record = ResultRecord.from_json(_record(timings={"total": 1.0}))
    assert (record.canvas_width, record.canvas_height, record.psd) == (100, 80, "layers.psd")
    groups = record.groups(load_modes().get("fg2bg"))
    assert [name for name, _ in groups] == ["p" * 60 + " #1", "p" * 60 + " #2"]
    for index, (_, layers) in enumerate(groups):
        assert [layer.name for layer in layers] == ["background", "blended"]
        assert [layer.visible for layer in layers] == [True, False]
        assert {layer.batch_index for layer in layers} == {index}
    assert groups[1][1][0].file == "background_1.png"
    assert groups[0][1][0].rect == Rect(10, 20, 30, 40)


def test_job_record_with_an_extra_field() -> None:
    job = JobRecord.from_json(
        {
            "id": "j_1",
            "status": "done",
            "position": None,
            "result": _record(),
            "error": None,
            "owner": "someone",  # unknown
        }
    )
    assert job.status == "done" and job.result is not None and len(job.result.layers) == 4
    failed = JobRecord.from_json({"id": "j_2", "status": "error", "error": {"code": "x"}, "n": 1})
    assert failed.result is None and failed.error == {"code": "x"}


def test_events_parse_including_unknown_fields() -> None:
    message = {"type": "progress", "job_id": "j_1", "step": 2, "total": 4, "eta_s": 1.0, "x": 1}
    event = Event.from_json(message)
    assert event.type is JobEvent.progress and event.job_id == "j_1"
    assert event.fields == {"step": 2, "total": 4, "eta_s": 1.0, "x": 1} and not event.final
    ready = Event.from_json(
        {"type": "layer_ready", "job_id": "j_1", "layer": _record()["layers"][0]}
    )
    assert LayerRecord.from_json(ready.fields["layer"]).name == "blended"
    assert Event.from_json({"type": "cancelled", "job_id": "j_1"}).final
    with pytest.raises(ValueError):
        Event.from_json({"type": "no-such-event", "job_id": "j_1"})
    assert {e.value for e in JobEvent} == {e.value for e in server.JobEvent}
    sent = server.JobMessage.layer_ready("j_1", server.LayerRecord(**_layer_fields()))
    assert LayerRecord.from_json(sent.fields["layer"]).rect == Rect(1, 2, 3, 4)


def test_models_info_says_which_file_a_mode_needs() -> None:
    info = ModelsInfo.from_json(
        {
            "default_base": "real-xl",
            "bases": [
                {
                    "name": "real-xl",
                    "family": "sdxl",
                    "tiny": False,
                    "modes": {"fg": [], "fg2bg": ["layer_xl_fg2ble.safetensors"]},
                    "unsupported_modes": {"joint": "no official SDXL joint model exists"},
                },
                {"name": "tiny-sd15", "family": "sd15", "tiny": True, "modes": {"fg": []}},
            ],
            "get": {"layer_xl_fg2ble": {"file": "layer_xl_fg2ble.safetensors", "folder": "/m/lm"}},
        }
    )
    assert info.mode_problem("real-xl", "fg") is None
    problem = info.mode_problem("real-xl", "fg2bg")
    assert problem is not None and "layer_xl_fg2ble.safetensors" in problem and "/m/lm" in problem
    assert info.mode_problem("real-xl", "joint") == "no official SDXL joint model exists"
    sd15, xl = info.base("tiny-sd15"), info.base("real-xl")
    assert sd15 is not None and xl is not None
    assert (sd15.label, xl.label) == ("tiny-sd15 (test model)", "real-xl")
    assert info.mode_problem("unknown", "fg") is None
