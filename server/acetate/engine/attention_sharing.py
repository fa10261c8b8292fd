"""SD1.5 attention sharing: the official `layer_sd15_*` models as diffusers attention processors.

The files are the state dict of Forge's `AttentionSharingPatcher`: `hookers.layers.{0..31}` hold
one unit per attention module of the UNet (official order: input blocks 1, 2, 4, 5, 7, 8, output
blocks 3–11, middle block last; attn1 then attn2), and `kwargs_encoder` the control-image
encoder of the fg2bg/bg2fg models. The batch is laid out sample-major, `(b f)`: each group of
`frames` consecutive rows is one result set ([fg, bg, blend] for joint). Per frame a rank-r LoRA
changes q/k/v/out, then a "temporal" attention mixes each token across the frames of its group.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention
from safetensors.torch import load_file
from torch import nn

from acetate.engine.keymap import ldm_to_diffusers_key
from acetate.engine.unet_patch import Shapes, check_strength, read_shapes
from acetate.errors import InputError, ModelFileError

#: LDM names of the 32 attention modules, in the official index order.
OFFICIAL_LAYERS: tuple[str, ...] = tuple(
    f"{block}.1.transformer_blocks.0.{attn}"
    for block in (
        *(f"input_blocks.{i}" for i in (1, 2, 4, 5, 7, 8)),
        *(f"output_blocks.{i}" for i in range(3, 12)),
        "middle_block",
    )
    for attn in ("attn1", "attn2")
)
#: Cross-attention width of SD1.5's text encoder (SD2 has 1024).
SD15_CONTEXT_WIDTH = 768
CONTROL_WIDTHS = (32, 64, 128, 256)
LORA_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out")


def attention_module_names(unet_config: Mapping[str, Any]) -> list[str]:
    """diffusers names of the 32 attention modules (official order) of an SD1.5-layout UNet."""
    try:
        return [
            ldm_to_diffusers_key(f"{name}.to_q.weight", unet_config).removesuffix(".to_q.weight")
            for name in OFFICIAL_LAYERS
        ]
    except KeyError as error:
        raise ModelFileError(f"the base UNet does not have the SD1.5 layout ({error})") from None


@dataclass(frozen=True)
class AttentionSharingConfig:
    """Everything a file's shapes fix: frames, control, LoRA rank, per-layer widths."""

    frames: int
    use_control: bool
    rank: int
    #: Per layer: (width = query/inner dim, context width = k/v input dim).
    layers: tuple[tuple[int, int], ...]
    control_widths: tuple[int, ...] = CONTROL_WIDTHS

    @classmethod
    def for_unet(
        cls,
        unet: UNet2DConditionModel,
        frames: int,
        use_control: bool,
        rank: int = 256,
        control_widths: tuple[int, ...] = CONTROL_WIDTHS,
    ) -> AttentionSharingConfig:
        """The config of a model shaped for `unet`'s attention modules."""
        layers = []
        for name in attention_module_names(unet.config):
            attn = unet.get_submodule(name)
            layers.append((attn.to_q.out_features, attn.to_k.in_features))
        return cls(frames, use_control, rank, tuple(layers), control_widths)


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

    def _linear(
        self, x: torch.Tensor, layer: nn.Linear, lora: _LoRA, strength: float
    ) -> torch.Tensor:
        weight = layer.weight + strength * lora.delta().to(layer.weight.dtype)
        return F.linear(x, weight.to(x.dtype), None if layer.bias is None else layer.bias.to(x))

    def run(
        self,
        attn: Attention,
        h: torch.Tensor,
        context: torch.Tensor | None,
        state: _RunState,
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
            q = self._linear(hs[f], attn.to_q, q_lora, state.strength)
            k = self._linear(ctx, attn.to_k, k_lora, state.strength)
            v = self._linear(ctx, attn.to_v, v_lora, state.strength)
            out = self._linear(
                _attention(q, k, v, attn.heads), attn.to_out[0], o_lora, state.strength
            )
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

    def forward(self, image: torch.Tensor) -> dict[int, torch.Tensor]:
        """Features keyed by their token count h·w, as the layers look them up."""
        features = {}
        h = image
        for i in range(4):
            h = getattr(self, f"blocks_{i}")(h)
            features[h.shape[2] * h.shape[3]] = h
        return features


class _HookerLayers(nn.Module):
    def __init__(self, layers: list[SharingLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)


@dataclass
class _RunState:
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


class _Processor:
    """diffusers attention processor delegating to one `SharingLayer` (not an nn.Module, so the
    UNet's state dict stays unchanged)."""

    def __init__(self, layer: SharingLayer, state: _RunState) -> None:
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


def infer_config(shapes: Shapes, name: str = "file") -> AttentionSharingConfig:
    """The config an attention-sharing state dict was saved from (header shapes only)."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in shapes:
            raise ModelFileError(f"{name} is not an attention-sharing model: missing key {key!r}")
        return shapes[key]

    frames = 0
    while f"hookers.layers.0.to_q_lora.{frames}.down.weight" in shapes:
        frames += 1
    rank = shape("hookers.layers.0.to_q_lora.0.down.weight")[0]
    layers = tuple(
        (
            shape(f"hookers.layers.{i}.to_q_lora.0.up.weight")[0],
            shape(f"hookers.layers.{i}.to_k_lora.0.down.weight")[1],
        )
        for i in range(len(OFFICIAL_LAYERS))
    )
    use_control = any(key.startswith("kwargs_encoder.") for key in shapes)
    widths = CONTROL_WIDTHS
    if use_control:
        widths = tuple(
            shape(f"kwargs_encoder.blocks_0.{4 * i}.weight")[0] for i in range(len(CONTROL_WIDTHS))
        )
    return AttentionSharingConfig(frames, use_control, rank, layers, widths)


def check_layout(expected: Shapes, found: Shapes, name: str) -> None:
    """Raise `ModelFileError` naming the first missing, unexpected or mis-shaped key."""
    for key, shape in expected.items():
        if key not in found:
            raise ModelFileError(f"{name}: missing key {key!r}")
        if found[key] != shape:
            raise ModelFileError(
                f"{name}: key {key!r} has shape {list(found[key])}, expected {list(shape)}"
            )
    for key in found:
        if key not in expected:
            raise ModelFileError(f"{name}: unexpected key {key!r}")


class AttentionSharing(nn.Module):
    """An official SD1.5 attention-sharing model (state dict = the official file, strictly).

    `attach(unet)` puts its 32 units on the UNet's attention modules as processors; the handle's
    `detach()` puts the original processors back. Set the control image (fg2bg/bg2fg) and the
    per-frame prompts before denoising; they hold until changed.
    """

    def __init__(self, config: AttentionSharingConfig) -> None:
        super().__init__()
        self.config = config
        control = config.control_widths[-1] if config.use_control else None
        self.hookers = _HookerLayers(
            [
                SharingLayer(width, context, config.frames, config.rank, control)
                for width, context in config.layers
            ]
        )
        self.kwargs_encoder = ControlEncoder(config.control_widths) if config.use_control else None
        self._state = _RunState()
        self._handle: AttentionSharingHandle | None = None

    @property
    def frames(self) -> int:
        return self.config.frames

    @property
    def use_control(self) -> bool:
        return self.config.use_control

    @classmethod
    def for_unet(
        cls,
        unet: UNet2DConditionModel,
        frames: int,
        use_control: bool,
        rank: int = 256,
        control_widths: tuple[int, ...] = CONTROL_WIDTHS,
    ) -> AttentionSharing:
        """A model (random init) shaped for `unet`; on the meta device when the UNet is."""
        config = AttentionSharingConfig.for_unet(unet, frames, use_control, rank, control_widths)
        with torch.device(unet.device):
            return cls(config)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
    ) -> AttentionSharing:
        """Load an official `layer_sd15_*` file strictly; frames/control/rank/widths from it."""
        path = Path(path)
        shapes = read_shapes(path)
        config = infer_config(shapes, path.name)
        with torch.device("meta"):
            model = cls(config)
        check_layout(model.expected_shapes(), shapes, path.name)
        tensors = load_file(path, device=str(device))
        if dtype is not None:
            tensors = {key: value.to(dtype) for key, value in tensors.items()}
        model.load_state_dict(tensors, strict=True, assign=True)
        return model.eval().requires_grad_(False)

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        return {key: tuple(value.shape) for key, value in self.state_dict().items()}

    @property
    def strength(self) -> float:
        return self._state.strength

    @strength.setter
    def strength(self, value: float) -> None:
        self._state.strength = check_strength(value)

    @torch.no_grad()
    def set_control(self, image: torch.Tensor | None) -> None:
        """Control image [1 or B, 3, H, W] in [-1, 1] (H, W multiples of 64); None clears it.

        Its features are computed once here and shared by every layer and step.
        """
        if image is None:
            self._state.signals = None
            return
        if self.kwargs_encoder is None:
            raise ValueError("this attention-sharing model takes no control image")
        if image.ndim != 4 or image.shape[1] != 3 or image.shape[2] % 64 or image.shape[3] % 64:
            raise InputError(
                f"the control image must be [B, 3, H, W] with H, W multiples of 64, "
                f"got {list(image.shape)}",
                field="image",
            )
        weight = self.kwargs_encoder.blocks_0[0].weight
        self._state.signals = self.kwargs_encoder(image.to(weight))

    def set_frame_prompts(
        self,
        embeds: Sequence[torch.Tensor | None] | None,
        cond_mark: torch.Tensor | None = None,
    ) -> None:
        """Per-frame prompt embeddings ([1 or b, T, D] or None = the main prompt) for the
        positive rows only: `cond_mark` has one value per batch row, 0 = positive, 1 = negative.
        None clears them.
        """
        if embeds is None or all(embed is None for embed in embeds):
            self._state.prompts, self._state.cond_mark = None, None
            return
        if len(embeds) != self.frames:
            raise ValueError(f"expected {self.frames} frame prompts, got {len(embeds)}")
        if cond_mark is None or cond_mark.ndim != 1:
            raise ValueError("frame prompts need a 1-D cond_mark (0 positive, 1 negative row)")
        self._state.prompts = list(embeds)
        self._state.cond_mark = cond_mark

    def attach(self, unet: UNet2DConditionModel, strength: float = 1.0) -> AttentionSharingHandle:
        """Install the 32 units as attention processors of `unet` (moved to its device/dtype)."""
        if self._handle is not None:
            raise RuntimeError("this attention-sharing model is already attached to a UNet")
        names = attention_module_names(unet.config)
        modules = [unet.get_submodule(name) for name in names]
        for index, (attn, (width, context)) in enumerate(
            zip(modules, self.config.layers, strict=True)
        ):
            _check_module(index, names[index], attn, width, context)
        self.strength = strength
        self.hookers.to(device=unet.device, dtype=unet.dtype)
        if self.kwargs_encoder is not None:
            self.kwargs_encoder.to(device=unet.device)
        originals = [attn.processor for attn in modules]
        for attn, layer in zip(modules, self.hookers.layers, strict=True):
            attn.set_processor(_Processor(layer, self._state))
        self._handle = AttentionSharingHandle(self, modules, originals)
        return self._handle

    def _detached(self) -> None:
        self._handle = None


def _check_module(index: int, name: str, attn: nn.Module, width: int, context: int) -> None:
    if not isinstance(attn, Attention):
        raise ModelFileError(f"attention-sharing layer {index}: {name} is not an attention module")
    if attn.to_k.in_features != context and attn.is_cross_attention:
        hint = " (an SD2 base?)" if attn.to_k.in_features == 1024 else ""
        raise ModelFileError(
            f"this SD1.5 attention-sharing model needs {context}-wide text embeddings "
            f"(SD1.5: {SD15_CONTEXT_WIDTH}); the base has {attn.to_k.in_features}{hint}"
        )
    if (attn.to_q.out_features, attn.to_k.in_features) != (width, context):
        raise ModelFileError(
            f"attention-sharing layer {index} is {width} wide (context {context}); {name} is "
            f"{attn.to_q.out_features} wide (context {attn.to_k.in_features})"
        )


class AttentionSharingHandle:
    """An attached model; `detach()` (or leaving the `with` block) restores the processors."""

    def __init__(
        self, model: AttentionSharing, modules: list[Attention], originals: list[Any]
    ) -> None:
        self.model = model
        self._modules = modules
        self._originals = originals

    @property
    def attached(self) -> bool:
        return bool(self._modules)

    def detach(self) -> None:
        for attn, original in zip(self._modules, self._originals, strict=True):
            attn.set_processor(original)
        if self._modules:
            self.model._detached()
        self._modules, self._originals = [], []

    def __enter__(self) -> AttentionSharingHandle:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.detach()
