"""What both training commands share about a run: its folder and its TensorBoard tracker."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from acetate.train.state import STATE_JSON

#: Default run folders live in `<models>/training/`; a run's final files are also published to
#: `<models>/layer_model/` (listed there, used only where named).
TRAINING_DIR = "training"


def run_folder(
    accelerator: Accelerator,
    *,
    resume: Path | None,
    out: Path | None,
    models_dir: Path,
    stem: str,
) -> Path:
    """The run folder: the one being resumed (a checkpoint's run), `--out`, or a new
    `<models>/training/<stem>[-N]`, the same name on every process."""
    if resume is not None:
        if (resume / STATE_JSON).is_file():  # a checkpoint folder: its run folder
            return resume.parent.parent
        return resume
    if out is not None:
        return out
    name: list[Any] = [None]
    if accelerator.is_main_process:
        root = models_dir / TRAINING_DIR
        candidate, n = root / stem, 1
        while candidate.exists():
            n += 1
            candidate = root / f"{stem}-{n}"
        name[0] = str(candidate)
    broadcast_object_list(name)
    return Path(name[0])


def tensorboard(folder: Path, name: str) -> Any:
    """A TensorBoard tracker when tensorboard is installed (the `train` extra), else None."""
    if importlib.util.find_spec("tensorboard") is None:
        return None
    from accelerate.tracking import TensorBoardTracker

    tracker = TensorBoardTracker(name, str(folder))
    tracker.start()  # accelerate ≥ 1.6 opens the writer here, not in the constructor
    return tracker
