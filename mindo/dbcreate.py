"""Create the database named by DATABASE_URL when it does not exist (`python -m mindo.dbcreate`).

Used by ./dev on a fresh machine; it connects to the server's `postgres` database to do it.
"""

from __future__ import annotations

import os

import environ
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo


def main() -> None:
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mindo")
    config = environ.Env.db_url_config(url)
    parts = {"HOST": "host", "PORT": "port", "USER": "user", "PASSWORD": "password"}
    conninfo = make_conninfo(
        dbname="postgres",
        **{key: str(config[name]) for name, key in parts.items() if config.get(name)},
    )
    name = config["NAME"]
    with psycopg.connect(conninfo, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")


if __name__ == "__main__":
    main()
