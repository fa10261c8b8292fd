"""Embeddings through the real server: /api/models lists them with family and vector count, a
prompt that names one records it with its SHA-256, and one of another family named in a prompt
is a 400 naming the prompt field and the embedding."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from server_helpers import FAST, LiveServer, final, follow
from support.trained import sha256_of

from acetate.client import AcetateClient, ServerError
from acetate.protocol import JobEvent

pytestmark = pytest.mark.asyncio


async def _run(client: AcetateClient, request: dict[str, Any]) -> tuple[Any, str]:
    """The job's result record and the SHA-256 of its foreground PNG."""
    job = await client.submit(request)
    done = final(await follow(client, job.id))
    assert done.type is JobEvent.done, done
    record = (await client.job(job.id)).result
    assert record is not None
    png = await client.layer_png(job.id, record.layers[0].file)
    return record, hashlib.sha256(png).hexdigest()


async def test_models_list_the_embeddings(server: LiveServer, tiny_models_dir: Path) -> None:
    models = await server.client().models()
    listed = {item["name"]: item for item in models["embeddings"]}
    assert listed == {
        f"tiny-emb-{family}": {
            "name": f"tiny-emb-{family}",
            "family": family,
            "tiny": True,
            "format": fmt,
            "path": str(tiny_models_dir / "tiny" / "embeddings" / f"tiny-emb-{family}.safetensors"),
            "source": "tiny",
            "vectors": 2,
        }
        for family, fmt in (("sd15", "a1111"), ("sdxl", "sdxl"))
    }
    assert {x["name"] for x in models["loras"]} == {"tiny-style-sd15", "tiny-style-sdxl"}


async def test_a_prompt_naming_an_embedding_uses_and_records_it(
    server: LiveServer, tiny_models_dir: Path
) -> None:
    client = server.client()
    request = {"mode": "fg", "model": "tiny-sdxl", **FAST}
    plain_record, plain = await _run(client, {**request, "prompt": "glass"})
    record, used = await _run(client, {**request, "prompt": "glass, tiny-emb-sdxl"})
    _, again = await _run(client, {**request, "prompt": "glass"})
    assert used != plain and again == plain
    assert record.parameters["prompt"] == "glass, tiny-emb-sdxl"
    path = tiny_models_dir / "tiny" / "embeddings" / "tiny-emb-sdxl.safetensors"
    assert record.files["embedding:tiny-emb-sdxl"].model_dump() == {
        "name": "tiny-emb-sdxl",
        "sha256": sha256_of(path),
    }
    assert not any(key.startswith("embedding:") for key in plain_record.files)


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"model": "tiny-sdxl", "prompt": "a cat, tiny-emb-sd15"}, "prompt", "SD1.5"),
        (
            {"model": "tiny-sd15", "prompt": "a cat", "negative_prompt": "embedding:tiny-emb-sdxl"},
            "negative_prompt",
            "SDXL",
        ),
    ],
)
async def test_an_embedding_of_another_family_is_a_400_on_the_prompt_field(
    server: LiveServer, fields: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ServerError) as raised:
        await server.client().submit({"mode": "fg", **FAST, **fields})
    assert raised.value.status == 400, raised.value
    assert raised.value.field == field
    name = "tiny-emb-sd15" if words == "SD1.5" else "tiny-emb-sdxl"
    assert f"embedding {name!r}" in str(raised.value) and f"{words} (test model)" in str(
        raised.value
    )
