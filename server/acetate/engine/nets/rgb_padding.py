"""LayerDiffusion's RGB padding: colour continued smoothly under transparent pixels.

The transparency encoder was trained on this exact padding (lvmin's alpha pyramid: premultiplied
colour and alpha shrunk by 1/1.2 per level with `INTER_AREA`, then rebuilt coarse to fine with
`INTER_LINEAR`, each level composited over the upsampled coarser one, starting from the
alpha-weighted mean colour). OpenCV is used so the result matches the official code bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

PYRAMID_STEP = 1.2


def _alpha_pyramid(colour: np.ndarray, alpha: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(premultiplied colour, alpha) per level, coarsest first; the last level is 1 px thin."""
    levels = []
    premultiplied = colour * alpha
    while True:
        levels.append((premultiplied, alpha))
        height, width = alpha.shape[:2]
        if min(height, width) == 1:
            break
        size = (int(width / PYRAMID_STEP), int(height / PYRAMID_STEP))
        premultiplied = cv2.resize(premultiplied, size, interpolation=cv2.INTER_AREA)
        # cv2 drops a single channel axis; keep alpha H×W×1 so it broadcasts over colour.
        alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)[:, :, None]
    return levels[::-1]


def pad_rgb_float(rgba: np.ndarray) -> np.ndarray:
    """Padded straight RGB (H×W×3 float32) of a float32 H×W×4 straight-alpha image in [0, 1]."""
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected an H×W×4 RGBA array, got shape {rgba.shape}")
    rgba = rgba.astype(np.float32, copy=False)
    levels = _alpha_pyramid(rgba[..., :3], rgba[..., 3:])
    top_colour, top_alpha = levels[0]
    # A fully transparent image has no colour to continue: the clip turns 0/0 into black.
    padded = np.sum(top_colour, axis=(0, 1), keepdims=True) / np.sum(
        top_alpha, axis=(0, 1), keepdims=True
    ).clip(1e-8, 1e32)
    for colour, alpha in levels:
        height, width = colour.shape[:2]
        padded = cv2.resize(padded, (width, height), interpolation=cv2.INTER_LINEAR)
        padded = colour + padded * (1.0 - alpha)
    return padded


def pad_rgb(rgba: np.ndarray) -> np.ndarray:
    """Padded straight RGB (H×W×3 float32 in [0, 1]) of an H×W×4 uint8 RGBA image."""
    if rgba.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGBA array, got {rgba.dtype}")
    return pad_rgb_float(rgba.astype(np.float32) / 255.0)


def pad_rgb_tensor(rgba: torch.Tensor) -> torch.Tensor:
    """Batched `pad_rgb`: [B,4,H,W] straight RGBA in [0, 1] → [B,3,H,W] float32 on the same device.

    Runs on the CPU with OpenCV (cheap next to the networks); a tensor made from uint8 by `/255`
    gives exactly the official result.
    """
    if rgba.ndim != 4 or rgba.shape[1] != 4:
        raise ValueError(f"expected a [B,4,H,W] RGBA tensor, got shape {tuple(rgba.shape)}")
    images = rgba.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).numpy()
    padded = np.stack([pad_rgb_float(np.ascontiguousarray(image)) for image in images])
    return torch.from_numpy(padded).permute(0, 3, 1, 2).to(rgba.device)
