"""Real Krita under Xvfb, the built plugin zip, the real server on the tiny models.

One Krita launch runs every scenario of scenarios/e2e.py (a template profile keeps the
launch at a few seconds); each test below checks one scenario's record. A second server is
started only to be killed mid-job. Skipped, with the reason printed, where Krita, Xvfb or
xauth are not installed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import build  # krita_plugin/build.py
import insertion_checks
import numpy as np
import pytest
import sources_checks
from krita_harness import (
    KritaRun,
    Profile,
    build_template,
    install_plugin_zip,
    krita_key,
    krita_missing,
    run_krita,
)
from PIL import Image
from reference import krita_to_rgba8
from scenarios.artwork import (
    CANVAS_SIZE,
    DECOMPOSE_SIZE,
    SCENE_OBJECTS,
    SCENE_SIZE,
    SELECTION,
    STRUCTURE_SIZE,
    artwork,
    gray_artwork,
    scene_layout,
    sketch,
)
from server_process import ServerProcess, free_port, start_server

from acetate_krita.layer_files import file_label, file_parts
from acetate_krita.protocol import ModelsInfo, ModesInfo

# One Krita launch runs every scenario inside the fixture: its setup needs more than the default.
pytestmark = [pytest.mark.krita, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
TEMPLATE_ROOT = ROOT / ".krita-template"


@dataclass
class E2E:
    run: KritaRun
    profile: Profile
    server: ServerProcess
    dead_url: str
    kill_url: str
    dummy: ServerProcess

    def scenario(self, name: str) -> dict[str, Any]:
        assert self.run.results.get("status") == "ok", self.run.describe()
        outcome = self.run.results["scenarios"].get(name)
        assert outcome is not None, f"scenario {name} did not run\n{self.run.describe()}"
        assert "failed" not in outcome, f"scenario {name} failed:\n{outcome['failed']}"
        return outcome


def template() -> Path:
    """Krita's resource database from one launch, cached per Krita build in the repo."""
    target = TEMPLATE_ROOT / krita_key()
    if not (target / "data").is_dir():
        build_template(target)
    return target


