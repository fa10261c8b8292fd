"""How good an encoder/decoder pair is on a set of RGBA images, and a contact sheet to look at.

Per image (centre crops, multiples of 64): alpha PSNR and MAE, RGB PSNR weighted by alpha,
composite PSNR over black, white and grey, harmlessness (PSNR of the frozen SD decoder's RGB
from the adjusted latent vs from the plain latent, and vs the padded original), and how far
the one-pass `fast` decode is from the official 8-view `tta` one. PSNRs are in dB on [0, 1]
values, capped at 100 dB for identical images.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from acetate.engine.nets.transparency_codec import decode_transparent
from acetate.engine.nets.transparent_vae import TransparentDecoder, TransparentEncoder
from acetate.export.atomic import write_bytes_atomic
from acetate.train.data import sample_tensors
from acetate.train.losses import TransparencyPair, identity_loss, posterior, reconstruction_loss

BACKGROUNDS = {"black": 0.0, "white": 1.0, "grey": 0.5}
MAX_PSNR = 100.0
#: Columns of the Markdown table, in order, with their labels.
COLUMNS = {
    "alpha_psnr": "alpha PSNR",
    "alpha_mae": "alpha MAE",
    "rgb_psnr_weighted": "RGB PSNR (α-weighted)",
    "composite_psnr_black": "over black",
    "composite_psnr_white": "over white",
    "composite_psnr_grey": "over grey",
    "harmless_psnr_vs_plain": "harmless vs plain",
    "harmless_psnr_vs_original": "harmless vs original",
    "fast_vs_tta_psnr": "fast vs tta PSNR",
    "fast_vs_tta_max": "fast vs tta max",
}


def psnr(mse: float) -> float:
    return MAX_PSNR if mse <= 10 ** (-MAX_PSNR / 10) else -10.0 * math.log10(mse)


@dataclass
class Prediction:
    """Everything one pass over a batch computes, [B,C,H,W] float32 CPU tensors in [0, 1]."""

    rgba: torch.Tensor  # ground truth, straight
    padded: torch.Tensor
    fast: torch.Tensor  # RGBA
    tta: torch.Tensor | None
    vae_adjusted: torch.Tensor  # frozen decoder's RGB from mean + std · offset
    vae_plain: torch.Tensor  # … from the posterior mean


@torch.inference_mode()
def predict(
    vae: Any,
    encoder: TransparentEncoder,
    decoder: TransparentDecoder,
    crops: Sequence[np.ndarray],
    *,
    tta: bool = True,
) -> Prediction:
    """Run the pair on uint8 RGBA crops (the training formulation: the VAE sees padded RGB)."""
    batch = sample_tensors(list(crops))
    device = next(decoder.parameters()).device
    rgba, padded = batch["rgba"].to(device), batch["padded"].to(device)
    dist = vae.encode(padded * 2 - 1).latent_dist
    offset = encoder(torch.cat([rgba[:, 3:], padded], dim=1))
    adjusted = dist.mean + dist.std * offset
    vae_adjusted = (vae.decode(adjusted).sample * 0.5 + 0.5).clamp(0, 1)
    vae_plain = (vae.decode(dist.mean).sample * 0.5 + 0.5).clamp(0, 1)
    fast = decode_transparent(decoder, vae_adjusted, adjusted, "fast")
    full = decode_transparent(decoder, vae_adjusted, adjusted, "tta") if tta else None
    return Prediction(
        rgba.cpu(),
        padded.cpu(),
        fast.cpu(),
        None if full is None else full.cpu(),
        vae_adjusted.float().cpu(),
        vae_plain.float().cpu(),
    )


@torch.inference_mode()
def objective(
    vae: Any, encoder: TransparentEncoder, decoder: TransparentDecoder, crops: Sequence[np.ndarray]
) -> dict[str, float]:
    """The training objective's reconstruction and identity terms on these crops (no GAN)."""
    batch = sample_tensors(list(crops))
    device = next(decoder.parameters()).device
    rgba, padded = batch["rgba"].to(device), batch["padded"].to(device)
    out = TransparencyPair(encoder, decoder)(vae, rgba, padded, posterior(vae, padded))
    return {
        "rec": float(reconstruction_loss(out["predicted"], rgba, padded)),
        "identity": float(identity_loss(out["vae_rgb"], padded)),
    }


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean())


