"""The trainable part of the transparent layer model, per family, and its official exports.

SDXL: a `peft` LoRA (rank r, alpha = r, so the scale is 1 as in the official file) on exactly the
attention projections `layer_xl_transparent_attn` patches (attn1/attn2 q, k, v, out of every
transformer block), exported as Forge/ComfyUI patch keys `diffusion_model.<LDM key>::lora::0`
(up) and `::lora::1` (down), fp16, plus a diffusers LoRA folder (`load_lora_weights`).

SD1.5: `layer_sd15_transparent_attn` is not a plain LoRA but one attention-sharing unit per
attention module (frames = 1): Acetate's own `AttentionSharing` is trained as is and its state
dict is the official file (`hookers.layers.*`), fp16.
"""

from __future__ import annotations

import importlib.util
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import safe_open
from torch import nn

from acetate.engine.nets.attention_sharing import AttentionSharing, infer_config
from acetate.engine.nets.keymap import diffusers_to_ldm_key
from acetate.engine.nets.unet_patch import ATTENTION_TARGET, plan_unet_patch
from acetate.engine.nets.weights import read_shapes
from acetate.engine.store.family import Family
from acetate.errors import InputError, ModelFileError

#: The official file each family's layer model replaces.
LAYER_KINDS: dict[Family, str] = {
    "sdxl": "layer_xl_transparent_attn",
    "sd15": "layer_sd15_transparent_attn",
}
#: Rank of the released files (and of the tiny test files the project builds).
OFFICIAL_RANK = 256
TINY_RANK = 4
FILE_DTYPE = torch.float16
ADAPTER_NAME = "default"


