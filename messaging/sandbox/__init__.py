"""The Meta sandbox: a local stand-in for the WhatsApp Cloud (Graph) API.

It speaks what the service uses: `POST /{version}/{phone_number_id}/messages` (template sends),
`GET /{version}/{waba_id}/message_templates` and `GET /{version}/{waba_id}/phone_numbers`. It
answers like Meta (wamids, Meta's error bodies and codes, 130429 above a number's rate), and
posts signed status webhooks (sent, delivered, read, failed) back to the service after
configurable delays. Faults (errors, 502s, slow answers, timeouts, dropped connections) can be
switched on by share. `/_sandbox/...` lets tests and benchmarks inspect and steer it.

Run it with `manage.py meta_sandbox`, or in-process with `SandboxThread`; see those for details.
"""

from __future__ import annotations

from messaging.sandbox.config import SandboxConfig
from messaging.sandbox.server import SandboxThread, make_app

__all__ = ["SandboxConfig", "SandboxThread", "make_app"]
