"""The tiny Qwen-Image-Layered test model: random weights, the real component classes and
layouts, built locally in a second or two with nothing from the Hub.

`ensure_tiny_qwen(models_dir)` builds `<models_dir>/tiny-qwen/checkpoints/tiny-qwen-image-layered/`,
a diffusers `QwenImageLayeredPipeline` folder with a `processor/` (the PIL Qwen2-VL image
processor, the tiny tokenizer and a chat template: captioning an image sent without a prompt
runs on a CPU too). It lives beside `tiny/` rather than inside it because the LayerDiffusion
tiny build replaces `tiny/` as a whole.

What the real files rely on is kept: the RGBA VAE (`input_channels=4`) with ×8 downsampling and
a latent width other than 4 (with `z_dim = 4` diffusers takes a 4-channel RGBA image for
latents and skips encoding it), a transformer with the layered model's extra timestep condition
and 3-D layer RoPE, a Qwen2.5-VL text encoder whose prompt template tokens are real special
tokens of a byte-level BPE `Qwen2Tokenizer` written here.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from acetate.engine.nets.caption_processor import PROCESSOR_DIR
from acetate.engine.tiny.bases import _install, _no_progress_bars, _read_stamp, _seeded

TINY_QWEN_DIR = "tiny-qwen"
TINY_QWEN_NAME = "tiny-qwen-image-layered"
STAMP_FILE = "BUILD.json"
SEED = 0
#: Latent channels of the tiny VAE: not 4, so RGBA images are never mistaken for latents.
TINY_Z_DIM = 8
#: The special tokens the pipeline's prompt templates use, in Qwen's order (ids follow the 256
#: byte tokens here; Qwen's own start at 151643).
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
#: The text encoder reads at most this many tokens (diffusers' `tokenizer_max_length`).
MAX_TOKENS = 1024
#: The processor's tokenizer reads the caption prompt and the image's tokens.
CAPTION_MAX_TOKENS = 32768
#: Qwen2-VL's chat template, shortened to text and images (saved with the tiny processor; the
#: pipeline's captioning writes its prompt in this format itself).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TINY_QWEN_TRANSFORMER: dict[str, Any] = dict(
    patch_size=2,
    in_channels=4 * TINY_Z_DIM,  # 2×2 packed latent patches
    out_channels=TINY_Z_DIM,
    num_layers=2,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=16,  # = the text encoder's hidden size
    guidance_embeds=False,
    axes_dims_rope=(8, 4, 4),  # sums to attention_head_dim
    zero_cond_t=False,
    use_additional_t_cond=True,  # the layered model's "is RGB" timestep condition
    use_layer3d_rope=True,  # RoPE over (layer, row, column)
)
TINY_QWEN_VAE: dict[str, Any] = dict(
    base_dim=8,
    z_dim=TINY_Z_DIM,
    dim_mult=(1, 2, 2, 2),  # three downsamplings: ×8 like the real VAE
    num_res_blocks=1,
    attn_scales=(),
    temperal_downsample=(False, True, True),
    input_channels=4,
    latents_mean=(0.0,) * TINY_Z_DIM,
    latents_std=(1.0,) * TINY_Z_DIM,
)
TINY_QWEN_TEXT: dict[str, Any] = dict(
    hidden_size=16,
    intermediate_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
    rope_theta=1000000.0,
)
TINY_QWEN_VISION: dict[str, Any] = dict(
    depth=2,
    hidden_size=16,
    intermediate_size=16,
    num_heads=2,
    out_hidden_size=16,
    patch_size=14,  # Qwen2.5-VL's own patching, which its image processor matches
    temporal_patch_size=2,
    spatial_merge_size=2,
)
#: Qwen-Image's flow-matching schedule (dynamic shift from the image's sequence length).
QWEN_SCHEDULER: dict[str, Any] = dict(
    base_image_seq_len=256,
    base_shift=0.5,
    invert_sigmas=False,
    max_image_seq_len=8192,
    max_shift=0.9,
    num_train_timesteps=1000,
    shift=1.0,
    shift_terminal=0.02,
    stochastic_sampling=False,
    time_shift_type="exponential",
    use_beta_sigmas=False,
    use_dynamic_shifting=True,
    use_exponential_sigmas=False,
    use_karras_sigmas=False,
)


def tiny_qwen_root(models_dir: Path) -> Path:
    return Path(models_dir) / TINY_QWEN_DIR


def tiny_qwen_folder(models_dir: Path) -> Path:
    """The tiny pipeline folder (it exists once `ensure_tiny_qwen` ran)."""
    return tiny_qwen_root(models_dir) / "checkpoints" / TINY_QWEN_NAME


def write_qwen_tokenizer(folder: Path) -> Any:
    """A byte-level BPE `Qwen2Tokenizer` with no merges and Qwen's special tokens, saved to
    `folder` (vocab.json, merges.txt, tokenizer.json) and loadable offline."""
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    folder.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    (folder / "vocab.json").write_text(
        json.dumps({char: i for i, char in enumerate(chars)}, ensure_ascii=False),
        encoding="utf-8",
    )
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = Qwen2Tokenizer.from_pretrained(
        folder, local_files_only=True, model_max_length=MAX_TOKENS
    )
    # `<|endoftext|>` is the tokenizer's own unk/eos/pad; the rest are added as specials so the
    # pipeline's chat template tokenizes into single ids, as with Qwen's real vocabulary.
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS[1:])})
    tokenizer.save_pretrained(folder)
    return Qwen2Tokenizer.from_pretrained(folder, local_files_only=True)


def write_qwen_processor(folder: Path, tokenizer_dir: Path) -> Any:
    """The tiny model's `processor/`: the PIL Qwen2-VL image processor (patch 14, merge 2, as
    the tiny vision tower reads), the tokenizer and the chat template, in the files a real
    Qwen-Image-Layered `processor/` holds; returns the loaded processor."""
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    from acetate.engine.nets.caption_processor import load_caption_processor

    processor = folder / PROCESSOR_DIR
    # The caption prompt alone is over 1024 byte tokens; Qwen's processor reads 32768.
    tokenizer = Qwen2Tokenizer.from_pretrained(
        tokenizer_dir, local_files_only=True, model_max_length=CAPTION_MAX_TOKENS
    )
    Qwen2VLImageProcessorPil(
        patch_size=TINY_QWEN_VISION["patch_size"],
        temporal_patch_size=TINY_QWEN_VISION["temporal_patch_size"],
        merge_size=TINY_QWEN_VISION["spatial_merge_size"],
    ).save_pretrained(processor)
    tokenizer.save_pretrained(processor)
    (processor / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
    return load_caption_processor(folder)


def _text_encoder(tokenizer: Any, seed: int) -> Any:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {token: int(tokenizer.convert_tokens_to_ids(token)) for token in QWEN_SPECIAL_TOKENS}
    vocab = len(tokenizer)
    config = Qwen2_5_VLConfig(
        text_config=dict(
            TINY_QWEN_TEXT,
            vocab_size=vocab,
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
        ),
        vision_config=TINY_QWEN_VISION,
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
    )
    with _seeded(seed):
        return Qwen2_5_VLForConditionalGeneration(config).eval()


def build_tiny_qwen_pipeline(folder: Path, seed: int = SEED) -> Any:
    """Build tiny-qwen-image-layered and save it as a diffusers folder; returns the pipeline."""
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageLayeredPipeline,
        QwenImageTransformer2DModel,
    )

    tokenizer = write_qwen_tokenizer(folder / "tokenizer")
    text_encoder = _text_encoder(tokenizer, seed + 1)
    with _seeded(seed + 2):
        vae = AutoencoderKLQwenImage(
            **{k: list(v) if isinstance(v, tuple) else v for k, v in TINY_QWEN_VAE.items()}
        )
    with _seeded(seed + 3):
        transformer = QwenImageTransformer2DModel(**TINY_QWEN_TRANSFORMER)
    pipe: Any = QwenImageLayeredPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**QWEN_SCHEDULER),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=None,
        transformer=transformer,
    )
    with _no_progress_bars(), _quiet_diffusers():
        pipe.save_pretrained(folder, safe_serialization=True)
    # The processor is saved on its own (transformers 5 saves a Qwen2VLProcessor only with its
    # torchvision video processor) and named in model_index.json as in the published folder.
    processor = write_qwen_processor(folder, folder / "tokenizer")
    pipe.register_modules(processor=processor)
    pipe.vl_processor = processor  # what the pipeline's captioning reads
    index_file = folder / "model_index.json"
    index = json.loads(index_file.read_text(encoding="utf-8"))
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return pipe


@contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """diffusers warns that `processor=None` "cannot be saved": leaving it out is the point."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


def builder_stamp() -> dict[str, str]:
    """What the tiny files depend on: this builder's source and the libraries that save them."""
    import diffusers
    import transformers

    digest = hashlib.sha256(inspect.getsource(sys.modules[__name__]).encode())
    return {
        "builder": digest.hexdigest(),
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }


def tiny_qwen_current(models_dir: Path) -> bool:
    return _read_stamp(tiny_qwen_root(models_dir)) == builder_stamp()


def ensure_tiny_qwen(models_dir: Path) -> Path:
    """Build `<models_dir>/tiny-qwen/` unless current; returns the pipeline folder.

    Safe when processes race: each builds in its own temporary folder and renames it into place.
    """
    root = tiny_qwen_root(models_dir)
    stamp = builder_stamp()
    if _read_stamp(root) == stamp:
        return tiny_qwen_folder(models_dir)
    root.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".tiny-qwen-build-", dir=root.parent))
    try:
        build_tiny_qwen_pipeline(build / "checkpoints" / TINY_QWEN_NAME)
        (build / STAMP_FILE).write_text(json.dumps(stamp, indent=1), encoding="utf-8")
        _install(build, root, stamp)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return tiny_qwen_folder(models_dir)
