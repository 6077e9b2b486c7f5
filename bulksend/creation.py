"""Accepting a bulk send: validate against the template, store every message, enqueue the wake-up;
and writing a single send (POST send/, sent by its own request: bulksend.single).

The send and all its messages are written in one transaction, the messages with COPY (a 100,000
recipient send is one round trip, not 100,000 INSERTs), so a request either leaves a complete
send behind or nothing at all.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Model
from django.db.models.expressions import DatabaseDefault
from django.db.models.fields import AutoFieldMixin
from django.utils import timezone

from bulksend.models import BulkSend, BulkSendKind, BulkSendStatus
from bulksend.quota import QuotaInfo, estimate_minutes, queued_ahead, quota_for_send
from bulksend.recipients import (
    Errors,
    Recipient,
    RecipientBatches,
    RecipientList,
    check_against_template,
    deduplicate,
    raise_for_recipient_errors,
)
from bulksend.schedule import SHORT_WAIT, MessagesDue, messages_due, schedule_estimate_minutes
from bulksend.send_window import SendWindow
from callbacks.outbox import callback_url_refusal, send_callback_register
from messaging.contacts import contact_list_default, contacts_from_send
from messaging.delivery import ClaimedMessage
from messaging.models import Contact, ContactList, ContactSource, Message, MessageStatus
from mindo import metrics
from mindo.celery import app as celery_app
from mindo.errors import NotFoundError, field_error
from mindo.models import Organization
from mindo.prepared import prepared_cursor
from templates_app.models import MessageTemplate, PhoneNumber, WhatsAppBusinessAccount

logger = logging.getLogger(__name__)

# The delivery worker's entry point. Enqueued by name: the task is only a wake-up, the database
# says what is left to send, so a lost one costs latency, never a message.
DRAIN_TASK_NAME = "bulksend.drain"

_MESSAGE_COLUMNS = (
    "bulk_send_id",
    "business_account_id",
    "recipient_phone",
    "recipient_user_id",
    "variables",
    "button_variables",
)


# A single send, its message and its recipient's contact in the default list, in one statement;
# nothing at all when the organization has no default list yet (`listed` says so). The message's
# key to its send is checked at the statement's end, when the send's row is there.
_SINGLE_SEND_SQL = """
WITH list AS (
    SELECT id FROM {lists} WHERE organization_id = %s AND is_default LIMIT 1
),
send AS (
    INSERT INTO {sends} ({send_columns}) SELECT {send_values} FROM list
),
message AS (
    INSERT INTO {messages} ({message_columns}) SELECT {message_values} FROM list RETURNING id
),
contact AS (
    INSERT INTO {contacts} (organization_id, contact_list_id, phone, user_id, source, created_at)
    SELECT %s, list.id, %s, %s, %s, %s FROM list
    ON CONFLICT DO NOTHING
)
SELECT (SELECT id FROM message), EXISTS (SELECT 1 FROM list)
"""


@dataclass(frozen=True, slots=True)
class BulkSendAccepted:
    bulk_send: BulkSend
    quota: QuotaInfo


# The number of the caller's organization and the template asked for in its account, in one
# query: the number is one row at most (Meta's id is unique), the template one at most (unique by
# account, name and language), absent when the LEFT JOIN finds none.
_NUMBER_AND_TEMPLATE_SQL = """
SELECT {columns}
  FROM {numbers} n
  JOIN {accounts} a ON a.id = n.business_account_id
  LEFT JOIN {templates} t ON t.business_account_id = a.id AND t.name = %s AND t.language = %s
 WHERE a.organization_id = %s AND n.phone_number_id = %s
