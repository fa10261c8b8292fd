"""The joint objective of arXiv 2402.17113 §3.1 and the PatchGAN it names.

Forward pass (paper): the frozen SD encoder turns the padded RGB into a posterior; the
transparency encoder's offset replaces its noise (`z_a = mean + std · offset`, as the official
files are used); the frozen SD decoder turns `z_a` back into RGB, and the transparent decoder
reads that RGB plus `z_a` and predicts alpha and colour.

Losses: reconstruction (predicted alpha and colour vs the originals; the colour target is the
padded RGB, which is defined under transparent pixels too), identity ("harmlessness": the frozen
decoder's RGB from `z_a` vs the padded RGB) and an adversarial term, weighted
`L = L_rec + λ_id · L_id + λ_disc · L_disc` with λ_id = 1 and λ_disc = 0.01 (the paper's terms;
these weights are our defaults — the paper's own values were not checked against its text).
Where the paper is silent we do what the LDM autoencoder does: an `NLayerDiscriminator`
(pix2pix PatchGAN, BatchNorm, 3 layers, 64 filters), hinge loss, the adaptive weight
‖∇L_rec‖ / ‖∇L_g‖ at the decoder's last layer (clamped to [0, 10⁴]) and a start step before
which the discriminator is off. The discriminator sees premultiplied RGBA, so colour where
alpha is 0 cannot be judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from acetate.engine.nets.transparent_vae import TransparentDecoder, TransparentEncoder

IDENTITY_WEIGHT = 1.0
DISC_WEIGHT = 0.01
ADAPTIVE_MAX = 1e4


class NLayerDiscriminator(nn.Module):
    """PatchGAN: stride-2 4×4 convs doubling the width (at most ×8), then two stride-1 convs;
    one logit per overlapping patch."""

    def __init__(self, in_channels: int = 4, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        modules: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        multiple = 1
        for n in range(1, layers + 1):
            previous, multiple = multiple, min(2**n, 8)
            stride = 2 if n < layers else 1
            modules += [
                nn.Conv2d(width * previous, width * multiple, 4, stride, padding=1, bias=False),
                nn.BatchNorm2d(width * multiple),
                nn.LeakyReLU(0.2, True),
            ]
        modules.append(nn.Conv2d(width * multiple, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*modules)
        for module in self.modules():  # the DCGAN initialisation pix2pix and LDM use
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.main(image)


class TransparencyPair(nn.Module):
    """The two trained nets, one module so data parallelism wraps (and syncs) them together."""

    def __init__(self, encoder: TransparentEncoder, decoder: TransparentDecoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.gradient_checkpointing = False

    def forward(
        self, vae: Any, rgba: torch.Tensor, padded: torch.Tensor, posterior: tuple[Any, Any]
    ) -> dict[str, torch.Tensor]:
        mean, std = posterior
        alpha = rgba[:, 3:]
        offset = self.encoder(torch.cat([alpha, padded], dim=1))
        adjusted = mean + std * offset
        if self.gradient_checkpointing:
            # Recompute each big graph during backward: only one is alive at a time.
            vae_rgb = checkpoint(_vae_decode, vae, adjusted, use_reentrant=False)
        else:
            vae_rgb = _vae_decode(vae, adjusted)
        pixel = (vae_rgb * 0.5 + 0.5).clamp(0, 1)
        if self.gradient_checkpointing:
            predicted = checkpoint(self.decoder, pixel, adjusted, use_reentrant=False)
        else:
            predicted = self.decoder(pixel, adjusted)
        return {"offset": offset, "adjusted": adjusted, "vae_rgb": vae_rgb, "predicted": predicted}


def _vae_decode(vae: Any, latent: torch.Tensor) -> torch.Tensor:
    return vae.decode(latent).sample


@torch.no_grad()
def posterior(vae: Any, padded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of the frozen SD encoder's posterior for padded RGB in [0, 1]."""
    dist = vae.encode(padded * 2 - 1).latent_dist
    return dist.mean, dist.std


def reconstruction_loss(predicted: torch.Tensor, rgba: torch.Tensor, padded: torch.Tensor) -> Any:
    """MSE of alpha plus MSE of colour (official channel order: alpha first)."""
    alpha = F.mse_loss(predicted[:, :1].float(), rgba[:, 3:])
    colour = F.mse_loss(predicted[:, 1:].float(), padded)
    return alpha + colour


def identity_loss(vae_rgb: torch.Tensor, padded: torch.Tensor) -> torch.Tensor:
    """MSE, in [0, 1] units, of the frozen decoder's RGB from the adjusted latent vs padded RGB."""
    return F.mse_loss(vae_rgb.float() * 0.5 + 0.5, padded)


def premultiplied(alpha: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Discriminator input: [colour·alpha, alpha] mapped to [-1, 1]."""
    return torch.cat([colour * alpha, alpha], dim=1) * 2 - 1


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def adaptive_weight(rec: torch.Tensor, gen: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """LDM's balance: gradient norms of the two losses at the decoder's last layer."""
    rec_grad = torch.autograd.grad(rec, last_layer, retain_graph=True)[0]
    gen_grad = torch.autograd.grad(gen, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (gen_grad.norm() + 1e-4)
    return weight.clamp(0.0, ADAPTIVE_MAX).detach()


@dataclass
class Terms:
    """Loss terms of one step (tensors, for backward and logging)."""

    total: torch.Tensor
    rec: torch.Tensor
    identity: torch.Tensor
    gen: torch.Tensor
    disc_weight: torch.Tensor

    def scalars(self) -> dict[str, float]:
        return {
            "loss": float(self.total.detach()),
            "rec": float(self.rec),
            "id": float(self.identity),
            "g": float(self.gen),
            "w": float(self.disc_weight),
        }


def generator_terms(
    out: dict[str, torch.Tensor],
    rgba: torch.Tensor,
    padded: torch.Tensor,
    disc: nn.Module | None,
    last_layer: torch.Tensor,
    *,
    identity_weight: float = IDENTITY_WEIGHT,
    disc_weight: float = DISC_WEIGHT,
) -> Terms:
    """`L_rec + λ_id·L_id (+ λ_disc·w·L_g when `disc` is given, i.e. after the start step)."""
    predicted = out["predicted"]
    rec = reconstruction_loss(predicted, rgba, padded)
    identity = identity_loss(out["vae_rgb"], padded)
    total = rec + identity_weight * identity
    zero = torch.zeros((), device=rec.device)
    gen, weight = zero, zero
    if disc is not None:
        fake = premultiplied(predicted[:, :1].clamp(0, 1), predicted[:, 1:].clamp(0, 1))
        gen = -disc(fake).float().mean()
        weight = adaptive_weight(rec, gen, last_layer) if rec.requires_grad else zero
        total = total + disc_weight * weight * gen
    return Terms(total, rec.detach(), identity.detach(), gen.detach(), weight)
