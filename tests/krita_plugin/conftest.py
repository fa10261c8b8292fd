"""Fixtures for the Krita plugin tests.

The plugin's Qt-free modules are imported from krita_plugin/ (no Krita, no Qt needed);
`acetate_server` is the real server (`acetate serve`) on the tiny models, shared by the
client, model and real-Krita tests of this folder.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "krita_plugin"
HERE = Path(__file__).resolve().parent
for path in (PLUGIN_DIR, HERE):  # the plugin package and build.py; the test helpers
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from server_process import ServerProcess, start_server  # noqa: E402


@pytest.fixture(scope="session")
def acetate_server(
    tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server = start_server(tiny_models_dir, tmp_path_factory.mktemp("acetate-server"))
    yield server
    server.stop()
