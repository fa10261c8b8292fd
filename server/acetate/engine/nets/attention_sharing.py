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
from typing import Any, cast

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from safetensors.torch import load_file
from torch import nn

from acetate.engine.nets.keymap import ldm_to_diffusers_key
from acetate.engine.nets.sharing_unit import (
    CONTROL_WIDTHS,
    ControlEncoder,
    HookerLayers,
    RunState,
    SharingLayer,
    SharingProcessor,
)
from acetate.engine.nets.unet_patch import check_strength
from acetate.engine.nets.weights import Shapes, check_layout, read_shapes
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
            # `get_submodule` is typed `nn.Module`; these names are the UNet's Attention modules.
            attn = cast(Attention, unet.get_submodule(name))
            layers.append((attn.to_q.out_features, attn.to_k.in_features))
        return cls(frames, use_control, rank, tuple(layers), control_widths)


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
        self.hookers = HookerLayers(
            [
                SharingLayer(width, context, config.frames, config.rank, control)
                for width, context in config.layers
            ]
        )
        self.kwargs_encoder = ControlEncoder(config.control_widths) if config.use_control else None
        self._state = RunState()
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
        check_layout(model.expected_shapes(), shapes, path.name, "attention-sharing model")
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
        value = check_strength(value)
        if value != self._state.strength:
            self._clear_merged()
        self._state.strength = value

    def _clear_merged(self) -> None:
        for layer in self.hookers.units():
            layer.clear_merged()

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
        weight = self.kwargs_encoder.input_weight()
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

    def attach(
        self,
        unet: UNet2DConditionModel,
        strength: float = 1.0,
        device: torch.device | str | None = None,
    ) -> AttentionSharingHandle:
        """Install the 32 units as attention processors of `unet`, moved to its dtype and to
        `device` (default: the UNet's; pass the execution device when the UNet is offloaded)."""
        if self._handle is not None:
            raise RuntimeError("this attention-sharing model is already attached to a UNet")
        names = attention_module_names(unet.config)
        found = [unet.get_submodule(name) for name in names]
        modules = [
            _check_module(index, names[index], attn, width, context)
            for index, (attn, (width, context)) in enumerate(
                zip(found, self.config.layers, strict=True)
            )
        ]
        self.strength = strength
        device = device if device is not None else unet.device
        self.hookers.to(device=device, dtype=unet.dtype)
        if self.kwargs_encoder is not None:
            self.kwargs_encoder.to(device=device)
        originals = [attn.processor for attn in modules]
        for attn, layer in zip(modules, self.hookers.units(), strict=True):
            # diffusers annotates `set_processor` with its default `AttnProcessor` class; any
            # processor with the same call signature is accepted (custom processors).
            attn.set_processor(cast(AttnProcessor, SharingProcessor(layer, self._state)))
        self._handle = AttentionSharingHandle(self, modules, originals)
        return self._handle

    def _detached(self) -> None:
        self._handle = None
        self._clear_merged()


def _check_module(index: int, name: str, attn: nn.Module, width: int, context: int) -> Attention:
    """`attn`, checked to be an Attention module of this model's layer `index`."""
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
    return attn


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
