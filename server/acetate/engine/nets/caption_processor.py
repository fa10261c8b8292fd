"""Qwen-Image-Layered's captioning processor, built without torchvision.

transformers 5 has a PIL image processor for Qwen2-VL (`Qwen2VLImageProcessorPil`); with it and
the tokenizer, a `Qwen2VLProcessor` that skips the video processor (the one part that needs
torchvision) is all that captioning one image takes.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

#: The processor's folder inside a Qwen-Image-Layered diffusers folder.
PROCESSOR_DIR = "processor"


def pil_image_processor() -> Any:
    """transformers' PIL (torchvision-free) Qwen2-VL image processor class, or None."""
    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
            Qwen2VLImageProcessorPil,
        )
    except ImportError:
        return None
    return Qwen2VLImageProcessorPil


@cache
def _caption_processor_class() -> Any:
    """`Qwen2VLProcessor` without its video processor: transformers 5 only builds that one with
    torchvision (and checks every sub-processor's class, so `video_processor=None` fails), while
    captioning one image only needs the image processor and the tokenizer."""
    from transformers import Qwen2VLProcessor

    class CaptionProcessor(Qwen2VLProcessor):  # type: ignore[misc]
        def __init__(
            self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None
        ) -> None:
            super().__init__(image_processor, tokenizer, chat_template=chat_template)

    return CaptionProcessor


def caption_processor(image_processor: Any, tokenizer: Any, chat_template: str | None) -> Any:
    """A `Qwen2VLProcessor` (no video processor) from its parts."""
    return _caption_processor_class()(image_processor, tokenizer, chat_template)


def load_caption_processor(folder: Path) -> Any:
    """The `Qwen2VLProcessor` of a Qwen-Image-Layered folder, built from `processor/` with the
    PIL image processor (call only when `caption_problem(folder)` is None)."""
    from transformers import AutoTokenizer

    processor = folder / PROCESSOR_DIR
    image_processor = pil_image_processor().from_pretrained(processor, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(processor, local_files_only=True)
    template = None
    jinja, legacy = processor / "chat_template.jinja", processor / "chat_template.json"
    if jinja.is_file():
        template = jinja.read_text(encoding="utf-8")
    elif legacy.is_file():
        template = json.loads(legacy.read_text(encoding="utf-8")).get("chat_template")
    return caption_processor(image_processor, tokenizer, template)
