"""Host-side checks of what scenarios/insertion.py recorded inside real Krita, against the
server's own pixels (`?format=rgba` / `?format=rgba16`). test_krita_e2e.py calls them: its one
Krita launch runs those scenarios too."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from reference import rgba16_to_krita

from acetate_krita.pixels import LINEAR_PROFILES


def served(url: str, job_id: str, file: str, fmt: str) -> np.ndarray:
    """A layer's raw pixels from the server as H×W×4 (uint8 for `rgba`, uint16 for `rgba16`)."""
    address = f"{url}/api/jobs/{job_id}/layers/{file}?format={fmt}"
    with urllib.request.urlopen(address, timeout=60) as reply:
        width, height = (
            int(reply.headers["X-Acetate-Width"]),
            int(reply.headers["X-Acetate-Height"]),
        )
        data = reply.read()
    return np.frombuffer(data, "<u2" if fmt == "rgba16" else "u1").reshape(height, width, 4)


def dump(entry: dict[str, Any], dtype: str, channels: int = 4) -> np.ndarray:
    """A raw dump from Krita as H×W×channels over the layer's rectangle."""
    _, _, width, height = entry["rect"]
    return np.frombuffer(Path(entry["dump"]).read_bytes(), dtype).reshape(height, width, channels)


def check_16bit_layers(outcome: dict[str, Any], url: str, depth: str, linear: bool) -> None:
    """Each layer of a 16-bit job, read back from Krita, is the server's rgba16 pixels written
    at the document's depth (byte-exact against the numpy reference)."""
    record = outcome["record"]
    assert record["parameters"]["bit_depth"] == 16, record["parameters"]
    assert outcome["layers"], outcome
    for layer in outcome["layers"]:
        rgba16 = served(url, record["id"], layer["file"], "rgba16")
        expected = rgba16_to_krita(rgba16.tobytes(), depth, linear)
        assert Path(layer["dump"]).read_bytes() == expected, f"{layer['file']} differs"


def only_layer(outcome: dict[str, Any]) -> dict[str, Any]:
    (layer,) = outcome["layers"]
    assert layer["type"] == "paintlayer" and layer["name"] == "foreground", layer
    return layer


def check_mask_mode(outcome: dict[str, Any], url: str, bits: int) -> None:
    """An opaque paint layer with the server's colour everywhere (also under alpha 0) and one
    child transparency mask (8-bit alpha in Krita at every depth) holding its alpha."""
    record = outcome["record"]
    layer = only_layer(outcome)
    server = served(url, record["id"], layer["file"], "rgba16" if bits == 16 else "rgba")
    krita = dump(layer, "<u2" if bits == 16 else "u1")[..., [2, 1, 0, 3]]  # B,G,R,A → RGBA
    clear = server[..., 3] == 0
    assert clear.any() and (server[clear][:, :3] != 0).any(), "no colour under alpha 0 to keep"
    assert (krita[..., :3] == server[..., :3]).all(), "the layer's colour is not the server's"
    assert (krita[..., 3] == (65535 if bits == 16 else 255)).all(), "the layer is not opaque"
    (mask,) = layer["masks"]
    assert mask["type"] == "transparencymask" and mask["format"] == ["A", "U8"], mask
    alpha = np.frombuffer(Path(mask["dump"]).read_bytes(), np.uint8).reshape(server.shape[:2])
    expected = np.rint(server[..., 3] / 257) if bits == 16 else server[..., 3]
    assert (alpha == expected).all(), "the mask is not the server's alpha"


def check_alpha_mask(outcome: dict[str, Any], url: str) -> None:
    """Mask mode on an 8-bit document: the layer, its mask, one undo step, no dialog."""
    assert outcome["kritarc"] == "true"  # remembered in kritarc
    check_mask_mode(outcome, url, 8)
    assert outcome["record"]["parameters"]["bit_depth"] == 8
    group = next(node for node in outcome["tree"] if node["name"] == "smoke #1")
    (layer,) = group["children"]
    assert [(c["type"], c["name"]) for c in layer["children"]] == [
        ("transparencymask", "Transparency Mask")
    ]
    assert outcome["modals"] == [] and outcome["documents"][0] == outcome["documents"][1]
    # Still one "Add Layer" step: one undo removes the group, its layer and the mask.
    assert outcome["undo_text"] == "Undo Add Layer"
    assert "smoke #1" not in [node["name"] for node in outcome["after_undo"]]


def check_sixteen_bit_exact(outcome: dict[str, Any], url: str) -> None:
    """A U16 sRGB document holds the server's 16-bit values as they are; mask mode too."""
    plain = outcome["plain"]
    assert plain["document"] == ["RGBA", "U16", "sRGB-elle-V2-srgbtrc.icc"]
    check_16bit_layers(plain, url, "U16", linear=False)
    layer = only_layer(plain)
    assert layer["depth"] == "U16" and layer["masks"] == []
    krita = dump(layer, "<u2")
    assert (krita % 257 != 0).any(), "only 8-bit values scaled up: no 16-bit precision"
    masked = outcome["masked"]
    assert masked["record"]["parameters"]["bit_depth"] == 16
    check_mask_mode(masked, url, 16)


def check_half_float(outcome: dict[str, Any], url: str) -> None:
    """An F16 document (linear by default) holds the server's 16-bit values as half floats."""
    model, depth, profile = outcome["document"]
    assert (model, depth) == ("RGBA", "F16")
    check_16bit_layers(outcome, url, "F16", linear=profile in LINEAR_PROFILES)
    assert only_layer(outcome)["depth"] == "F16"


def check_eight_bit_exact(outcome: dict[str, Any], url: str) -> None:
    """An 8-bit document: the server's 8-bit bytes exactly, in Krita's B,G,R,A order."""
    assert outcome["document"][:2] == ["RGBA", "U8"]
    assert outcome["record"]["parameters"]["bit_depth"] == 8
    layer = only_layer(outcome)
    assert layer["masks"] == []
    server = served(url, outcome["record"]["id"], layer["file"], "rgba")
    assert (dump(layer, "u1")[..., [2, 1, 0, 3]] == server).all()
