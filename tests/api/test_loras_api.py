"""`loras` through the real server: /api/models lists the LoRAs with their family, a job applies
the named ones and records them with their SHA-256, the next job without them is the picture from
before, and bad names (unknown, a path, the wrong family) are 400s naming `loras`."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image
from server_helpers import FAST, LiveServer, final, follow, start_server
from support.loras import store_with_loras
from support.trained import sha256_of

from acetate.api.config import ServerConfig
from acetate.client import AcetateClient, ServerError
from acetate.protocol import JobEvent

pytestmark = pytest.mark.asyncio
REQUEST = {"mode": "fg", "model": "tiny-sd15", "prompt": "glass", **FAST}


@pytest.fixture(scope="module")
def lora_models(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api-loras") / "models"
    store_with_loras(tiny_models_dir, root)
    return root


@pytest_asyncio.fixture
async def lora_server(
    make_config: Callable[..., ServerConfig], lora_models: Path, engine: Any
) -> AsyncIterator[LiveServer]:
    from acetate.engine.engine import Engine
    from acetate.engine.store.models import ModelStore

    store = ModelStore(lora_models, hf_cache=False)
    live = await start_server(make_config(), Engine(store, engine.options), store)
    yield live
    await live.stop()


async def _run(client: AcetateClient, request: dict[str, Any]) -> tuple[Any, str]:
    """The job's result record and the SHA-256 of its foreground PNG."""
    job = await client.submit(request)
    done = final(await follow(client, job.id))
    assert done.type is JobEvent.done, done
    record = (await client.job(job.id)).result
    assert record is not None
    png = await client.layer_png(job.id, record.layers[0].file)
    return record, hashlib.sha256(png).hexdigest()


async def test_models_list_the_loras(lora_server: LiveServer) -> None:
    listed = {x["name"]: x for x in (await lora_server.client().models())["loras"]}
    assert {name: (x["family"], x["tiny"], x["format"]) for name, x in listed.items()} == {
        "kohya-sdxl": ("sdxl", True, "kohya"),
        "style-sd15": ("sd15", True, "diffusers"),
        "style-sdxl": ("sdxl", True, "diffusers"),
        "tiny-style-sd15": ("sd15", True, "diffusers"),  # the tiny store's own
        "tiny-style-sdxl": ("sdxl", True, "diffusers"),
    }


async def test_a_job_applies_and_records_the_lora_and_the_next_job_is_clean(
    lora_server: LiveServer, lora_models: Path
) -> None:
    client = lora_server.client()
    _, plain = await _run(client, REQUEST)
    record, styled = await _run(
        client, {**REQUEST, "loras": [{"name": "style-sd15.safetensors", "strength": 0.8}]}
    )
    _, again = await _run(client, REQUEST)
    assert styled != plain and again == plain
    assert record.parameters["loras"] == [{"name": "style-sd15", "strength": 0.8}]
    assert record.files["lora:style-sd15"].model_dump() == {
        "name": "style-sd15",
        "sha256": sha256_of(lora_models / "loras" / "style-sd15.safetensors"),
    }


@pytest.mark.parametrize(
    ("model", "loras", "words"),
    [
        ("tiny-sdxl", [{"name": "style-sd15"}], "'style-sd15' is for SD1.5"),
        ("tiny-sd15", [{"name": "nosuch"}], "no LoRA named 'nosuch'"),
        ("tiny-sd15", [{"name": "../loras/style-sd15"}], ""),
        ("tiny-sd15", [{"name": "/abs/style-sd15.safetensors"}], ""),
        ("tiny-sd15", [{"name": "style-sd15", "strength": 9}], ""),
        ("tiny-sd15", "style-sd15", ""),  # not a list
        ("tiny-qwen-image-layered", [{"name": "style-sd15"}], "SD1.5 and SDXL bases"),
    ],
)
async def test_bad_loras_are_400s_naming_the_field(
    lora_server: LiveServer, model: str, loras: Any, words: str
) -> None:
    request = {**REQUEST, "model": model, "loras": loras}
    if model.startswith("tiny-qwen"):
        request = {"mode": "decompose", "model": model, "loras": loras, "image": _png(64, 64)}
    with pytest.raises(ServerError) as raised:
        await lora_server.client().submit(request)
    assert raised.value.status == 400, raised.value
    assert (raised.value.field or "").startswith("loras"), raised.value
    assert words in str(raised.value)


def _png(width: int, height: int) -> str:
    image = Image.new("RGBA", (width, height), (200, 40, 40, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


async def test_the_openapi_document_has_the_field(lora_server: LiveServer) -> None:
    client = lora_server.client()
    document = await client._json("GET", "/api/openapi.json")
    text = str(document)
    assert "loras" in text and "LoraRequest" in text
