"""`make dist` (.ci/dist.py): four artifacts with SHA-256 sums, the same bytes on every build,
and a wheel that carries everything the package needs at run time."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_dist() -> ModuleType:
    spec = importlib.util.spec_from_file_location("acetate_dist", ROOT / ".ci" / "dist.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dist = _load_dist()


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two builds of the same sources, one after the other."""
    first, second = tmp_path_factory.mktemp("dist-a"), tmp_path_factory.mktemp("dist-b")
    dist.build(first)
    dist.build(second)
    return first, second


def test_two_builds_give_the_same_bytes(builds: tuple[Path, Path]) -> None:
    first, second = builds
    names = sorted(path.name for path in first.iterdir())
    assert names == [
        "SHA256SUMS",
        "acetate-0.1.0-py3-none-any.whl",
        "acetate-0.1.0.tar.gz",
        "acetate-krita-0.1.0.zip",
        "acetate-photoshop-0.1.0.ccx",
    ]
    assert sorted(path.name for path in second.iterdir()) == names
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    for line in (first / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((first / name).read_bytes()).hexdigest() == digest


def test_the_wheel_carries_its_data_and_nothing_of_the_checkout(builds: tuple[Path, Path]) -> None:
    wheel = next(builds[0].glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        texts = [archive.read(name) for name in names]
        infos = archive.infolist()
    assert names[-1] == "acetate-0.1.0.dist-info/RECORD"
    assert names[:-1] == sorted(names[:-1])
    assert {"acetate/engine/store/catalog.json", "acetate/py.typed"} <= set(names)
    assert "acetate/engine/tiny/bases.py" in names and "acetate/cli/places.py" in names
    configs = {name for name in names if name.startswith("acetate/engine/store/configs/")}
    packaged = {
        "acetate/" + path.relative_to(ROOT / "server" / "acetate").as_posix()
        for path in (ROOT / "server" / "acetate" / "engine" / "store" / "configs").rglob("*.json")
    }
    assert configs == packaged and configs
    assert all(name.startswith(("acetate/", "acetate-0.1.0.dist-info/")) for name in names)
    assert not any(str(ROOT).encode() in text for text in texts)
    assert {info.date_time for info in infos} == {infos[0].date_time}


def test_normalizing_removes_order_times_and_modes(
    tmp_path: Path, builds: tuple[Path, Path]
) -> None:
    """What differs between machines (entry order, file times, umask) never reaches the bytes."""
    wheel = next(builds[0].glob("*.whl"))
    shuffled = tmp_path / wheel.name
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(shuffled, "w") as target:
        for index, info in enumerate(reversed(source.infolist())):
            copy = zipfile.ZipInfo(info.filename, (2031, 5, 6, 7, 8, index % 60))
            copy.external_attr = (0o100664 if index % 2 else 0o100600) << 16
            target.writestr(copy, source.read(info), zipfile.ZIP_STORED)
    dist.normalize_zip(shuffled, dist.source_date_epoch())
    assert shuffled.read_bytes() == wheel.read_bytes()

    sdist = next(builds[0].glob("*.tar.gz"))
    messy = tmp_path / sdist.name
    with tarfile.open(sdist) as source, tarfile.open(messy, "w:gz") as target:
        for member in reversed(source.getmembers()):
            data = source.extractfile(member) if member.isfile() else None
            member.mtime, member.uid, member.uname = 1_900_000_000, 1000, "ann"
            member.mode = 0o664 if member.isfile() else 0o775
            target.addfile(member, io.BytesIO(data.read()) if data is not None else None)
    dist.normalize_sdist(messy, dist.source_date_epoch())
    assert messy.read_bytes() == sdist.read_bytes()
