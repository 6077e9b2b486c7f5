"""Where the catalog comes from and where it is kept.

At start the catalog is what the state file kept from earlier runs, with the accounts of the
`catalog` document and of `--catalog FILE` added over it. Then it changes only through the Graph
API (`registry`), and the catalog file's accounts are added again whenever the file changes.
After every change the whole catalog is written to the state file, atomically (a temporary file
renamed over it), so a sandbox stopped at any moment restarts with a whole catalog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from meta_sandbox.catalog import Catalog
from meta_sandbox.config import SandboxConfig

logger = logging.getLogger(__name__)


def _document_read(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


class CatalogStore:
    def __init__(self, config: SandboxConfig) -> None:
        self.catalog = Catalog()
        self.file_loads = 0
        self.file_errors = 0
        self._state_file = Path(config.state_file) if config.state_file else None
        self._catalog_file = Path(config.catalog_file) if config.catalog_file else None
        self._seed = config.catalog
        self._every = max(config.refresh_seconds, 0.1)
        self._mtime: float | None = None
        self._watcher: asyncio.Task[None] | None = None

    def load(self) -> None:
        """Build the catalog from the state file, the document and the catalog file; ValueError
        when one of them is not a catalog (a sandbox that knows nobody would answer 190)."""
        if self._state_file is not None and self._state_file.exists():
            self.catalog.merge(_document_read(self._state_file))
        if self._seed is not None:
            self.catalog.merge(self._seed)
        if self._catalog_file is not None:
            self._file_merge()
        self.save()

    def merge(self, document: Mapping[str, Any]) -> None:
        """Add a catalog document's accounts, all or (ValueError) none of them, and save."""
        Catalog().merge(document)
        self.catalog.merge(document)
        self.save()

    def save(self) -> None:
        if self._state_file is not None:
            document = self.catalog.document()
            _write_atomically(self._state_file, orjson.dumps(document, option=orjson.OPT_INDENT_2))

    def refresh_now(self) -> bool:
        """Read the catalog file again, changed or not; False when it could not be taken."""
        if self._catalog_file is None:
            return True
        try:
            self._file_merge()
        except (OSError, ValueError):
            logger.exception("Reading the sandbox catalog file failed; keeping the catalog.")
            self.file_errors += 1
            return False
        self.save()
        return True

    async def start(self) -> None:
        if self._catalog_file is not None:
            self._watcher = asyncio.create_task(self._watch(), name="sandbox-catalog-file")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    def _file_merge(self) -> None:
        assert self._catalog_file is not None
        mtime = os.stat(self._catalog_file).st_mtime
        document = _document_read(self._catalog_file)
        Catalog().merge(document)  # all or nothing: a bad file leaves the catalog as it was
        self.catalog.merge(document)
        self._mtime = mtime
        self.file_loads += 1

    async def _watch(self) -> None:
        assert self._catalog_file is not None
        while True:
            await asyncio.sleep(self._every)
            try:
                changed = os.stat(self._catalog_file).st_mtime != self._mtime
            except OSError:
                continue
            if changed:
                self.refresh_now()
