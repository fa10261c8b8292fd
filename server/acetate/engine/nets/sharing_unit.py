"""One official `AttentionSharingUnit` as a diffusers attention processor, and the control encoder.

Per frame of each `(b f)` group: a rank-r LoRA on q/k/v/out (scale 1 × strength), attention,
then a "temporal" attention that mixes every token across the frames of its group. The merged
LoRA weights `W + strength·up@down` are computed once per attach (the official code recomputes
them at every call; the values are identical) and dropped on detach or a strength change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import nn

from acetate.errors import InputError

CONTROL_WIDTHS: tuple[int, ...] = (32, 64, 128, 256)
LORA_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out")


class _LoRA(nn.Module):
    def __init__(self, in_features: int, out_features: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=False)

    def delta(self) -> torch.Tensor:
        return self.up.weight @ self.down.weight


def _control_conv(width: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.SiLU(), nn.Conv2d(width, out, 1))


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head SDPA on [B, N, heads·d] tensors (scale 1/√d)."""
    batch = q.shape[0]
    q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(batch, -1, out.shape[1] * out.shape[3])


class SharingLayer(nn.Module):
    """One official `AttentionSharingUnit`'s weights and forward (run as an attention processor)."""

    def __init__(self, width: int, context: int, frames: int, rank: int, control: int | None):
        super().__init__()
        self.frames = frames
        inputs = {"to_q": width, "to_k": context, "to_v": context, "to_out": width}
        for name in LORA_PROJECTIONS:
            loras = nn.ModuleList(_LoRA(inputs[name], width, rank) for _ in range(frames))
            setattr(self, f"{name}_lora", loras)
        self.temporal_i = nn.Linear(width, width)
        self.temporal_n = nn.LayerNorm(width, eps=1e-6)
        self.temporal_q = nn.Linear(width, width)
        self.temporal_k = nn.Linear(width, width)
        self.temporal_v = nn.Linear(width, width)
        self.temporal_o = nn.Linear(width, width)
        self.control_convs: nn.ModuleList | None = None
        if control is not None:
            self.control_convs = nn.ModuleList(_control_conv(control, width) for _ in range(frames))
        self._merged: dict[tuple[str, int], torch.Tensor] = {}

    def clear_merged(self) -> None:
        """Forget the merged weights (after detach, or when the strength or base changes)."""
        self._merged.clear()

    def _linear(
        self,
        x: torch.Tensor,
        layer: nn.Linear,
        lora: _LoRA,
        strength: float,
        key: tuple[str, int],
    ) -> torch.Tensor:
        weight = self._merged.get(key)
        if weight is None or weight.dtype != x.dtype:
            weight = (layer.weight + strength * lora.delta().to(layer.weight.dtype)).to(x.dtype)
            # While training (`acetate train layer-model`) the LoRA changes every step and its
            # gradient flows through this product: nothing may be cached.
            if not (torch.is_grad_enabled() and lora.up.weight.requires_grad):
                self._merged[key] = weight
        return F.linear(x, weight, None if layer.bias is None else layer.bias.to(x))

    def run(
        self,
        attn: Attention,
        h: torch.Tensor,
        context: torch.Tensor | None,
        state: RunState,
    ) -> torch.Tensor:
        frames, tokens = self.frames, h.shape[1]
        if h.shape[0] % frames:
            raise InputError(
                f"attention sharing with {frames} frames needs a batch that is a multiple of "
                f"{frames}, got {h.shape[0]}",
                field="batch",
            )
        groups = h.shape[0] // frames
        hs = h.unflatten(0, (groups, frames)).transpose(0, 1)  # '(b f) d c -> f b d c'
        if self.control_convs is not None:
            hs = hs + torch.stack(
                [state.control(conv, tokens, groups, hs) for conv in self.control_convs]
            )
        framed = hs if context is None else context.unflatten(0, (groups, frames)).transpose(0, 1)
        projections = [getattr(self, f"{name}_lora") for name in LORA_PROJECTIONS]
        outs = []
        for f, (q_lora, k_lora, v_lora, o_lora) in enumerate(zip(*projections, strict=True)):
            ctx = framed[f]
            if context is not None:
                ctx = state.frame_context(f, ctx, groups, frames)
            q = self._linear(hs[f], attn.to_q, q_lora, state.strength, ("to_q", f))
            k = self._linear(ctx, attn.to_k, k_lora, state.strength, ("to_k", f))
            v = self._linear(ctx, attn.to_v, v_lora, state.strength, ("to_v", f))
            attended = _attention(q, k, v, attn.heads)
            # `to_out` is a ModuleList (typed `nn.Module` items): [0] is the output Linear.
            to_out = cast(nn.Linear, attn.to_out[0])
            out = self._linear(attended, to_out, o_lora, state.strength, ("to_out", f))
            outs.append(attn.to_out[1](out))
        hs = (hs + torch.stack(outs)).transpose(0, 1).flatten(0, 1)  # back to '(b f) d c'

        x = self.temporal_i(self.temporal_n(hs))
        x = x.unflatten(0, (groups, frames)).transpose(1, 2).flatten(0, 1)  # '(b d) f c'
        x = _attention(self.temporal_q(x), self.temporal_k(x), self.temporal_v(x), attn.heads)
        x = self.temporal_o(x).unflatten(0, (groups, tokens)).transpose(1, 2).flatten(0, 1)
        # The transformer block adds its own residual, so return only the change.
        return hs + x - h


