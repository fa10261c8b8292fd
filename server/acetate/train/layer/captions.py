"""Captioned RGBA folders: captions, aspect-ratio buckets and seeded batches indexed by step.

Captions come from `metadata.jsonl` (`{"file": <path relative to the folder>, "text": …}` per
line) or a `.txt` sidecar next to the image (same stem); the JSONL wins when both exist. Every
image is assigned the bucket (sides multiples of 64, area ≈ resolution², aspect ≤ 2:1) nearest
its aspect ratio. A batch is a pure function of (seed, step, process): a per-epoch seeded plan
of same-bucket batches, per-sample generators for crop, flip and caption dropout, so a resumed
run sees exactly the data an uninterrupted one would.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from acetate.errors import InputError
from acetate.train.data import DataScan, read_rgba

CAPTIONS_FILE = "metadata.jsonl"
BUCKET_STEP = 64
MAX_ASPECT = 2.0


@dataclass
class CaptionedData:
    """Usable images (sorted), their captions and bucket sizes, and what was left out."""

    root: Path
    images: list[Path]
    captions: list[str]
    sizes: list[tuple[int, int]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    #: How many images took `--default-caption`.
    defaulted: int = 0

    def summary(self) -> str:
        counts: dict[tuple[int, int], int] = {}
        for size in self.sizes:
            counts[size] = counts.get(size, 0) + 1
        buckets = ", ".join(f"{w}×{h}: {n}" for (w, h), n in sorted(counts.items()))
        lines = [f"{len(self.images)} captioned RGBA image(s) in {self.root} ({buckets})"]
        if self.defaulted:
            lines.append(f"{self.defaulted} image(s) without a caption use --default-caption")
        if self.skipped:
            reasons: dict[str, int] = {}
            for _, reason in self.skipped:
                reasons[reason] = reasons.get(reason, 0) + 1
            lines += [f"skipped {n} ({reason})" for reason, n in sorted(reasons.items())]
        return "\n".join(lines)


def _jsonl_captions(root: Path, flag: str) -> dict[Path, str]:
    path = root / CAPTIONS_FILE
    if not path.is_file():
        return {}
    captions: dict[Path, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            file, text = entry["file"], entry["text"]
            if not isinstance(file, str) or not isinstance(text, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise InputError(
                f'{path} line {number}: expected {{"file": "…", "text": "…"}}',
                field=flag,
            ) from None
        captions[(root / file).resolve()] = text.strip()
    return captions


def caption_folder(
    scan: DataScan, default_caption: str | None, flag: str = "--data"
) -> CaptionedData:
    """Captions for a scanned folder; images with none take `default_caption`, else an
    `InputError` counts them and names a few."""
    listed = _jsonl_captions(scan.root, flag)
    images, captions, missing = [], [], []
    defaulted = 0
    for path in scan.images:
        text = listed.get(path.resolve())
        sidecar = path.with_suffix(".txt")
        if text is None and sidecar.is_file():
            text = sidecar.read_text(encoding="utf-8").strip()
        if text is None:
            if default_caption is None:
                missing.append(path)
                continue
            text, defaulted = default_caption, defaulted + 1
        images.append(path)
        captions.append(text)
    if missing:
        names = ", ".join(str(p.relative_to(scan.root)) for p in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise InputError(
            f"{len(missing)} of {len(scan.images)} images in {scan.root} have no caption "
            f"({names}{more}): add a .txt next to each, a {CAPTIONS_FILE}, or --default-caption",
            field=flag,
        )
    return CaptionedData(scan.root, images, captions, [], list(scan.skipped), defaulted)


def buckets(resolution: int) -> list[tuple[int, int]]:
    """(width, height) sizes, multiples of 64, of about `resolution`² pixels, aspect ≤ 2:1."""
    area = resolution * resolution
    found = {(resolution, resolution)}
    for width in range(BUCKET_STEP, int(resolution * MAX_ASPECT) + 1, BUCKET_STEP):
        height = area // width // BUCKET_STEP * BUCKET_STEP
        if height >= BUCKET_STEP and max(width / height, height / width) <= MAX_ASPECT:
            found.add((width, height))
    return sorted(found)


def nearest_bucket(width: int, height: int, sizes: list[tuple[int, int]]) -> tuple[int, int]:
    ratio = math.log(width / height)
    return min(sizes, key=lambda size: (abs(math.log(size[0] / size[1]) - ratio), size))


def assign_buckets(data: CaptionedData, resolution: int) -> None:
    """Fill `data.sizes` with each image's bucket (header reads only)."""
    sizes = buckets(resolution)
    data.sizes = []
    for path in data.images:
        with Image.open(path) as image:
            data.sizes.append(nearest_bucket(image.width, image.height, sizes))


