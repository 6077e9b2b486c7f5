"""Where the catalog comes from, and the thread that keeps it fresh.

By default the sandbox reads the project's database, as Meta knows the business's assets: every
WhatsAppBusinessAccount with its access token, numbers and templates (approved or not, so that a
send of an unapproved template gets Meta's 132001). A `--catalog FILE` replaces the database; the
file is read again when it changes.

The ORM is synchronous and refuses to run inside an event loop, so loads happen in a thread of
their own that also owns (and finally closes) its database connection.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from messaging.sandbox.catalog import Catalog, CatalogAccount, CatalogNumber, CatalogTemplate

logger = logging.getLogger(__name__)

FIRST_LOAD_TIMEOUT = 30.0


def catalog_from_database() -> Catalog:
    from django.db import close_old_connections

    from templates_app.models import WhatsAppBusinessAccount

    # Outside Django's request cycle nobody else drops a connection that broke or grew old.
    close_old_connections()

    accounts = []
    for account in WhatsAppBusinessAccount.objects.prefetch_related("phone_numbers", "templates"):
        numbers = tuple(
            CatalogNumber(
                phone_number_id=number.phone_number_id,
                waba_id=account.waba_id,
                display_phone_number=number.display_phone_number,
                verified_name=number.verified_name,
                quality_rating=number.quality_rating,
                messaging_limit_tier=number.messaging_limit_tier,
            )
            for number in account.phone_numbers.all()
        )
        templates = tuple(
            CatalogTemplate.build(
                id=template.meta_template_id or str(template.pk),
                name=template.name,
                language=template.language,
                category=template.category,
                status=template.status,
                components=list(template.components or []),
                parameter_format=template.parameter_format,
            )
            for template in account.templates.all()
        )
        accounts.append(
            CatalogAccount(
                waba_id=account.waba_id,
                access_token=account.access_token,
                numbers=numbers,
                templates=templates,
            )
        )
    return Catalog.of(accounts)


def close_database_connection() -> None:
    from django.db import connection

    connection.close()


class FileLoader:
    """Reads the catalog file, again only when its modification time changed."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._mtime: float | None = None
        self._catalog = Catalog()

    def __call__(self) -> Catalog:
        mtime = os.stat(self._path).st_mtime
        if mtime != self._mtime:
            self._catalog = Catalog.from_document(orjson.loads(self._path.read_bytes()))
            self._mtime = mtime
        return self._catalog


class CatalogSource:
    """The current catalog, reloaded every `every` seconds (or on demand) by a daemon thread.

    A failed reload is logged and the previous catalog kept; only a failed first load is fatal,
    since a sandbox that knows nobody would answer every send with 190.
    """

    def __init__(
        self,
        load: Callable[[], Catalog] | None,
        *,
        every: float,
        initial: Catalog | None = None,
        close: Callable[[], None] | None = None,
    ) -> None:
        self.current = initial or Catalog()
        self.loads = 0
        self.load_errors = 0
        self._load = load
        self._every = max(every, 0.1)
        self._close = close
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loading = False

    @classmethod
    def for_config(
        cls, *, catalog: Mapping[str, Any] | None, catalog_file: str | None, every: float
    ) -> CatalogSource:
        if catalog is not None:
            return cls(None, every=every, initial=Catalog.from_document(catalog))
        if catalog_file:
            return cls(FileLoader(catalog_file), every=every)
        return cls(catalog_from_database, every=every, close=close_database_connection)

    def start(self) -> None:
        """Load once (blocking, at most FIRST_LOAD_TIMEOUT), then keep refreshing."""
        if self._load is None:
            return
        self._thread = threading.Thread(target=self._run, name="sandbox-catalog", daemon=True)
        self._thread.start()
        with self._changed:
            self._changed.wait_for(
                lambda: self.loads or self.load_errors, timeout=FIRST_LOAD_TIMEOUT
            )
        if not self.loads:
            self.stop()
            raise RuntimeError("The sandbox could not load its catalog; see the log above.")

    def refresh_now(self, timeout: float = 10.0) -> bool:
        """Reload at once and wait for it; False when it failed or took too long."""
        if self._load is None:
            return True
        with self._changed:
            # A load already under way may have read before the caller's change: wait for the next.
            target = self.loads + self.load_errors + (2 if self._loading else 1)
            failures = self.load_errors
            self._wake.set()
            done = self._changed.wait_for(lambda: self.loads + self.load_errors >= target, timeout)
            return bool(done) and self.load_errors == failures

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)

    def _run(self) -> None:
        assert self._load is not None
        try:
            while not self._stopping.is_set():
                with self._changed:
                    self._loading = True
                try:
                    catalog = self._load()
                except Exception:
                    logger.exception("Loading the sandbox catalog failed; keeping the last one.")
                    with self._changed:
                        self.load_errors += 1
                        self._loading = False
                        self._changed.notify_all()
                else:
                    with self._changed:
                        self.current = catalog
                        self.loads += 1
                        self._loading = False
                        self._changed.notify_all()
                self._wake.wait(self._every)
                self._wake.clear()
        finally:
            if self._close is not None:
                self._close()
