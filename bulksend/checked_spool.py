"""A streamed send's checked recipients, kept in a temporary file between their check and their
messages' COPY, so the body is parsed once for both.

Parsing a recipient again from the body (ijson, then its maps rebuilt) cost more than its
check; the clean recipients are written here instead, a batch at a time, as `marshal` data of
plain tuples (C-speed both ways, exact for the strings, dicts and None a Recipient holds), and
read back a batch at a time, so memory stays one batch whatever the send's size. The file has no
name: it is gone from the disk once closed, or when the process dies.
"""

from __future__ import annotations

import marshal
import tempfile
from collections.abc import Iterator

from bulksend.recipients import Recipient


class CheckedSpool:
    """Batches of checked recipients, appended in order, then read back in the same order."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as its request)
        self._sizes: list[int] = []

    def append(self, recipients: list[Recipient]) -> None:
        rows = [
            (recipient.phone, recipient.variables, recipient.button_variables, recipient.user_id)
            for recipient in recipients
        ]
        data = marshal.dumps(rows)
        self._file.write(data)
        self._sizes.append(len(data))

    def batches(self) -> Iterator[list[Recipient]]:
        """The batches as appended (the file is read from its start each time)."""
        self._file.seek(0)
        for size in self._sizes:
            # Read whole, then loaded: marshal.load reads a file value by value, five times slower.
            yield [Recipient(*row) for row in marshal.loads(self._file.read(size))]

    def close(self) -> None:
        self._file.close()