def cover_crop(
    rgba: np.ndarray, width: int, height: int, rng: np.random.Generator | None, flip: bool
) -> np.ndarray:
    """Resize (premultiplied, so hidden colour does not bleed) to cover width×height, crop a
    random window of the overhang (the centre without `rng`), flip horizontally half the time
    when `flip`; uint8 out."""
    scale = max(width / rgba.shape[1], height / rgba.shape[0])
    new = (max(width, round(rgba.shape[1] * scale)), max(height, round(rgba.shape[0] * scale)))
    premultiplied = rgba.astype(np.float32) / 255.0
    premultiplied[..., :3] *= premultiplied[..., 3:]
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    image = cv2.resize(premultiplied, new, interpolation=interpolation)
    spare_y, spare_x = image.shape[0] - height, image.shape[1] - width
    top = int(rng.integers(0, spare_y + 1)) if rng is not None else spare_y // 2
    left = int(rng.integers(0, spare_x + 1)) if rng is not None else spare_x // 2
    image = image[top : top + height, left : left + width]
    if flip and rng is not None and rng.random() < 0.5:
        image = image[:, ::-1]
    alpha = image[..., 3:]
    colour = np.where(alpha > 1e-6, image[..., :3] / np.maximum(alpha, 1e-6), 0)
    out = np.concatenate([np.clip(colour, 0, 1), np.clip(alpha, 0, 1)], axis=-1)
    return (out * 255 + 0.5).astype(np.uint8)


class CaptionedBatches(torch.utils.data.Dataset[dict[str, object]]):
    """Item `step` = this process's part of that step's global batch: `rgba` [B,4,H,W] in
    [0,1] (one bucket per step), `captions` (dropped ones empty) and `indices`."""

    def __init__(
        self,
        data: CaptionedData,
        *,
        batch: int,
        seed: int,
        caption_dropout: float = 0.0,
        flip: bool = False,
        centre: bool = False,
        process_index: int = 0,
        num_processes: int = 1,
    ) -> None:
        self.data = data
        self.batch, self.seed = batch, seed
        self.caption_dropout, self.flip = caption_dropout, flip
        #: Centre crops, never flipped: every step sees the same pixels of an image, so its
        #: latents can be cached (`--cache-latents`).
        self.centre = centre
        self.process_index, self.num_processes = process_index, num_processes
        self.global_batch = batch * num_processes
        groups: dict[tuple[int, int], int] = {}
        for size in data.sizes:
            groups[size] = groups.get(size, 0) + 1
        #: Batches per epoch: every bucket's images in full batches (the last one wraps).
        self.steps_per_epoch = sum(math.ceil(n / self.global_batch) for n in groups.values())
        self._plans: dict[int, list[list[int]]] = {}

    def _plan(self, epoch: int) -> list[list[int]]:
        plan = self._plans.get(epoch)
        if plan is None:
            rng = np.random.default_rng([self.seed, epoch])
            by_size: dict[tuple[int, int], list[int]] = {}
            for index in rng.permutation(len(self.data.images)):
                by_size.setdefault(self.data.sizes[int(index)], []).append(int(index))
            chunks = []
            for size in sorted(by_size):
                members = by_size[size]
                for start in range(0, len(members), self.global_batch):
                    chunk = [members[(start + i) % len(members)] for i in range(self.global_batch)]
                    chunks.append(chunk)
            plan = [chunks[int(i)] for i in rng.permutation(len(chunks))]
            self._plans = {epoch: plan}  # epochs only move forward: keep one
        return plan

    def indices(self, step: int) -> list[int]:
        """Image indices of this process's samples at `step`."""
        chunk = self._plan(step // self.steps_per_epoch)[step % self.steps_per_epoch]
        first = self.process_index * self.batch
        return chunk[first : first + self.batch]

    def __len__(self) -> int:
        return 2**62  # indexed by step; the sampler says which steps

    def __getitem__(self, step: int) -> dict[str, object]:
        indices = self.indices(step)
        crops, captions = [], []
        first = self.process_index * self.batch
        for slot, index in enumerate(indices, start=first):
            rng = np.random.default_rng([self.seed, step, slot, 2])
            width, height = self.data.sizes[index]
            crops.append(
                cover_crop(read_rgba(self.data.images[index]), width, height, rng, self.flip)
            )
            dropped = rng.random() < self.caption_dropout
            captions.append("" if dropped else self.data.captions[index])
        rgba = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
        return {"rgba": rgba.contiguous(), "captions": captions, "indices": indices}
