"""A request's textual-inversion embeddings loaded into the text encoders for one job, then removed.

Each embedding the prompts name (`acetate.engine.store.embeddings.plan_embeddings`) is read from
its `.safetensors` file here (never a pickle) and handed to diffusers' `load_textual_inversion`
as tensors under a job-local token, `<acetate-embedding-N>`: SD1.5's vectors into the one text
encoder, SDXL's `clip_l` into the first and `clip_g` into the second, as diffusers documents.
The prompts keep the names users write; diffusers' `encode_prompt` sends every prompt and
negative prompt through the pipeline's `maybe_convert_prompt` (its textual-inversion hook), so
for the job that hook first rewrites each whole-word name (or `embedding:name`) to its token,
then expands multi-vector tokens as diffusers does.

Afterwards `unload_textual_inversion` takes the tokens out of the tokenizers, and each text
encoder gets its original input-embedding module, weight tensor and vocabulary size back
(diffusers' unload would rebuild the module from slices of the resized weight: the same values,
but a new tensor and module): the next job sees the base as it was, bit for bit, also when this
one failed or was cancelled.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file

from acetate.engine.store.embeddings import name_pattern, vector_keys
from acetate.errors import ModelFileError

if TYPE_CHECKING:
    from acetate.engine.pipelines.sampler import BasePipeline
    from acetate.engine.store.embeddings import EmbeddingFile

TOKEN = "<acetate-embedding-{index}>"
#: Text encoder component → its tokenizer component.
TOKENIZERS = {"text_encoder": "tokenizer", "text_encoder_2": "tokenizer_2"}


def _rewrite(prompt: Any, patterns: Sequence[tuple[re.Pattern[str], str]]) -> Any:
    """`prompt` (a string or a list of them) with each embedding name replaced by its token."""
    if isinstance(prompt, list):
        return [_rewrite(text, patterns) for text in prompt]
    for pattern, token in patterns:
        prompt = pattern.sub(token, prompt)
    return prompt


def _load(pipe: Any, embedding: EmbeddingFile, token: str, touched: dict[str, list[str]]) -> None:
    """Put `embedding`'s vectors into each text encoder it has vectors for, under `token`."""
    try:
        tensors = load_file(str(embedding.path))
        _, keys = vector_keys(list(tensors))
    except (OSError, ValueError, ModelFileError) as error:
        raise ModelFileError(
            f"the embedding {embedding.name!r} could not be read: {error}", field="prompt"
        ) from error
    for component, key in keys.items():
        touched.setdefault(component, [])
        encoder = getattr(pipe, component)
        tokenizer = getattr(pipe, TOKENIZERS[component])
        vectors = tensors[key].reshape(-1, tensors[key].shape[-1])
        pipe.load_textual_inversion(vectors, token=token, tokenizer=tokenizer, text_encoder=encoder)
        touched[component] += [token] + [f"{token}_{i}" for i in range(1, vectors.shape[0])]


@contextmanager
def loaded_embeddings(pipe: BasePipeline, embeddings: Sequence[EmbeddingFile]) -> Iterator[None]:
    """Make the prompts' embedding names mean their vectors for the `with` block (a job), then
    take them out again, also when the job fails or is cancelled part-way."""
    if not embeddings:
        yield
        return
    ti_pipe: Any = pipe
    originals = {
        component: _Original(getattr(ti_pipe, component))
        for component in TOKENIZERS
        if getattr(ti_pipe, component, None) is not None
    }
    # diffusers re-enables model offload on the text encoder's device (the CPU, between uses).
    offload_device = getattr(ti_pipe, "_offload_device", None)
    tokens = [TOKEN.format(index=index) for index in range(len(embeddings))]
    touched: dict[str, list[str]] = {}
    try:
        for embedding, token in zip(embeddings, tokens, strict=True):
            _load(ti_pipe, embedding, token, touched)
        if offload_device is not None and ti_pipe._offload_device != offload_device:
            ti_pipe.enable_model_cpu_offload(device=offload_device)
        convert = ti_pipe.maybe_convert_prompt
        patterns = [(name_pattern(e.name), t) for e, t in zip(embeddings, tokens, strict=True)]
        ti_pipe.maybe_convert_prompt = lambda prompt, tokenizer: convert(
            _rewrite(prompt, patterns), tokenizer
        )
        yield
    finally:
        vars(ti_pipe).pop("maybe_convert_prompt", None)
        _unload(ti_pipe, touched, originals)


class _Original:
    """A text encoder's input embeddings as loaded: the module, its weight tensor (transformers'
    `resize_token_embeddings` swaps the module's `weight.data` for a longer tensor) and sizes."""

    def __init__(self, encoder: Any) -> None:
        self.module = encoder.get_input_embeddings()
        self.weight = self.module.weight.data
        self.rows = self.module.num_embeddings
        self.vocab_size = encoder.config.vocab_size

    def restore(self, encoder: Any) -> None:
        self.module.weight.data = self.weight
        self.module.num_embeddings = self.rows
        encoder.set_input_embeddings(self.module)
        encoder.config.vocab_size = self.vocab_size


@torch.no_grad()
def _unload(pipe: Any, touched: dict[str, list[str]], originals: dict[str, _Original]) -> None:
    for component, added in touched.items():
        tokenizer = getattr(pipe, TOKENIZERS[component])
        present = [token for token in added if token in tokenizer.get_vocab()]
        encoder = getattr(pipe, component)
        if present:
            pipe.unload_textual_inversion(tokens=present, tokenizer=tokenizer, text_encoder=encoder)
        originals[component].restore(encoder)
