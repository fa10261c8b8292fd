"""Connecting to (or starting) the Ray cluster and deploying the engine on Ray Serve.

Safety first, because Ray's own ports have no per-user authorisation:
- a cluster Acetate starts listens on loopback only (every Ray process uses 127.0.0.1 as the
  node address), unless `--ray-listen` says otherwise; Serve's HTTP proxy is never started
  (Acetate's server is the only door), and replicas bind their gRPC server to loopback;
- Ray 2.60 turns on token authentication for a new local cluster and writes the token to
  `~/.ray/auth_token` with the default umask (often readable by every local user). Acetate
  writes its own token file (mode 600, in a private folder) and points Ray at it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acetate import __version__
from acetate.engine.options import EngineOptions
from acetate.errors import InputError

APP_NAME = "acetate"
DEPLOYMENT = "EngineReplica"
DEFAULT_RAY_PORT = 6379


@dataclass
class RaySettings:
    """Every `--backend ray` option (also the `[ray]` table of `acetate.toml`)."""

    address: str | None = None
    #: Consent to a cluster Acetate starts listening beyond loopback.
    listen: bool = False
    replicas: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    #: None: 1 when this machine has CUDA, else 0.
    gpus_per_replica: float | None = None
    cpus_per_replica: float = 1.0
    #: CPUs of a cluster Acetate starts (None: Ray counts them).
    num_cpus: int | None = None
    #: Short private folder for Ray's sockets and logs (Unix socket paths are short).
    temp_dir: Path | None = None
    #: Retries of a job whose replica died (0: fail at once).
    retries: int = 1
    #: Autoscaling (with --min/--max-replicas): seconds of demand before a replica is added,
    #: and of idleness before one is removed (a loaded GPU is worth keeping warm a while).
    upscale_delay_s: float = 5.0
    downscale_delay_s: float = 600.0
    #: Serve's own defaults when None: how often the front reports its load to Serve (10 s)
    #: and the window the load is averaged over (30 s). Short values let tests scale quickly.
    metrics_interval_s: float | None = None
    look_back_period_s: float | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        if self.replicas is not None and (self.min_replicas or self.max_replicas):
            raise InputError(
                "--replicas is a fixed count: use it or --min-replicas/--max-replicas",
                field="replicas",
            )
        if self.replicas is not None and self.replicas < 1:
            raise InputError("--replicas must be at least 1", field="replicas")
        low, high = self.min_replicas, self.max_replicas
        if (low is None) != (high is None):
            raise InputError("--min-replicas and --max-replicas go together", field="max_replicas")
        if (low is not None and high is not None and not 0 <= low <= high) or high == 0:
            raise InputError(
                "need 0 <= --min-replicas <= --max-replicas and --max-replicas >= 1",
                field="max_replicas",
            )
        if self.gpus_per_replica is not None and self.gpus_per_replica < 0:
            raise InputError("--gpus-per-replica must be >= 0", field="gpus_per_replica")
        if self.cpus_per_replica <= 0:
            raise InputError("--cpus-per-replica must be > 0", field="cpus_per_replica")
        if self.retries < 0:
            raise InputError("--ray-retries must be >= 0", field="ray_retries")
        if self.downscale_delay_s < 0:
            raise InputError("--scale-down-after must be >= 0", field="scale_down_after")

    @property
    def slots(self) -> int:
        """Jobs dispatched at once: one per replica (at most `--max-replicas` when scaling,
        so the autoscaler sees the demand)."""
        if self.max_replicas is not None:
            return self.max_replicas
        return self.replicas or 1

    def gpus(self) -> float:
        if self.gpus_per_replica is not None:
            return self.gpus_per_replica
        import torch

        return 1.0 if torch.cuda.is_available() else 0.0

    def deployment_options(self) -> dict[str, Any]:
        scaling: dict[str, Any]
        if self.max_replicas is not None:
            autoscaling: dict[str, Any] = {
                "min_replicas": self.min_replicas or 0,
                "max_replicas": self.max_replicas,
                "initial_replicas": max(1, self.min_replicas or 0),
                # The front dispatches up to --max-replicas jobs at once (its `slots`), so
                # Serve sees min(queue, max) requests: one replica per waiting job.
                "target_ongoing_requests": 1,
                # Jobs wait in the front's queue, so add GPUs soon; a loaded GPU is worth
                # keeping warm a while (loading a model takes tens of seconds).
                "upscale_delay_s": self.upscale_delay_s,
                "downscale_delay_s": self.downscale_delay_s,
            }
            if self.metrics_interval_s is not None:
                autoscaling["metrics_interval_s"] = self.metrics_interval_s
            if self.look_back_period_s is not None:
                autoscaling["look_back_period_s"] = self.look_back_period_s
            scaling = {"autoscaling_config": autoscaling}
        else:
            scaling = {"num_replicas": self.replicas or 1}
        return {
            **scaling,
            # One job per replica: the front keeps the only queue, so `position` is the truth.
            "max_ongoing_requests": 1,
            "max_queued_requests": -1,
            "ray_actor_options": {
                "num_cpus": self.cpus_per_replica,
                "num_gpus": self.gpus(),
            },
            "health_check_period_s": 2,
            "health_check_timeout_s": 30,
            "graceful_shutdown_timeout_s": 5,
        }


class Cluster:
    """The connection: started here (and shut down with us) or external (left running)."""

    def __init__(self, settings: RaySettings) -> None:
        self.settings = settings
        self.started_here = False
        self.token_path: Path | None = None
        self._lease: Any = None

    def connect(self) -> None:
        """Connect or start; a one-line `InputError` naming `--ray-address` when unreachable."""
        settings = self.settings
        if settings.address is not None:
            check_reachable(settings.address)
        imported_before = "ray" in sys.modules
        self._environment()
        import ray
        import ray._private.ray_constants as ray_constants

        if os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0":
            # Read at import: also right when Ray was imported before this call.
            ray_constants.ENABLE_RAY_CLUSTER = False
        if imported_before and self.token_path is not None:
            _reload_token_settings()
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": "warning",
            "configure_logging": True,
        }
        if settings.address is None:
            temp = settings.temp_dir or default_temp_dir()
            temp.mkdir(mode=0o700, parents=True, exist_ok=True)
            kwargs.update(_temp_dir=str(temp), num_cpus=settings.num_cpus)
            self.started_here = True
        try:
            ray.init(address=settings.address, **kwargs)
        except (ConnectionError, RuntimeError, TimeoutError) as error:
            self.started_here = False
            text = str(error).strip()
            first = text.splitlines()[0] if text else type(error).__name__
            where = settings.address or "a new local cluster"
            raise InputError(
                f"--ray-address {where}: cannot use this Ray cluster: {first}",
                field="ray_address",
            ) from None
        from ray import serve

        serve.start(proxy_location="Disabled")

    def _environment(self) -> None:
        """Loopback-only node address and Acetate's own token file, before Ray is imported
        (both are read at import and inherited by every Ray process started from here)."""
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.update(self.settings.extra_env)
        if self.settings.address is None and not self.settings.listen:
            # Ray uses 127.0.0.1 as this node's address when "clusters" are off (as on macOS).
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        if self.settings.address is not None:
            check_token_file(os.environ.get("RAY_AUTH_TOKEN_PATH"))
        if self.settings.address is None and "RAY_AUTH_TOKEN" not in os.environ:
            mode = os.environ.setdefault("RAY_AUTH_MODE", "token")
            if mode == "token" and "RAY_AUTH_TOKEN_PATH" not in os.environ:
                # Not in Ray's temp folder: Ray makes that one world-writable (mode 777).
                temp = self.settings.temp_dir or default_temp_dir()
                token_dir = temp.with_name(temp.name + "-auth")
                # One file per server: two servers on one machine keep their own tokens.
                name = f"auth_token.{os.getpid()}"
                self.token_path = write_private_token(token_dir / name)
                os.environ["RAY_AUTH_TOKEN_PATH"] = str(self.token_path)

    def deploy(
        self,
        models_dir: Path,
        extra_models_dirs: list[Path],
        options: EngineOptions,
        *,
        preview_interval_s: float,
        preview_max_side: int,
    ) -> Any:
        """Deploy (or update) the engine replicas; returns the deployment handle once they
        are up and their Acetate version matches ours.

        The deployment's Serve version is derived from Acetate's version and the replicas'
        arguments, so a front that restarts with the same settings finds its replicas still
        warm (Serve restarts replicas only when that version changes; without one it would
        restart them on every deploy). Scaling settings change without a restart."""
        import warnings

        from ray import serve

        from acetate.backends.replica import EngineReplica

        loopback_only = self.started_here and not self.settings.listen
        args = (
            str(models_dir),
            [str(path) for path in extra_models_dirs],
            options,
            loopback_only,
            preview_interval_s,
            preview_max_side,
        )
        code = hashlib.sha256(f"{version_tag()} {args!r}".encode()).hexdigest()[:16]
        with warnings.catch_warnings():
            # Serve deprecates `metrics_interval_s` (only set by tests) for an env variable.
            warnings.simplefilter("ignore", DeprecationWarning)
            deployment = serve.deployment(name=DEPLOYMENT, **self.settings.deployment_options())(
                EngineReplica
            )
        # Serve 2.60 no longer takes a user `version` (it picks a random one per `serve.run`,
        # restarting every replica); its internal flag still sets one. Tested by
        # `test_a_second_deploy_keeps_the_replicas_warm`.
        deployment = deployment.options(version=code, _internal=True)
        handle = serve.run(deployment.bind(*args), name=APP_NAME, route_prefix=None)
        if self.settings.min_replicas != 0:
            self.check_version(handle)
        return handle

    def check_version(self, handle: Any) -> None:
        """Ask a replica for its Acetate and API versions: a mismatch with this front is a
        one-line `InputError` naming both (the front then refuses to start)."""
        theirs = str(handle.version.remote().result(timeout_s=120))
        ours = version_tag()
        if theirs != ours:
            raise InputError(
                f"--ray-address: the cluster's replicas run Acetate {theirs}, this server "
                f"Acetate {ours}; install the same version on every node",
                field="ray_address",
            )

    def handle(self) -> Any:
        """A fresh handle to the replicas, for use on the calling thread's event loop."""
        from ray import serve

        return serve.get_deployment_handle(DEPLOYMENT, APP_NAME)

    def lease(self) -> Any:
        """This process's `FrontLease` actor, created once: replicas cancel the jobs it sent
        when it dies with this process."""
        if self._lease is None:
            import ray

            from acetate.backends.replica import FrontLease

            self._lease = ray.remote(num_cpus=0)(FrontLease).remote()
        return self._lease

    def running_replicas(self) -> int:
        """Replicas of the deployment in the RUNNING state (0 when unknown)."""
        from ray import serve

        try:
            status = serve.status().applications[APP_NAME].deployments[DEPLOYMENT]
        except (KeyError, Exception):
            return 0
        states: dict[Any, int] = dict(status.replica_states)
        return sum(count for state, count in states.items() if str(state).endswith("RUNNING"))

    def close(self) -> None:
        """Remove our deployment; shut the cluster down when we started it."""
        import ray
        from ray import serve

        if not ray.is_initialized():
            return
        try:
            if self.started_here:
                serve.shutdown()
            else:
                serve.delete(APP_NAME)
        finally:
            ray.shutdown()
            if self.token_path is not None:
                self.token_path.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    self.token_path.parent.rmdir()


