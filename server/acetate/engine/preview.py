"""Cheap latent → RGB previews (a linear map per latent channel; no VAE decode).

The per-channel colour factors are the well-known linear approximations of the SD1.5 and SDXL
VAE decoders (as used by ComfyUI/A1111 "approx" previews); applied to diffusion-space latents.
"""

from __future__ import annotations

import numpy as np
import torch

_FACTORS = {
    "sd15": (
        [
            [0.3512, 0.2297, 0.3227],
            [0.3250, 0.4974, 0.2350],
            [-0.2829, 0.1762, 0.2721],
            [-0.2120, -0.2616, -0.7177],
        ],
        [0.0, 0.0, 0.0],
    ),
    "sdxl": (
        [
            [0.3651, 0.4232, 0.4341],
            [-0.2533, -0.0042, 0.1068],
            [0.1076, 0.1111, -0.0362],
            [-0.3165, -0.2492, -0.2188],
        ],
        [0.1084, -0.0175, -0.0011],
    ),
}


def latents_to_rgb(latents: torch.Tensor, family: str, max_side: int = 256) -> np.ndarray:
    """First latent of a batch → H×W×3 uint8 at latent resolution (capped to `max_side`)."""
    factors, bias = _FACTORS["sdxl" if family == "sdxl" else "sd15"]
    latent = latents[0, :4].detach().float().cpu()
    weight = torch.tensor(factors, dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latent, weight) + torch.tensor(bias)
    image = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest > max_side:
        import cv2

        scale = max_side / longest
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image
