"""The image and docker-compose: gunicorn on its config, metrics directories made ready at start.

`docker-compose config` validates the file against Compose's schema (it needs a `.env` beside
it); these tests check what the schema cannot: what the processes are told.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
ENTRYPOINT = ROOT / "ops" / "docker" / "entrypoint"


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def command_text(service: dict[str, Any]) -> str:
    command = service["command"]
    return command if isinstance(command, str) else " ".join(command)


def test_web_and_worker_share_one_metrics_directory_in_memory() -> None:
    document = compose()
    services = document["services"]

    mounts = {
        name: [v["target"] for v in services[name].get("volumes", []) if v["source"] == "metrics"]
        for name in ("web", "worker")
    }
    directory = services["web"]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert services["worker"]["environment"]["PROMETHEUS_MULTIPROC_DIR"] == directory
    assert mounts == {"web": [directory], "worker": [directory]}
    assert document["volumes"]["metrics"]["driver_opts"]["type"] == "tmpfs"


def test_gunicorn_runs_on_its_config_in_compose_and_in_the_image() -> None:
    web = command_text(compose()["services"]["web"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    [cmd] = [line for line in dockerfile.splitlines() if line.startswith("CMD ")]

    assert "gunicorn mindo.wsgi -c python:mindo.gunicorn_conf" in web
    assert '"gunicorn", "mindo.wsgi", "-c", "python:mindo.gunicorn_conf"' in cmd
    assert 'ENTRYPOINT ["/app/ops/docker/entrypoint"]' in dockerfile


def run_entrypoint(directory: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_the_entrypoint_deletes_only_this_hosts_metrics_files(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    host = socket.gethostname().replace("_", "-")
    mine = [directory / f"counter_{host}-7.db", directory / f"histogram_{host}-12.db"]
    theirs = [directory / "counter_otherhost-7.db"]
    for path in mine + theirs:
        path.write_bytes(b"\0" * 8)

    answer = run_entrypoint(directory, "echo", "started")

    assert answer.stdout == "started\n"
    assert sorted(directory.iterdir()) == theirs


def test_the_entrypoint_creates_the_metrics_directory(tmp_path: Path) -> None:
    directory = tmp_path / "not" / "yet"

    run_entrypoint(directory, "true")

    assert directory.is_dir()
