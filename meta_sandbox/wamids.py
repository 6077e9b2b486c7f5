"""Message ids shaped like Meta's: `wamid.` + standard base64 of a small binary record.

Meta's record holds the recipient and a hex id, e.g. `wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTND...`.
Here the id is raw bytes (a random per-process prefix and a counter), so ids are unique within a
run and, with near certainty, across runs, and they often contain `+`, `/` and `=` padding,
which a client must store and look up verbatim.
"""

from __future__ import annotations

import base64
import itertools
import os

_HEAD = b"\x1c\x18"
_MIDDLE = b"\x15\x02\x00\x11\x18\x12"


class WamidFactory:
    def __init__(self) -> None:
        self._prefix = os.urandom(6)
        self._counter = itertools.count(1)

    def new(self, wa_id: str) -> str:
        recipient = wa_id.encode()[:255]
        serial = next(self._counter).to_bytes(8, "big")
        record = _HEAD + bytes([len(recipient)]) + recipient + _MIDDLE + self._prefix + serial
        return "wamid." + base64.b64encode(record + b"\x00").decode()
