"""Who takes a place in the portfolio's 24 h messaging limit, as SQL shared by the quota figures
(`quota`) and the admission of messages about to go out (`admission`).

Meta counts, per business portfolio and over a moving 24 h, the unique people it delivered
messages to outside a customer-service window (developers.facebook.com/documentation/
business-messaging/whatsapp/messaging-limits). A person's window with a number opens when they
write to that number and stays open for 24 h after their last message (the inbound messages
`messaging.inbound` records, kept per number). So:

- a message sent while its recipient's window with the sending number was open cost nothing,
  and costs nothing later either, even once the window has closed (`_FREE_SENT`);
- a recipient whose window with the sending number is open now costs nothing to send to now.

The inbound messages read are those to the portfolio's numbers since 48 h ago: the oldest sent
message the quota window holds is 24 h old, and a window open at its time opened at most 24 h
before that. The index `inbound_number_sent_at` makes that one range scan per number.

A recipient is a phone or a business-scoped user id (meta.user_ids): "the recipient" below is
`recipient_sql` (the one of the two a message has; they never look alike), and an inbound message
opens the window of both the phone and the user id it names.

Parameters every statement takes: `account`, `since` (now - 24 h), `inbound_since` (now - 48 h),
`open_since` (now - 24 h: an inbound message later than it holds a window open now), `window`
(24 h, as an interval).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bulksend.models import ACTIVE_STATUSES, BulkSend
from messaging.counters import sql_in
from messaging.models import InboundMessage, Message, MessagePhase, MessageStatus, recipient_sql
from templates_app.models import PhoneNumber

WINDOW = timedelta(hours=24)


def window_params(*, account_id: int, now: datetime) -> dict[str, Any]:
    """The parameters of the statements below for a portfolio at `now`."""
    return {
        "account": account_id,
        "since": now - WINDOW,
        "inbound_since": now - 2 * WINDOW,
        "open_since": now - WINDOW,
        "window": WINDOW,
    }


def _names() -> dict[str, str]:
    return {
        "table": Message._meta.db_table,
        "send_table": BulkSend._meta.db_table,
        "number_table": PhoneNumber._meta.db_table,
        "inbound_table": InboundMessage._meta.db_table,
        "active_sends": sql_in(ACTIVE_STATUSES),
        "unsent": sql_in((MessageStatus.PENDING, MessageStatus.SENDING)),
        "sending": sql_in((MessageStatus.SENDING,)),
        # The phase of unsent messages, which the indexes read instead of their status.
        "open": str(MessagePhase.OPEN.value),
        "recipient": recipient_sql(),
        "m_recipient": recipient_sql("m"),
    }


# The CTEs every statement starts with: the inbound messages that can hold a window open for a
# message in the quota window, and the sent messages that went out inside one.
_COMMON = """
    inbound AS MATERIALIZED (
        SELECT i.phone_number_id, i.from_phone, i.from_user_id, i.sent_at FROM {inbound_table} i
         WHERE i.phone_number_id IN (
                   SELECT id FROM {number_table} WHERE business_account_id = %(account)s)
           AND i.sent_at > %(inbound_since)s
    ),
    free_sent AS MATERIALIZED (
        SELECT m.id FROM inbound w
          JOIN {table} m ON m.recipient_phone = w.from_phone
           AND m.business_account_id = %(account)s AND m.sent_at >= %(since)s
           AND m.sent_at >= w.sent_at AND m.sent_at < w.sent_at + %(window)s
          JOIN {send_table} s ON s.id = m.bulk_send_id AND s.phone_number_id = w.phone_number_id
        UNION
        SELECT m.id FROM inbound w
          JOIN {table} m ON m.recipient_user_id = w.from_user_id
           AND m.business_account_id = %(account)s AND m.sent_at >= %(since)s
           AND m.sent_at >= w.sent_at AND m.sent_at < w.sent_at + %(window)s
          JOIN {send_table} s ON s.id = m.bulk_send_id AND s.phone_number_id = w.phone_number_id
    ),
    inbound_from AS (
        -- Each inbound message once per identifier it names: phone, user id or both.
        SELECT w.phone_number_id, w.sent_at, sender.recipient FROM inbound w
         CROSS JOIN LATERAL (VALUES (w.from_phone), (w.from_user_id)) AS sender(recipient)
         WHERE sender.recipient IS NOT NULL
    )"""


def _counted_sent(narrower: str = "") -> str:
    """Messages sent in the last 24 h outside a window: the places Meta counts (`narrower`, a
    further `AND ...`, leaves some out). A template for `window_sql`."""
    return f"""
    SELECT {{recipient}} AS recipient, sent_at FROM {{table}}
     WHERE business_account_id = %(account)s AND sent_at >= %(since)s {narrower}
       AND id NOT IN (SELECT id FROM free_sent)"""


# `m` (a message of send `s`) goes to someone whose window with the send's number is open now.
_OPEN_NOW = """EXISTS (
        SELECT 1 FROM inbound w
         WHERE w.phone_number_id = s.phone_number_id
           AND (w.from_phone = m.recipient_phone OR w.from_user_id = m.recipient_user_id)
           AND w.sent_at > %(open_since)s)"""

# The places held at acceptance: counted sent messages, and messages still waiting in an active
# send (they will be sent, so their place is spoken for) unless their window is open now.
# Send `send` is left out: its own recipients are what is being counted.
_HELD = f"""
    held AS MATERIALIZED (
        SELECT recipient FROM ({_counted_sent("AND bulk_send_id <> %(send)s")}) AS sent
        UNION
        SELECT {{m_recipient}} FROM {{table}} m
          JOIN {{send_table}} s ON s.id = m.bulk_send_id
          JOIN {{number_table}} n ON n.id = s.phone_number_id
         WHERE n.business_account_id = %(account)s AND s.status IN {{active_sends}}
           AND m.phase = {{open}} AND m.status IN {{unsent}} AND m.bulk_send_id <> %(send)s
           AND NOT {_OPEN_NOW}
    )"""

# `quota_for_send`: the places held, and how many of the send's unsent recipients need one (not
# held already, and no window open now with the send's number `number`). EXCEPT is a hashed set
# difference: linear in both sides, whatever their sizes; one of it, not two in a row, so the
# send's recipients are hashed once.
QUOTA_SQL = f"""
    WITH {_COMMON}, {_HELD}
    SELECT (SELECT count(*) FROM held),
           (SELECT count(*) FROM (
                SELECT {{recipient}} FROM {{table}}
                 WHERE bulk_send_id = %(send)s AND phase = {{open}} AND status IN {{unsent}}
                EXCEPT (
                    SELECT recipient FROM held
                    UNION ALL
                    SELECT recipient FROM inbound_from
                     WHERE phone_number_id = %(number)s AND sent_at > %(open_since)s)
           ) AS needing_quota)
