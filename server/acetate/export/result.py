"""Result folders: layer PNGs, optional `layers.psd`/`layers.ora`, then `result.json` (the record).

Every file is written atomically and `result.json` last, so a crash leaves complete files or
none, and `result.json` exists only when every file it names does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from acetate.engine.outputs import GenerationResult, LayerImage, stacked
from acetate.errors import InputError
from acetate.export.atomic import write_bytes_atomic
from acetate.export.ora import ORA_FILE, write_ora
from acetate.export.png import DEFAULT_COMPRESS_LEVEL, decode_png16, png_bit_depth, write_png
from acetate.export.psd import PSD_FILE, PsdGroup, result_groups, write_psd
from acetate.images import decode_png
from acetate.modes import MODES, LayerOut
from acetate.protocol import CanvasSize, FileRecord, LayerRecord, ResolvedRequest, ResultRecord

RESULT_FILE = "result.json"


def _layer_spec(mode: str, name: str) -> LayerOut | None:
    spec = MODES.get(mode)
    return spec.layer_spec(name) if spec is not None else None


def keeps_alpha(mode: str, name: str) -> bool:
    """Whether a layer is written with an alpha channel even when fully opaque (mode spec)."""
    declared = _layer_spec(mode, name)
    return declared is not None and declared.keeps_alpha


def layer_title(mode: str, name: str, parameters: Mapping[str, Any] | None) -> str | None:
    """The display name of a layer its mode titles from a list item (`LayerOut.title_from`)."""
    declared = _layer_spec(mode, name)
    if declared is None or declared.title_from is None or parameters is None:
        return None
    number = declared.number(name)
    items = parameters.get(declared.count_from or "")
    if number is None or not isinstance(items, list) or number >= len(items):
        return None
    return declared.titles([item if isinstance(item, dict) else {} for item in items])[number]


def layer_record(
    layer: LayerImage, mode: str, parameters: Mapping[str, Any] | None = None
) -> LayerRecord:
    """The record of one engine layer (a layer its mode declares hidden is always hidden);
    `parameters` (the result's) give titled layers their names."""
    declared = _layer_spec(mode, layer.name)
    visible = layer.visible and (declared is None or declared.visible)
    title = layer_title(mode, layer.name, parameters)
    return LayerRecord(
        name=title or layer.name,
        key=layer.name if title is not None else None,
        batch_index=layer.batch_index,
        file=layer.file,
        left=layer.left,
        top=layer.top,
        width=layer.width,
        height=layer.height,
        visible=visible,
    )


class ResultWriter:
    """A result folder written layer by layer, as the engine yields them.

    `add` writes one layer's PNG atomically and returns its record (the server's `layer_ready`
    follows); `finish` orders the records (by batch item, then bottom → top as the mode spec
    stacks them), optionally writes the PSD, and writes `result.json` last.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        mode: str,
        parameters: dict[str, Any],
        compress_level: int = DEFAULT_COMPRESS_LEVEL,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.mode = mode
        self.parameters = parameters
        self.compress_level = compress_level
        self.layers: list[LayerImage] = []
        #: Notes the layers carried (`LayerImage.warning`), added to the record's warnings.
        self.warnings: list[str] = []
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # A previous record or PSD here would describe files that are about to change.
        for stale in (RESULT_FILE, PSD_FILE, ORA_FILE):
            with suppress(FileNotFoundError):
                (self.out_dir / stale).unlink()

    def add(self, layer: LayerImage) -> LayerRecord:
        record = layer_record(layer, self.mode, self.parameters)
        write_png(
            self.out_dir / record.file,
            layer.pixels,
            parameters=self.parameters,
            opaque=False if keeps_alpha(self.mode, layer.name) else None,
            compress_level=self.compress_level,
        )
        self.layers.append(layer)
        if layer.warning:
            self.warnings.append(layer.warning)
        return record

    def records(self) -> list[LayerRecord]:
        """The records of the layers written so far, in record order (a partial result)."""
        ordered = _ordered(self.mode, self.layers)
        return [layer_record(layer, self.mode, self.parameters) for layer in ordered]

    def finish(
        self,
        *,
        job_id: str,
        model: str,
        canvas: tuple[int, int],
        warnings: list[str],
        psd: bool,
        ora: bool = False,
        files: Mapping[str, FileRecord] | None = None,
    ) -> ResultRecord:
        layers = _ordered(self.mode, self.layers)
        record = ResultRecord(
            id=job_id,
            mode=self.mode,
            model=model,
            parameters=self.parameters,
            canvas=CanvasSize(width=canvas[0], height=canvas[1]),
            layers=self.records(),
            psd=None,
            warnings=[*warnings, *(w for w in self.warnings if w not in warnings)],
            metrics=[
                {"batch_index": layer.batch_index, **layer.metrics}
                for layer in layers
                if layer.metrics
            ],
            files=dict(files or {}),
        )
        if psd or ora:
            pixels = {layer.file: layer.pixels for layer in layers}
            groups = result_groups(record, lambda r: pixels[r.file])
            if psd:
                write_psd(self.out_dir / PSD_FILE, _canvas(record), groups)
                record.psd = PSD_FILE
            if ora:
                write_ora(self.out_dir / ORA_FILE, _canvas(record), groups)
                record.ora = ORA_FILE
        _write_record(self.out_dir, record)
        return record


def finish_record(writer: ResultWriter, job_id: str, request: ResolvedRequest) -> ResultRecord:
    """`result.json` of a job for the layers written so far (a server job: the PSD is left for
    its first request)."""
    return writer.finish(
        job_id=job_id,
        model=request.parameters.model or "",
        canvas=(request.canvas.width, request.canvas.height),
        warnings=list(request.warnings),
        psd=False,
        files=request.file_records(),
    )


def write_result(
    out_dir: Path,
    result: GenerationResult,
    *,
    job_id: str,
    psd: bool,
    ora: bool = False,
    on_layer: Callable[[LayerRecord], None] | None = None,
    compress_level: int = DEFAULT_COMPRESS_LEVEL,
) -> ResultRecord:
    """Write a whole result folder at once and return its record (see `ResultWriter`).

    `on_layer` is called after each PNG is complete.
    """
    writer = ResultWriter(
        out_dir, mode=result.mode, parameters=result.parameters, compress_level=compress_level
    )
    for layer in _ordered(result.mode, result.layers):
        record = writer.add(layer)
        if on_layer is not None:
            on_layer(record)
    return writer.finish(
        job_id=job_id,
        model=result.model,
        canvas=(result.canvas_width, result.canvas_height),
        warnings=result.warnings,
        psd=psd,
        ora=ora,
        files=result.files,
    )


def _ordered(mode: str, layers: list[LayerImage]) -> list[LayerImage]:
    return stacked(MODES[mode], layers) if mode in MODES else list(layers)


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
    """A result layer's RGBA pixels from its PNG (the file must be a plain name in `out_dir`):
    uint8, or uint16 for a 16-bit PNG (a `bit_depth` 16 result)."""
    if Path(layer.file).name != layer.file or layer.file in ("", ".", ".."):
        raise InputError(f"layer file must be a plain file name: {layer.file!r}", field="result")
    path = Path(out_dir) / layer.file
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise InputError(f"missing layer file {path}", field="result") from error
    if png_bit_depth(data) == 16:
        pixels = decode_png16(data)
    else:
        # Our own file, its frame checked at submit: not read through the input limits.
        pixels = decode_png(data, layer.file, trusted=True)
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
    return _write_document(out_dir, record, PSD_FILE, write_psd, "psd")


def write_ora_for_result(out_dir: Path, record: ResultRecord | None = None) -> Path:
    """Build `layers.ora` from a finished result folder's PNGs, like `write_psd_for_result`."""
    return _write_document(out_dir, record, ORA_FILE, write_ora, "ora")


def _write_document(
    out_dir: Path,
    record: ResultRecord | None,
    file: str,
    write: Callable[[Path, tuple[int, int], list[PsdGroup]], None],
    field: str,
) -> Path:
    out_dir = Path(out_dir)
    if record is None:
        record = read_result(out_dir)
    groups = result_groups(record, lambda layer: load_layer(out_dir, layer))
    path = out_dir / file
    write(path, _canvas(record), groups)
    if (out_dir / RESULT_FILE).is_file():
        on_disk = read_result(out_dir)
        if getattr(on_disk, field) != file:
            _write_record(out_dir, on_disk.model_copy(update={field: file}))
    return path
