"""`acetate train layer-model`'s settings and the resume check."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from acetate.errors import InputError

#: Flags that change what a run computes: a resumed run must be given the same ones.
RESULT_FLAGS = (
    "base",
    "init",
    "encoder",
    "rank",
    "batch",
    "lr",
    "resolution",
    "mixed_precision",
    "use_8bit_adam",
    "noise_offset",
    "snr_gamma",
    "caption_dropout",
    "default_caption",
    "random_flip",
    "cache_latents",
    "seed",
)


@dataclass
class LayerTrainConfig:
    """`acetate train layer-model`'s flags (field names = flag names without `--`)."""

    data: Path
    base: str | None
    models_dir: Path
    extra_dirs: list[Path] = field(default_factory=list)
    out: Path | None = None
    #: `official`, `zero` or an official-layout file.
    init: str = "official"
    #: The transparency encoder making the latents: a listed name or a file; None: official.
    encoder: str | None = None
    #: LoRA rank; None: the `--init` file's (the official rank for `zero`).
    rank: int | None = None
    steps: int = 1000
    batch: int = 1
    lr: float = 1e-4
    #: Side of the square bucket (others keep its area); None: the base's native size.
    resolution: int | None = None
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    use_8bit_adam: bool = False
    noise_offset: float = 0.0
    snr_gamma: float | None = None
    caption_dropout: float = 0.0
    default_caption: str | None = None
    random_flip: bool = False
    cache_latents: bool = False
    seed: int = 0
    save_every: int = 500
    #: Validation samples every N steps (0: at every save).
    validate_every: int = 0
    validation_prompts: list[str] = field(default_factory=list)
    validation_steps: int = 20
    workers: int = 2
    resume: Path | None = None
    cpu: bool = False
    progress: bool = True

    def check(self) -> None:
        """Flag values that cannot work, each named."""
        at_least_one = {
            "--steps": self.steps,
            "--batch": self.batch,
            "--save-every": self.save_every,
            "--validation-steps": self.validation_steps,
        }
        for flag, value in at_least_one.items():
            if value < 1:
                raise InputError(f"{flag} must be at least 1, got {value}", field=flag)
        if self.rank is not None and self.rank < 1:
            raise InputError(f"--rank must be at least 1, got {self.rank}", field="--rank")
        if self.resolution is not None and (self.resolution < 64 or self.resolution % 64):
            raise InputError(
                f"--resolution must be a multiple of 64, got {self.resolution}",
                field="--resolution",
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr must be a positive number, got {self.lr}", field="--lr")
        if not 0.0 <= self.caption_dropout <= 1.0:
            raise InputError("--caption-dropout must be between 0 and 1", field="--caption-dropout")
        if not (0.0 <= self.noise_offset < 1.0):
            raise InputError("--noise-offset must be in [0, 1)", field="--noise-offset")
        if self.snr_gamma is not None and not self.snr_gamma > 0:
            raise InputError("--snr-gamma must be positive (5 is usual)", field="--snr-gamma")
        if self.validate_every < 0 or self.workers < 0:
            flag = "--validate-every" if self.validate_every < 0 else "--workers"
            raise InputError(f"{flag} must be 0 or more", field=flag)
        if self.cache_latents and self.random_flip:
            raise InputError(
                "--cache-latents encodes each image once, so it cannot be combined with "
                "--random-flip",
                field="--cache-latents",
            )

    def recorded(self) -> dict[str, Any]:
        values = asdict(self)
        return {key: str(values[key]) if isinstance(values[key], Path) else values[key]
                for key in RESULT_FLAGS}  # fmt: skip


def check_resume(config: LayerTrainConfig, recorded: dict[str, Any]) -> None:
    """Refuse a resume whose flags differ from the run's, naming the first different flag."""
    mine = config.recorded()
    for key, value in recorded.items():
        if mine.get(key) != value:
            flag = "--" + key.replace("_", "-")
            raise InputError(
                f"{flag} is {mine.get(key)!r} but the run being resumed used {value!r}",
                field=flag,
            )