class LayerAdapter(Protocol):
    """What the training loop needs of an adapter."""

    family: Family
    rank: int

    def trainable(self) -> list[nn.Parameter]: ...

    def active(self) -> AbstractContextManager[Any]:
        """Context in which the UNet runs with the adapter."""
        ...

    def official_tensors(self) -> dict[str, torch.Tensor]:
        """The adapter as the official file's tensors (keys, shapes; fp16)."""
        ...

    def official_shapes(self) -> dict[str, tuple[int, ...]]:
        """Key → shape of `official_tensors()`, without touching data (works on `meta`)."""
        ...

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Set the adapter from `official_tensors()` output (resume)."""
        ...


def file_rank(path: Path, family: Family) -> int:
    """The LoRA rank of an official-layout layer file (header only)."""
    shapes = read_shapes(path)
    if family == "sd15":
        return infer_config(shapes, path.name).rank
    ranks = {min(shape) for key, shape in shapes.items() if key.endswith("::lora::1")}
    if len(ranks) != 1:
        raise ModelFileError(f"{path.name} is not an SDXL attention LoRA file (`::lora::` keys)")
    return ranks.pop()


# -- SDXL --------------------------------------------------------------------------------------


def sdxl_targets(unet: nn.Module) -> list[str]:
    """Module names of the attention projections the official attention file patches."""
    return [
        name.removesuffix(".weight")
        for name, _ in unet.named_parameters()
        if ATTENTION_TARGET.search(name)
    ]


class SdxlLora:
    """A peft LoRA on `unet` (added in place); see the module docstring."""

    family: Family = "sdxl"

    def __init__(self, unet: Any, rank: int) -> None:
        from peft import LoraConfig

        self.unet = unet
        self.rank = rank
        self.targets = sdxl_targets(unet)
        self._weight_keys = {name: f"{name}.weight" for name in self.targets}
        config = LoraConfig(
            r=rank, lora_alpha=rank, target_modules=self.targets, init_lora_weights=True
        )
        unet.add_adapter(config, adapter_name=ADAPTER_NAME)  # B = 0: no change at step 0

    def _lora(self, name: str) -> tuple[nn.Linear, nn.Linear]:
        module = self.unet.get_submodule(name)
        return module.lora_B[ADAPTER_NAME], module.lora_A[ADAPTER_NAME]

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.unet.parameters() if p.requires_grad]

    def active(self) -> AbstractContextManager[Any]:
        return nullcontext()

    def _file_key(self, name: str, slot: int) -> str:
        ldm = diffusers_to_ldm_key(self._weight_keys[name], self.unet.config)
        return f"diffusion_model.{ldm}::lora::{slot}"

    def _official(self) -> dict[str, torch.Tensor]:
        weights = {}
        for name in self.targets:
            up, down = self._lora(name)
            weights[self._file_key(name, 0)] = up.weight
            weights[self._file_key(name, 1)] = down.weight
        return weights

    def official_tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", FILE_DTYPE) for k, v in self._official().items()}

    def official_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self._official().items()}

    @torch.no_grad()
    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        for name in self.targets:
            up, down = self._lora(name)
            up.weight.copy_(tensors[self._file_key(name, 0)])
            down.weight.copy_(tensors[self._file_key(name, 1)])

    @torch.no_grad()
    def load_official(self, path: Path) -> None:
        """Start from an official-layout attention file: its (up, down) pairs, strictly."""
        shapes = read_shapes(path)
        plan = {p.key: p for p in plan_unet_patch(shapes, self.unet.config, path.name)}
        wanted = set(self._weight_keys.values())
        if set(plan) != wanted or any(p.kind != "lora" for p in plan.values()):
            raise ModelFileError(
                f"{path.name} does not patch exactly the attention projections of this UNet "
                f"({len(plan)} patched, {len(wanted)} expected)"
            )
        with safe_open(str(path), framework="pt") as handle:
            for name, key in self._weight_keys.items():
                up_key, down_key = plan[key].sources
                up, down = self._lora(name)
                up.weight.copy_(handle.get_tensor(up_key))
                down.weight.copy_(handle.get_tensor(down_key))

    def save_diffusers(self, folder: Path) -> Path:
        """The adapter as a diffusers LoRA folder (`pipe.load_lora_weights(folder)`)."""
        from diffusers import StableDiffusionXLPipeline
        from peft.utils import get_peft_model_state_dict

        layers = get_peft_model_state_dict(self.unet, adapter_name=ADAPTER_NAME)
        StableDiffusionXLPipeline.save_lora_weights(
            folder, unet_lora_layers=layers, safe_serialization=True
        )
        return folder / "pytorch_lora_weights.safetensors"


# -- SD1.5 -------------------------------------------------------------------------------------


class Sd15Sharing:
    """Acetate's attention-sharing units (frames = 1, no control) on `unet`."""

    family: Family = "sd15"

    def __init__(self, unet: Any, rank: int, seed: int) -> None:
        self.unet = unet
        self.rank = rank
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = AttentionSharing.for_unet(unet, frames=1, use_control=False, rank=rank)
        self.model.float().requires_grad_(True)
        self.zero_effect()

    @torch.no_grad()
    def zero_effect(self) -> None:
        """LoRA ups and the temporal output at zero: the units start as the plain attention."""
        for layer in self.model.hookers.units():
            for name in ("to_q", "to_k", "to_v", "to_out"):
                for lora in getattr(layer, f"{name}_lora"):
                    lora.up.weight.zero_()
            layer.temporal_o.weight.zero_()
            layer.temporal_o.bias.zero_()

    def trainable(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def active(self) -> AbstractContextManager[Any]:
        return self.model.attach(self.unet)

    def official_tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", FILE_DTYPE) for k, v in self.model.state_dict().items()}

    def official_shapes(self) -> dict[str, tuple[int, ...]]:
        return self.model.expected_shapes()

    @torch.no_grad()
    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        state = {k: v.to(torch.float32) for k, v in tensors.items()}
        self.model.load_state_dict(state, strict=True)

    def load_official(self, path: Path) -> None:
        from safetensors.torch import load_file

        shapes = read_shapes(path)
        mine = self.model.expected_shapes()
        if shapes != mine:
            odd = sorted(set(shapes) ^ set(mine)) or [k for k in mine if shapes[k] != mine[k]]
            raise ModelFileError(
                f"{path.name} is not a frames=1 attention-sharing file for this UNet "
                f"(first difference: {odd[0]!r})"
            )
        self.load_state(load_file(path))


def build_adapter(family: Family, unet: Any, rank: int, seed: int) -> LayerAdapter:
    """The trainable part for `family` on `unet` (SDXL needs peft, a dependency of Acetate)."""
    if family == "sdxl":
        if importlib.util.find_spec("peft") is None:
            raise InputError(
                "training an SDXL layer model needs peft (an Acetate dependency): pip install peft",
                field="--base",
            )
        return SdxlLora(unet, rank)
    if family == "sd15":
        return Sd15Sharing(unet, rank, seed)
    raise InputError(
        f"layer models are trained on SDXL or SD1.5 bases, not {family}", field="--base"
    )
