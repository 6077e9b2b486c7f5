"""What the bench scripts share: running the project's commands, provisioning, printing tables."""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = "welcome_message"
# Production as the benches measure it (DEBUG off) over plain HTTP on the loopback: secrets of
# their own, since production refuses the development ones, and no redirect to HTTPS.
PRODUCTION_ENV = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "META_APP_SECRET": "bench-only-app-secret-0123456789abcdef",
    "META_VERIFY_TOKEN": "bench-only-verify-token",
    "DJANGO_SECURE_SSL_REDIRECT": "false",
}


def run_command(args: list[str], env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


@dataclass(frozen=True)
class Demo:
    api_key: str
    phone_number_id: str
    language: str


def provision(env: dict[str, str], org: str) -> Demo:
    """Create and migrate the bench database, and a demo organization `org` in it."""
    python = sys.executable
    run_command([python, "-m", "mindo.dbcreate"], env)
    run_command([python, "manage.py", "migrate", "--no-input", "-v0"], env)
    return provision_another(env, org)


def _demo_of(out: str) -> Demo:
    """The demo organization `manage.py demo --json` printed."""
    # The JSON is the command's last line; anything before it is informational.
    data = orjson.loads(out.strip().splitlines()[-1])
    languages = [t["language"] for t in data["templates"] if t["name"] == TEMPLATE]
    if not languages:
        sys.exit(f"the demo organization has no {TEMPLATE} template: {data['templates']}")
    return Demo(data["api_key"], str(data["phone_number_id"]), languages[0])


def provision_another(env: dict[str, str], org: str) -> Demo:
    """Another demo organization `org` in the database `provision` made."""
    out = run_command([sys.executable, "manage.py", "demo", "--json", "--org", org], env)
    return _demo_of(out)


def django_setup(env: dict[str, str]) -> None:
    """Use the bench database from this process too (cleanup, polling, in-process phases)."""
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mindo.settings")
    import django

    django.setup()


def rows_copy(table: str, columns: str, rows: Iterable[tuple[Any, ...]]) -> None:
    """COPY `rows` into `columns` of `table` on Django's connection, in the caller's
    transaction: the benches fill their tables this way, far faster than INSERTs."""
    from django.db import connection

    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


@functools.cache
def baseline_connection() -> psycopg.Connection[Any]:
    """The one autocommit connection of a bench's bare WSGI baseline app (DATABASE_URL)."""
    url = os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1)
    return psycopg.connect(url, autocommit=True)


def sandbox_register(meta: str, phone_number_id: str) -> None:
    """Register the account of `phone_number_id` (its token, numbers and templates) with the
    sandbox at `meta`, as `demo` registers its own with the sandbox of `./dev up`; after
    `django_setup`."""
    from django.test import override_settings

    from templates_app.meta_publish import sandbox_catalog_publish
    from templates_app.models import WhatsAppBusinessAccount

    account = WhatsAppBusinessAccount.objects.get(phone_numbers__phone_number_id=phone_number_id)
    with override_settings(META_GRAPH_URL=meta):
        sandbox_catalog_publish(account)


