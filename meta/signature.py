"""Meta signs each webhook body: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`
keyed with the app secret."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_PREFIX = "sha256="


def sign(body: bytes, secret: str) -> str:
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_is_valid(body: bytes, header: str | None, secret: str) -> bool:
    """Constant-time check; a missing or malformed header is simply not valid."""
    if not header or not header.startswith(SIGNATURE_PREFIX) or not secret:
        return False
    return hmac.compare_digest(sign(body, secret), header.strip())