"""

# `quota_for_phones`: the figures of QUOTA_SQL for a send not stored (a dry run's), whose unique
# recipients are `phones`, one text of recipients (E.164 phones or user ids) a line (a
# 100,000-item array parameter costs the driver 0.3 s to write, one text a hundredth of that);
# `send` is NO_SEND, so every stored send's places count.
QUOTA_FOR_PHONES_SQL = f"""
    WITH {_COMMON}, {_HELD}
    SELECT (SELECT count(*) FROM held),
           (SELECT count(*) FROM (
                SELECT unnest(string_to_array(%(phones)s, E'\n'))
                EXCEPT (
                    SELECT recipient FROM held
                    UNION ALL
                    SELECT recipient FROM inbound_from
                     WHERE phone_number_id = %(number)s AND sent_at > %(open_since)s)
           ) AS needing_quota)
"""

# The places held in the portfolio's window, by the same rule: no send is left out.
HELD_COUNT_SQL = f"WITH {_COMMON}, {_HELD} SELECT count(*) FROM held"

# When the n-th oldest counted place frees up: 24 h after that recipient's last counted send.
NTH_EXPIRY_SQL = f"""
    WITH {_COMMON}
    SELECT last_sent_at FROM (
        SELECT max(sent_at) AS last_sent_at FROM ({_counted_sent()}) AS sent
         GROUP BY recipient
    ) AS window_recipients
    ORDER BY last_sent_at OFFSET %(offset)s LIMIT 1
"""

WINDOW_SIZE_SQL = f"""
    WITH {_COMMON}
    SELECT count(DISTINCT recipient) FROM ({_counted_sent()}) AS sent
"""

# The drain's and the single send's admission of `claimed` messages (ids) to `phones`, sent by
# `number`: the places taken now (counted sent messages, and messages in flight unless their
# window is open), which of `phones` hold one already, and which have a window open with
# `number`. Waiting messages are not counted here: room a bulk send was promised at acceptance
# is not held back from whoever goes out first.
GATE_SQL = f"""
    WITH {_COMMON},
    taken AS MATERIALIZED (
        SELECT recipient FROM ({_counted_sent("AND id <> ALL(%(claimed)s)")}) AS sent
        UNION
        SELECT {{m_recipient}} FROM {{table}} m
          JOIN {{send_table}} s ON s.id = m.bulk_send_id
         WHERE m.business_account_id = %(account)s AND m.status IN {{sending}}
           AND m.phase = {{open}}
           AND m.id <> ALL(%(claimed)s) AND NOT {_OPEN_NOW}
    )
    SELECT (SELECT count(*) FROM taken),
           ARRAY(SELECT recipient FROM taken WHERE recipient = ANY(%(phones)s)),
           ARRAY(SELECT DISTINCT recipient FROM inbound_from
                  WHERE phone_number_id = %(number)s AND recipient = ANY(%(phones)s)
                    AND sent_at > %(open_since)s)
"""


def window_sql(template: str) -> str:
    """`template` with the tables and status sets it names, from the models and their enums."""
    return template.format(**_names())
