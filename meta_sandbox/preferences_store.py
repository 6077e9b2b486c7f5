"""Who stopped a business's marketing messages, as the sandbox remembers it (see
`preferences`)."""

from __future__ import annotations


class Preferences:
    """(waba_id, wa_id) pairs of users who stopped the business's marketing messages."""

    def __init__(self) -> None:
        self._stopped: set[tuple[str, str]] = set()

    def stopped(self, waba_id: str, wa_id: str) -> bool:
        return (waba_id, wa_id) in self._stopped

    def set(self, waba_id: str, wa_id: str, *, stop: bool) -> None:
        if stop:
            self._stopped.add((waba_id, wa_id))
        else:
            self._stopped.discard((waba_id, wa_id))
