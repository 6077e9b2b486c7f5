"""The processes the drain benches run: gunicorn, the Meta sandbox, Celery workers and beat, and
busy loops; each in a process group of its own, always stopped, and the CPU time each group used.

How the sandbox is started is in one place, `sandbox()`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import requests

from bench.support import ROOT, free_port, sandbox_register

READY_PATH = "/api/v1/meta-templates/bulk-sends/?page_size=1"

# --- processes -----------------------------------------------------------------------------------

# The process groups this bench runs now, by name: what `cpu_used` attributes CPU time to.
RUNNING: dict[str, int] = {}
# gunicorn's worker timeout; bench/million.py raises it for a million recipients on a busy machine.
GUNICORN_TIMEOUT_SECONDS = 180


def exited(process: subprocess.Popen[bytes]) -> bool:
    """Whether the process ended, without reaping it: until it is reaped its pid, and so its
    process group's id, cannot be given to anyone else, so killing the group stays safe."""
    if process.returncode is not None:
        return True
    return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def stop_process_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process's group (a master and its children), SIGKILL it after `grace`."""
    if process.returncode is not None:
        return  # reaped already: its group id may be someone else's by now
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while not exited(process) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Children may outlive their master (a prefork child still in its task): the group is
    # killed whatever the master did; the master, a zombie at most, still holds the group's id.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


