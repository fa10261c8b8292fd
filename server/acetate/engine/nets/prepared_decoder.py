"""The transparent decoder prepared for ONNX Runtime on the CPU, cached per machine and size.

The eager `TransparentDecoder` stays the reference and the fallback. A prepared decoder is the
same network exported to an ONNX graph for one input size (a size bucket is one exact
height × width: the graph has static shapes, which ONNX Runtime optimises best), its attention
fused into flash attention (`onnx_attention`), and run by ONNX Runtime in fp32. Batch rows (the
TTA's views) run several at once, each on its share of the threads: one thread per view on a
2-core CPU keeps both cores busy where one view on two threads idles them a fifth of the time
between small operators (see `bench/decoder.py`).

An exported graph is code, not weights: it is kept only in a private cache (mode 0700, under the
user's cache folder, never in a scanned model folder) and holds no weights, which ONNX Runtime
takes from the loaded decoder when the session opens. Each entry has a key file (torch and ONNX
Runtime versions, CPU model, dtype, size, the decoder file's SHA-256, the graph's SHA-256); any
mismatch, corruption or failed self-check means eager decoding, with the reason logged. Export
needs the optional `fast-decoder` extra (onnxruntime, onnx, onnxscript).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from acetate.engine.memory import system_memory
from acetate.engine.nets.onnx_attention import translation_table
from acetate.engine.nets.transparent_vae import TransparentDecoder

log = logging.getLogger(__name__)

#: Bumped whenever the export or the entry layout changes, so old entries are rebuilt.
FORMAT = 2  # 2: flash attention (MultiHeadAttention)
BACKEND = "onnxruntime"
#: Overrides the cache folder (tests; machines whose home cache is shared).
CACHE_ENV = "ACETATE_DECODER_CACHE"
#: The prepared decoder's clipped output may differ from the eager one's by this much at most.
MAX_DIFFERENCE = 1 / 255
#: Modules the export needs (`pip install acetate[fast-decoder]`); running needs only the first.
EXPORT_MODULES = ("onnxruntime", "onnx", "onnxscript")
#: ONNX initializers whose data ONNX Runtime gets from the loaded decoder point at this file.
WEIGHTS_FROM_DECODER = "weights-supplied-by-acetate-at-load"
GRAPH_FILE = "decoder.onnx"
#: Views decoded at once add up their activations (~2 GiB per 1024² view with flash attention),
#: so at most this many pixels run at once; and never more views at once than threads, nor
#: than the TTA has.
CONCURRENT_PIXELS = 2 * 1024 * 1024
MAX_RUNS = 8
#: What one run holds at its peak, per pixel (measured: 1.8 KiB at 1024² without the arena,
#: 2.8 KiB at 512² with it), and the share of main memory concurrent runs leave to the rest of
#: the machine (the editor beside the server, the system).
RUN_BYTES_PER_PIXEL = 3 * 1024
KEEP_FREE = 0.25
KEY_FILE = "key.json"
#: Runs of at most this many pixels reuse a memory arena within a decode: at 512² that is 9%
#: faster for 0.5 GB more at the peak; at 1024² it was no faster and held 5 GB more.
ARENA_PIXELS = 512 * 768


def missing_modules(modules: tuple[str, ...] = EXPORT_MODULES) -> list[str]:
    """Those of `modules` that cannot be imported here."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def machine_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (`/proc/cpuinfo`, else `platform`)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cache_root() -> Path:
    """`$ACETATE_DECODER_CACHE`, else the user's cache folder + `acetate/decoders`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    import platformdirs

    return Path(platformdirs.user_cache_dir("acetate", appauthor=False)) / "decoders"


def private_folder_problem(folder: Path) -> str | None:
    """Why `folder` is not a private cache folder of this user, or None when it is."""
    try:
        info = folder.lstat()
    except FileNotFoundError:
        return None  # created private on first write
    if folder.is_symlink() or not folder.is_dir():
        return f"{folder} is not a plain folder"
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return f"{folder} belongs to another user"
    if info.st_mode & 0o077:
        return f"{folder} is open to other users (mode {info.st_mode & 0o777:o}, needs 700)"
    return None


def ensure_private_folder(folder: Path) -> Path:
    """Create `folder` with mode 0700 (parents as usual); OSError if it is not private."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    problem = private_folder_problem(folder)
    if problem:
        raise PermissionError(problem)
    return folder


