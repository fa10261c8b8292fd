"""Package the Photoshop plugin as an installable .ccx for a given server port and hosts.

    python photoshop_uxp/build.py --port 7865 --hosts "127.0.0.1 localhost" [--out dist]

Photoshop lets a plugin reach only the exact `scheme://host:port` entries of its manifest, so
the port and host names are fixed when the plugin is built. This writes
`<out>/acetate-photoshop-<version>.ccx` (a zip with manifest.json at its root) and the same
files unpacked in `<out>/acetate-photoshop-<version>/` (for UXP Developer Tool). The committed
manifest.json is left as it is.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

PLUGIN_DIR = Path(__file__).resolve().parent
#: What ships: the manifest, the panel's files, its modules and icons (no tests, no node_modules).
SHIPPED = ("manifest.json", "index.html", "main.js", "styles.css", "src", "icons")
DEFAULT_PORT = 7865
DEFAULT_HOSTS = ("127.0.0.1", "localhost")
#: Fixed timestamp so that the same sources give the same archive.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


class BuildError(Exception):
    """A bad option or a broken plugin folder; the message says which."""


def check_host(host: str) -> str:
    """A host name, IPv4 address or bracketed IPv6 address as a manifest entry writes it."""
    value = host.strip().lower()
    if value.startswith("[") and value.endswith("]"):
        try:
            ipaddress.IPv6Address(value[1:-1])
        except ValueError:
            raise BuildError(f"--hosts: {host!r} is not an IPv6 address") from None
        return value
    if ":" in value:
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            raise BuildError(
                f"--hosts: {host!r} must be a bare host name (no scheme or port)"
            ) from None
        return f"[{value}]"
    if not HOST_NAME.match(value):
        raise BuildError(
            f"--hosts: {host!r} is not a host name or address (wildcards are not allowed by "
            "Photoshop's manifest)"
        )
    return value


def domains(port: int, hosts: Sequence[str], *, tls: bool = False) -> list[str]:
    """The manifest's network entries per host: `http://` for requests and `ws://` for events,
    or `https://` and `wss://` for a server started with `--tls-cert/--tls-key`."""
    if not 1 <= port <= 65535:
        raise BuildError(f"--port: {port} is not a TCP port (1-65535)")
    if not hosts:
        raise BuildError("--hosts: give at least one host")
    entries: list[str] = []
    for host in dict.fromkeys(check_host(host) for host in hosts):
        http, ws = ("https", "wss") if tls else ("http", "ws")
        entries += [f"{http}://{host}:{port}", f"{ws}://{host}:{port}"]
    return entries


def load_manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((PLUGIN_DIR / "manifest.json").read_text("utf-8"))
    return manifest


def shipped_files() -> Iterator[Path]:
    """Every file of the plugin that goes into the package, relative to PLUGIN_DIR, sorted."""
    for name in SHIPPED:
        path = PLUGIN_DIR / name
        if path.is_file():
            yield Path(name)
        elif path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(PLUGIN_DIR)
                hidden = any(
                    part.startswith(".") or part == "__pycache__" for part in relative.parts
                )
                if child.is_file() and not hidden:
                    yield relative
        else:
            raise BuildError(f"the plugin folder has no {name}")


def _zip_info(name: str, *, directory: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name + ("/" if directory else ""), date_time=ZIP_DATE)
    info.create_system = 3  # Unix, so that the modes below are read.
    if directory:
        info.external_attr = (0o40755 << 16) | 0x10
    else:
        info.external_attr = 0o100644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
    return info


def write_ccx(target: Path, manifest: dict[str, Any], files: Sequence[Path]) -> None:
    """Write the .ccx atomically: directory entries, then files, manifest.json at the root."""
    target.parent.mkdir(parents=True, exist_ok=True)
    folders = sorted(
        {parent.as_posix() for file in files for parent in file.parents if parent != Path(".")}
    )
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".ccx-", suffix=".tmp")
    os.close(handle)
    try:
        with zipfile.ZipFile(temp_name, "w") as archive:
            for folder in folders:
                archive.writestr(_zip_info(folder, directory=True), b"")
            for file in files:
                name = file.as_posix()
                data = (
                    (json.dumps(manifest, indent=2) + "\n").encode()
                    if name == "manifest.json"
                    else (PLUGIN_DIR / file).read_bytes()
                )
                archive.writestr(_zip_info(name, directory=False), data)
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_folder(target: Path, manifest: dict[str, Any], files: Sequence[Path]) -> None:
    """The same files unpacked (replacing an older copy), for UXP Developer Tool."""
    temp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".plugin-"))
    try:
        for file in files:
            destination = temp / file
            destination.parent.mkdir(parents=True, exist_ok=True)
            if file.as_posix() == "manifest.json":
                destination.write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
            else:
                shutil.copyfile(PLUGIN_DIR / file, destination)
        if target.exists():
            shutil.rmtree(target)
        os.replace(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def build(
    out: Path, port: int = DEFAULT_PORT, hosts: Sequence[str] = DEFAULT_HOSTS, *, tls: bool = False
) -> Path:
    """Build the package into `out`; returns the .ccx path."""
    manifest = load_manifest()
    manifest.setdefault("requiredPermissions", {}).setdefault("network", {})["domains"] = domains(
        port, hosts, tls=tls
    )
    version = str(manifest.get("version", ""))
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise BuildError(f"manifest.json: version {version!r} is not major.minor.patch")
    files = list(shipped_files())
    stem = f"acetate-photoshop-{version}"
    out.mkdir(parents=True, exist_ok=True)
    ccx = out / f"{stem}.ccx"
    write_ccx(ccx, manifest, files)
    write_folder(out / stem, manifest, files)
    return ccx


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="the server's port")
    parser.add_argument(
        "--hosts",
        default=" ".join(DEFAULT_HOSTS),
        help="space- or comma-separated host names/addresses the plugin may reach",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="the server runs with --tls-cert/--tls-key: allow https:// and wss:// instead",
    )
    parser.add_argument(
        "--out", type=Path, default=PLUGIN_DIR.parent / "dist", help="output folder (dist/)"
    )
    args = parser.parse_args(argv)
    hosts = [host for host in re.split(r"[\s,]+", args.hosts) if host]
    try:
        ccx = build(args.out, args.port, hosts, tls=args.tls)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {ccx}")
    print("network: " + ", ".join(domains(args.port, hosts, tls=args.tls)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