def sig3(value: float) -> str:
    """`value` with 3 significant digits and no exponent: 0.412, 4.12, 24300."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = 2 - math.floor(math.log10(abs(value)))
    rounded = round(value, decimals)
    return f"{rounded:.{decimals}f}" if decimals > 0 else f"{round(rounded):d}"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    sys.stdout.flush()


_PORTS_GIVEN: set[int] = set()


def free_port() -> int:
    """A free port: the first of BENCH_PORTS (`low-high`) when set, so benches sharing a machine
    stay in their own ranges; else any the system gives."""
    low, _, high = os.environ.get("BENCH_PORTS", "").partition("-")
    candidates = range(int(low), int(high) + 1) if low and high else [0]
    for port in candidates:
        # A port handed out a moment ago may not be bound yet by the server it was given to.
        if port in _PORTS_GIVEN:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            given = int(sock.getsockname()[1])
            _PORTS_GIVEN.add(given)
            return given
    sys.exit(f"no free port in BENCH_PORTS={os.environ['BENCH_PORTS']}")


def add_service_arguments(
    parser: argparse.ArgumentParser,
    *,
    database: str,
    database_variable: str = "BENCH_DATABASE_URL",
    redis_url: str = "redis://127.0.0.1:6379/14",
) -> None:
    """`--database-url` (the bench's own database, `database` unless `database_variable` is set)
    and `--redis-url` (BENCH_REDIS_URL, else `redis_url`)."""
    parser.add_argument(
        "--database-url",
        default=os.environ.get(database_variable, f"postgres://postgres@127.0.0.1:5432/{database}"),
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", redis_url))


def bench_database(database_url: str) -> str:
    """The name of the database a bench fills and drops; exits unless the name says `bench`, so
    no bench ever empties a database that is not its own."""
    database = urlsplit(database_url).path.lstrip("/")
    if "bench" not in database:
        sys.exit(f"refusing to fill and drop database {database!r}: name one with 'bench'")
    return database


def bench_database_from_args(args: argparse.Namespace) -> str:
    """`bench_database(args.database_url)`, after making SIGTERM end the bench through its
    `finally` blocks: a plain SIGTERM would end Python without them and leave servers running."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return bench_database(args.database_url)


def bench_env(database_url: str, redis_url: str) -> dict[str, str]:
    """The environment of a bench's servers and commands: its own database and Redis, no debug."""
    return {
        **os.environ,
        **PRODUCTION_ENV,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }


@contextlib.contextmanager
def gunicorn(
    app: str,
    env: dict[str, str],
    workers: int,
    log_dir: Path,
    *,
    options: tuple[str, ...] = (),
    timeout: int = 60,
    port: int = 0,
) -> Iterator[str]:
    """Run gunicorn serving `app` in its own process group (sync workers, `options` added) on
    `port` (any free one when 0); yield its base URL; always stop it. A worker is killed after
    `timeout` seconds on one request."""
    port = port or free_port()
    args = [
        *(sys.executable, "-m", "gunicorn", app),
        *("--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class", "sync"),
        *("--timeout", str(timeout), "--graceful-timeout", "5"),
        *("--error-logfile", str(log_dir / f"{app}.log")),
        *options,
    ]
    # Its standard output (the access log, with mindo.gunicorn_conf) goes to the log folder.
    with (log_dir / f"{app}.out").open("wb") as out:
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(process)
        if process.returncode not in (0, -signal.SIGTERM):
            print(f"gunicorn ended with {process.returncode}; its log: {log_dir / f'{app}.log'}")


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a server's group (master and workers), SIGKILL it if it is not gone in 15 s."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def database_drop(database_url: str) -> None:
    """Drop a bench's own database (closing Django's connections to it first)."""
    from django.conf import settings
    from django.db import connections

    if settings.configured:  # an interrupted run may not have come that far
        connections.close_all()
    server = urlsplit(database_url)._replace(path="/postgres", scheme="postgresql").geturl()
    with psycopg.connect(server, autocommit=True) as connection:
        name = urlsplit(database_url).path.lstrip("/")
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
    print(f"dropped database {name}")


def in_process_arguments(
    parser: argparse.ArgumentParser, *, org: str, database: str, database_variable: str
) -> None:
    """The options of a bench that calls the service in its own process (`in_process_service`):
    `--rounds`, `--keep`, `--org` and the service's."""
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--org", default=org, help="organization provisioned by `demo`")
    add_service_arguments(parser, database=database, database_variable=database_variable)


@contextlib.contextmanager
def in_process_service(args: argparse.Namespace) -> Iterator[tuple[Demo, Any]]:
    """The bench's own database, migrated and provisioned with the organization `args.org`, and
    Django set up on it in this process; yields the organization and a test client sending its
    key (requests go through every middleware and view, without a server). No worker runs: the
    wake-ups go to an in-memory broker. The database is dropped at the end unless `--keep`."""
    database = bench_database_from_args(args)
    env = {
        **bench_env(args.database_url, args.redis_url),
        "PYTHONWARNINGS": "ignore",
        "CELERY_BROKER_URL": "memory://",
    }
    print(f"database {database}, load {os.getloadavg()}")
    try:
        demo = provision(env, args.org)
        django_setup(env)
        from django.test import Client

        yield demo, Client(SERVER_NAME="127.0.0.1", HTTP_X_API_KEY=demo.api_key)
    finally:
        if args.keep:
            print(f"kept database {database}")
        else:
            database_drop(args.database_url)
