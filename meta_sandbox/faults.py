"""Drawing the transient faults of a send from the configured shares."""

from __future__ import annotations

import enum
import random

from meta_sandbox.config import SandboxConfig


class Fault(enum.Enum):
    ERROR = "error"  # HTTP 500 with Meta's 131000: nothing recorded
    HTTP_5XX = "http_5xx"  # a bare 502 from a proxy, HTML body: nothing recorded
    TIMEOUT = "timeout"  # no answer for timeout_seconds, then the connection closed
    DROP = "drop"  # accepted and recorded, then the connection closed unanswered
    SLOW = "slow"  # accepted, answered after slow_seconds


def fault_draw(config: SandboxConfig, rng: random.Random) -> Fault | None:
    """One fault or none; the shares of the first four add up, slow is drawn apart."""
    draw = rng.random()
    for fault, share in (
        (Fault.ERROR, config.error_share),
        (Fault.HTTP_5XX, config.http_5xx_share),
        (Fault.TIMEOUT, config.timeout_share),
        (Fault.DROP, config.drop_share),
    ):
        if draw < share:
            return fault
        draw -= share
    if config.slow_share and rng.random() < config.slow_share:
        return Fault.SLOW
    return None
