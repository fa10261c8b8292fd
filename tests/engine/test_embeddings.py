"""Textual-inversion embeddings: listed from `embeddings/` (Acetate, ComfyUI, the A1111/Forge
install folder) with their family, used where a prompt names them, loaded into the text encoders
for that job only and taken out again so tokenizers and encoders are bit-identical afterwards —
also when the job fails or is cancelled part-way."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from support.stopping import stop_after_first_step
from support.trained import sha256_of

import acetate.cli
from acetate.engine.store.embeddings import detect_embedding, prompt_texts
from acetate.errors import InputError, ModelFileError
from acetate.protocol import GenerateParameters

TINY = "tiny/embeddings/tiny-emb-{family}.safetensors"


@pytest.fixture(scope="module")
def models(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny store plus `embeddings/`: `same-a` and `same-b` (the tiny SD1.5 embedding's
    vectors under two names), `other` (other vectors), `sdxl/inked` (the SDXL one in a
    sub-folder), an SD2 embedding and a pickle file, both refused."""
    root = tmp_path_factory.mktemp("embedding-store") / "models"
    shutil.copytree(tiny_models_dir, root, symlinks=True)
    folder = root / "embeddings"
    (folder / "sdxl").mkdir(parents=True)
    vectors = load_file(root / TINY.format(family="sd15"))["emb_params"]
    for name in ("same-a", "same-b"):
        save_file({"emb_params": vectors}, folder / f"{name}.safetensors")
    save_file({"emb_params": vectors.flip(0) * -1.5}, folder / "other.safetensors")
    shutil.copy(root / TINY.format(family="sdxl"), folder / "sdxl" / "inked.safetensors")
    save_file({"emb_params": torch.zeros(1, 1024)}, folder / "sd2.safetensors")
    (folder / "old.pt").write_bytes(b"not opened")
    return root


@pytest.fixture(scope="module")
def store(models: Path) -> Any:
    from acetate.engine.store.models import ModelStore

    return ModelStore(models, hf_cache=False)


@pytest.fixture(scope="module")
def engine(store: Any) -> Any:
    from acetate.engine.engine import Engine
    from acetate.engine.options import EngineOptions

    torch.set_num_threads(1)
    return Engine(store, EngineOptions(device="cpu"))


def _params(model: str, prompt: str, **more: Any) -> GenerateParameters:
    fields = dict(mode="fg", model=model, prompt=prompt, seed=3, steps=2, decode="fast")
    return GenerateParameters(**{**fields, **more})


def _pixels(engine: Any, params: GenerateParameters, **more: Any) -> np.ndarray:
    return np.stack([layer.pixels for layer in engine.generate(params, {}, **more).layers])


def _text_state(engine: Any) -> dict[str, Any]:
    """Everything of the loaded base's tokenizers and text encoders a job could change."""
    pipe = engine._base.sampler.pipe
    state: dict[str, Any] = {}
    for suffix in ("", "_2"):
        tokenizer = getattr(pipe, f"tokenizer{suffix}", None)
        encoder = getattr(pipe, f"text_encoder{suffix}", None)
        if tokenizer is None:
            continue
        state[f"tokenizer{suffix}"] = (
            len(tokenizer),
            tokenizer.get_vocab(),
            {i: str(token) for i, token in tokenizer.added_tokens_decoder.items()},
            tokenizer("glass tiny-emb-sd15 <acetate-embedding-0>").input_ids,
        )
        state[f"text_encoder{suffix}"] = (
            encoder.config.vocab_size,
            {key: value.clone() for key, value in encoder.state_dict().items()},
        )
    return state


def _assert_same_text_state(before: dict[str, Any], engine: Any) -> None:
    after = _text_state(engine)
    assert list(after) == list(before)
    for name, value in before.items():
        if name.startswith("tokenizer"):
            assert after[name] == value, name
        else:
            (size, weights), (size_after, weights_after) = value, after[name]
            assert size_after == size and list(weights_after) == list(weights), name
            changed = [k for k in weights if not torch.equal(weights[k], weights_after[k])]
            assert not changed, (name, changed)


def test_the_store_lists_embeddings_with_their_family_and_refuses_pickles(
    store: Any, models: Path
) -> None:
    listed = {e.name: (e.family, e.tiny, e.format, e.vectors, e.source) for e in store.embeddings()}
    assert listed == {
        "other": ("sd15", True, "a1111", 2, "models"),
        "same-a": ("sd15", True, "a1111", 2, "models"),
        "same-b": ("sd15", True, "a1111", 2, "models"),
        "sdxl/inked": ("sdxl", True, "sdxl", 2, "models"),
        "tiny-emb-sd15": ("sd15", True, "a1111", 2, "tiny"),
        "tiny-emb-sdxl": ("sdxl", True, "sdxl", 2, "tiny"),
    }
    refused = {r.path.name: r.reason for r in store.refused() if r.category == "embedding"}
    assert set(refused) == {"old.pt", "sd2.safetensors"}
    assert "pickle" in refused["old.pt"] and "SD2" in refused["sd2.safetensors"]
    described = {item["name"]: item for item in store.describe()["embeddings"]}
    assert described["sdxl/inked"] == {
        "name": "sdxl/inked",
        "family": "sdxl",
        "tiny": True,
        "format": "sdxl",
        "path": str(models / "embeddings" / "sdxl" / "inked.safetensors"),
        "source": "models",
        "vectors": 2,
    }