@contextlib.contextmanager
def process_group(
    name: str, args: list[str], env: dict[str, str], log_dir: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Run `args` in a process group of its own, output to `log_dir/name.log`; always stop it."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        RUNNING[name] = process.pid
        try:
            yield process, log_path
        finally:
            del RUNNING[name]
            stop_process_group(process)


def log_tail(path: Path, size: int = 3000) -> str:
    with contextlib.suppress(OSError):
        return path.read_bytes()[-size:].decode(errors="replace")
    return ""


def wait_until(
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    process: subprocess.Popen[bytes],
    log: Path,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if exited(process):
            sys.exit(f"{what} ended early:\n{log_tail(log)}")
        with contextlib.suppress(requests.RequestException, OSError):
            if ready():
                return
        time.sleep(0.2)
    sys.exit(f"{what} was not ready in {timeout:.0f} s:\n{log_tail(log)}")


def api_ready(base: str, api_key: str) -> bool:
    """Whether gunicorn at `base` serves the API to `api_key`; any answer but 200 (a missing
    migration, a refused key) ends the bench, as waiting longer would not change it."""
    response = requests.get(base + READY_PATH, headers={"X-API-Key": api_key}, timeout=5)
    if response.status_code != 200:
        sys.exit(f"gunicorn answered {response.status_code}: {response.text[:500]}")
    return True


@contextlib.contextmanager
def gunicorn(env: dict[str, str], workers: int, api_key: str, log_dir: Path) -> Iterator[str]:
    port = free_port()
    args = [
        *(sys.executable, "-m", "gunicorn", "mindo.wsgi"),
        *("--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class", "sync"),
        *("--timeout", str(GUNICORN_TIMEOUT_SECONDS), "--graceful-timeout", "5"),
    ]
    base = f"http://127.0.0.1:{port}"

    with process_group("gunicorn", args, env, log_dir) as (process, log):
        wait_until(lambda: api_ready(base, api_key), 60, "gunicorn", process, log)
        yield base


@contextlib.contextmanager
def sandbox(
    env: dict[str, str], webhook_url: str, log_dir: Path, phone_number_id: str
) -> Iterator[str]:
    """The Meta sandbox, unlimited (so it records whatever comes), no recipient made to fail
    (a `failed` webhook would turn a COMPLETED send PARTIAL), statuses posted to gunicorn; the
    bench organization's number and templates registered with it."""
    port = free_port()
    args = [
        *(sys.executable, "-m", "meta_sandbox", "--host", "127.0.0.1", "--port", str(port)),
        *("--webhook-url", webhook_url, "--rate-per-number", "0", "--fail-suffix", ""),
        *("--seed", "1", "--state-file", ""),
    ]
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        return requests.get(f"{base}/_sandbox/stats", timeout=5).ok

    with process_group("sandbox", args, env, log_dir) as (process, log):
        wait_until(ready, 60, "the sandbox", process, log)
        sandbox_register(base, phone_number_id)
        yield base


@contextlib.contextmanager
def celery_beat(env: dict[str, str], log_dir: Path) -> Iterator[None]:
    """Beat, as in production: its reaper finishes a send whose last message was settled by a
    webhook after the drain ended (an unanswered request that Meta had accepted), and hands
    back expired leases. Without it such a send would stay PROCESSING."""
    args = [
        *(sys.executable, "-m", "celery", "-A", "mindo", "beat", "--loglevel", "INFO"),
        *("--schedule", str(log_dir / "celerybeat-schedule")),
    ]
    # At INFO: readiness is read from the log (and the bench's LOG_LEVEL may be WARNING).
    with process_group("beat", args, {**env, "LOG_LEVEL": "INFO"}, log_dir) as (process, log):
        # Beat logs "beat: Starting..." once it runs its schedule.
        wait_until(lambda: b"Starting..." in log.read_bytes(), 60, "beat", process, log)
        yield


def celery_ready(log: Path) -> bool:
    # Celery logs "<hostname> ready." once its consumer takes tasks.
    return b" ready." in log.read_bytes()


@contextlib.contextmanager
def celery_workers(
    env: dict[str, str], log_dir: Path, *, count: int, concurrency: int, pacing: bool
) -> Iterator[None]:
    """`count` Celery worker instances of `--concurrency` each, ready to take tasks."""
    # At INFO: readiness is read from the log; a drain logs a line per batch.
    worker_env = {**env, "DELIVERY_PACING": "true" if pacing else "false", "LOG_LEVEL": "INFO"}
    with contextlib.ExitStack() as stack:
        started = []
        for index in range(count):
            name = f"worker{index + 1}-c{concurrency}"
            args = [
                *(sys.executable, "-m", "celery", "-A", "mindo", "worker", "--pool", "prefork"),
                *("--concurrency", str(concurrency), "--loglevel", "INFO"),
                # Its own name so two instances on one host do not clash; no gossip, mingle or
                # heartbeat: nothing here needs them and they slow the start.
                *("--hostname", f"drainbench-{name}-{os.getpid()}@%h"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ]
            started.append(stack.enter_context(process_group(name, args, worker_env, log_dir)))
        for process, log in started:
            wait_until(functools.partial(celery_ready, log), 90, log.stem, process, log)
        yield


@contextlib.contextmanager
def busy_loops(count: int) -> Iterator[None]:
    """`count` processes that keep a core busy each (`yes > /dev/null`), as other work on a loaded
    machine would; stopped on the way out."""
    loops = [
        subprocess.Popen(["yes"], stdout=subprocess.DEVNULL, start_new_session=True)
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for process in loops:
            stop_process_group(process, grace=2)


def cpu_used() -> dict[int, tuple[str, float]]:
    """By pid: the group name and CPU seconds used so far, for the live processes of each group
    this bench runs (the Celery workers as one) and the bench database's PostgreSQL backends."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        backends = {row[0] for row in cursor.fetchall()}
    names = {pgid: "workers" if n.startswith("worker") else n for n, pgid in RUNNING.items()}
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[int, tuple[str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            # The command name may hold spaces or parentheses: the fields start after the last ")".
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        pid = int(entry.name)
        name = names.get(int(fields[2])) or ("postgres" if pid in backends else None)
        if name is not None:
            used[pid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return used


def cpu_between(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds by group between two samples, process by process: one that ended meanwhile
    is lost (its last share), one that started is counted whole."""
    spent: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        earlier = before.get(pid)
        start = earlier[1] if earlier is not None and earlier[0] == name else 0.0
        spent[name] = spent.get(name, 0.0) + seconds - start
    return spent