def version_tag() -> str:
    """What must match between the front and its replicas: the Acetate version and the API
    version of the requests they exchange (e.g. `0.4.0 (API 2)`)."""
    from acetate.modes import API_VERSION

    return f"{__version__} (API {API_VERSION})"


def _reload_token_settings() -> None:
    """Ray caches its auth mode and token when first imported; make it see ours."""
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def default_temp_dir() -> Path:
    """Short and private to this user (Ray's Unix sockets need short paths)."""
    return Path("/tmp") / f"acetate-ray-{os.getuid() if hasattr(os, 'getuid') else 0}"


def write_private_token(path: Path) -> Path:
    """A fresh 256-bit token readable by this user only (the folder is 700 too)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if hasattr(os, "getuid") and path.parent.stat().st_uid != os.getuid():
        # A folder someone else created in /tmp first: they could read or swap the token.
        raise InputError(
            f"--backend ray: {path.parent} belongs to another user; remove it",
            field="--backend",
        )
    os.chmod(path.parent, 0o700)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(32))
    return path


def check_token_file(configured: str | None) -> None:
    """The Ray token file in use (`RAY_AUTH_TOKEN_PATH`, else Ray's `~/.ray/auth_token`) must
    not be readable by other local users: whoever holds it runs code on every node."""
    path = Path(configured).expanduser() if configured else Path.home() / ".ray" / "auth_token"
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # none: Ray says so itself when the cluster wants one
    if mode & 0o077:
        raise InputError(
            f"--ray-address: the Ray token file {path} is readable by group or others; "
            f"chmod 600 {path}",
            field="ray_address",
        )


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """`HOST[:PORT]` (or `ray://…`) must accept a TCP connection, else a one-line error."""
    target = address.removeprefix("ray://")
    host, _, port_text = target.rpartition(":") if ":" in target else (target, "", "")
    host = host.strip("[]") or target
    try:
        port = int(port_text) if port_text else DEFAULT_RAY_PORT
    except ValueError:
        raise InputError(
            f"--ray-address {address}: expected HOST:PORT", field="ray_address"
        ) from None
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InputError(
            f"--ray-address {address}: cannot reach a Ray cluster there ({reason}); start one "
            "with `ray start --head` or leave --ray-address out to start one on this machine",
            field="ray_address",
        ) from None
