"""Host-side checks of the real-Krita scenarios in scenarios/sources.py (test_krita_e2e.py runs
them): what the server recorded of the images it got, and the layers Krita holds after."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def dumps(outcome: dict[str, Any]) -> list[bytes]:
    """The raw pixels of each inserted layer, in record order."""
    return [Path(layer["dump"]).read_bytes() for layer in outcome["layers"]]


def check_source_layer(outcome: dict[str, Any]) -> None:
    """fg2bg from a picked layer is the job from that layer as the active one, exactly."""
    picked, active, other = outcome["picked"], outcome["active"], outcome["other"]
    assert outcome["entries"][0] == "Active layer" and "cutout" in outcome["entries"]
    assert outcome["remembered"] not in ("", "layer")  # the node id, per mode
    sent = [run["record"]["parameters"]["fg"]["sha256"] for run in (picked, active, other)]
    assert sent[0] == sent[1] == outcome["cutout_sha"], sent
    assert sent[2] != sent[0]  # the active artwork, not the picked layer
    assert picked["record"]["parameters"]["seed"] == active["record"]["parameters"]["seed"]
    # The same request gives the same layers (the tiny model's fg2bg barely heeds the
    # foreground, so what was sent is checked by its hash above, not by the result).
    assert dumps(picked) and dumps(picked) == dumps(active)
    assert picked["docker"]["error"] == ""


def check_mask_from_alpha(outcome: dict[str, Any]) -> None:
    """Inpaint's mask is the alpha of the picked layer, byte for byte (no selection)."""
    assert outcome["entries"][0] == "Selection" and "Alpha of stencil" in outcome["entries"]
    parameters = outcome["record"]["parameters"]
    assert parameters["mask"]["sha256"] == outcome["alpha_sha"]
    assert (parameters["mask"]["width"], parameters["mask"]["height"]) == (64, 64)
    assert parameters.get("selection_bounds") is None
    assert outcome["docker"]["error"] == "" and outcome["layers"]


def check_lora_rows(outcome: dict[str, Any]) -> None:
    """A LoRA added in the docker reaches the job, and changes the result of the same seed."""
    with_lora, without = outcome["with"], outcome["without"]
    assert "tiny-style-sdxl" in outcome["offered"]
    assert all("sd15" not in name for name in outcome["offered"])  # the base's family only
    loras = with_lora["record"]["parameters"]["loras"]
    assert loras == [{"name": "tiny-style-sdxl", "strength": 1.25}]
    assert not without["record"]["parameters"].get("loras") and outcome["rows"] == 0
    assert with_lora["record"]["parameters"]["seed"] == without["record"]["parameters"]["seed"]
    assert dumps(with_lora) != dumps(without)