def test_the_tiny_ones_are_listed_before_the_tiny_store_is_built(
    tmp_path: Path, store: Any
) -> None:
    """As the tiny bases are: what a fresh store lists is what the built one lists."""
    from acetate.engine.store.models import ModelStore

    fresh = ModelStore(tmp_path, hf_cache=False).describe()
    assert not (tmp_path / "tiny").exists()
    built = store.describe()
    for what in ("loras", "embeddings"):
        tiny = [
            {**item, "path": Path(item["path"]).relative_to(store.models_dir).as_posix()}
            for item in built[what]
            if item["source"] == "tiny"
        ]
        assert (
            tiny
            and [
                {**item, "path": Path(item["path"]).relative_to(tmp_path).as_posix()}
                for item in fresh[what]
            ]
            == tiny
        )


def test_a1111_forge_and_comfyui_installs_are_scanned(store: Any, tmp_path: Path) -> None:
    from acetate.engine.store.models import ModelStore

    tiny = store.models_dir / TINY.format(family="sd15")
    webui = tmp_path / "stable-diffusion-webui"  # A1111/Forge: embeddings/ beside models/
    comfy = tmp_path / "ComfyUI"
    for folder in (webui / "embeddings" / "neg", comfy / "models" / "embeddings"):
        folder.mkdir(parents=True)
    shutil.copy(tiny, webui / "embeddings" / "neg" / "easy.safetensors")
    shutil.copy(tiny, comfy / "models" / "embeddings" / "comfy-style.safetensors")
    shutil.copy(tiny, comfy / "models" / "embeddings" / "other.safetensors")  # a taken name
    lora = store.models_dir / "tiny" / "loras" / "tiny-style-sd15.safetensors"
    (webui / "models" / "Lora").mkdir(parents=True)
    shutil.copy(lora, webui / "models" / "Lora" / "ink.safetensors")
    scanned = ModelStore(store.models_dir, [webui, comfy], hf_cache=False)
    sources = {e.name: e.source for e in scanned.embeddings()}
    assert sources["neg/easy"] == f"extra:{webui}"
    assert sources["comfy-style"] == f"extra:{comfy}"
    assert sources["other"] == "models"  # `models/` comes first
    assert any("embedding name 'other' is already taken" in w for w in scanned.warnings)
    assert {x.name: x.source for x in scanned.loras()}["ink"] == f"extra:{webui}"  # models/ too
    params = _params("tiny-sd15", "glass, embedding:neg/easy")
    planned = scanned.plan("tiny-sd15", "fg", prompts=prompt_texts(params)).embeddings
    assert [e.name for e in planned] == ["neg/easy"]


def test_pickle_embeddings_are_never_unpickled(tmp_path: Path) -> None:
    from acetate.engine.store.models import ModelStore

    marker = tmp_path / "unpickled"

    class Boom:
        def __reduce__(self) -> Any:
            return (Path.touch, (marker,))

    folder = tmp_path / "webui" / "embeddings"
    folder.mkdir(parents=True)
    for name in ("evil.pt", "evil.bin"):
        (folder / name).write_bytes(pickle.dumps(Boom()))
    store = ModelStore(tmp_path / "models", [tmp_path / "webui"], hf_cache=False)
    refused = [r for r in store.refused() if r.category == "embedding"]
    assert sorted(r.path.name for r in refused) == ["evil.bin", "evil.pt"]
    assert all("pickle" in r.reason for r in refused)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("tensors", "expected"),
    [
        ({"emb_params": (4, 768)}, ("sd15", False, "a1111", 4)),
        ({"string_to_param.*": (1, 768)}, ("sd15", False, "a1111", 1)),
        ({"<cat-toy>": (768,)}, ("sd15", False, "diffusers", 1)),
        ({"clip_l": (8, 768), "clip_g": (8, 1280)}, ("sdxl", False, "sdxl", 8)),
        ({"clip_l": (2, 32), "clip_g": (2, 48)}, ("sdxl", True, "sdxl", 2)),
        ({"emb_params": (2, 1024)}, "SD2.x"),
        ({"emb_params": (2, 1280)}, "fits neither"),
        ({"clip_l": (2, 768), "clip_g": (2, 1024)}, "not SDXL's"),
        ({"clip_l": (2, 768), "clip_g": (3, 1280)}, "different vector counts"),
        ({"a": (2, 768), "b": (2, 768)}, "not a textual-inversion embedding"),
    ],
)
def test_the_family_comes_from_the_vector_widths(
    tmp_path: Path, tensors: dict[str, tuple[int, ...]], expected: Any
) -> None:
    path = tmp_path / "x.safetensors"
    save_file({key: torch.zeros(shape) for key, shape in tensors.items()}, path)
    if isinstance(expected, tuple):
        assert detect_embedding(path) == expected
    else:
        with pytest.raises(ModelFileError, match=expected):
            detect_embedding(path)