class ControlEncoder(nn.Module):
    """Official `AdditionalAttentionCondsEncoder`: image [-1, 1] → features at 1/8 … 1/64."""

    def __init__(self, widths: Sequence[int] = CONTROL_WIDTHS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = 3
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(previous, width, 3, padding=1, stride=1 if i == 0 else 2)]
            layers += [nn.SiLU(), nn.Conv2d(width, width, 3, padding=1), nn.SiLU()]
            previous = width
        self.blocks_0 = nn.Sequential(*layers)
        last = widths[-1]
        for i in (1, 2, 3):
            conv = [nn.Conv2d(last, last, 3, padding=1, stride=2), nn.SiLU()]
            setattr(
                self,
                f"blocks_{i}",
                nn.Sequential(*conv, nn.Conv2d(last, last, 3, padding=1), nn.SiLU()),
            )

    def input_weight(self) -> torch.Tensor:
        """The first conv's weight: its device and dtype are the encoder's."""
        # `nn.Sequential` items are typed `nn.Module`; the first one is the input conv.
        return cast(nn.Conv2d, self.blocks_0[0]).weight

    def forward(self, image: torch.Tensor) -> dict[int, torch.Tensor]:
        """Features keyed by their token count h·w, as the layers look them up."""
        features = {}
        h = image
        for i in range(4):
            h = getattr(self, f"blocks_{i}")(h)
            features[h.shape[2] * h.shape[3]] = h
        return features


class HookerLayers(nn.Module):
    def __init__(self, layers: list[SharingLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def units(self) -> list[SharingLayer]:
        """The layers, typed (`nn.ModuleList` is not generic: its items are `nn.Module`)."""
        return cast(list[SharingLayer], list(self.layers))


@dataclass
class RunState:
    """What the processors read at every call: strength, control features, frame prompts."""

    strength: float = 1.0
    signals: dict[int, torch.Tensor] | None = None
    prompts: list[torch.Tensor | None] | None = None
    cond_mark: torch.Tensor | None = None

    def control(
        self, conv: nn.Module, tokens: int, groups: int, like: torch.Tensor
    ) -> torch.Tensor:
        if self.signals is None:
            raise RuntimeError("this attention-sharing model needs set_control(image) first")
        if tokens not in self.signals:
            raise InputError("the control image size does not match the latent size", field="image")
        signal = self.signals[tokens].to(like)
        out = conv(signal).flatten(2).transpose(1, 2)  # 'b c h w -> b (h w) c'
        if out.shape[0] not in (1, groups):
            if groups % out.shape[0]:
                raise InputError(
                    f"{out.shape[0]} control images do not divide {groups} result sets",
                    field="image",
                )
            out = out.repeat(groups // out.shape[0], 1, 1)  # CFG halves repeat the whole batch
        return out

    def frame_context(self, f: int, ctx: torch.Tensor, groups: int, frames: int) -> torch.Tensor:
        prompt = self.prompts[f] if self.prompts is not None else None
        if prompt is None:
            return ctx
        assert self.cond_mark is not None  # set together with the prompts
        if self.cond_mark.shape[0] != groups * frames:
            raise InputError(
                f"cond_mark has {self.cond_mark.shape[0]} rows, the batch has {groups * frames}",
                field="batch",
            )
        if prompt.shape[-2:] != ctx.shape[-2:]:
            raise InputError(
                f"frame prompt {f} has shape {list(prompt.shape)}, the prompt {list(ctx.shape)}",
                field="layer_prompts",
            )
        mark = self.cond_mark.unflatten(0, (groups, frames))[:, f].to(ctx)[:, None, None]
        # Only positive rows (mark 0) take the frame's prompt; negative rows keep theirs.
        return prompt.to(ctx) * (1.0 - mark) + ctx * mark


class SharingProcessor:
    """diffusers attention processor delegating to one `SharingLayer` (not an nn.Module, so the
    UNet's state dict stays unchanged)."""

    def __init__(self, layer: SharingLayer, state: RunState) -> None:
        self.layer = layer
        self.state = state

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.layer.run(attn, hidden_states, encoder_hidden_states, self.state)
