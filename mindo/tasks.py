"""Beat's housekeeping of mindo's tables: at DEBUG when there was nothing to do."""

from __future__ import annotations

import logging

from celery import shared_task

from mindo.idempotency import idempotency_keys_purge

logger = logging.getLogger(__name__)


@shared_task(name="mindo.purge_idempotency_keys", ignore_result=True)
def purge_idempotency_keys() -> int:
    """Idempotency keys past their 24 hours."""
    deleted = idempotency_keys_purge()
    logger.log(
        logging.INFO if deleted else logging.DEBUG,
        "Purged %d expired idempotency keys",
        deleted,
        extra={"idempotency_keys": deleted},
    )
    return deleted
