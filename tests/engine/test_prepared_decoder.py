"""The prepared (ONNX Runtime) transparent decoder: private cache, keys, eager fallbacks, doctor.

Exporting takes about a minute even for the tiny decoder, so the fast tests build cache entries
by hand and stand in for ONNX Runtime's session with one that runs the eager network; the real
export → cache → fresh load round trip runs with RUN_SLOW=1 where `acetate[fast-decoder]` is
installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from acetate.cli.optimize import parse_sizes
from acetate.engine import memory
from acetate.engine.nets import decoder_paths, prepared_decoder
from acetate.engine.nets.decoder_paths import PreparedDecoders, explain, prepared_path_problem
from acetate.engine.nets.prepared_decoder import (
    CACHE_ENV,
    EXPORT_MODULES,
    GRAPH_FILE,
    KEY_FILE,
    PreparedCache,
    PreparedDecoder,
    PreparedKey,
    missing_modules,
    private_folder_problem,
)
from acetate.engine.nets.transparency_codec import decode_transparent
from acetate.engine.nets.transparent_vae import TINY_DECODER_WIDTHS, random_transparent_decoder

SIZE = 64
KEY = PreparedKey(
    format=prepared_decoder.FORMAT,
    backend="onnxruntime",
    backend_version="1.0",
    torch=torch.__version__,
    machine="test CPU",
    dtype="fp32",
    height=SIZE,
    width=SIZE,
    decoder_sha256="ab" * 32,
)


@pytest.fixture
def decoder() -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return random_transparent_decoder(TINY_DECODER_WIDTHS).to(memory_format=torch.channels_last)


@pytest.fixture
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    pixel = torch.rand(1, 3, SIZE, SIZE, generator=generator)
    return pixel, torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=generator)


def write_entry(
    cache: PreparedCache, key: PreparedKey, graph: bytes, changes: dict[str, Any] | None = None
) -> Path:
    """A cache entry as `PreparedCache.prepare` writes it, `changes` overriding the record."""
    folder = prepared_decoder.ensure_private_folder(cache.root) / key.folder_name
    folder.mkdir(mode=0o700)
    (folder / GRAPH_FILE).write_bytes(graph)
    record = {"key": asdict(key), "graph_sha256": hashlib.sha256(graph).hexdigest()}
    record["weights"] = []
    (folder / KEY_FILE).write_text(json.dumps({**record, **(changes or {})}))
    return folder


def test_every_key_field_names_another_entry() -> None:
    names = {KEY.folder_name}
    for field, value in asdict(KEY).items():
        other = value + 1 if isinstance(value, int) else f"{value}-other"
        names.add(replace(KEY, **{field: other}).folder_name)
    assert len(names) == 1 + len(asdict(KEY))
    assert KEY.folder_name.startswith(f"{SIZE}x{SIZE}-abababababab-")


def test_cache_folder_is_private(tmp_path: Path) -> None:
    root = tmp_path / "cache" / "decoders"
    assert private_folder_problem(root) is None  # absent: created private when first written
    prepared_decoder.ensure_private_folder(root)
    assert root.stat().st_mode & 0o777 == 0o700
    root.chmod(0o755)
    problem = private_folder_problem(root)
    assert problem is not None and "open to other users (mode 755" in problem
    with pytest.raises(PermissionError):
        prepared_decoder.ensure_private_folder(root)
    link = tmp_path / "link"
    link.symlink_to(root)
    assert "not a plain folder" in str(private_folder_problem(link))


def test_default_cache_is_the_users_cache_not_a_model_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert prepared_decoder.cache_root() == tmp_path / "xdg" / "acetate" / "decoders"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "elsewhere"))
    assert prepared_decoder.cache_root() == tmp_path / "elsewhere"


def test_load_says_why_an_entry_cannot_be_used(tmp_path: Path, decoder: Any) -> None:
    cache = PreparedCache(tmp_path / "decoders")
    assert cache.load(KEY, decoder) == f"not prepared for {SIZE}x{SIZE} yet"

    folder = write_entry(cache, KEY, b"graph", {"key": {**asdict(KEY), "torch": "0.1"}})
    assert cache.load(KEY, decoder) == f"{folder} was prepared for another key"

    (folder / KEY_FILE).write_text("{not json")
    assert str(cache.load(KEY, decoder)).startswith(f"unreadable key file in {folder}")

    (folder / KEY_FILE).unlink()
    (folder / GRAPH_FILE).unlink()
    folder.rmdir()
    folder = write_entry(cache, KEY, b"graph")
    (folder / GRAPH_FILE).write_bytes(b"graph, changed")
    assert "does not match its key file" in str(cache.load(KEY, decoder))

    # Consistent but not a graph ONNX Runtime can open (or ONNX Runtime missing): eager too.
    (folder / GRAPH_FILE).write_bytes(b"graph")
    assert str(cache.load(KEY, decoder)).startswith("ONNX Runtime could not open")

    cache.root.chmod(0o777)
    assert "open to other users" in str(cache.load(KEY, decoder))


class EagerSession:
    """Stands in for an ONNX Runtime session: the eager network, counting its runs."""

    def __init__(self, decoder: Any) -> None:
        self.decoder, self.runs = decoder, 0
        self.options: list[tuple[float, Any]] = []  # (first pixel of the row, run options)

    def run(self, _: None, feed: dict[str, np.ndarray], options: Any = None) -> list[np.ndarray]:
        self.runs += 1
        self.options.append((float(feed["pixel"].flat[0]), options))
        pixel, latent = (torch.from_numpy(feed[name]) for name in ("pixel", "latent"))
        return [self.decoder(pixel, latent).clamp(0, 1).numpy()]


class StandInCache(PreparedCache):
    """A cache whose every entry loads as the stand-in session (no export, no ONNX Runtime)."""

    def __init__(self, root: Path, session: EagerSession | None) -> None:
        super().__init__(root)
        self.session, self.loads = session, 0

    def load(self, key: PreparedKey, decoder: Any) -> PreparedDecoder | str:
        self.loads += 1
        return PreparedDecoder(self.session, key, []) if self.session else "absent"


def test_decodes_take_the_prepared_network_once_ready(
    tmp_path: Path,
    decoder: Any,
    inputs: tuple[torch.Tensor, torch.Tensor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = EagerSession(decoder)
    cache = StandInCache(tmp_path, session)
    prepared = PreparedDecoders(cache)
    monkeypatch.setattr(decoder_paths, "PREPARED", prepared)
    monkeypatch.setattr("acetate.engine.nets.transparency_codec.PREPARED", prepared)
    monkeypatch.setattr(decoder_paths, "missing_modules", lambda modules=(): [])
    eager = decode_transparent(decoder, *inputs, "tta", prepared=False)

    assert decode_transparent(decoder, *inputs, "tta").equal(eager)  # not attached: eager
    assert session.runs == 0 and cache.loads == 0

    digests: list[str] = []
    prepared.attach(decoder, lambda: digests.append("hashed") or "cd" * 32)
    first = decode_transparent(decoder, *inputs, "tta")  # starts loading; this job runs eager
    prepared.wait()
    assert first.equal(eager) and cache.loads == 1
    assert (decode_transparent(decoder, *inputs, "tta") - eager).abs().max() <= 1e-6
    assert session.runs == 8  # one per TTA view, batch 1
    assert decode_transparent(decoder, *inputs, "tta", prepared=False).equal(eager)
    assert session.runs == 8 and digests == ["hashed"] and cache.loads == 1


def test_views_run_several_at_once_on_a_share_of_the_threads_each() -> None:
    concurrency = prepared_decoder.concurrency
    assert concurrency(512, 512, 2) == (2, 1)  # a 2-core CPU: one thread per view, two views
    assert concurrency(512, 512, 16) == (8, 2)  # never more views at once than the TTA has
    assert concurrency(1024, 1024, 16) == (2, 8)  # activations of two 1024² views at most
    assert concurrency(2048, 2048, 16) == (1, 16)
    assert concurrency(512, 512, 1) == (1, 1)


def test_views_run_at_once_only_while_a_quarter_of_the_memory_stays_free() -> None:
    concurrency, gib = prepared_decoder.concurrency, 1 << 30
    # beside SDXL on a 24 GB machine: 8.5 GB available, 6 GB to keep free, 3 GB per 1024² view
    assert concurrency(1024, 1024, 2, (int(8.5 * gib), 24 * gib)) == (1, 2)
    assert concurrency(1024, 1024, 2, (22 * gib, 24 * gib)) == (2, 1)
    assert concurrency(512, 512, 2, (int(8.5 * gib), 24 * gib)) == (2, 1)
    assert concurrency(512, 512, 16, (10 * gib, 32 * gib)) == (2, 8)  # 2 GB for 0.75 GB views
    assert concurrency(512, 512, 2, (gib, 24 * gib)) == (1, 2)  # always one view at least
    available, total = memory.system_memory() or (0, 0)
    assert 0 < available <= total or not sys.platform.startswith("linux")


def test_concurrent_runs_keep_the_batch_order(
    decoder: Any, inputs: tuple[torch.Tensor, torch.Tensor]
) -> None:
    session = EagerSession(decoder)
    pixel = torch.cat([inputs[0], inputs[0].flip(3), inputs[0].flip(2)])
    latent = torch.cat([inputs[1], inputs[1].flip(3), inputs[1].flip(2)])
    with torch.inference_mode():
        one_by_one = PreparedDecoder(session, KEY, [], runs=1)(pixel, latent)
        at_once = PreparedDecoder(session, KEY, [], runs=2)(pixel, latent)
    assert at_once.equal(one_by_one) and session.runs == 6
    assert not at_once[0].equal(at_once[1])


def test_each_worker_shrinks_the_arena_on_its_last_view_only(decoder: Any) -> None:
    session = EagerSession(decoder)
    pixel = torch.arange(5.0).view(5, 1, 1, 1).expand(5, 3, 64, 64) / 10
    latent = torch.zeros(5, 4, 8, 8)
    prepared = PreparedDecoder(session, KEY, [], runs=2)
    shrink = prepared._shrink = object()  # as an arena session gets (needs ONNX Runtime)
    with torch.inference_mode():
        prepared(pixel, latent)
    shrunk = sorted(first for first, options in session.options if options is shrink)
    assert shrunk == pytest.approx([0.3, 0.4]) and len(session.options) == 5  # rows 0,2,4 | 1,3
    assert PreparedDecoder(session, KEY, [], runs=2)._shrink is None  # no arena, no shrinking


def test_a_size_that_cannot_be_prepared_stays_eager_with_its_reason(
    tmp_path: Path, decoder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared = PreparedDecoders(StandInCache(tmp_path, None))
    monkeypatch.setattr(decoder_paths, "missing_modules", lambda modules=(): [])
    monkeypatch.setenv(decoder_paths.PREPARE_ENV, "0")
    prepared.attach(decoder, lambda: "ef" * 32)
    assert prepared.net_for(decoder, SIZE, SIZE, background=False) is None
    reason = prepared.failures(decoder)[(SIZE, SIZE)]
    assert reason == f"absent, and cannot prepare it: {decoder_paths.PREPARE_ENV}=0"
    assert prepared.net_for(decoder, SIZE, SIZE) is None  # not retried on every pass

    half = random_transparent_decoder(TINY_DECODER_WIDTHS).half()
    prepared.attach(half, lambda: "ef" * 32)
    assert prepared.net_for(half, SIZE, SIZE) is None
    assert "fp32" in prepared.failures(half)[(SIZE, SIZE)]


def test_why_a_machine_decodes_eagerly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "decoders"))
    cpu = torch.device("cpu")
    assert prepared_path_problem(cpu, torch.float32, "eager") == "--decoder eager was chosen"
    assert "for the CPU; on cuda" in str(prepared_path_problem(torch.device("cuda"), torch.half))
    assert "is fp32; bfloat16 runs eagerly" in str(prepared_path_problem(cpu, torch.bfloat16))
    missing = missing_modules(EXPORT_MODULES[:1])
    problem = prepared_path_problem(cpu, torch.float32)
    if missing:
        assert problem == "onnxruntime not installed (pip install 'acetate[fast-decoder]')"
    else:
        assert problem is None
        (tmp_path / "decoders").mkdir(mode=0o770)
        assert "open to other users" in str(prepared_path_problem(cpu, torch.float32))


def test_doctor_says_which_decoder_path_and_lists_the_cache(
    tmp_path: Path,
    tiny_models_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from acetate.cli import main

    cache = PreparedCache(tmp_path / "decoders")
    write_entry(cache, KEY, b"graph")
    monkeypatch.setenv(CACHE_ENV, str(cache.root))
    monkeypatch.setenv("ACETATE_MODELS_DIR", str(tiny_models_dir))
    assert main(["doctor", "--device", "cpu", "--decoder", "eager"]) == 0
    eager = capsys.readouterr().out
    assert "transparent decoder: eager (--decoder eager was chosen)" in eager
    assert f"decoder cache: {cache.root} (1 prepared)" in eager
    # Another machine's entry (CPU "test CPU", ONNX Runtime 1.0) is named stale.
    assert f"{SIZE}x{SIZE} of decoder abababababab (stale:" in eager

    assert main(["doctor", "--device", "cpu"]) == 0
    assert explain(torch.device("cpu"), torch.float32)[0] in capsys.readouterr().out


def test_optimize_sizes_parse_and_refuse_bad_ones() -> None:
    assert parse_sizes("512,1024x768") == [(512, 512), (1024, 768)]
    for bad in ("500", "0", "512x", "a", "64x64x64"):
        with pytest.raises(Exception, match="positive multiples of 64"):
            parse_sizes(bad)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("RUN_SLOW") != "1", reason="exports a decoder; RUN_SLOW=1")
def test_real_export_round_trip(
    tmp_path: Path, decoder: Any, inputs: tuple[torch.Tensor, torch.Tensor]
) -> None:
    if missing_modules():
        pytest.skip(f"needs acetate[fast-decoder]: {missing_modules()} missing")
    cache = PreparedCache(tmp_path / "decoders")
    key = prepared_decoder.current_key("12" * 32, SIZE, SIZE)
    _, difference = cache.prepare(key, decoder)
    assert difference <= prepared_decoder.MAX_DIFFERENCE
    entry = cache.entry(key)
    assert cache.root.stat().st_mode & 0o777 == 0o700
    # Code, not weights: ONNX Runtime gets every weight from the loaded decoder.
    import onnx

    graph = onnx.load(str(entry / GRAPH_FILE), load_external_data=False)
    stripped = [tensor for tensor in graph.graph.initializer if tensor.name.startswith("decoder.")]
    assert len(stripped) == len(decoder.state_dict())
    assert not any(tensor.raw_data or tensor.float_data for tensor in stripped)
    # Attention runs as ONNX Runtime's flash kernel, no score matrix spelled out.
    kinds = {node.op_type for node in graph.graph.node}
    assert "MultiHeadAttention" in kinds and "Softmax" not in kinds

    loaded = cache.load(key, decoder)
    assert isinstance(loaded, PreparedDecoder)
    eager = decoder(*inputs).clamp(0, 1)
    assert (loaded(*inputs) - eager).abs().max() <= prepared_decoder.MAX_DIFFERENCE

    other = replace(key, decoder_sha256="34" * 32)
    assert cache.load(other, decoder) == f"not prepared for {SIZE}x{SIZE} yet"
