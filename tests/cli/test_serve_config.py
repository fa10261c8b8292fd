"""`acetate serve --config FILE` and the backend flags: parsed and checked, one-line errors."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from acetate.cli import build_parser
from acetate.cli.serve_options import apply_config, check_backend_flags, ray_settings
from acetate.errors import InputError


def parse(*argv: str) -> argparse.Namespace:
    args = build_parser().parse_args(["serve", *argv])
    apply_config(args, args.serve_parser)
    check_backend_flags(args)
    return args


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "acetate.toml"
    path.write_text(text)
    return path


def test_config_file_fills_every_kind_of_option_and_flags_win(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'port = 9000\nmax-queued = 4\nlisten = true\nallowed-host = ["a.lan", "b.lan"]\n'
        'output_dir = "/srv/out"\nbackend = "ray"\nreplicas = 2\ngpus-per-replica = 0.5\n'
        'device = "cpu"\n',
    )
    args = parse("--config", str(path), "--port", "9100")
    assert args.port == 9100  # given on the command line
    assert args.max_queued == 4 and args.listen is True
    assert args.allowed_host == ["a.lan", "b.lan"]
    assert args.output_dir == Path("/srv/out")
    settings = ray_settings(args)
    assert (settings.replicas, settings.slots, settings.gpus_per_replica) == (2, 2, 0.0)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("prot = 1\n", "unknown option 'prot'"),
        ('backend = "slurm"\n', "backend: expected one of local, ray"),
        ('port = "x"\n', "port: not a valid value"),
        ("listen = 1\n", "listen: expected true or false"),
        ("port = [1, 2]\n", "port: expected a single value"),
        ("port = \n", "not TOML"),
    ],
)
def test_bad_config_files_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(InputError) as caught:
        parse("--config", str(write(tmp_path, text)))
    assert needle in caught.value.message and caught.value.field == "--config"


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--replicas", "2"], "--replicas"),
        (["--backend", "ray", "--replicas", "2", "--max-replicas", "3"], "replicas"),
        (["--backend", "ray", "--min-replicas", "1"], "max_replicas"),
        (["--backend", "ray", "--min-replicas", "3", "--max-replicas", "2"], "max_replicas"),
        (["--backend", "ray", "--replicas", "0"], "replicas"),
        (["--backend", "ray", "--gpus-per-replica", "-1"], "gpus_per_replica"),
    ],
)
def test_bad_backend_flags_are_refused(argv: list[str], field: str) -> None:
    with pytest.raises(InputError) as caught:
        ray_settings(parse(*argv))
    assert caught.value.field == field


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "acetate", "serve", "--config", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--config" in lines[0] and "nope.toml" in lines[0], done.stderr


def test_a_ray_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    from acetate.backends.ray_cluster import check_token_file, write_private_token

    token = write_private_token(tmp_path / "ray" / "auth_token")
    assert token.stat().st_mode & 0o777 == 0o600
    assert token.parent.stat().st_mode & 0o777 == 0o700
    check_token_file(str(token))  # private: accepted
    token.chmod(0o644)
    with pytest.raises(InputError) as caught:
        check_token_file(str(token))
    assert "chmod 600" in caught.value.message and caught.value.field == "ray_address"
    check_token_file(str(tmp_path / "absent"))  # none: Ray itself reports a missing token


def test_ray_deployment_options_fixed_and_autoscaling() -> None:
    pytest.importorskip("ray.serve", reason="ray[serve] is not installed")
    from ray import serve

    from acetate.backends.ray_cluster import DEPLOYMENT, RaySettings
    from acetate.backends.replica import EngineReplica

    fixed = RaySettings(replicas=3, gpus_per_replica=1)
    deployment = serve.deployment(name=DEPLOYMENT, **fixed.deployment_options())(EngineReplica)
    assert deployment.num_replicas == 3 and fixed.slots == 3
    assert deployment.ray_actor_options["num_gpus"] == 1
    # One job per replica: the front's queue is the only queue.
    assert deployment._deployment_config.max_ongoing_requests == 1

    scaling = RaySettings(min_replicas=1, max_replicas=4, gpus_per_replica=0.5)
    scaling.check()
    deployment = serve.deployment(name=DEPLOYMENT, **scaling.deployment_options())(EngineReplica)
    autoscaling = deployment._deployment_config.autoscaling_config
    assert (autoscaling.min_replicas, autoscaling.max_replicas) == (1, 4)
    assert scaling.slots == 4  # the autoscaler sees the demand of up to B jobs
