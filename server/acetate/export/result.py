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
from acetate.modes import MODES, LayerOut
from acetate.protocol import CanvasSize, LayerRecord, ResultRecord

RESULT_FILE = "result.json"


def _layer_spec(mode: str, name: str) -> LayerOut | None:
    spec = MODES.get(mode)
    return spec.layer_spec(name) if spec is not None else None


def keeps_alpha(mode: str, name: str) -> bool:
    """Whether a layer is written with an alpha channel even when fully opaque (mode spec)."""
    declared = _layer_spec(mode, name)
    return declared is not None and declared.keeps_alpha


def layer_record(layer: LayerImage, mode: str) -> LayerRecord:
    """The record of one engine layer (a layer its mode declares hidden is always hidden)."""
    declared = _layer_spec(mode, layer.name)
    visible = layer.visible and (declared is None or declared.visible)
    return LayerRecord(
        name=layer.name,
        batch_index=layer.batch_index,
        file=layer.file,
        left=layer.left,
        top=layer.top,
        width=layer.width,
        height=layer.height,
        visible=visible,
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

    Layers go in record order: by batch item, then bottom → top as the mode spec stacks them.
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
        record = layer_record(layer, result.mode)
        write_png(
            out_dir / record.file,
            layer.pixels,
            parameters=result.parameters,
            opaque=False if keeps_alpha(result.mode, layer.name) else None,
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


def stack_position(mode: str, name: str) -> tuple[int, int]:
    """Where a layer stacks in its result set, bottom first: its declaration's index in the
    mode spec, then its number within a counted pattern (`object_{i}`)."""
    spec = MODES.get(mode)
    declared = spec.layers if spec is not None else ()
    for index, layer in enumerate(declared):
        number = layer.number(name)
        if number is not None:
            return index, number
    return len(declared), 0


def _ordered(mode: str, layers: list[LayerImage]) -> list[LayerImage]:
    def key(layer: LayerImage) -> tuple[int, tuple[int, int]]:
        return layer.batch_index, stack_position(mode, layer.name)

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
