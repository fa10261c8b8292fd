"""`layer_files` through the real server: a trained file listed in /api/models is chosen by
name, the result record names every file with its SHA-256, the mode specs say which kinds fill
each part (the editors' pickers), and bad names are 4xx errors naming `layer_files`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from server_helpers import FAST, LiveServer, final, follow, start_server
from support.trained import SD15_DECODER, TRAINED_NAME, models_with_trained_decoder, sha256_of

from acetate.api.config import ServerConfig
from acetate.client import ServerError
from acetate.protocol import JobEvent

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def trained_models(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api-trained") / "models"
    models_with_trained_decoder(tiny_models_dir, root)
    return root


@pytest_asyncio.fixture
async def trained_server(
    make_config: Callable[..., ServerConfig], trained_models: Path, engine: Any
) -> AsyncIterator[LiveServer]:
    from acetate.engine.engine import Engine
    from acetate.engine.store.models import ModelStore

    store = ModelStore(trained_models, hf_cache=False)
    live = await start_server(make_config(), Engine(store, engine.options), store)
    yield live
    await live.stop()


async def test_models_and_modes_offer_the_trained_file(trained_server: LiveServer) -> None:
    client = trained_server.client()
    listed = {f["name"]: f for f in (await client.models())["layer_files"]}
    assert listed[TRAINED_NAME]["kind"] == SD15_DECODER
    assert listed[TRAINED_NAME]["trained"]["acetate.steps"] == "7"
    modes = {m["name"]: m for m in (await client.modes())["modes"]}
    sd15 = next(f for f in modes["fg"]["families"] if f["family"] == "sd15")
    assert SD15_DECODER in sd15["files"]["decoder"]


async def test_a_job_uses_the_named_file_and_records_it(
    trained_server: LiveServer, trained_models: Path
) -> None:
    client = trained_server.client()
    request = {"mode": "fg", "model": "tiny-sd15", "prompt": "glass", **FAST,
               "width": 64, "height": 64}  # fmt: skip
    records = {}
    for label, extra in (("official", {}), ("trained", {"layer_files": [TRAINED_NAME]})):
        job = await client.submit({**request, **extra})
        done = final(await follow(client, job.id))
        assert done.type is JobEvent.done, done
        records[label] = (await client.job(job.id)).result
    trained = records["trained"]
    assert trained is not None and records["official"] is not None
    path = trained_models / "tiny" / "layer_model" / TRAINED_NAME
    assert trained.files[SD15_DECODER].model_dump() == {
        "name": TRAINED_NAME,
        "sha256": sha256_of(path),
    }
    assert records["official"].files[SD15_DECODER].name == f"{SD15_DECODER}.safetensors"
    assert trained.parameters["layer_files"] == [TRAINED_NAME]


@pytest.mark.parametrize(
    ("layer_files", "status"),
    [
        (["nosuch"], 400),
        (["../../etc/passwd"], 400),
        (["vae_transparent_decoder.safetensors"], 400),  # an SDXL file on an SD1.5 base
        ("layer_sd15_vae_transparent_decoder", 400),  # not a list
    ],
)
async def test_bad_layer_files_name_the_field(
    trained_server: LiveServer, layer_files: Any, status: int
) -> None:
    client = trained_server.client()
    with pytest.raises(ServerError) as raised:
        await client.submit(
            {"mode": "fg", "model": "tiny-sd15", "prompt": "x", "layer_files": layer_files}
        )
    assert raised.value.status == status
    assert (raised.value.field or "").startswith("layer_files"), raised.value
