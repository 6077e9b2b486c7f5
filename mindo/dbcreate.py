"""Create the database named by DATABASE_URL when it does not exist (`python -m mindo.dbcreate`).

Used by ./dev on a fresh machine; it connects to the server's `postgres` database to do it.
"""

from __future__ import annotations

import os

import environ
import psycopg
from psycopg import sql


def main() -> None:
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mindo")
    config = environ.Env.db_url_config(url)
    connection_args = {
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
    }
    name = config["NAME"]
    with psycopg.connect(dbname="postgres", autocommit=True, **connection_args) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")


if __name__ == "__main__":
    main()
