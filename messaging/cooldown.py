"""Meta's per-user marketing limit (131049): a cooldown per recipient with growing waits.

Meta answers 131049 ("not delivered to maintain healthy ecosystem engagement") when a user has
had enough marketing lately. Trying again within hours only draws the same answer, and trying
for ever never ends the send. So each answer puts the recipient on a cooldown for the business
account (`MarketingCooldown`): 4 h the first time, 12 h the second, 24 h the third; at the next
answer the message fails as "capped by Meta" with code 131049. While a recipient cools down, the
drain does not claim marketing messages to them (`cooling_until`): they stay pending, untried,
until the cooldown ends. An episode is over once its last cooldown ended a whole longest step
ago: the next 131049 starts again at 4 h.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import connection

from messaging.counters import STATUS_SQL, SendDeltas, deltas_move
from messaging.models import MarketingCooldown, MessageStatus, recipient_sql
from messaging.status import Moves, table_names, transaction_required

COOLDOWN_STEPS = (timedelta(hours=4), timedelta(hours=12), timedelta(hours=24))
# An episode ends when its last cooldown ended this long ago.
EPISODE_GAP = COOLDOWN_STEPS[-1]
CAPPED_CODE = "131049"
CAPPED_TEXT = (
    "Capped by Meta: its per-user marketing limit held this message back {strikes} times "
    "(131049), after waits of 4 h, 12 h and 24 h; not tried again."
)

# 1. The deferred messages (still ours: `sending`), with their account and phone.
# 2. Their cooldowns: a new one, a new episode (the last ended long ago), one more strike (the
#    last wait is over), or unchanged (another message's answer already started this wait).
# 3. Each message waits for its recipient's cooldown, or fails once the steps are spent.
# A cooldown's start or next step, for the (account, recipient) rows of CTE `deferred`.
_BUMP_SQL = """
    INSERT INTO {cooldowns} AS c (business_account_id, phone, strikes, until, updated_at)
    SELECT DISTINCT business_account_id, recipient, 1, %(now)s + %(first)s, %(now)s
      FROM deferred
    ON CONFLICT (business_account_id, phone) DO UPDATE SET
        strikes = CASE WHEN c.until < %(now)s - %(gap)s THEN 1
                       WHEN c.until > %(now)s THEN c.strikes
                       ELSE c.strikes + 1 END,
        until = CASE WHEN c.until < %(now)s - %(gap)s THEN %(now)s + %(first)s
                     WHEN c.until > %(now)s THEN c.until
                     ELSE %(now)s + (%(steps)s::interval[])[LEAST(c.strikes + 1, %(n)s)] END,
        updated_at = %(now)s
    RETURNING business_account_id, phone, strikes, until"""

_DEFER_SQL = f"""
WITH deferred AS (
    SELECT id, business_account_id, {{recipient}} AS recipient FROM {{messages}}
     WHERE id = ANY(%(ids)s::bigint[]) AND status = {{SENDING}}
), bumped AS ({_BUMP_SQL}
)
UPDATE {{messages}} m SET
    status = CASE WHEN b.strikes > %(n)s THEN {{FAILED}} ELSE {{PENDING}} END,
    next_attempt_at = CASE WHEN b.strikes > %(n)s THEN NULL ELSE b.until END,
    failed_at = CASE WHEN b.strikes > %(n)s THEN %(now)s ELSE m.failed_at END,
    error_code = CASE WHEN b.strikes > %(n)s THEN %(code)s ELSE m.error_code END,
    error_message = CASE WHEN b.strikes > %(n)s THEN replace(%(text)s, '{{{{strikes}}}}',
                                                             b.strikes::text)
                         ELSE m.error_message END,
    lease_expires_at = NULL
  FROM deferred d JOIN bumped b
    ON b.business_account_id = d.business_account_id AND b.phone = d.recipient
 WHERE m.id = d.id AND m.status = {{SENDING}}
RETURNING m.bulk_send_id, m.status, m.id
"""

# Meta may also answer 131049 in a `failed` status webhook, for a message it had accepted: the
# message stays failed (status never moves back), and its recipient's cooldown starts or steps
# up as for the synchronous answer, so the next marketing message to them waits.
_FROM_FAILED_STATUSES_SQL = f"""
WITH deferred AS (
    SELECT business_account_id, {{recipient}} AS recipient FROM {{messages}}
     WHERE wamid = ANY(%(wamids)s::text[]) AND status = {{FAILED}} AND error_code = %(code)s
), bumped AS ({_BUMP_SQL}
)
SELECT count(*) FROM bumped
"""


def _sql(template: str) -> str:
    return template.format(
        **table_names(),
        **STATUS_SQL,
        cooldowns=MarketingCooldown._meta.db_table,
        recipient=recipient_sql(),
    )


def _step_params(now: datetime) -> dict[str, Any]:
    return {
        "now": now,
        "first": COOLDOWN_STEPS[0],
        "gap": EPISODE_GAP,
        "steps": list(COOLDOWN_STEPS),
        "n": len(COOLDOWN_STEPS),
    }


def cooldowns_from_failed_statuses(wamids: list[str], *, now: datetime) -> int:
    """Start (or step up) the cooldown of the recipients of messages a status webhook failed
    with 131049; call it once the statuses are applied. Returns how many cooldowns changed."""
    if not wamids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            _sql(_FROM_FAILED_STATUSES_SQL),
            {**_step_params(now), "wamids": wamids, "code": CAPPED_CODE},
        )
        changed: int = cursor.fetchone()[0]
    return changed


def messages_defer(
    message_ids: list[int], *, now: datetime, moves: Moves | None = None
) -> SendDeltas:
    """Settle messages Meta answered 131049: each waits for its recipient's cooldown, or fails
    as capped once the steps are spent. Returns how the counters moved (failures only: waiting
    is pending, as `sending` was), and adds the failed ones to `moves`. Runs in the caller's
    transaction."""
    transaction_required()
    if not message_ids:
        return {}
    params: dict[str, Any] = {
        **_step_params(now),
        "ids": message_ids,
        "code": CAPPED_CODE,
        "text": CAPPED_TEXT,
    }
    counters: SendDeltas = {}
    with connection.cursor() as cursor:
        cursor.execute(_sql(_DEFER_SQL), params)
        for bulk_send_id, status, message_id in cursor.fetchall():
            if status == MessageStatus.FAILED:
                deltas_move(counters, str(bulk_send_id), MessageStatus.SENDING, status)
                if moves is not None:
                    moves[message_id] = (str(bulk_send_id), MessageStatus.SENDING, status)
    return counters


def cooling_until(
    *, business_account_id: int, phones: Iterable[str], now: datetime
) -> dict[str, datetime]:
    """The recipients among `phones` cooling down at `now`, with the end of their cooldown."""
    return dict(
        MarketingCooldown.objects.filter(
            business_account_id=business_account_id, phone__in=list(phones), until__gt=now
        ).values_list("phone", "until")
    )
