"""A request's LoRAs fused into the base for one job, and the base restored bit-exactly after.

diffusers' adapter loading reads the file (diffusers/peft or kohya keys, converted by diffusers)
and wraps the targeted `nn.Linear`/`Conv2d` layers in peft LoRA layers. Those wrappers would
hide the layers from LayerDiffusion: the UNet patch edits parameters by their plain names
(`…attn1.to_q.weight`, which peft moves to `…to_q.base_layer.weight`), and the SD1.5
attention-sharing processors call `F.linear(x, attn.to_q.weight)`, skipping the wrapper's LoRA
branch. So for the job the LoRAs are fused into the weights (`fuse_lora`) and the wrappers
removed (`unload_lora_weights` keeps fused weights): the modules are the base's own again and
every path through them sees the LoRA. Before fusing, the touched weights are copied (to the
CPU); afterwards they are copied back, so the next job gets the base bit-identical — `unfuse_lora`
would subtract the delta again, which is not exact in floating point.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer

from acetate.errors import ModelFileError

if TYPE_CHECKING:
    from acetate.engine.pipelines.sampler import BasePipeline
    from acetate.engine.store.loras import PlannedLora

#: (pipeline component, module name) → parameter name → the original tensor (on the CPU).
Originals = dict[tuple[str, str], dict[str, torch.Tensor]]


def _components(pipe: Any) -> Iterator[tuple[str, torch.nn.Module]]:
    for name in pipe._lora_loadable_modules:
        model = getattr(pipe, name, None)
        if isinstance(model, torch.nn.Module):
            yield name, model


def _backup(pipe: Any) -> Originals:
    """The weights under every LoRA-wrapped layer, before anything is fused into them."""
    originals: Originals = {}
    for component, model in _components(pipe):
        for name, module in model.named_modules():
            if isinstance(module, BaseTunerLayer):
                base = module.get_base_layer()
                originals[(component, name)] = {
                    key: param.detach().to("cpu", copy=True)
                    for key, param in base.named_parameters(recurse=False)
                }
    return originals


@torch.no_grad()
def _restore(pipe: Any, originals: Originals) -> None:
    models = dict(_components(pipe))
    for (component, name), params in originals.items():
        module = models[component].get_submodule(name)
        for key, original in params.items():
            module.get_parameter(key).copy_(original)


def wrapped_layers(pipe: Any) -> list[str]:
    """`component.module` names of layers peft still wraps (none outside a job)."""
    return [
        f"{component}.{name}"
        for component, model in _components(pipe)
        for name, module in model.named_modules()
        if isinstance(module, BaseTunerLayer)
    ]


@contextmanager
def fused_loras(pipe: BasePipeline, loras: Sequence[PlannedLora]) -> Iterator[None]:
    """Apply `loras` at their strengths for the `with` block (a job), then put the base back
    as it was, also when the job fails or is cancelled part-way."""
    if not loras:
        yield
        return
    lora_pipe: Any = pipe
    names = [f"acetate_lora_{index}" for index in range(len(loras))]
    originals: Originals = {}
    try:
        for name, planned in zip(names, loras, strict=True):
            try:
                lora_pipe.load_lora_weights(str(planned.lora.path), adapter_name=name)
            except (ValueError, RuntimeError, KeyError, OSError) as error:
                raise ModelFileError(
                    f"LoRA {planned.lora.name!r} could not be loaded: {error}", field="loras"
                ) from error
        originals = _backup(lora_pipe)
        lora_pipe.set_adapters(names, [planned.strength for planned in loras])
        lora_pipe.fuse_lora(adapter_names=names)
        lora_pipe.unload_lora_weights()  # fused weights stay; the wrappers go
        yield
    finally:
        lora_pipe.unload_lora_weights()  # the wrappers of a load that failed part-way
        _restore(lora_pipe, originals)
        lora_pipe._merged_adapters = set()
