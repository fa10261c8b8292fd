"""RGBA training folders: what is usable, its hash, and seeded batches indexed by step.

A batch is a pure function of (seed, step, process): the sample order is a per-epoch
permutation of the sorted file list and each crop/resize/flip has its own generator, so a
resumed run sees exactly the data an uninterrupted one would, with no sampler state to save.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from acetate.engine.nets.rgb_padding import pad_rgb_float
from acetate.errors import InputError

SUFFIXES = (".png", ".webp", ".tif", ".tiff")
MIN_SIDE = 64
#: Random resizes scale the short side to between `size` and this many times `size`.
MAX_ZOOM_OUT = 2.0


@dataclass
class DataScan:
    """A folder's usable images (sorted) and every skipped file with its reason."""

    root: Path
    images: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def counts(self) -> str:
        """`N skipped: 2 no alpha channel, 1 unreadable` on one line ("no image files")."""
        if not self.skipped:
            return "no image files"
        reasons: dict[str, int] = {}
        for _, reason in self.skipped:
            reasons[reason] = reasons.get(reason, 0) + 1
        parts = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
        return f"{len(self.skipped)} skipped: {parts}"

    def summary(self) -> str:
        """One line per skip reason with a count and the first few files."""
        lines = [f"{len(self.images)} usable RGBA image(s) in {self.root}"]
        reasons: dict[str, list[Path]] = {}
        for path, reason in self.skipped:
            reasons.setdefault(reason, []).append(path)
        for reason, paths in sorted(reasons.items()):
            names = ", ".join(str(p.relative_to(self.root)) for p in paths[:3])
            more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
            lines.append(f"skipped {len(paths)} ({reason}): {names}{more}")
        return "\n".join(lines)


def read_rgba(path: Path) -> np.ndarray:
    """H×W×4 uint8 straight RGBA of an image file with an alpha channel (ValueError: none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            has_alpha = "A" in image.getbands() or "transparency" in image.info
            if not has_alpha:
                raise ValueError("no alpha channel")
            return np.asarray(image.convert("RGBA"))


def _check(path: Path, min_side: int) -> str | None:
    """Why `path` cannot be trained on, or None."""
    try:
        rgba = read_rgba(path)
    except ValueError as error:
        if str(error) == "no alpha channel":
            return "no alpha channel"
        return "unreadable"
    except (OSError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "unreadable"
    if min(rgba.shape[:2]) < min_side:
        return f"smaller than {min_side} px"
    alpha = rgba[..., 3]
    if alpha.min() == alpha.max():
        return "constant alpha"
    return None


def scan_folder(root: Path, *, flag: str = "--data", min_side: int = MIN_SIDE) -> DataScan:
    """Every image file under `root` (nested folders), checked; an unusable folder raises."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder", field=flag)
    scan = DataScan(root)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
        if path.suffix.lower() not in SUFFIXES or hidden:  # hidden below the folder, not above
            continue
        reason = _check(path, min_side)
        if reason is None:
            scan.images.append(path)
        else:
            scan.skipped.append((path, reason))
    if not scan.images:
        raise InputError(f"no usable RGBA images in {root} ({scan.counts()})", field=flag)
    return scan


