"""./dev: one `up` at a time, the addresses of .env and the environment, a complete .env.example,
`clean`. Its embedded PostgreSQL and Redis: tests/test_embedded_servers.py."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings

from tests.delivery_support import (
    delivery_redis_fixture,  # noqa: F401  (fixture)
    free_ports,
    process_env,
    wait_for,
)
from tests.test_drain_workers import forget_broker

ROOT = Path(settings.BASE_DIR)
# Variables ./dev reads besides the service's own settings.
DEV_VARIABLES = ["PORT", "SANDBOX_PORT", "WEB_CONCURRENCY", "MINDO_EMBEDDED"]


def dev_copy(tmp_path: Path) -> Path:
    """The script in a checkout of its own: it works in the folder it lives in."""
    shutil.copy2(ROOT / "dev", tmp_path / "dev")
    return tmp_path / "dev"


def run_dev(script: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def base_env() -> dict[str, str]:
    drop = {"DATABASE_URL", "REDIS_URL", *DEV_VARIABLES}
    return {key: value for key, value in os.environ.items() if key not in drop}


@contextlib.contextmanager
def holding_up_lock(run_dir: Path) -> Iterator[None]:
    """The lock a running `./dev up` (and its processes) hold."""
    with (run_dir / "up.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


def test_a_second_up_refuses_to_start_and_leaves_the_running_ones_logs(tmp_path: Path) -> None:
    script = dev_copy(tmp_path)
    run_dir = tmp_path / ".run"
    run_dir.mkdir()
    (run_dir / "up.pid").write_text("4242\n")
    (run_dir / "worker.log").write_text("the running copy's log\n")

    with holding_up_lock(run_dir):
        second = run_dev(script, "up", env=base_env())

    assert second.returncode == 1
    assert "already running" in second.stderr
    assert "4242" in second.stderr
    assert (run_dir / "worker.log").read_text() == "the running copy's log\n"
    assert not (tmp_path / ".venv").exists(), "the second copy went on to install"


def test_clean_removes_the_run_folder_unless_up_is_running(tmp_path: Path) -> None:
    script = dev_copy(tmp_path)
    run_dir = tmp_path / ".run"
    (run_dir / "metrics").mkdir(parents=True)
    (run_dir / "worker.log").write_text("a log\n")

    with holding_up_lock(run_dir):
        refused = run_dev(script, "clean", env=base_env())
    assert refused.returncode == 1
    assert "./dev up is running" in refused.stderr
    assert (run_dir / "worker.log").exists()

    done = run_dev(script, "clean", env=base_env())
    assert done.returncode == 0, done.stderr
    assert not run_dir.exists()
    again = run_dev(script, "clean", env=base_env())
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize(
    ("dot_env", "environment", "expected"),
    [
        pytest.param(
            None,
            {},
            [
                "DATABASE_URL=postgres://postgres@127.0.0.1:5432/mindo "
                "(PostgreSQL checked at 127.0.0.1:5432)",
                "REDIS_URL=redis://127.0.0.1:6379/0 (Redis checked at 127.0.0.1:6379)",
                "PORT=8000 SANDBOX_PORT=8100 WEB_CONCURRENCY=3",
            ],
            id="defaults",
        ),
        pytest.param(
            "# a comment\n"
            "DATABASE_URL=postgres://mindo@db.internal:6543/mindo\n"
            'REDIS_URL="redis://cache.internal:6390/4"\n'
            "PORT=8300\n",
            {"REDIS_URL": "redis://127.0.0.1:6381/2", "WEB_CONCURRENCY": "5"},
            [
                "DATABASE_URL=postgres://mindo@db.internal:6543/mindo "
                "(PostgreSQL checked at db.internal:6543)",
                "REDIS_URL=redis://127.0.0.1:6381/2 (Redis checked at 127.0.0.1:6381)",
                "PORT=8300 SANDBOX_PORT=8100 WEB_CONCURRENCY=5",
            ],
            id="environment-then-dot-env",
        ),
    ],
)
def test_it_takes_its_addresses_from_the_environment_then_dot_env_then_defaults(
    tmp_path: Path, dot_env: str | None, environment: dict[str, str], expected: list[str]
) -> None:
    script = dev_copy(tmp_path)
    if dot_env is not None:
        (tmp_path / ".env").write_text(dot_env)

    done = run_dev(script, "config", env={**base_env(), **environment})

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == expected


def example_lines() -> tuple[dict[str, str], set[str]]:
    """.env.example's assignments, and the names it only mentions in comments."""
    active: dict[str, str] = {}
    commented: set[str] = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        if match := re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line):
            active[match[1]] = match[2]
        elif match := re.match(r"^#\s*([A-Z][A-Z0-9_]*)=", line):
            commented.add(match[1])
    return active, commented


def test_dot_env_example_lists_every_variable_and_pins_no_other_broker() -> None:
    active, commented = example_lines()
    source = (ROOT / "mindo" / "settings.py").read_text()
    read_by_settings = set(re.findall(r"env\.\w+\(\s*\"([A-Z][A-Z0-9_]*)\"", source))

    assert read_by_settings | set(DEV_VARIABLES) <= active.keys() | commented
    # The broker follows REDIS_URL unless set: a value here would stay behind when REDIS_URL
    # is changed in a copied .env.
    assert "CELERY_BROKER_URL" not in active
    assert "CELERY_BROKER_URL" in commented


def checkout_of_links(tmp_path: Path) -> Path:
    """A checkout whose files are the project's own, linked, with a `dev` and no `.run/` or
    `.env` of its own: a `./dev up` there starts and stops apart from any in the project."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in {"dev", ".run", ".env", ".git"}:
            (checkout / entry.name).symlink_to(entry)
    shutil.copy2(ROOT / "dev", checkout / "dev")
    return checkout


def session_processes(session_id: int) -> set[int]:
    """The processes of a session: a script started as its leader and everything it started."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ProcessLookupError):
                if os.getsid(int(entry.name)) == session_id:
                    found.add(int(entry.name))
    return found


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.mark.django_db(transaction=True)
def test_up_stops_everything_it_started_on_a_term_to_the_script_alone(
    tmp_path: Path, delivery_redis: redis.Redis
) -> None:
    """As a supervisor or a container runtime stops it: SIGTERM to the script's pid only."""
    checkout = checkout_of_links(tmp_path)
    port, sandbox_port = free_ports(2)
    env = {
        **process_env(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "PORT": str(port),
        "SANDBOX_PORT": str(sandbox_port),
        "WEB_CONCURRENCY": "1",
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
    }
    forget_broker(delivery_redis)
    with (tmp_path / "up.log").open("wb") as log:
        up = subprocess.Popen(
            ["bash", str(checkout / "dev"), "up"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: answers(f"http://127.0.0.1:{port}/readyz") or up.poll() is not None,
            timeout=180,
            what="./dev up to answer on /readyz",
        )
        assert up.poll() is None, (tmp_path / "up.log").read_text()
        started = session_processes(up.pid) - {up.pid}
        assert len(started) >= 5  # the sandbox, two workers, beat, gunicorn (and their children)

        up.send_signal(signal.SIGTERM)

        assert up.wait(timeout=60) == 128 + signal.SIGTERM
        wait_for(
            lambda: not session_processes(up.pid),
            timeout=60,
            what="every process ./dev up started to stop",
        )
        assert not answers(f"http://127.0.0.1:{port}/healthz")
        assert not answers(f"http://127.0.0.1:{sandbox_port}/_sandbox/stats")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(up.pid, signal.SIGKILL)
        up.wait(timeout=10)
        forget_broker(delivery_redis)
