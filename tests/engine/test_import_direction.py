"""The engine's folders import one way: nets ← tiny ← store ← pipelines ← engine/resolve.

And the layers of the package: engine/ never imports the server (api, jobs) nor asyncio or
aiohttp; export/ never imports torch; modes/ and protocol.py import neither torch nor the
engine (editors and the CLI read them without loading a model).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "server" / "acetate"

#: Folder (relative to the package) → module prefixes it must never import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "engine/nets": (
        "acetate.engine.store",
        "acetate.engine.tiny",
        "acetate.engine.pipelines",
        "acetate.engine.engine",
        "acetate.engine.resolve",
    ),
    "engine/tiny": (
        "acetate.engine.store",
        "acetate.engine.pipelines",
        "acetate.engine.engine",
        "acetate.engine.resolve",
    ),
    "engine/store": ("acetate.engine.pipelines", "acetate.engine.engine", "acetate.engine.resolve"),
    "engine/pipelines": ("acetate.engine.engine",),
    "engine": ("acetate.api", "acetate.jobs", "acetate.cli", "aiohttp", "asyncio"),
    "export": ("torch", "acetate.engine.engine", "acetate.api", "acetate.jobs"),
    "train": ("acetate.api", "acetate.jobs", "acetate.cli", "aiohttp", "asyncio"),
    "modes": ("torch", "diffusers", "acetate.engine", "acetate.protocol", "acetate.api"),
    "protocol.py": ("torch", "diffusers", "acetate.engine"),
    # Backends run the queue's jobs; the HTTP layer and the CLI sit above them.
    "backends": ("acetate.api", "acetate.cli"),
    "jobs": ("acetate.backends", "acetate.api", "acetate.cli"),
}


def imports_of(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


@pytest.mark.parametrize("where", sorted(FORBIDDEN))
def test_no_upward_imports(where: str) -> None:
    target = PACKAGE / where
    files = [target] if target.is_file() else sorted(target.rglob("*.py"))
    assert files, where
    offences = [
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in files
        for module in sorted(imports_of(path))
        if any(module == bad or module.startswith(f"{bad}.") for bad in FORBIDDEN[where])
    ]
    assert not offences, "\n".join(offences)


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from acetate.engine.store import models\nimport asyncio\n")
    assert {"acetate.engine.store", "acetate.engine.store.models", "asyncio"} <= imports_of(sample)
