"""`acetate train transparency`'s settings and the resume check (which flags must match)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from acetate.errors import InputError
from acetate.train.losses import DISC_WEIGHT, IDENTITY_WEIGHT

#: Flags that change what a run computes: a resumed run must be given the same ones.
RESULT_FLAGS = (
    "base",
    "init",
    "arch",
    "size",
    "batch",
    "lr",
    "seed",
    "mixed_precision",
    "disc_start",
    "disc_width",
    "identity_weight",
    "disc_weight",
)


@dataclass
class TrainConfig:
    """`acetate train transparency`'s flags (field names = flag names without `--`)."""

    data: Path
    base: str | None
    models_dir: Path
    out: Path | None = None
    init: str = "official"
    arch: str = "full"
    steps: int = 1000
    batch: int = 4
    size: int = 256
    lr: float = 1e-4
    seed: int = 0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    save_every: int = 500
    eval_every: int = 0  # 0: at every save
    eval_data: Path | None = None
    disc_start: int = 1000
    disc_width: int = 64
    identity_weight: float = IDENTITY_WEIGHT
    disc_weight: float = DISC_WEIGHT
    workers: int = 2
    resume: Path | None = None
    cpu: bool = False
    extra_dirs: list[Path] = field(default_factory=list)
    progress: bool = True

    def check(self) -> None:
        """Flag values that cannot work, each named."""
        positive = {"--steps": self.steps, "--batch": self.batch, "--save-every": self.save_every}
        for flag, value in positive.items():
            if value < 1:
                raise InputError(f"{flag} must be at least 1, got {value}", field=flag)
        if self.size < 64 or self.size % 64:
            raise InputError(f"--size must be a multiple of 64, got {self.size}", field="--size")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr must be a positive number, got {self.lr}", field="--lr")
        if self.disc_start < 0:
            raise InputError("--disc-start must be 0 or more", field="--disc-start")
        if self.workers < 0:
            raise InputError("--workers must be 0 or more", field="--workers")

    def recorded(self) -> dict[str, Any]:
        return {key: _plain(asdict(self)[key]) for key in RESULT_FLAGS}


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def check_resume(config: TrainConfig, recorded: dict[str, Any], extra: dict[str, Any]) -> None:
    """Refuse a resume whose flags differ from the run's, naming the first different flag."""
    mine = {**config.recorded(), **extra}
    for key, value in {**recorded["flags"], **recorded["extra"]}.items():
        if mine.get(key) != value:
            flag = "--" + key.replace("_", "-")
            raise InputError(
                f"{flag} is {mine.get(key)!r} but the run being resumed used {value!r}",
                field=flag,
            )