@dataclass(frozen=True)
class PreparedKey:
    """Everything a prepared graph depends on: an entry is used only when all of it matches."""

    format: int
    backend: str
    backend_version: str
    torch: str
    machine: str
    dtype: str
    height: int
    width: int
    decoder_sha256: str

    @property
    def folder_name(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
        return f"{self.height}x{self.width}-{self.decoder_sha256[:12]}-{digest[:12]}"


def backend_version() -> str:
    """ONNX Runtime's version, or "not installed" (then nothing prepared can be loaded)."""
    try:
        return importlib.metadata.version(BACKEND)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def current_key(decoder_sha256: str, height: int, width: int) -> PreparedKey:
    """The key of a CPU fp32 prepared decoder for this machine, torch and ONNX Runtime."""
    return PreparedKey(
        format=FORMAT,
        backend=BACKEND,
        backend_version=backend_version(),
        torch=torch.__version__,
        machine=machine_name(torch.device("cpu")),
        dtype="fp32",
        height=height,
        width=width,
        decoder_sha256=decoder_sha256,
    )


def _weights(decoder: TransparentDecoder) -> dict[str, np.ndarray]:
    return {
        name: value.detach().float().contiguous().numpy()
        for name, value in decoder.state_dict().items()
    }


class _Feed(torch.nn.Module):
    """The decoder as one TTA pass sees it: clipped output, so the graph clips too."""

    def __init__(self, decoder: TransparentDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, pixel: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(pixel, latent).clamp(0, 1)


def export_graph(decoder: TransparentDecoder, height: int, width: int) -> tuple[bytes, list[str]]:
    """The decoder's ONNX graph at [1,3,H,W] without weights, and the names of those weights."""
    import onnx

    pixel = torch.zeros(1, 3, height, width)
    latent = torch.zeros(1, 4, height // 8, width // 8)
    # A copy: the export traces the module while a job may run the original in another thread.
    with torch.no_grad():
        program: Any = torch.onnx.export(
            _Feed(copy.deepcopy(decoder).float().to(memory_format=torch.contiguous_format)).eval(),
            (pixel, latent),
            input_names=["pixel", "latent"],
            output_names=["rgba"],
            dynamo=True,
            optimize=False,  # folding would bake transposed weights into the graph
            verbose=False,
            custom_translation_table=translation_table(),
        )
    model = program.model_proto
    names = {f"decoder.{name}": name for name in decoder.state_dict()}
    stripped = []
    for initializer in model.graph.initializer:
        if initializer.name in names or initializer.name in names.values():
            initializer.ClearField("raw_data")
            initializer.ClearField("float_data")
            del initializer.external_data[:]
            entry = initializer.external_data.add()
            entry.key, entry.value = "location", WEIGHTS_FROM_DECODER
            initializer.data_location = onnx.TensorProto.EXTERNAL
            stripped.append(initializer.name)
    return model.SerializeToString(), stripped


def concurrency(
    height: int, width: int, threads: int, memory: tuple[int, int] | None = None
) -> tuple[int, int]:
    """(views run at once, threads per view) for `threads` threads at height × width.

    `memory`: (available, total) bytes; views run at once only as far as their activations
    leave `KEEP_FREE` of the machine free: beside SDXL on a 24 GB machine, a 1024² decode runs
    one view at a time on every thread instead of two on one thread each (4 GB at its peak).
    """
    pixels = height * width
    runs = max(1, min(threads, MAX_RUNS, CONCURRENT_PIXELS // pixels))
    if memory is not None:
        available, total = memory
        fitting = int((available - KEEP_FREE * total) // (pixels * RUN_BYTES_PER_PIXEL))
        runs = max(1, min(runs, fitting))
    return runs, max(1, threads // runs)


def _shrinking_run() -> Any:
    """ONNX Runtime run options that hand the session's unused arena memory back at the end."""
    import onnxruntime

    options = onnxruntime.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


class PreparedDecoder:
    """An ONNX Runtime session of one decoder at one size, called like the eager network."""

    def __init__(
        self,
        session: Any,
        key: PreparedKey,
        weights: list[np.ndarray],
        runs: int = 1,
        arena: bool = False,
    ) -> None:
        self.session = session
        self.key = key
        self.runs = runs  # batch rows run at once (ONNX Runtime sessions run concurrently)
        self._weights = weights  # the session reads them in place
        # ONNX Runtime refuses to shrink a session without an arena.
        self._shrink = _shrinking_run() if arena else None

    def _row(self, pixel: torch.Tensor, latent: torch.Tensor, last: bool) -> torch.Tensor:
        feed = {
            "pixel": pixel.float().contiguous().numpy(),
            "latent": latent.float().contiguous().numpy(),
        }
        options = self._shrink if last else None
        return torch.from_numpy(self.session.run(None, feed, options)[0])

    def __call__(self, pixel: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Clipped output [B,4,H,W] (alpha first): one run per batch row, `runs` at once.

        Each of the `runs` workers decodes its share of the rows in turn. A session with an
        arena (small sizes) reuses it between a worker's views, whose activations are then not
        faulted in afresh each time (~10% of a run), and the worker's last run shrinks it.
        """
        count = pixel.shape[0]
        workers = min(self.runs, count)
        shares = [list(range(worker, count, workers)) for worker in range(workers)]

        def decode(share: list[int]) -> list[tuple[int, torch.Tensor]]:
            return [
                (i, self._row(pixel[i : i + 1], latent[i : i + 1], last=i == share[-1]))
                for i in share
            ]

        if workers == 1:
            done = decode(shares[0])
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="decoder") as pool:
                done = [row for rows in pool.map(decode, shares) for row in rows]
        return torch.cat([output for _, output in sorted(done, key=lambda row: row[0])])


def open_prepared(
    graph: Path, names: list[str], decoder: TransparentDecoder, key: PreparedKey
) -> PreparedDecoder:
    """The prepared decoder of `graph`: an ONNX Runtime CPU session per `concurrency`, with the
    decoder's weights as its initializers (used in place: the prepared decoder keeps them)."""
    import onnxruntime

    # Opened during a job, so the memory seen is what the loaded models leave.
    runs, threads = concurrency(key.height, key.width, torch.get_num_threads(), system_memory())
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads  # per run; all runs together use torch's threads
    options.inter_op_num_threads = 1
    # The arena keeps a run's activations for the next view of the same decode; each worker's
    # last run shrinks it (`PreparedDecoder.__call__`), so nothing stays between decodes. Off
    # for large runs, where its power-of-two growth outweighs the faults it saves.
    arena = key.height * key.width <= ARENA_PIXELS
    options.enable_cpu_mem_arena = arena
    weights = _weights(decoder)
    # Runtime prefixes nothing; the exporter may name weights with or without the wrapper's.
    values = [weights[name.removeprefix("decoder.")] for name in names]
    options.add_external_initializers(
        names, [onnxruntime.OrtValue.ortvalue_from_numpy(value) for value in values]
    )
    session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    return PreparedDecoder(session, key, values, runs, arena)


def self_check(prepared: PreparedDecoder, decoder: TransparentDecoder, seed: int = 0) -> float:
    """Max |prepared − eager| of the clipped outputs on one random input of the key's size."""
    generator = torch.Generator().manual_seed(seed)
    key = prepared.key
    pixel = torch.rand(1, 3, key.height, key.width, generator=generator)
    latent = torch.randn(1, 4, key.height // 8, key.width // 8, generator=generator)
    with torch.inference_mode():
        eager = decoder(pixel.to(decoder.dtype), latent.to(decoder.dtype)).clamp(0, 1).float()
    return float((prepared(pixel, latent) - eager).abs().max())


class PreparedCache:
    """The private folder of prepared decoders: one sub-folder per key."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root()

    def entry(self, key: PreparedKey) -> Path:
        return self.root / key.folder_name

    def entries(self) -> list[dict[str, Any]]:
        """The key files of every entry present (unreadable ones skipped)."""
        found = []
        if self.root.is_dir():
            for key_file in sorted(self.root.glob(f"*/{KEY_FILE}")):
                try:
                    found.append(json.loads(key_file.read_text()))
                except (OSError, ValueError):
                    continue
        return found

    def load(self, key: PreparedKey, decoder: TransparentDecoder) -> PreparedDecoder | str:
        """The prepared decoder of `key`, or why it cannot be used (then decode eagerly)."""
        problem = private_folder_problem(self.root)
        if problem:
            return problem
        folder = self.entry(key)
        try:
            record = json.loads((folder / KEY_FILE).read_text())
        except FileNotFoundError:
            return f"not prepared for {key.height}x{key.width} yet"
        except (OSError, ValueError) as error:
            return f"unreadable key file in {folder}: {error}"
        if record.get("key") != asdict(key):
            return f"{folder} was prepared for another key"
        graph = folder / GRAPH_FILE
        try:
            digest = hashlib.sha256(graph.read_bytes()).hexdigest()
        except OSError as error:
            return f"unreadable graph in {folder}: {error}"
        if digest != record.get("graph_sha256"):
            return f"{graph} does not match its key file (corrupt or changed)"
        try:
            return open_prepared(graph, list(record["weights"]), decoder, key)
        except Exception as error:  # any runtime failure means eager
            return f"ONNX Runtime could not open {graph}: {error}"

    def prepare(
        self, key: PreparedKey, decoder: TransparentDecoder
    ) -> tuple[PreparedDecoder, float]:
        """Export, self-check and store the prepared decoder of `key`; (it, max |Δ| vs eager).

        Written to a temporary folder beside the entry, renamed into place when complete, so
        other processes see a whole entry or none. ValueError when the self-check fails.
        """
        ensure_private_folder(self.root)
        graph_bytes, names = export_graph(decoder, key.height, key.width)
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".preparing-"))
        try:
            (staging / GRAPH_FILE).write_bytes(graph_bytes)
            record: Mapping[str, Any] = {
                "key": asdict(key),
                "graph_sha256": hashlib.sha256(graph_bytes).hexdigest(),
                "weights": names,
            }
            (staging / KEY_FILE).write_text(json.dumps(record, indent=1))
            prepared = open_prepared(staging / GRAPH_FILE, names, decoder, key)
            difference = self_check(prepared, decoder)
            if not difference <= MAX_DIFFERENCE:
                raise ValueError(f"prepared decoder differs from eager by {difference:.2e} > 1/255")
            target = self.entry(key)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return prepared, difference
