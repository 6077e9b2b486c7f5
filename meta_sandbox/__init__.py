"""The Meta sandbox: a local stand-in for the WhatsApp Cloud (Graph) API.

It speaks what the service uses: `POST /{version}/{phone_number_id}/messages` (template sends),
`GET /{version}/{waba_id}/message_templates` and `GET /{version}/{waba_id}/phone_numbers`. It
keeps its own catalog of accounts, numbers and templates, filled as Meta's is (`registry`: the
Graph API's template and phone-number creation) or from a file, and checks what it receives by
Meta's rules written here (`templates`, `validation`), never with the service's code: it imports
nothing of the service, being Meta's side of the wire.

It answers like Meta (wamids, Meta's error bodies and codes, 130429 above a number's rate), and
posts signed status webhooks (sent, delivered, read, failed) back to the service after
configurable delays. Faults (errors, 502s, slow answers, timeouts, dropped connections) can be
switched on by share. `/_sandbox/...` lets tests and benchmarks inspect and steer it.

Run it with `python -m meta_sandbox`, or in-process with `SandboxThread`; see those for details.
"""

from __future__ import annotations

from meta_sandbox.config import SandboxConfig
from meta_sandbox.server import SandboxThread, make_app

__all__ = ["SandboxConfig", "SandboxThread", "make_app"]