"""
_JOINED = (("n", PhoneNumber), ("a", WhatsAppBusinessAccount), ("t", MessageTemplate))


def number_and_template_get(
    *, organization: Organization, phone_number_id: str, name: str, language: str
) -> tuple[PhoneNumber, MessageTemplate]:
    """The number (with its account) and a sendable template of its account, read in one
    query; the 404s of an unknown number or template, the 400 of a template that cannot be
    sent."""
    columns = ", ".join(
        f"{alias}.{connection.ops.quote_name(field.column)}"
        for alias, model in _JOINED
        for field in model._meta.concrete_fields
    )
    sql = _NUMBER_AND_TEMPLATE_SQL.format(
        columns=columns,
        numbers=PhoneNumber._meta.db_table,
        accounts=WhatsAppBusinessAccount._meta.db_table,
        templates=MessageTemplate._meta.db_table,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [name, language, organization.pk, phone_number_id])
        row = cursor.fetchone()
    if row is None:
        raise NotFoundError(f"Numero de WhatsApp con ID '{phone_number_id}' no encontrado")
    number, account, template = _models_from(row)
    assert isinstance(number, PhoneNumber)
    assert isinstance(account, WhatsAppBusinessAccount)
    number.business_account = account
    if template is not None:
        assert isinstance(template, MessageTemplate)
        template.business_account = account
    return number, _sendable(template, name=name, language=language)


def _models_from(row: tuple[Any, ...]) -> list[Model | None]:
    """The rows of `_JOINED` in `row`, as the ORM would load them (None for a row the LEFT
    JOIN did not find)."""
    loaded: list[Model | None] = []
    start = 0
    for _, model in _JOINED:
        fields = model._meta.concrete_fields
        values = row[start : start + len(fields)]
        start += len(fields)
        if values[0] is None and fields[0].primary_key:
            loaded.append(None)
            continue
        converted = []
        for field, value in zip(fields, values, strict=True):
            # As Field.get_db_converters: a field that reads its column itself (JSON) does so.
            from_db_value = getattr(field, "from_db_value", None)
            converted.append(
                value if from_db_value is None else from_db_value(value, None, connection)
            )
        loaded.append(model.from_db(connection.alias, [f.attname for f in fields], converted))
    return loaded


def _sendable(template: MessageTemplate | None, *, name: str, language: str) -> MessageTemplate:
    if template is None:
        raise NotFoundError(
            f"Template '{name}' (language: {language}) no encontrado en este business account"
        )
    if template.unsendable_header is not None:
        raise field_error(
            "template_name",
            f"Template '{name}' (language: {language}) has a {template.unsendable_header} "
            "header, which no variable can fill: use a template with a text or media header.",
        )
    if not template.is_approved:
        raise field_error(
            "template_name",
            f"Template '{name}' (language: {language}) is {template.status}: "
            "only APPROVED templates can be sent.",
        )
    return template


def template_sendable_check(template: MessageTemplate) -> None:
    """The 400 of a template that cannot be sent (any longer: a retry's, since its send)."""
    _sendable(template, name=template.name, language=template.language)


# COPY's text format: a tab between columns, a newline after a row, \N for NULL, and these
# characters escaped inside a value (a JSON text holds no raw control character, but may hold
# backslashes).
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_NULL = "\\N"


def _copy_text(value: str | None) -> str:
    if value is None:
        return _COPY_NULL
    # Looking for them is ten times faster than translating a text that has none (most).
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def _message_rows(
    bulk_send_id: uuid.UUID, account_id: int, recipients: list[Recipient], due: MessagesDue | None
) -> str:
    """The COPY text of `recipients`' messages; with `due`, each one's `next_attempt_at` too.
    Written as text a batch at a time: psycopg's row by row formatting cost more than the COPY
    itself."""
    send = f"{bulk_send_id}\t{account_id}\t"
    lines = []
    for index, recipient in enumerate(recipients):
        line = "\t".join(
            (
                _copy_text(recipient.phone),
                _copy_text(recipient.user_id),
                _copy_text(orjson.dumps(recipient.variables).decode()),
                _copy_text(orjson.dumps(recipient.button_variables).decode()),
            )
        )
        if due is not None:
            moment = due.due_at[index]
            line += "\t" + (_COPY_NULL if moment is None else moment.isoformat())
        lines.append(f"{send}{line}\n")
    return "".join(lines)


def _messages_copy(cursor: Any, *, scheduled: bool) -> Any:
    """psycopg's COPY of messages (Django's cursor wrapper has no COPY), with `next_attempt_at`
    for a scheduled send."""
    columns = ", ".join(_MESSAGE_COLUMNS + (("next_attempt_at",) if scheduled else ()))
    return cursor.cursor.copy(f"COPY {Message._meta.db_table} ({columns}) FROM STDIN")


@dataclass(slots=True)
class _Written:
    """What the batches of a send wrote: its unique recipients, and when they come due."""

    unique: int = 0
    due: MessagesDue | None = None


def _due_merged(written: MessagesDue | None, batch: MessagesDue | None) -> MessagesDue | None:
    """The due moments of the batches so far, as messages_due would give them for all at once
    (only the first and the last opening are kept: the rows are written already)."""
    if batch is None or written is None:
        return batch if written is None else written
    firsts = [written.first, batch.first]
    openings = [written.last_window_opens_at, batch.last_window_opens_at]
    known_openings = [moment for moment in openings if moment is not None]
    return MessagesDue(
        [],
        # None when some message is due at once, as messages_due says it.
        first=None if written.first is None or batch.first is None else min(firsts),  # type: ignore[type-var]
        last_window_opens_at=max(known_openings) if known_openings else None,
    )


def _messages_write(
    *,
    bulk_send_id: uuid.UUID,
    account_id: int,
    recipients: RecipientBatches,
    template: MessageTemplate,
    schedule: Callable[[list[Recipient]], MessagesDue | None],
    phones_of_user_ids: dict[str, str],
) -> _Written:
    """Check the recipients against the template, deduplicate them and COPY their messages, a
    batch at a time; every template error, by index, raised after the last batch (the caller's
    transaction then writes nothing). Scheduled or not is known from the first batch."""
    errors: dict[str, Errors] = {}
    seen: set[str] = set()
    written = _Written()
    copy: Any = None
    with connection.cursor() as cursor, ExitStack() as copying:
        for first_index, batch in recipients.batches():
            errors.update(
                check_against_template(
                    batch,
                    variables=list(template.variables),
                    buttons=template.button_specs,
                    template=template.name,
                    variable_types=template.typed_variables,
                    currency_code=template.currency_code,
                    first_index=first_index,
                )
            )
            if errors:
                continue  # refused: only the errors of the rest are still wanted
            unique = deduplicate(batch, phones_of_user_ids, seen=seen)
            if not unique:
                continue  # a batch of repeats (its due moments would say none)
            due = schedule(unique)
            if copy is None:
                copy = copying.enter_context(_messages_copy(cursor, scheduled=due is not None))
            copy.write(_message_rows(bulk_send_id, account_id, unique, due))
            written.unique += len(unique)
            written.due = _due_merged(written.due, due)
    raise_for_recipient_errors(errors)
    return written


def phones_of_user_ids(organization_id: int, user_ids: set[str]) -> dict[str, str]:
    """The phone of each of the recipients' user ids whose contact has one (a webhook named
    both): one query, and none for a send to phones only."""
    if not user_ids:
        return {}
    return {
        user_id: phone
        for user_id, phone in Contact.objects.filter(
            organization_id=organization_id, user_id__in=user_ids, phone__isnull=False
        ).values_list("user_id", "phone")
        if user_id is not None and phone is not None
    }


def bulk_send_enqueue(bulk_send: BulkSend, *, eta: datetime | None = None) -> None:
    """Publish the wake-up (not before `eta` when given). Called after commit: a broker failure
    must not undo an accepted send."""
    try:
        celery_app.send_task(
            DRAIN_TASK_NAME,
            args=[str(bulk_send.pk)],
            task_id=bulk_send.task_id,
            eta=eta,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
        )
    except Exception:
        # The send is committed and QUEUED; the reaper finds sends whose wake-up was lost.
        logger.exception("Could not enqueue the wake-up of bulk send %s", bulk_send.pk)


def bulk_send_create(
    *,
    organization: Organization,
    created_by: User | None,
    phone_number_id: str,
    template_name: str,
    language: str,
    recipients: list[Recipient] | RecipientBatches,
    send_at: datetime | None = None,
    send_window: SendWindow | None = None,
    callback_url: str = "",
) -> BulkSendAccepted:
    """Accept a send of `template_name` to `recipients` (already checked for shape; a list, or
    batches read from a streamed body).

    1. Resolve the number and the template within the caller's organization (404s, 400).
    2. In one transaction, a batch at a time (`_messages_write`): check every recipient's
       variables against the template, by the client's index (any error: a 400 and nothing
       written); deduplicate by phone or user id, keeping the first occurrence (a user id whose
       contact has a phone among the recipients is that phone: one person, sent once); COPY the
       messages. A scheduled send's messages are due at `send_at` or their recipient's
       `send_window` (bulksend.schedule).
    3. In the same transaction: the send (its key chosen before its messages, whose foreign key
       PostgreSQL checks at commit), a contact for each recipient the organization has none for,
       its quota figures and its estimate.
    4. After commit, enqueue the wake-up for the workers (when its first message is due; the
       reaper wakes a send due later).
    A `callback_url` is checked first (`callback_url_check`) and gets the send's events.
    """
    callback_url_check(organization, callback_url)
    number, template = number_and_template_get(
        organization=organization,
        phone_number_id=phone_number_id,
        name=template_name,
        language=language,
    )
    batches = RecipientList(recipients) if isinstance(recipients, list) else recipients
    now = timezone.now()

    def schedule(unique: list[Recipient]) -> MessagesDue | None:
        return messages_due(
            [recipient.phone for recipient in unique],
            send_at=send_at,
            window=send_window,
            fallback_timezone=organization.timezone,
            now=now,
        )

    bulk_send_id = uuid.uuid4()
    with transaction.atomic():
        written = _messages_write(
            bulk_send_id=bulk_send_id,
            account_id=number.business_account_id,
            recipients=batches,
            template=template,
            schedule=schedule,
            phones_of_user_ids=phones_of_user_ids(organization.pk, batches.user_ids()),
        )
        due = written.due
        bulk_send = BulkSend.objects.create(
            id=bulk_send_id,
            organization=organization,
            phone_number=number,
            template=template,
            created_by=created_by,
            task_id=str(uuid.uuid4()),
            submitted_recipients=batches.total,
            unique_recipients=written.unique,
            pending_count=written.unique,
            send_at=send_at,
            send_window_start=send_window.start if send_window else None,
            send_window_end=send_window.end if send_window else None,
            window_last_opens_at=due.last_window_opens_at if due else None,
            callback_url=callback_url,
        )
        if callback_url:
            send_callback_register(organization_id=organization.pk, url=callback_url)
        contacts_from_send(
            organization_id=organization.pk, bulk_send_id=bulk_send.pk, source=ContactSource.API
        )
        accepted = stored_send_accept(bulk_send, number=number, now=now, due=due)
    metrics.send_accepted(recipients=written.unique)
    return accepted


def stored_send_accept(
    bulk_send: BulkSend, *, number: PhoneNumber, now: datetime, due: MessagesDue | None = None
) -> BulkSendAccepted:
    """The last steps of accepting a send whose messages are stored (a client's, a retry's):
    its quota figures and estimate, and its wake-up once committed. Call it in the transaction
    that stored the messages. `due`: when a scheduled send's messages come due (its estimate
    counts from then, and one due later than SHORT_WAIT is woken by the reaper, not now)."""
    # Concurrent sends of one portfolio take their quota figures one after the other.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [number.business_account_id])
    quota = quota_for_send(bulk_send=bulk_send, account=number.business_account, now=now)
    bulk_send.quota_overflow = quota.overflow
    bulk_send.quota_frees_at = quota.room_frees_at
    ahead = queued_ahead(bulk_send)
    bulk_send.estimated_time_minutes = schedule_estimate_minutes(
        lambda start: estimate_minutes(
            pending=bulk_send.unique_recipients,
            ahead=ahead,
            rate_per_second=number.throughput_per_second,
            overflow=quota.overflow,
            room_frees_at=quota.room_frees_at,
            now=start,
        ),
        send_at=bulk_send.send_at,
        last_window_opens_at=bulk_send.window_last_opens_at,
        now=now,
    )
    bulk_send.save(update_fields=["quota_overflow", "quota_frees_at", "estimated_time_minutes"])
    first_due = due.first if due is not None else None
    if first_due is None:
        transaction.on_commit(lambda: bulk_send_enqueue(bulk_send))
    elif first_due - now < SHORT_WAIT:
        transaction.on_commit(lambda: bulk_send_enqueue(bulk_send, eta=first_due))
    # Due later: the reaper wakes it then (bulksend.schedule).
    return BulkSendAccepted(bulk_send=bulk_send, quota=quota)


def callback_url_check(organization: Organization, callback_url: str) -> None:
    """Refuse a send's `callback_url` (400 naming the field) that may not be called: not
    http(s), an address that is not public, or no endpoint of the organization's to sign its
    events with. Resolves the name: call it before the send's transaction."""
    if not callback_url:
        return
    refusal = callback_url_refusal(organization_id=organization.pk, url=callback_url)
    if refusal:
        raise field_error("callback_url", refusal)


def single_send_create(
    *,
    organization: Organization,
    created_by: User | None,
    number: PhoneNumber,
    template: MessageTemplate,
    recipient: Recipient,
    lease_seconds: float,
    now: datetime,
    callback_url: str = "",
) -> tuple[BulkSend, ClaimedMessage]:
    """A single send and its one message, written atomically by one statement (in the caller's
    transaction when it has one).

    The send is born PROCESSING and its message born claimed (`sending`, attempt 1, with a
    lease) by the request that sends it: no worker is woken, and should the request die before
    it settles, the reaper treats the message as any worker's lost lease. The recipient becomes
    a contact as a bulk send's do. The three rows are one statement (`_SINGLE_SEND_SQL`): one
    round trip instead of a query each and one for the default list. A `callback_url` (checked
    by `callback_url_check`) is registered for the send's events first.
    """
    if callback_url:
        send_callback_register(organization_id=organization.pk, url=callback_url)
    bulk_send = BulkSend(
        organization=organization,
        phone_number=number,
        template=template,
        created_by=created_by,
        kind=BulkSendKind.SINGLE,
        status=BulkSendStatus.PROCESSING,
        started_at=now,
        submitted_recipients=1,
        unique_recipients=1,
        pending_count=1,
        callback_url=callback_url,
    )
    message = Message(
        bulk_send=bulk_send,
        business_account_id=number.business_account_id,
        recipient_phone=recipient.phone,
        recipient_user_id=recipient.user_id,
        variables=recipient.variables,
        button_variables=recipient.button_variables,
        status=MessageStatus.SENDING,
        attempts=1,
        lease_expires_at=now + timedelta(seconds=lease_seconds),
    )
    send_columns, send_values = _insert_parts(bulk_send)
    message_columns, message_values = _insert_parts(message)
    sql = _SINGLE_SEND_SQL.format(
        sends=BulkSend._meta.db_table,
        send_columns=send_columns,
        send_values=", ".join(["%s"] * len(send_values)),
        messages=Message._meta.db_table,
        message_columns=message_columns,
        message_values=", ".join(["%s"] * len(message_values)),
        lists=ContactList._meta.db_table,
        contacts=Contact._meta.db_table,
    )
    params = [
        organization.pk,
        *send_values,
        *message_values,
        organization.pk,
        recipient.phone,
        recipient.user_id,
        ContactSource.API,
        timezone.now(),
    ]
    # Planned once per connection: planning this statement costs about as much as running it.
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        message_id, listed = cursor.fetchone()
        if not listed:
            # The organization's first contact: its default list is made, and all is written.
            contact_list_default(organization.pk)
            cursor.execute(sql, params)
            message_id, listed = cursor.fetchone()
    assert message_id is not None, "the default list exists now"
    for row in (bulk_send, message):
        row._state.adding, row._state.db = False, connection.alias
    message.pk = message_id
    claimed = ClaimedMessage(
        id=message_id,
        recipient_phone=recipient.phone,
        variables=recipient.variables,
        button_variables=recipient.button_variables,
        attempts=1,
        recipient_user_id=recipient.user_id,
    )
    return bulk_send, claimed


def _insert_parts(row: Model) -> tuple[str, list[Any]]:
    """The quoted columns of `row`'s INSERT and their values, as Django's own INSERT would write
    them (Python-side defaults, `auto_now_add`); an auto-numbered key and the columns with a
    database default are left to the database."""
    columns, values = [], []
    for field in row._meta.concrete_fields:
        if isinstance(field, AutoFieldMixin):
            continue  # the database's to number
        if field.generated:
            continue  # the database's to compute (a message's phase)
        value = field.pre_save(row, True)
        if isinstance(value, DatabaseDefault):
            continue  # the database's to fill
        columns.append(connection.ops.quote_name(field.column))
        values.append(field.get_db_prep_save(value, connection))
    return ", ".join(columns), values