@pytest.fixture(scope="module")
def e2e(
    acetate_server: ServerProcess, tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[E2E]:
    reason = krita_missing()
    if reason is not None:
        print(f"\nSKIPPED real-Krita tests: {reason}")
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("krita-e2e")
    zip_path = build.build(work / "dist")
    profile = Profile(work / "krita").create(template())
    assert install_plugin_zip(profile, zip_path) == ["acetate_krita"]
    doomed = start_server(tiny_models_dir, work / "doomed-server")
    # A server with a mode only the test suite knows (tests/support/dummy_mode.py).
    pythonpath = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    dummy_env = {"ACETATE_EXTRA_MODES": "tests.support.dummy_mode", "PYTHONPATH": pythonpath}
    dummy = start_server(tiny_models_dir, work / "dummy-server", env=dummy_env)
    dead_url = f"http://127.0.0.1:{free_port()}"
    params = {
        "url": acetate_server.url,
        "dead_url": dead_url,
        "kill_url": doomed.url,
        "kill_pid": doomed.process.pid,
        "dummy_url": dummy.url,
        # ACETATE_KRITA_SCENARIOS=a,b runs only those scenarios (and connect), for debugging.
        "only": [
            name
            for name in f"connect,{os.environ.get('ACETATE_KRITA_SCENARIOS', '')}".split(",")
            if name
        ]
        if os.environ.get("ACETATE_KRITA_SCENARIOS")
        else None,
    }
    try:
        run = run_krita(profile, SCENARIOS / "e2e.py", params, timeout=540, start_timeout=90)
    except BaseException:
        dummy.stop()
        raise
    finally:
        doomed.stop()
    print(f"\nKrita run: {run.wall_s:.1f} s wall; " + "; ".join(run.results.get("log", [])))
    shots = os.environ.get("ACETATE_KRITA_SCREENSHOTS")
    if shots:
        for name in ("window.png", "docker.png"):
            if (profile.root / name).exists():
                shutil.copy(profile.root / name, Path(shots) / f"krita-{name}")
    yield E2E(run, profile, acetate_server, dead_url, doomed.url, dummy)
    dummy.stop()


def server_png(server: ServerProcess, job_id: str, file: str) -> np.ndarray:
    url = f"{server.url}/api/jobs/{job_id}/layers/{file}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())).convert("RGBA"))


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def sha256(array: np.ndarray | bytes) -> str:
    data = array if isinstance(array, bytes) else np.ascontiguousarray(array).tobytes()
    return hashlib.sha256(data).hexdigest()


def check_pixels(
    e2e: E2E,
    outcome: dict[str, Any],
    depth: str,
    linear: bool,
    server: ServerProcess | None = None,
) -> None:
    """Each inserted layer, read back from Krita at its record rectangle, is the server's PNG
    (a 16-bit job's, from a 16/32-bit document: its rgba16 pixels at the document's depth)."""
    if outcome["record"]["parameters"].get("bit_depth") == 16:
        insertion_checks.check_16bit_layers(outcome, (server or e2e.server).url, depth, linear)
        return
    job_id = outcome["record"]["id"]
    assert outcome["layers"], outcome
    for layer in outcome["layers"]:
        png = server_png(server or e2e.server, job_id, layer["file"])
        left, top, width, height = layer["rect"]
        assert png.shape == (height, width, 4)
        raw = Path(layer["dump"]).read_bytes()
        ours = krita_to_rgba8(raw, depth, linear).reshape(height, width, 4)
        mismatched = int((ours != png).any(axis=2).sum())
        assert mismatched == 0, f"{layer['file']}: {mismatched} pixels differ from the PNG"
        # Krita's bounds() leave out transparent borders: never wider than the rectangle.
        bx, by, bw, bh = layer["bounds"]
        if bw and bh:
            assert left <= bx and top <= by and bx + bw <= left + width and by + bh <= top + height


def top_level(outcome_tree: list[dict[str, Any]]) -> list[str]:
    """Layer names bottom → top (the global selection shows up as a top-level mask)."""
    return [node["name"] for node in outcome_tree if node["type"] != "selectionmask"]


def group(outcome_tree: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(node for node in outcome_tree if node["name"] == name)


def test_server_down_is_an_error_in_the_docker(e2e: E2E) -> None:
    outcome = e2e.scenario("server_down")
    docker = outcome["docker"]
    expected = f"Cannot reach the Acetate server at {e2e.dead_url} (Connection refused)"
    assert docker["error"].startswith(expected), docker
    assert docker["connection"].startswith(expected)
    assert "#c04040" in outcome["dot"] and docker["generate_enabled"] and not docker["busy"]


def test_docker_connects_and_lists_the_models(e2e: E2E) -> None:
    outcome = e2e.scenario("connect")
    assert outcome["docker"]["connection"].startswith("Connected: Acetate")
    assert "tiny-sdxl (test model)" in outcome["models"]
    assert "#30b030" in outcome["dot"]
    # A picker per layer-file part with a choice, "Default" first (layer_files.py decides which).
    modes = ModesInfo.from_json(get_json(f"{e2e.server.url}/api/modes"))
    models = ModelsInfo.from_json(get_json(f"{e2e.server.url}/api/models"))
    parts = file_parts(
        modes.get(outcome["mode"]), models.base(outcome["model_name"]), models.layer_files
    )
    expected = {
        p.part: ["Default", *(file_label(f) for f in p.files)] for p in parts if p.choosable
    }
    assert expected and outcome["pickers"] == expected  # fg on tiny-sdxl: 3 patches, 2 decoders


def test_layer_on_artwork_lands_on_the_selection(e2e: E2E) -> None:
    outcome = e2e.scenario("layer_on_artwork")
    record = outcome["record"]
    sent = record["parameters"]
    canvas = krita_to_rgba8(artwork(*CANVAS_SIZE, "U8"), "U8", False)
    assert sent["canvas"]["sha256"] == sha256(canvas), "the canvas sent is not the projection"
    left, top, width, height = SELECTION
    assert sent["selection"]["sha256"] == sha256(b"\xff" * (width * height))
    assert sent["selection_bounds"] == {"left": left, "top": top, "width": width, "height": height}
    (layer,) = outcome["layers"]
    assert layer["rect"] == list(SELECTION)
    assert (layer["group"], layer["name"], layer["type"]) == (
        "a red ball #1",
        "foreground",
        "paintlayer",
    )
    assert layer["visible"]
    # Inserted above the active layer (artwork), below the layer that was above it.
    assert top_level(outcome["tree"]) == ["Background", "artwork", "a red ball #1", "top"]
    assert outcome["modified"]
    check_pixels(e2e, outcome, "U8", linear=False)
    docker = outcome["docker"]
    assert docker["status"].startswith("Done") and docker["error"] == ""
    assert docker["progress"] == 1000 and docker["history"] == 1 and docker["preview"]
    assert outcome["timeline"] == ["inserted foreground.png", "done"]
    # One layer: its group went in as one "Add Layer" step, so one undo removes it all;
    # "Insert again" brings it back.
    assert outcome["undo_text"] == "Undo Add Layer"
    assert top_level(outcome["after_undo"]) == ["Background", "artwork", "top"]
    assert top_level(outcome["after_insert_again"]) == top_level(outcome["tree"])


def test_the_jobs_psd_opens_as_a_new_document(e2e: E2E) -> None:
    outcome = e2e.scenario("open_psd")
    before, after = outcome["documents"]
    assert after == before + 1 and outcome["path"].endswith(".psd")
    assert outcome["size"] == list(CANVAS_SIZE)
    groups = [node for node in outcome["tree"] if node["type"] == "grouplayer"]
    names = [node["name"].rstrip("\x00") for node in groups]
    assert names == ["a red ball #1"]
    children = [child["name"].rstrip("\x00") for child in groups[0]["children"]]
    assert children == ["foreground"]


def test_fg_batch_of_two_makes_two_groups(e2e: E2E) -> None:
    outcome = e2e.scenario("fg_batch")
    names = top_level(outcome["tree"])
    first = names.index("a tiny star #1")
    assert names[first - 1 : first + 2] == ["artwork", "a tiny star #1", "a tiny star #2"]
    assert [(layer["group"], layer["name"], layer["rect"]) for layer in outcome["layers"]] == [
        ("a tiny star #1", "foreground", [0, 0, 64, 64]),
        ("a tiny star #2", "foreground", [0, 0, 64, 64]),
    ]
    assert [layer["file"] for layer in outcome["layers"]] == ["foreground.png", "foreground_1.png"]
    check_pixels(e2e, outcome, "U8", linear=False)


def test_one_undo_removes_the_last_insertion_and_the_button_the_whole_result(e2e: E2E) -> None:
    outcome = e2e.scenario("fg_batch")
    before = top_level(outcome["tree"])
    # Ctrl+Z undoes Krita's last step: the last "Add Layer", here the group of batch item #2.
    assert outcome["undo_text"] == "Undo Add Layer"
    assert top_level(outcome["after_one_undo"]) == [n for n in before if n != "a tiny star #2"]
    assert top_level(outcome["after_redo"]) == before
    assert outcome["undo_button_visible"]
    assert top_level(outcome["after_undo_result"]) == [
        n for n in before if not n.startswith("a tiny star")
    ]
    assert outcome["undo_text_after_undo_result"] == "Undo Remove Layer"
    assert not outcome["docker_after"]["undo_result_visible"]


def test_bg2fg_inserts_foreground_and_hidden_blended(e2e: E2E) -> None:
    outcome = e2e.scenario("bg2fg")
    assert outcome["record"]["parameters"]["bg"]["sha256"] == sha256(
        krita_to_rgba8(artwork(96, 64, "U8"), "U8", False)
    )
    children = group(outcome["tree"], "a bird #1")["children"]
    assert [(c["name"], c["visible"]) for c in children] == [
        ("foreground", True),
        ("blended", False),
    ]
    check_pixels(e2e, outcome, "U8", linear=False)


def test_16bit_linear_document_is_sent_as_8bit_srgb(e2e: E2E) -> None:
    outcome = e2e.scenario("sixteen_bit")
    assert outcome["document"] == ["RGBA", "U16", "sRGB-elle-V2-g10.icc"]
    expected = krita_to_rgba8(artwork(96, 64, "U16"), "U16", linear=True)
    assert outcome["record"]["parameters"]["canvas"]["sha256"] == sha256(expected)
    (layer,) = outcome["layers"]
    assert layer["depth"] == "U16" and layer["rect"] == [20, 12, 40, 30]
    check_pixels(e2e, outcome, "U16", linear=True)


def test_float_document_two_layer_mode(e2e: E2E) -> None:
    outcome = e2e.scenario("float_fg2bg")
    assert outcome["document"][:2] == ["RGBA", "F32"]
    expected = krita_to_rgba8(artwork(80, 64, "F32", opaque=False), "F32", linear=True)
    assert outcome["record"]["parameters"]["fg"]["sha256"] == sha256(expected)
    children = group(outcome["tree"], "a beach #1")["children"]
    assert [(c["name"], c["visible"]) for c in children] == [
        ("background", True),
        ("blended", False),
    ]
    assert {layer["depth"] for layer in outcome["layers"]} == {"F32"}
    check_pixels(e2e, outcome, "F32", linear=True)


def test_other_colour_spaces_go_through_krita(e2e: E2E) -> None:
    """A GRAYA document: no selection means the whole canvas; the layer stays gray."""
    outcome = e2e.scenario("gray_document")
    sent = np.frombuffer(Path(outcome["canvas_dump"]).read_bytes(), np.uint8).reshape(48, 64, 4)
    assert outcome["record"]["parameters"]["canvas"]["sha256"] == sha256(sent)
    assert "selection" not in outcome["record"]["parameters"]
    gray = np.frombuffer(gray_artwork(64, 48), np.uint8).reshape(48, 64, 2)
    assert (sent[..., 0] == sent[..., 1]).all() and (sent[..., 1] == sent[..., 2]).all()
    assert np.abs(sent[..., 0].astype(int) - gray[..., 0]).max() <= 1
    assert (sent[..., 3] == 255).all()
    (layer,) = outcome["layers"]
    assert (layer["model"], layer["depth"], layer["rect"]) == ("GRAYA", "U8", [0, 0, 64, 48])
    png = server_png(e2e.server, outcome["record"]["id"], layer["file"]).astype(int)
    ours = np.frombuffer(Path(layer["dump"]).read_bytes(), np.uint8).reshape(48, 64, 2).astype(int)
    assert (ours[..., 1] == png[..., 3]).all(), "alpha changed"
    seen = png[..., 3] > 0
    low, high = png[..., :3].min(axis=2), png[..., :3].max(axis=2)
    assert ((ours[..., 0] >= low - 2) & (ours[..., 0] <= high + 2))[seen].all()


@pytest.mark.parametrize("scenario", ["scene", "scene_sdxl"])
def test_scene_from_a_layout_group_of_three_overlapping_objects(e2e: E2E, scenario: str) -> None:
    outcome = e2e.scenario(scenario)
    width, height = SCENE_SIZE
    # The background sent is the canvas without the layout group, read without a trace.
    assert outcome["read"] == {
        "undo_changed": False,
        "modified": False,
        "layout_visible": True,
        "bytes": 4 * width * height,
    }
    canvas = krita_to_rgba8(artwork(width, height, "U8"), "U8", False)
    assert sha256(Path(outcome["without_dump"]).read_bytes()) == sha256(canvas)
    record = outcome["record"]
    sent = record["parameters"]
    assert sent["bg"]["sha256"] == sha256(canvas)
    masks = [
        np.frombuffer(m, np.uint8).reshape(height, width) for _, m in scene_layout(*SCENE_SIZE)
    ]
    regions = []
    for item, mask in zip(sent["objects"], masks, strict=True):
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        regions.append((int(cols[0]), int(rows[0])))
        assert (item["region"]["left"], item["region"]["top"]) == regions[-1]
        assert item["region"]["mask"]["width"] == int(cols[-1] - cols[0] + 1)
    assert [item["prompt"] for item in sent["objects"]] == list(SCENE_OBJECTS)
    # Result: one group right above the layout, objects bottom → top named after the prompts,
    # the layout hidden (not deleted), the artwork untouched.
    names = top_level(outcome["tree"])
    assert names == ["Background", "artwork", "layout", "a street #1", "top"]
    layout = group(outcome["tree"], "layout")
    assert not layout["visible"] and not outcome["layout_visible"]
    assert [c["name"] for c in layout["children"]] == list(SCENE_OBJECTS)
    children = group(outcome["tree"], "a street #1")["children"]
    assert [(c["name"], c["visible"]) for c in children] == [
        *[(name, True) for name in SCENE_OBJECTS],
        ("blended", False),
    ]
    assert outcome["artwork_unchanged"]
    check_pixels(e2e, outcome, "U8", linear=False)
    # Every object in its region at the exact offset, alpha 0 outside the region.
    objects = [layer for layer in outcome["layers"] if layer["name"] in SCENE_OBJECTS]
    assert [layer["name"] for layer in objects] == list(SCENE_OBJECTS)
    for layer, mask in zip(objects, masks, strict=True):
        left, top, w, h = layer["rect"]
        raw = np.frombuffer(Path(layer["dump"]).read_bytes(), np.uint8).reshape(h, w, 4)
        inside = mask[top : top + h, left : left + w] > 0
        assert raw[..., 3][~inside].max(initial=0) == 0, layer["name"]
        assert raw[..., 3][inside].max() > 0, f"{layer['name']} came out empty"
        bx, by, bw, bh = layer["bounds"]
        assert (bx, by) == (left, top) and (bw, bh) == (w, h), "not cropped to its alpha"
    timeline = outcome["timeline"]
    assert timeline[:3] == [f"inserted object_{i}.png" for i in range(3)], timeline
    latency = outcome["insert_seconds"]
    print(
        f"\n{scenario}: layer_ready → inserted in Krita: "
        + ", ".join(f"{file} {latency[file] * 1000:.0f} ms" for file in sorted(latency))
    )


def test_krita_opens_the_result_ora_with_exact_layers(e2e: E2E) -> None:
    """OpenRaster through Krita's own importer: the scene's group, names, order, visibility and
    every layer's pixels at its offset, byte-exact against the server's PNGs."""
    outcome = e2e.scenario("open_ora")
    assert outcome["size"] == list(SCENE_SIZE) and outcome["model"] == ["RGBA", "U8"]
    (group,) = [node for node in outcome["tree"] if node["type"] == "grouplayer"]
    assert group["name"] == "a street #1"
    assert [(c["name"], c["visible"]) for c in group["children"]] == [
        *[(name, True) for name in SCENE_OBJECTS],
        ("blended", False),
    ]
    check_pixels(e2e, outcome, "U8", linear=False)


def test_decompose_splits_the_active_layer_into_a_group_above_it(e2e: E2E) -> None:
    outcome = e2e.scenario("decompose")
    width, height = DECOMPOSE_SIZE
    # The active layer is the source (the docker offers the whole canvas instead), read
    # without a trace.
    assert outcome["sources"] == ["Active layer", "Whole canvas"]
    assert outcome["read"] == {
        "undo_changed": False,
        "modified": False,
        "bytes": 4 * width * height,
    }
    record = outcome["record"]
    sent = record["parameters"]
    layer = krita_to_rgba8(artwork(width, height, "U8"), "U8", False)
    assert sent["image"]["sha256"] == sha256(layer)
    assert (sent["layer_count"], sent["steps"]) == (2, 2)
    # One group right above the source, which is hidden (not deleted); its layers bottom → top
    # as the record names them, the recomposite hidden.
    assert top_level(outcome["tree"]) == ["Background", "artwork", "a landscape #1", "top"]
    assert not group(outcome["tree"], "artwork")["visible"] and not outcome["artwork_visible"]
    children = group(outcome["tree"], "a landscape #1")["children"]
    named = [(layer["name"], layer["visible"]) for layer in record["layers"]]
    assert named == [("layer_1", True), ("layer_2", True), ("blended", False)]
    assert [(child["name"], child["visible"]) for child in children] == named
    assert [layer["name"] for layer in outcome["layers"]] == [name for name, _ in named]
    for placed in outcome["layers"]:
        left, top, w, h = placed["rect"]
        assert min(left, top) >= 0 and left + w <= width and top + h <= height
    check_pixels(e2e, outcome, "U8", linear=False)
    # Hiding the source is no undo step: Ctrl+Z would undo the last layer's "Add Layer".
    assert outcome["undo_text"] == "Undo Add Layer"
    # "Undo whole result" removes the group and shows the source again.
    assert outcome["undo_button_visible"]
    after = outcome["after_undo_result"]
    assert top_level(after) == ["Background", "artwork", "top"]
    assert group(after, "artwork")["visible"]


def test_cancel_stops_the_job_and_inserts_nothing(e2e: E2E) -> None:
    outcome = e2e.scenario("cancel")
    assert outcome["during"]["cancel_enabled"] and not outcome["during"]["generate_enabled"]
    assert outcome["outcome"] is None and outcome["unchanged"]
    docker = outcome["docker"]
    assert docker["status"] == "Cancelled" and docker["error"] == ""
    assert docker["generate_enabled"] and not docker["cancel_enabled"]


def test_server_dying_mid_job_is_an_error_not_a_hang(e2e: E2E) -> None:
    outcome = e2e.scenario("server_killed")
    docker = outcome["docker"]
    assert "Lost the connection to the server" in docker["error"], docker
    assert outcome["seconds_to_error"] < 30 and not docker["busy"]


def test_server_url_is_saved_in_krita_settings(e2e: E2E) -> None:
    e2e.scenario("server_killed")
    settings = e2e.profile.kritarc.read_text()
    assert f"server_url={e2e.kill_url}" in settings


def test_screenshot_of_the_docker(e2e: E2E) -> None:
    e2e.scenario("screenshot")
    image = Image.open(e2e.profile.root / "window.png")
    assert image.width >= 800 and image.height >= 600


def test_a_mode_the_plugin_never_heard_of(e2e: E2E) -> None:
    """dummy_parts comes only from the server: list input, counted layers, two stages."""
    outcome = e2e.scenario("dummy_parts")
    assert "dummy_parts" in outcome["modes"]
    controls = outcome["controls"]
    assert controls["lists"] == ["parts"] and controls["list_rows"] == 2
    assert {"steps", "cfg", "decode", "negative_prompt"} <= set(controls["options"])
    record = outcome["record"]
    sent = record["parameters"]
    assert [(p["prompt"], p["seed"]) for p in sent["parts"]] == [("a hat", 1), ("a scarf", 2)]
    assert sent["canvas"]["sha256"] == sha256(krita_to_rgba8(artwork(96, 64, "U8"), "U8", False))
    name = f"{outcome['mode_label']} #1"  # no prompt: the mode's label
    children = group(outcome["tree"], name)["children"]
    assert [(c["name"], c["visible"]) for c in children] == [
        ("part_0", True),
        ("part_1", True),
        ("blended", False),
    ]
    by_name = {layer["name"]: layer for layer in outcome["layers"]}
    for layer in record["layers"]:
        placed = by_name[layer["name"]]
        assert placed["group"] == name
        assert placed["rect"] == [layer["left"], layer["top"], layer["width"], layer["height"]]
    assert by_name["blended"]["rect"] == [0, 0, 96, 64]
    timeline = outcome["timeline"]
    assert timeline[0] == "inserted part_0.png", timeline  # stage one's layer came first
    assert timeline.index("inserted part_0.png") < timeline.index("done"), timeline
    check_pixels(e2e, outcome, "U8", linear=False, server=e2e.dummy)


def test_a_sketch_layer_steers_fg_exactly_like_the_cli(
    e2e: E2E, tiny_models_dir: Path, tmp_path: Path
) -> None:
    """Structure from a layer: the sketch (over white) is sent as the control image; the
    result differs from the same job without it and equals `acetate generate` with that PNG."""
    outcome = e2e.scenario("structure")
    assert "sketch" in outcome["layers"] and outcome["layers"][0] == "None"
    assert outcome["controlnets"] == ["Default", "tiny-controlnet-sdxl"]
    width, height = STRUCTURE_SIZE
    bgra = np.frombuffer(sketch(width, height), np.uint8).reshape(height, width, 4)
    control = np.full((height, width, 4), 255, np.uint8)
    control[bgra[..., 3] == 255, :3] = 0  # black strokes over white, opaque
    sent = outcome["with"]["record"]["parameters"]
    assert (sent["control"], sent["control_strength"]) == ("canny", 1.0)
    assert sent["control_image"]["sha256"] == sha256(control)
    plain = outcome["without"]["record"]["parameters"]
    assert plain["control"] == "none" and "control_image" not in plain
    steered = server_png(e2e.server, outcome["with"]["record"]["id"], "foreground.png")
    unsteered = server_png(e2e.server, outcome["without"]["record"]["id"], "foreground.png")
    assert steered.shape == (height, width, 4) and not np.array_equal(steered, unsteered)
    png = tmp_path / "sketch.png"
    Image.fromarray(control, "RGBA").save(png)
    form = outcome["form"]
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "acetate", "generate", "--mode", "fg"]
    command += ["--model", form["model"], "--control", "canny", "--control-image", str(png)]
    command += ["--prompt", "a house", "--seed", str(form["seed"]), "--steps", str(form["steps"])]
    command += ["--width", str(width), "--height", str(height), "--decode", form["decode"]]
    command += ["--models-dir", str(tiny_models_dir), "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    cli = np.asarray(Image.open(out / "foreground.png").convert("RGBA"))
    assert np.array_equal(cli, steered), "the plugin's result differs from the CLI run"


def test_alpha_as_an_editable_mask(e2e: E2E) -> None:
    insertion_checks.check_alpha_mask(e2e.scenario("alpha_mask"), e2e.server.url)


def test_a_16bit_document_holds_the_servers_16bit_pixels(e2e: E2E) -> None:
    insertion_checks.check_sixteen_bit_exact(e2e.scenario("sixteen_bit_exact"), e2e.server.url)


def test_a_half_float_document_holds_the_servers_16bit_values(e2e: E2E) -> None:
    insertion_checks.check_half_float(e2e.scenario("half_float"), e2e.server.url)


def test_an_8bit_document_holds_the_servers_8bit_pixels(e2e: E2E) -> None:
    insertion_checks.check_eight_bit_exact(e2e.scenario("eight_bit_exact"), e2e.server.url)


def test_an_input_from_a_picked_layer(e2e: E2E) -> None:
    sources_checks.check_source_layer(e2e.scenario("source_layer"))


def test_an_inpaint_mask_from_a_layers_alpha(e2e: E2E) -> None:
    sources_checks.check_mask_from_alpha(e2e.scenario("mask_from_alpha"))


def test_a_lora_picked_in_the_docker(e2e: E2E) -> None:
    sources_checks.check_lora_rows(e2e.scenario("lora_rows"))
