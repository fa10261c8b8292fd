"""`acetate serve`'s backend options (`--backend ray …`) and its config file (`--config`).

The config file is TOML holding any serve option under its flag name (`max-queued = 8`,
`backend = "ray"`, `replicas = 2`); flags given on the command line win over it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acetate.errors import InputError

if TYPE_CHECKING:
    from acetate.api.app import BackendFactory
    from acetate.api.config import ServerConfig
    from acetate.backends.ray_cluster import RaySettings
    from acetate.engine.options import EngineOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="a TOML file of serve options by flag name (flags given here win)",
    )
    group = parser.add_argument_group("backend (where jobs run)")
    group.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="local: one GPU thread in this process; ray: a pool of Ray Serve replicas "
        "(pip install 'acetate[ray]')",
    )
    group.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="an existing Ray cluster (HOST:PORT of its head); default: start one on this "
        "machine, listening on loopback only",
    )
    group.add_argument(
        "--ray-listen",
        action="store_true",
        help="let a cluster started here listen beyond loopback (to add worker nodes)",
    )
    group.add_argument("--replicas", type=int, default=None, metavar="N", help="fixed replicas")
    group.add_argument("--min-replicas", type=int, default=None, metavar="A")
    group.add_argument(
        "--max-replicas", type=int, default=None, metavar="B", help="autoscale within A..B"
    )
    group.add_argument(
        "--scale-down-after",
        type=float,
        default=None,
        metavar="S",
        help="with --max-replicas: remove a replica after S idle seconds (default 600)",
    )
    group.add_argument(
        "--gpus-per-replica", type=float, default=None, metavar="F", help="default 1 with CUDA"
    )
    group.add_argument(
        "--cpus-per-replica",
        type=float,
        default=1.0,
        metavar="F",
        help="CPUs Ray reserves for each replica (default 1)",
    )
    group.add_argument(
        "--ray-retries",
        type=int,
        default=1,
        metavar="N",
        help="run a job again on another replica when its replica dies (default 1)",
    )


def apply_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Fill the options not given on the command line from `--config FILE`."""
    path: Path | None = args.config
    if path is None:
        return
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError(f"--config {path}: {error.strerror}", field="--config") from None
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"--config {path}: not TOML: {error}", field="--config") from None
    actions = {action.dest: action for action in parser._actions if action.dest != "help"}
    for key, value in data.items():
        dest = key.replace("-", "_")
        action = actions.get(dest)
        if action is None or dest in ("config", "run"):
            raise InputError(
                f"--config {path}: unknown option {key!r} (use serve's flag names)",
                field="--config",
            )
        if getattr(args, dest) != parser.get_default(dest):
            continue  # given on the command line
        setattr(args, dest, _convert(path, key, action, value))


def _convert(path: Path, key: str, action: argparse.Action, value: Any) -> Any:
    """A TOML value as the flag would have parsed it (types, choices, repeatable lists)."""
    where = f"--config {path}: {key}"
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise InputError(f"{where}: expected true or false", field="--config")
        return value
    many = isinstance(action, argparse._AppendAction)
    values = value if many and isinstance(value, list) else [value]
    converted = []
    for item in values:
        if isinstance(item, (dict, list)) or (isinstance(item, bool) and action.type is not None):
            raise InputError(f"{where}: expected a single value", field="--config")
        try:
            result = action.type(str(item)) if callable(action.type) else item  # type: ignore[misc]
        except (TypeError, ValueError):
            raise InputError(f"{where}: not a valid value: {item!r}", field="--config") from None
        if action.choices is not None and result not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise InputError(f"{where}: expected one of {choices}", field="--config")
        converted.append(result)
    return converted if many else converted[0]


def ray_settings(args: argparse.Namespace) -> RaySettings:
    """The checked `--backend ray` options; an external `--ray-address` must answer now
    (before the slow imports), else a one-line error naming it."""
    from acetate.backends.ray_cluster import RaySettings, check_reachable

    settings = RaySettings(
        address=args.ray_address,
        listen=args.ray_listen,
        replicas=args.replicas,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        gpus_per_replica=0.0 if args.device in ("cpu", "mps") else args.gpus_per_replica,
        cpus_per_replica=args.cpus_per_replica,
        retries=args.ray_retries,
    )
    if args.scale_down_after is not None:
        if args.max_replicas is None:
            raise InputError(
                "--scale-down-after needs --min-replicas/--max-replicas", field="scale_down_after"
            )
        settings.downscale_delay_s = args.scale_down_after
    settings.check()
    if settings.address is not None:
        check_reachable(settings.address)
    return settings


def check_backend_flags(args: argparse.Namespace) -> None:
    """Ray flags without `--backend ray` are a mistake worth saying."""
    if args.backend == "ray":
        return
    flags = ("ray_address", "replicas", "min_replicas", "max_replicas", "gpus_per_replica")
    for flag in (*flags, "scale_down_after"):
        if getattr(args, flag) is not None:
            name = "--" + flag.replace("_", "-")
            raise InputError(f"{name} needs --backend ray", field=name)


def ray_backend(
    settings: RaySettings,
    models_dir: Path,
    extra_models_dirs: list[Path],
    engine: EngineOptions,
    config: ServerConfig,
) -> BackendFactory:
    """Connect (or start) the cluster and deploy the replicas now (clear errors before
    serving); the returned factory binds them to the app's queue."""
    import importlib.util

    # Not imported here: Ray reads its address and token settings at import, and `connect`
    # sets them first.
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.serve") is None:
        raise InputError(
            "--backend ray needs Ray Serve: pip install 'acetate[ray]'", field="--backend"
        )
    from acetate.backends.ray_backend import RayBackend, ServeExecutor
    from acetate.backends.ray_cluster import Cluster

    cluster = Cluster(settings)
    cluster.connect()
    try:
        cluster.deploy(
            models_dir,
            extra_models_dirs,
            engine,
            preview_interval_s=config.preview_interval_s,
            preview_max_side=config.preview_max_side,
        )
    except BaseException:
        cluster.close()
        raise

    def factory(queue: Any, cache: Any, server: ServerConfig) -> RayBackend:
        return RayBackend(
            queue,
            cache,
            ServeExecutor(cluster.handle(), cluster.lease()),
            slots=settings.slots,
            cluster=cluster,
            retries=settings.retries,
            shutdown_timeout_s=server.shutdown_timeout_s,
        )

    return factory