def test_a_named_embedding_changes_the_output_and_the_next_job_is_clean(engine: Any) -> None:
    plain = _pixels(engine, _params("tiny-sd15", "glass"))
    before = _text_state(engine)
    used = engine.generate(_params("tiny-sd15", "glass, tiny-emb-sd15"), {})
    assert np.abs(np.stack([x.pixels for x in used.layers]).astype(int) - plain).mean() > 1
    _assert_same_text_state(before, engine)
    assert np.array_equal(_pixels(engine, _params("tiny-sd15", "glass")), plain)
    # The name becomes the embedding's token: two names holding the same vectors give the same
    # picture, other vectors another one.
    same_a = _pixels(engine, _params("tiny-sd15", "glass, same-a"))
    assert np.array_equal(_pixels(engine, _params("tiny-sd15", "glass, SAME-B")), same_a)
    assert not np.array_equal(_pixels(engine, _params("tiny-sd15", "glass, other")), same_a)
    _assert_same_text_state(before, engine)


def test_sdxl_loads_both_encoders_and_comfyui_syntax_works(engine: Any) -> None:
    plain = _pixels(engine, _params("tiny-sdxl", "glass", cfg=5.0))
    before = _text_state(engine)
    negative = _params("tiny-sdxl", "glass", cfg=5.0, negative_prompt="embedding:tiny-emb-sdxl")
    assert not np.array_equal(_pixels(engine, negative), plain)
    _assert_same_text_state(before, engine)
    # Only whole words: a longer word that contains the name is plain text, no embedding.
    plan = engine.prepare(_params("tiny-sdxl", "glass, tiny-emb-sdxl2, xtiny-emb-sdxl"), {}).plan
    assert plan.embeddings == ()


@pytest.mark.parametrize("how", ["cancel", "fail"])
def test_a_job_stopped_part_way_leaves_the_text_encoders_bit_identical(
    engine: Any, how: str
) -> None:
    plain = _pixels(engine, _params("tiny-sdxl", "glass", steps=3))
    before = _text_state(engine)
    on_step, cancel, error = stop_after_first_step(how)
    params = _params("tiny-sdxl", "glass, tiny-emb-sdxl", steps=3)
    with pytest.raises(error):
        engine.generate(params, {}, callback=on_step, cancel=cancel)
    _assert_same_text_state(before, engine)
    assert np.array_equal(_pixels(engine, _params("tiny-sdxl", "glass", steps=3)), plain)


@pytest.mark.parametrize(
    ("fields", "field", "family"),
    [
        ({"model": "tiny-sdxl", "prompt": "glass, tiny-emb-sd15"}, "prompt", "SD1.5"),
        (
            {"model": "tiny-sdxl", "prompt": "glass", "negative_prompt": "blurry, TINY-EMB-SD15"},
            "negative_prompt",
            "SD1.5",
        ),
        (
            {"model": "tiny-sd15", "mode": "joint", "layer_prompts": {"foreground": "sdxl/inked"}},
            "layer_prompts.foreground",
            "SDXL",
        ),
    ],
)
def test_an_embedding_of_another_family_is_an_input_error_on_its_field(
    engine: Any, fields: dict[str, Any], field: str, family: str
) -> None:
    params = GenerateParameters(**{"mode": "fg", "prompt": "glass", **fields})
    with pytest.raises(InputError, match=f"is for {family} \\(test model\\) bases") as raised:
        engine.prepare(params, {})
    assert raised.value.field == field


def test_the_record_and_the_cli_name_the_embeddings_with_their_sha256(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["generate", "--mode", "fg", "--model", "tiny-sd15", "--seed", "5", "--steps", "2",
            "--decode", "fast", "--device", "cpu", "--models-dir", str(models),
            "--prompt", "glass, embedding:same-a", "--negative-prompt", "other",
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert acetate.cli.main(args) == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "out" / "result.json").read_text())
    assert record["parameters"]["prompt"] == "glass, embedding:same-a"  # as the user wrote it
    embeddings = {k: v for k, v in record["files"].items() if k.startswith("embedding:")}
    assert embeddings == {
        f"embedding:{name}": {
            "name": name,
            "sha256": sha256_of(models / "embeddings" / f"{name}.safetensors"),
        }
        for name in ("other", "same-a")
    }
