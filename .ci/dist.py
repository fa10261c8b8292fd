"""`make dist`: the four release artifacts and their SHA-256 sums, byte-for-byte reproducible.

    python .ci/dist.py [--out dist]

Writes into OUT: `acetate-<v>.tar.gz` (sdist) and `acetate-<v>-py3-none-any.whl` (via
`python -m build`), `acetate-krita-<v>.zip` (krita_plugin/build.py), `acetate-photoshop-<v>.ccx`
(photoshop_uxp/build.py, default port and hosts) and `SHA256SUMS` (`sha256sum -c` format).

Same sources → same bytes: every archive is rewritten with its entries sorted, every
timestamp set to SOURCE_DATE_EPOCH (default: the last commit's time, else 1980-01-01), owners
cleared and permissions reduced to 644/755, so neither the build time, the checkout's file
times, the umask nor the build backend's ordering leaks into the artifacts. Entry contents are
kept as they are, so a wheel's RECORD hashes still hold.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZIP_EPOCH_MIN = 315532800  # 1980-01-01, the earliest time a zip entry can carry


def source_date_epoch() -> int:
    """$SOURCE_DATE_EPOCH, else the last commit's time, else 1980-01-01."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        return int(env)
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%ct"], cwd=ROOT, capture_output=True, text=True
        )
        return int(out.stdout.strip()) if out.returncode == 0 else ZIP_EPOCH_MIN
    except (OSError, ValueError):
        return ZIP_EPOCH_MIN


def _mode(mode: int, directory: bool) -> int:
    # Only "is it executable" survives from the source file; the rest depends on the umask.
    return 0o755 if directory or mode & 0o111 else 0o644


def normalize_zip(path: Path, epoch: int) -> None:
    """Rewrite a zip (wheel, plugin) with sorted entries, one timestamp and plain modes."""
    stamp = time.gmtime(max(epoch, ZIP_EPOCH_MIN))[:6]
    with zipfile.ZipFile(path) as source:
        entries = [(info, source.read(info)) for info in source.infolist()]
    # A wheel's RECORD must stay last (PEP 427 recommends it); the rest is sorted by name.
    entries.sort(key=lambda item: (item[0].filename.endswith("dist-info/RECORD"), item[0].filename))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for old, data in entries:
            directory = old.filename.endswith("/")
            info = zipfile.ZipInfo(old.filename, stamp)
            info.create_system = 3  # Unix, so the mode below is what unzip applies
            kind = 0o040000 if directory else 0o100000  # S_IFDIR / S_IFREG
            mode = kind | _mode(old.external_attr >> 16, directory)
            info.external_attr = (mode << 16) | (0x10 if directory else 0)  # 0x10: MS-DOS dir
            info.compress_type = zipfile.ZIP_STORED if directory else zipfile.ZIP_DEFLATED
            target.writestr(info, data, compresslevel=9)
    _replace(path, buffer.getvalue())


def normalize_sdist(path: Path, epoch: int) -> None:
    """Rewrite a .tar.gz with sorted members, one mtime, no owners and a fixed gzip header."""
    with tarfile.open(path, "r:gz") as source:
        members = [
            (member, source.extractfile(member).read() if member.isfile() else None)  # type: ignore[union-attr]
            for member in source.getmembers()
        ]
    members.sort(key=lambda item: item[0].name)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as target:
        for member, data in members:
            member.mtime = epoch
            member.uid = member.gid = 0
            member.uname = member.gname = ""
            member.mode = _mode(member.mode, member.isdir())
            member.pax_headers = {}
            target.addfile(member, io.BytesIO(data) if data is not None else None)
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=epoch, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    _replace(path, packed.getvalue())


def _replace(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".tmp")
    partial.write_bytes(data)
    os.replace(partial, path)


def sha256sums(paths: list[Path]) -> str:
    """`sha256sum` lines (hash, two spaces, file name), sorted by name."""
    lines = []
    for path in sorted(paths, key=lambda p: p.name):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.name}\n")
    return "".join(lines)


def _run(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"dist: {' '.join(command[:3])}… failed (exit {result.returncode})")
    return result.stdout


def build(out: Path, *, isolation: bool = False) -> list[Path]:
    """Build the four artifacts into `out` and write SHA256SUMS; returns the artifacts."""
    epoch = source_date_epoch()
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "PYTHONHASHSEED": "0"}
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="acetate-dist-") as temp:
        staging = Path(temp)
        # No --sdist/--wheel: the wheel is built from the sdist (so the sdist is proven
        # complete), and setuptools' build/ folder never lands in the checkout.
        command = [sys.executable, "-m", "build", "--outdir", str(staging)]
        _run([*command, *(() if isolation else ("--no-isolation",)), str(ROOT)], env)
        _run([sys.executable, str(ROOT / "krita_plugin" / "build.py"), "--out", temp], env)
        _run([sys.executable, str(ROOT / "photoshop_uxp" / "build.py"), "--out", temp], env)
        artifacts: list[Path] = []
        for pattern in ("acetate-*.tar.gz", "acetate-*.whl", "acetate-krita-*.zip", "*.ccx"):
            found = sorted(staging.glob(pattern))
            if len(found) != 1:
                raise SystemExit(f"dist: expected one {pattern}, found {[p.name for p in found]}")
            source = found[0]
            if source.name.endswith(".tar.gz"):
                normalize_sdist(source, epoch)
            else:
                normalize_zip(source, epoch)
            target = out / source.name
            _replace(target, source.read_bytes())
            artifacts.append(target)
    (out / "SHA256SUMS").write_text(sha256sums(artifacts), encoding="utf-8")
    return artifacts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument(
        "--isolation",
        action="store_true",
        help="build the wheel in an isolated environment (downloads setuptools) instead of "
        "the current one",
    )
    args = parser.parse_args(argv)
    for path in build(args.out, isolation=args.isolation):
        print(path)
    print(args.out / "SHA256SUMS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
