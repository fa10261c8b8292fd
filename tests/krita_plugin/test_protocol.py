"""The plugin's hand-written protocol mirror agrees with the server's schema."""

from __future__ import annotations

import json

import pytest

from acetate import protocol as server
from acetate_krita import protocol
from acetate_krita.pixels import Rect
from acetate_krita.protocol import (
    Event,
    JobEvent,
    ModelsInfo,
    Parameters,
    ResultRecord,
    WireImage,
    encode_multipart,
)


def test_modes_layers_and_group_names_match_the_server() -> None:
    assert protocol.MODES == server.MODES
    assert protocol.MODE_LAYERS == server.MODE_LAYERS
    for prompt in ("", "a cat", "x" * 100, "ünïcode ✓"):
        assert protocol.group_name(prompt, 0) == server.group_name(prompt, 0)
        assert protocol.group_name(prompt, 3) == server.group_name(prompt, 3)


@pytest.mark.parametrize("mode", protocol.MODES)
def test_each_mode_sends_what_the_server_requires_and_allows(mode: str) -> None:
    fields = set(protocol.MODE_IMAGES[mode])
    assert set(server.REQUIRED_IMAGES[mode]) <= fields
    assert fields <= set(server.ALLOWED_IMAGES[mode])


@pytest.mark.parametrize("mode", protocol.MODES)
def test_parameters_validate_against_the_server_schema(mode: str) -> None:
    params = Parameters(
        mode=mode,
        prompt="a glass bottle",
        negative_prompt="ugly",
        model="tiny-sdxl",
        seed=2**32 - 1,
        steps=3,
        cfg=5.5,
        width=512,
        height=768,
        batch=2,
        strength=0.5,
        scale=2.5,
        decode="fast",
        layer_prompts={"foreground": "a cat", "background": "", "blended": ""},
        client_id="krita-1",
    )
    if mode == "layer_on_artwork":
        params.selection_bounds = Rect(4, 5, 6, 7)
    data = params.to_json()
    parsed = server.GenerateParameters.model_validate(data)
    assert parsed.mode == mode and parsed.seed == 2**32 - 1 and parsed.batch == 2
    options = protocol.MODE_OPTIONS[mode]
    assert ("width" in data) == (protocol.SIZE in options)
    assert ("strength" in data) == (protocol.STRENGTH in options)
    assert ("scale" in data) == (protocol.SCALE in options)
    assert ("layer_prompts" in data) == (mode == "joint")
    if mode == "joint":
        assert data["layer_prompts"] == {"foreground": "a cat"}  # empty ones are not sent


def test_server_defaults_are_left_to_the_server() -> None:
    data = Parameters(mode="fg", prompt="x").to_json()
    assert data == {"mode": "fg", "prompt": "x", "negative_prompt": "", "batch": 1, "decode": "tta"}


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


def _server_record() -> dict:
    layers = [
        server.LayerRecord(
            name=name, batch_index=index, file=server.layer_file_name(name, index),
            left=10, top=20, width=30, height=40, visible=name != "blended",
        )
        for index in (0, 1)
        for name in server.MODE_LAYERS["fg2bg"]
    ]  # fmt: skip
    record = server.ResultRecord(
        id="j_" + "0" * 32,
        mode="fg2bg",
        model="tiny-sdxl",
        parameters={"prompt": "p" * 70, "seed": 5},
        canvas=server.CanvasSize(width=100, height=80),
        layers=layers,
        psd="layers.psd",
    )
    return record.model_dump(mode="json")


def test_result_record_groups_one_per_batch_item_bottom_to_top() -> None:
    record = ResultRecord.from_json(_server_record())
    assert (record.canvas_width, record.canvas_height, record.psd) == (100, 80, "layers.psd")
    groups = record.groups()
    assert [name for name, _ in groups] == ["p" * 60 + " #1", "p" * 60 + " #2"]
    for index, (_, layers) in enumerate(groups):
        assert [layer.name for layer in layers] == ["background", "blended"]
        assert [layer.visible for layer in layers] == [True, False]
        assert {layer.batch_index for layer in layers} == {index}
    assert groups[1][1][0].file == "background_1.png"
    assert groups[0][1][0].rect == Rect(10, 20, 30, 40)


def test_events_parse_including_unknown_fields() -> None:
    message = server.event_message(server.JobEvent.progress, "j_1", step=2, total=4, eta_s=1.0)
    event = Event.from_json(json.loads(json.dumps(message)))
    assert event.type is JobEvent.progress and event.job_id == "j_1"
    assert event.fields == {"step": 2, "total": 4, "eta_s": 1.0} and not event.final
    assert Event.from_json({"type": "cancelled", "job_id": "j_1"}).final
    with pytest.raises(ValueError):
        Event.from_json({"type": "no-such-event", "job_id": "j_1"})
    assert {e.value for e in JobEvent} == {e.value for e in server.JobEvent}


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
    assert (sd15.native_size, xl.native_size) == (512, 1024)
    assert (sd15.label, xl.label) == ("tiny-sd15 (test model)", "real-xl")
    assert info.mode_problem("unknown", "fg") is None
