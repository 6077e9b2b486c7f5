"""Meta's side of the webhook signature: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256>` of the
raw body, keyed with the app secret. The service checks it with its own code; the sandbox signs
with this one, so a mistake on either side shows up as a refused webhook."""

from __future__ import annotations

import hashlib
import hmac


def signature_header(body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