def data_hash(scan: DataScan) -> str:
    """SHA-256 over the usable files' relative paths and contents (what a run trained on)."""
    digest = hashlib.sha256()
    for path in scan.images:
        digest.update(path.relative_to(scan.root).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _to_float(rgba: np.ndarray) -> np.ndarray:
    return rgba.astype(np.float32) / 255.0


def random_crop(rgba: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Resize the short side to a random length in [size, 2·size] (never upscaling more than
    needed), crop `size`² at a random place, flip horizontally half the time."""
    height, width = rgba.shape[:2]
    short = min(height, width)
    target = int(rng.uniform(size, max(size, min(short, MAX_ZOOM_OUT * size))) + 0.5)
    scale = max(target, size) / short
    new = (max(size, round(width * scale)), max(size, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    # Premultiply for the resize so colour under transparent pixels does not bleed in.
    image = _to_float(rgba)
    image[..., :3] *= image[..., 3:]
    image = cv2.resize(image, new, interpolation=interpolation)
    top = int(rng.integers(0, image.shape[0] - size + 1))
    left = int(rng.integers(0, image.shape[1] - size + 1))
    image = image[top : top + size, left : left + size]
    if rng.random() < 0.5:
        image = image[:, ::-1]
    alpha = image[..., 3:]
    colour = np.where(alpha > 1e-6, image[..., :3] / np.maximum(alpha, 1e-6), 0)
    # Quantise like a stored 8-bit image: the official padding is defined on uint8 input.
    out = np.concatenate([np.clip(colour, 0, 1), np.clip(alpha, 0, 1)], axis=-1)
    return (out * 255 + 0.5).astype(np.uint8)


def centre_crop(rgba: np.ndarray, size: int) -> np.ndarray:
    """Short side resized to `size`, the centre `size`² kept (evaluation and contact sheets)."""
    height, width = rgba.shape[:2]
    scale = size / min(height, width)
    new = (max(size, round(width * scale)), max(size, round(height * scale)))
    image = _to_float(rgba)
    image[..., :3] *= image[..., 3:]
    image = cv2.resize(image, new, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    image = image[top : top + size, left : left + size]
    alpha = image[..., 3:]
    colour = np.where(alpha > 1e-6, image[..., :3] / np.maximum(alpha, 1e-6), 0)
    out = np.concatenate([np.clip(colour, 0, 1), np.clip(alpha, 0, 1)], axis=-1)
    return (out * 255 + 0.5).astype(np.uint8)


def sample_tensors(crops: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """uint8 RGBA crops → `rgba` [B,4,S,S] and the official `padded` RGB [B,3,S,S], in [0,1]."""
    floats = [_to_float(c) for c in crops]
    rgba = torch.from_numpy(np.stack(floats)).permute(0, 3, 1, 2).contiguous()
    padded = np.stack([pad_rgb_float(f) for f in floats])
    return {"rgba": rgba, "padded": torch.from_numpy(padded).permute(0, 3, 1, 2).contiguous()}


class StepBatches(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Item `step` = this process's part of the global batch of that step."""

    def __init__(
        self,
        images: list[Path],
        *,
        size: int,
        batch: int,
        seed: int,
        process_index: int = 0,
        num_processes: int = 1,
    ) -> None:
        self.images = list(images)
        self.size, self.batch, self.seed = size, batch, seed
        self.process_index, self.num_processes = process_index, num_processes
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        order = self._orders.get(epoch)
        if order is None:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.images))
            self._orders = {epoch: order}  # epochs only move forward: keep one
        return order

    def indices(self, step: int) -> list[int]:
        """File indices of this process's samples at `step`."""
        global_batch = self.batch * self.num_processes
        start = step * global_batch + self.process_index * self.batch
        count = len(self.images)
        return [
            int(self._order(pos // count)[pos % count]) for pos in range(start, start + self.batch)
        ]

    def __len__(self) -> int:
        return 2**62  # indexed by step; the sampler says which steps

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        crops = []
        first = self.process_index * self.batch  # slots of the global batch: the same crops
        for slot, index in enumerate(self.indices(step), start=first):  # on 1 or N processes
            rng = np.random.default_rng([self.seed, step, slot, 1])
            crops.append(random_crop(read_rgba(self.images[index]), self.size, rng))
        return sample_tensors(crops)


def step_loader(
    dataset: StepBatches, start: int, stop: int, workers: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches for steps start..stop-1, prepared by `workers` background processes."""
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        sampler=range(start, stop),
        num_workers=workers,
        persistent_workers=False,
        prefetch_factor=2 if workers else None,
    )
    yield from loader
