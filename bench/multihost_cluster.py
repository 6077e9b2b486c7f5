"""What bench/multihost.py runs its scenarios on: the hosts (the network namespaces multihost.sh
built), the shared services on the bridge address (PgBouncer, a redis-server, the Meta sandbox),
and gunicorn, the Celery workers and the reaper on the hosts."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import requests

from bench.drain_processes import api_ready, celery_ready, process_group, wait_until
from bench.drain_support import ORG, say
from bench.support import PRODUCTION_ENV, Demo, django_setup, provision, sandbox_register

# The script whose `reaper` command runs the reaper loop on a host.
SCRIPT = Path(__file__).resolve().parent / "multihost.py"
WEB_PORT = 8000
PGBOUNCER = "/usr/sbin/pgbouncer"


@dataclass(frozen=True)
class Host:
    namespace: str
    address: str
    link: str = ""  # the bridge's port of its veth pair: what a cut sets down

    @classmethod
    def parse(cls, text: str) -> Host:
        parts = text.split("=")
        if len(parts) not in (2, 3) or not all(parts):
            raise argparse.ArgumentTypeError(f"{text!r}: NAMESPACE=ADDRESS[=LINK]")
        return cls(*parts)

    def command(self, args: list[str]) -> list[str]:
        """`args` run inside this host's network namespace."""
        return ["ip", "netns", "exec", self.namespace, *args]

    @property
    def name(self) -> str:
        return self.namespace.removeprefix("mh-")