def image_metrics(p: Prediction, i: int) -> dict[str, float]:
    """Metrics of image `i` of a prediction (the `tta` decode when there is one)."""
    truth = p.rgba[i]
    decoded = (p.tta if p.tta is not None else p.fast)[i]
    alpha, alpha_hat = truth[3:], decoded[3:]
    weight = alpha.expand(3, -1, -1)
    weighted = float((weight * (decoded[:3] - truth[:3]) ** 2).sum() / weight.sum().clamp(min=1e-8))
    metrics = {
        "alpha_psnr": psnr(_mse(alpha_hat, alpha)),
        "alpha_mae": float((alpha_hat - alpha).abs().mean()),
        "rgb_psnr_weighted": psnr(weighted),
    }
    for name, value in BACKGROUNDS.items():
        over = truth[:3] * alpha + value * (1 - alpha)
        over_hat = decoded[:3] * alpha_hat + value * (1 - alpha_hat)
        metrics[f"composite_psnr_{name}"] = psnr(_mse(over_hat, over))
    metrics["harmless_psnr_vs_plain"] = psnr(_mse(p.vae_adjusted[i], p.vae_plain[i]))
    metrics["harmless_psnr_vs_original"] = psnr(_mse(p.vae_adjusted[i], p.padded[i]))
    if p.tta is not None:
        metrics["fast_vs_tta_psnr"] = psnr(_mse(p.fast[i], p.tta[i]))
        metrics["fast_vs_tta_max"] = float((p.fast[i] - p.tta[i]).abs().max())
    return metrics


def evaluate(
    vae: Any,
    encoder: TransparentEncoder,
    decoder: TransparentDecoder,
    crops: Sequence[np.ndarray],
    names: Sequence[str],
    *,
    tta: bool = True,
    batch: int = 4,
) -> dict[str, Any]:
    """{"images": [{"name", **metrics}], "mean": metrics} over all crops."""
    rows: list[dict[str, Any]] = []
    for start in range(0, len(crops), batch):
        prediction = predict(vae, encoder, decoder, crops[start : start + batch], tta=tta)
        for i in range(prediction.rgba.shape[0]):
            rows.append({"name": names[start + i], **image_metrics(prediction, i)})
    keys = [k for k in COLUMNS if k in rows[0]] if rows else []
    mean = {k: float(np.mean([row[k] for row in rows])) for k in keys}
    return {"images": rows, "mean": mean}


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """Mean metrics table: one column per evaluated pair (label → `evaluate` result)."""
    labels = list(results)
    header = "| metric | " + " | ".join(labels) + " |"
    lines = [header, "|---|" + "---|" * len(labels)]
    for key, label in COLUMNS.items():
        if not all(key in r["mean"] for r in results.values()):
            continue
        values = " | ".join(f"{results[name]['mean'][key]:.4g}" for name in labels)
        lines.append(f"| {label} | {values} |")
    return "\n".join(lines) + "\n"


def checkerboard(height: int, width: int, cell: int = 16) -> np.ndarray:
    """The official 0.45 / 0.55 checkerboard (cells scaled to small crops)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.where(((y // cell) + (x // cell)) % 2 == 0, 0.45, 0.55).astype(np.float32)


def _over_checker(rgba: np.ndarray) -> np.ndarray:
    board = checkerboard(*rgba.shape[:2])[..., None]
    return rgba[..., :3] * rgba[..., 3:] + board * (1 - rgba[..., 3:])


def contact_sheet(prediction: Prediction, path: Path, limit: int = 8) -> Path:
    """PNG: per image a row of truth | decoded over a checkerboard | true alpha | decoded alpha."""
    decoded = prediction.tta if prediction.tta is not None else prediction.fast
    rows = []
    for i in range(min(limit, prediction.rgba.shape[0])):
        truth = prediction.rgba[i].permute(1, 2, 0).numpy()
        guess = decoded[i].clamp(0, 1).permute(1, 2, 0).numpy()
        tiles = [
            _over_checker(truth),
            _over_checker(guess),
            np.repeat(truth[..., 3:], 3, axis=2),
            np.repeat(guess[..., 3:], 3, axis=2),
        ]
        rows.append(np.concatenate(tiles, axis=1))
    sheet = (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255 + 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(sheet, "RGB").save(buffer, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue())
    return path
