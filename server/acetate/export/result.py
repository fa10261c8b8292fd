"""Result folders: layer PNGs, optional `layers.psd`, then `result.json` (the result record).

Every file is written atomically and `result.json` last, so a crash leaves complete files or
none, and `result.json` exists only when every file it names does.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from acetate.engine.outputs import GenerationResult, LayerImage
from acetate.errors import InputError
from acetate.export.atomic import write_bytes_atomic
from acetate.export.png import DEFAULT_COMPRESS_LEVEL, write_png
from acetate.export.psd import PSD_FILE, result_groups, write_psd
from acetate.images import decode_png
from acetate.protocol import MODE_LAYERS, CanvasSize, LayerRecord, ResultRecord

RESULT_FILE = "result.json"
#: Layers that are hidden in every document, whatever the engine says.
HIDDEN_LAYERS = frozenset({"blended"})
#: Layers that keep their alpha channel even when fully opaque.
ALPHA_LAYERS = frozenset({"foreground"})


def layer_record(layer: LayerImage) -> LayerRecord:
    """The record of one engine layer (`blended` is always hidden)."""
    return LayerRecord(
        name=layer.name,
        batch_index=layer.batch_index,
        file=layer.file,
        left=layer.left,
        top=layer.top,
        width=layer.width,
        height=layer.height,
        visible=layer.visible and layer.name not in HIDDEN_LAYERS,
    )


def write_result(
    out_dir: Path,
    result: GenerationResult,
    *,
    job_id: str,
    psd: bool,
    on_layer: Callable[[LayerRecord], None] | None = None,
    compress_level: int = DEFAULT_COMPRESS_LEVEL,
) -> ResultRecord:
    """Write a result folder and return its record.

    Layers go in record order: by batch item, then bottom → top as `MODE_LAYERS` stacks them.
    `on_layer` is called after each PNG is complete (the server's `layer_ready`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # A previous record or PSD here would describe files that are about to change.
    for stale in (RESULT_FILE, PSD_FILE):
        with suppress(FileNotFoundError):
            (out_dir / stale).unlink()

    layers = _ordered(result.mode, result.layers)
    records: list[LayerRecord] = []
    for layer in layers:
        record = layer_record(layer)
        write_png(
            out_dir / record.file,
            layer.pixels,
            parameters=result.parameters,
            opaque=False if layer.name in ALPHA_LAYERS else None,
            compress_level=compress_level,
        )
        records.append(record)
        if on_layer is not None:
            on_layer(record)

    result_record = ResultRecord(
        id=job_id,
        mode=result.mode,  # type: ignore[arg-type]
        model=result.model,
        parameters=result.parameters,
        canvas=CanvasSize(width=result.canvas_width, height=result.canvas_height),
        layers=records,
        psd=None,
        warnings=list(result.warnings),
    )
    if psd:
        pixels = {(layer.name, layer.batch_index): layer.pixels for layer in layers}
        groups = result_groups(result_record, lambda r: pixels[(r.name, r.batch_index)])
        write_psd(out_dir / PSD_FILE, _canvas(result_record), groups)
        result_record.psd = PSD_FILE
    _write_record(out_dir, result_record)
    return result_record


def _ordered(mode: str, layers: list[LayerImage]) -> list[LayerImage]:
    stack = MODE_LAYERS.get(mode, ())

    def key(layer: LayerImage) -> tuple[int, int]:
        position = stack.index(layer.name) if layer.name in stack else len(stack)
        return layer.batch_index, position

    return sorted(layers, key=key)  # stable: unknown names keep the engine's order


def _canvas(record: ResultRecord) -> tuple[int, int]:
    return record.canvas.width, record.canvas.height


def _write_record(out_dir: Path, record: ResultRecord) -> None:
    data = record.model_dump_json(indent=2).encode("utf-8") + b"\n"
    write_bytes_atomic(out_dir / RESULT_FILE, data)


def read_result(out_dir: Path) -> ResultRecord:
    """The record of a result folder; `InputError` if it is missing or not a result record."""
    path = Path(out_dir) / RESULT_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise InputError(f"no {RESULT_FILE} in {out_dir}", field="result") from error
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror}", field="result") from error
    try:
        return ResultRecord.model_validate_json(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = f"{path}: not a result record ({where}: {first['msg']})"
        raise InputError(message, field="result") from error


def load_layer(out_dir: Path, layer: LayerRecord) -> np.ndarray:
    """A result layer's RGBA pixels from its PNG (the file must be a plain name in `out_dir`)."""
    if Path(layer.file).name != layer.file or layer.file in ("", ".", ".."):
        raise InputError(f"layer file must be a plain file name: {layer.file!r}", field="result")
    path = Path(out_dir) / layer.file
    try:
        pixels = decode_png(path.read_bytes(), layer.file)
    except FileNotFoundError as error:
        raise InputError(f"missing layer file {path}", field="result") from error
    if pixels.shape[:2] != (layer.height, layer.width):
        got = f"{pixels.shape[1]}×{pixels.shape[0]}"
        raise InputError(
            f"{path}: {got}, but the record says {layer.width}×{layer.height}", field="result"
        )
    return pixels


def write_psd_for_result(out_dir: Path, record: ResultRecord | None = None) -> Path:
    """Build `layers.psd` from a finished result folder's PNGs (the server does it lazily).

    Also sets `psd` in `result.json` when that file exists, so the record stays true.
    """
    out_dir = Path(out_dir)
    if record is None:
        record = read_result(out_dir)
    groups = result_groups(record, lambda layer: load_layer(out_dir, layer))
    path = out_dir / PSD_FILE
    write_psd(path, _canvas(record), groups)
    if (out_dir / RESULT_FILE).is_file():
        on_disk = read_result(out_dir)
        if on_disk.psd != PSD_FILE:
            _write_record(out_dir, on_disk.model_copy(update={"psd": PSD_FILE}))
    return path