def free_port_on(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def link_set(link: str, state: str) -> None:
    subprocess.run(["ip", "link", "set", link, state], check=True)


# --- the shared services, on the bridge address --------------------------------------------------


@contextlib.contextmanager
def pgbouncer(address: str, idle_transaction_seconds: int, logs: Path) -> Iterator[int]:
    """Debian's PgBouncer in session mode on `address`, forwarding every database to the
    machine's PostgreSQL on 127.0.0.1 (which trusts local clients, as PgBouncer here trusts
    its own). As root it runs as postgres (it refuses root), its files readable by that user."""
    port = free_port_on(address)
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-", dir=logs))
    folder.chmod(0o777)  # its own user writes the log there
    (folder / "userlist.txt").write_text('"postgres" ""\n')
    config = folder / "pgbouncer.ini"
    config.write_text(
        "\n".join(
            [
                "[databases]",
                "* = host=127.0.0.1 port=5432",
                "[pgbouncer]",
                f"listen_addr = {address}",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {folder / 'userlist.txt'}",
                "pool_mode = session",
                "default_pool_size = 80",
                "max_client_conn = 400",
                f"idle_transaction_timeout = {idle_transaction_seconds}",
                f"logfile = {folder / 'pgbouncer.log'}",
                "",
            ]
        )
    )
    for path in folder.iterdir():
        path.chmod(0o644)
    as_user = ["-u", "postgres"] if os.geteuid() == 0 else []
    with process_group("pgbouncer", [PGBOUNCER, *as_user, str(config)], dict(os.environ), logs) as (
        process,
        log,
    ):

        def ready() -> bool:
            try:
                with psycopg.connect(
                    host=address, port=port, user="postgres", dbname="postgres", connect_timeout=5
                ):
                    return True
            except psycopg.OperationalError:
                return False

        wait_until(ready, 30, "pgbouncer", process, log)
        yield port


@contextlib.contextmanager
def redis_server(address: str, logs: Path) -> Iterator[int]:
    """A redis-server of the bench's own on `address`: nothing kept on disk."""
    import redis

    port = free_port_on(address)
    args = [
        *("redis-server", "--bind", address, "--port", str(port), "--save", ""),
        *("--appendonly", "no", "--protected-mode", "no", "--daemonize", "no"),
    ]
    with process_group("redis", args, dict(os.environ), logs) as (process, log):

        def ready() -> bool:
            client = redis.Redis(host=address, port=port, socket_timeout=2)
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False
            finally:
                client.close()

        wait_until(ready, 30, "redis-server", process, log)
        yield port


@contextlib.contextmanager
def sandbox(
    env: dict[str, str], address: str, webhook_url: str, read_after: float, logs: Path
) -> Iterator[str]:
    """The Meta sandbox on the bridge address: unlimited (it records whatever comes), no
    recipient made to fail, statuses posted to the web host, reads `read_after` seconds late."""
    port = free_port_on(address)
    args = [
        *(sys.executable, "-m", "meta_sandbox", "--host", address, "--port", str(port)),
        *("--webhook-url", webhook_url, "--rate-per-number", "0", "--fail-suffix", ""),
        *("--read-after", str(read_after), "--seed", "1", "--state-file", ""),
    ]
    base = f"http://{address}:{port}"
    with process_group("sandbox", args, env, logs) as (process, log):
        wait_until(
            lambda: requests.get(f"{base}/_sandbox/stats", timeout=5).ok,
            60,
            "the sandbox",
            process,
            log,
        )
        yield base


@contextlib.contextmanager
def gunicorn(
    host: Host, env: dict[str, str], workers: int, api_key: str, logs: Path
) -> Iterator[str]:
    """gunicorn on the web host, as production runs it (`-c python:mindo.gunicorn_conf`)."""
    args = host.command(
        [
            *(sys.executable, "-m", "gunicorn", "-c", "python:mindo.gunicorn_conf", "mindo.wsgi"),
            *("--bind", f"{host.address}:{WEB_PORT}", "--workers", str(workers)),
            *("--worker-class", "sync", "--timeout", "300", "--graceful-timeout", "5"),
        ]
    )
    base = f"http://{host.address}:{WEB_PORT}"

    with process_group(f"gunicorn-{host.name}", args, env, logs) as (process, log):
        wait_until(lambda: api_ready(base, api_key), 90, "gunicorn", process, log)
        yield base


@contextlib.contextmanager
def celery_worker(host: Host, env: dict[str, str], logs: Path) -> Iterator[Path]:
    """A Celery worker on `host`, as tests/test_drain_workers.py starts them; yields its log."""
    name = f"worker-{host.name}"
    args = host.command(
        [
            *(sys.executable, "-m", "celery", "-A", "mindo", "worker", "--pool", "prefork"),
            *("--concurrency", "1", "-Q", "celery", "--loglevel", "INFO"),
            *("--hostname", f"multihost-{host.name}@{host.address}"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ]
    )
    with process_group(name, args, env, logs) as (process, log):
        wait_until(lambda: celery_ready(log), 120, name, process, log)
        yield log


@contextlib.contextmanager
def reaper(host: Host, env: dict[str, str], interval: float, logs: Path) -> Iterator[None]:
    """Beat's part on `host`: `bulksend.tasks.reap` every `interval` seconds (this script's
    `reaper` command); its wake-ups go through the broker like beat's."""
    args = host.command([sys.executable, str(SCRIPT), "reaper", "--interval", str(interval)])
    with process_group(f"reaper-{host.name}", args, env, logs) as (process, log):
        wait_until(lambda: b"reaper running" in log.read_bytes(), 60, "the reaper", process, log)
        yield


def reaper_loop(interval: float) -> None:
    """`multihost.py reaper`: run the reaper task every `interval` seconds until killed."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mindo.settings")
    import django

    django.setup()
    from bulksend import tasks

    print("reaper running", flush=True)
    while True:
        started = time.monotonic()
        try:
            tasks.reap()
        except Exception as error:  # a failed run is printed; the next one tries again
            print(f"reaper: {error!r}", flush=True)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


# --- the cluster ---------------------------------------------------------------------------------


@dataclass
class Cluster:
    demo: Demo
    web: str
    meta: str
    workers: list[tuple[Host, Path]]  # each worker host and its log
    logs: Path


@contextlib.contextmanager
def cluster_started(args: argparse.Namespace, database: str, logs: Path) -> Iterator[Cluster]:
    """The services on the bridge address and the hosts' processes, as multihost.py's options
    say; all of them stopped on the way out."""
    bridge = args.bridge_address
    with contextlib.ExitStack() as stack:
        pg_port = stack.enter_context(pgbouncer(bridge, args.idle_transaction_seconds, logs))
        redis_port = stack.enter_context(redis_server(bridge, logs))
        redis_url = f"redis://{bridge}:{redis_port}/1"
        common = {
            **os.environ,
            **PRODUCTION_ENV,
            "DJANGO_SETTINGS_MODULE": "mindo.settings",
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": redis_url,
            "DJANGO_ALLOWED_HOSTS": f"{args.web.address},127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "BULK_SEND_MAX_RECIPIENTS": str(max(args.recipients, 100_000)),
            "DELIVERY_LEASE_SECONDS": str(args.lease_seconds),
            "DELIVERY_CALLBACK_GRACE_SECONDS": str(args.grace_seconds),
        }
        # The driver reaches PostgreSQL directly; the hosts through PgBouncer on the bridge.
        driver_env = {**common, "DATABASE_URL": args.database_url}
        hosts_env = {
            **common,
            "DATABASE_URL": f"postgres://postgres@{bridge}:{pg_port}/{database}",
        }
        say(f"PgBouncer {bridge}:{pg_port} (session mode), Redis {redis_url}")
        demo = provision(driver_env, ORG)
        django_setup(driver_env)
        web = stack.enter_context(
            gunicorn(args.web, hosts_env, args.web_workers, demo.api_key, logs)
        )
        read_after = args.lease_seconds + args.grace_seconds + 5
        meta = stack.enter_context(
            sandbox(driver_env, bridge, f"{web}/webhooks/meta/", read_after, logs)
        )
        sandbox_register(meta, demo.phone_number_id)
        worker_env = {
            **hosts_env,
            "META_GRAPH_URL": meta,
            "DELIVERY_PACING": "true",
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "LOG_LEVEL": "INFO",  # readiness and the batch lines are read from the log
        }
        workers = [
            (host, stack.enter_context(celery_worker(host, worker_env, logs)))
            for host in args.worker
        ]
        stack.enter_context(
            reaper(args.web, {**hosts_env, "LOG_LEVEL": "INFO"}, args.reaper_seconds, logs)
        )
        say(
            f"web {web}, sandbox {meta}, workers on "
            + ", ".join(f"{host.name} {host.address}" for host, _ in workers)
            + f"; lease {args.lease_seconds} s, grace {args.grace_seconds} s, reaper every "
            f"{args.reaper_seconds:g} s"
        )
        yield Cluster(demo, web, meta, workers, logs)
