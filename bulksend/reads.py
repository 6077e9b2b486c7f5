"""The read endpoints' statements, compiled once per process (mindo.compiled).

Each is the queryset the endpoint used to build at every request, built once with stand-ins for
the request's values: the same SQL, always scoped to the caller's organization (a send's
messages through their send, which is read scoped first).
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

from django.db.models import QuerySet

from bulksend.filters import SendsFilter, messages_with_public_status
from bulksend.models import BulkSend, BulkSendKind
from bulksend.quota import with_queued_ahead
from bulksend.retry import with_retry_ids
from messaging.models import Message
from mindo.compiled import (
    CompiledCount,
    CompiledQuery,
    compile_count,
    compile_queryset,
    stand_in_int,
    stand_in_moment,
    stand_in_uuid,
)
from mindo.pagination import keys_slice, rows_of_keys_slice

ORGANIZATION = stand_in_int(1)
SEND = stand_in_uuid(1)
# Shapes of message pages kept compiled: the first pages of each filter and page size, which
# clients read most; a deep page past them is compiled again when read, as every page used to be.
PAGE_SHAPES_KEPT = 256
# The columns a page's message shows (bulksend.serializers.bulk_send_message_body), and no more:
# reading the others (its button variables decoded from JSON, four more moments, pricing) into
# every instance made 14% of a page's function calls (bench/reads_cpu.py), for nothing.
MESSAGE_PAGE_COLUMNS = (
    *("id", "recipient_phone", "recipient_user_id", "status", "wamid", "variables"),
    *("sent_at", "delivered_at", "read_at", "error_message"),
)


def _organization_send(sends: QuerySet[BulkSend]) -> CompiledQuery[BulkSend]:
    # One row at most (its key): no ORDER BY, which `first()` would add, for nothing.
    return compile_queryset(
        sends.filter(organization_id=ORGANIZATION, pk=SEND, kind=BulkSendKind.BULK).order_by()[:1],
        {"organization": ORGANIZATION, "send": SEND},
        prepared=True,  # by its key: one plan fits every send
    )


@functools.cache
def _status_send() -> CompiledQuery[BulkSend]:
    # The send, its relations and what its estimate needs, in one query.
    sends = with_retry_ids(with_queued_ahead(BulkSend.objects.with_api_relations()))
    return _organization_send(sends)


@functools.cache
def _messages_send() -> CompiledQuery[BulkSend]:
    # Only the template (its variables' order) comes with the send: a page needs no more.
    return _organization_send(BulkSend.objects.select_related("template"))


def _one(
    query: CompiledQuery[BulkSend], organization_id: int, bulk_send_id: uuid.UUID
) -> BulkSend | None:
    found = query.objects(organization=organization_id, send=bulk_send_id)
    return found[0] if found else None


def status_send(organization_id: int, bulk_send_id: uuid.UUID) -> BulkSend | None:
    """The organization's bulk send for its status body (None: not the organization's, or not
    a bulk send), with its relations, `queued_ahead_count` and `retry_ids`."""
    return _one(_status_send(), organization_id, bulk_send_id)


def messages_send(organization_id: int, bulk_send_id: uuid.UUID) -> BulkSend | None:
    """The organization's bulk send whose messages are read, with its template."""
    return _one(_messages_send(), organization_id, bulk_send_id)


def send_messages(bulk_send_id: Any) -> QuerySet[Message]:
    """A send's messages in the order of its pages. The send as a range of one value, and the
    order by (send, id): the same rows in the same order, but PostgreSQL cannot reduce it to
    "ORDER BY id" and walk the primary key through other sends' messages (it would guess a send's
    messages are spread evenly among all; they are contiguous): it reads the (bulk_send, id)
    index, from the send's first entry."""
    return Message.objects.filter(
        bulk_send_id__gte=bulk_send_id, bulk_send_id__lte=bulk_send_id
    ).order_by("bulk_send_id", "id")


@functools.lru_cache(maxsize=PAGE_SHAPES_KEPT)
def _messages_page(
    public: str | None, send_cancelled: bool, where: tuple[bool, int, int]
) -> CompiledQuery[Message]:
    rows = messages_with_public_status(send_messages(SEND), public, send_cancelled=send_cancelled)
    rows = rows.only(*MESSAGE_PAGE_COLUMNS)
    return compile_queryset(rows_of_keys_slice(rows, where), {"send": SEND})


def messages_page(
    bulk_send: BulkSend, public: str | None, bottom: int, top: int, count: int
) -> list[Message]:
    """Messages `bottom` to `top` of the `count` of `bulk_send` a client sees as `public` (all
    when None), read by their keys as mindo.pagination.PageByKeysPaginator reads a page."""
    page = _messages_page(public, bulk_send.is_cancelled, keys_slice(bottom, top, count))
    return page.objects(send=bulk_send.pk)


# --- the sends list ------------------------------------------------------------------------------

STATUS = "\x00status"  # a stand-in: no status has a NUL
TEMPLATE = stand_in_int(2)
CREATED_FROM = stand_in_moment(1)
CREATED_UNTIL = stand_in_moment(2)
SENDS_PAGE_SHAPES_KEPT = 256
# The columns a list item shows (bulksend.serializers.bulk_send_list_item_body), and no more:
# reading the send's other columns and its template's components, variables and buttons (JSON
# decoded per row) made 10% of the list's function calls (bench/reads_cpu.py), for nothing.
SENDS_PAGE_COLUMNS = (
    *("id", "status", "unique_recipients", "created_at", "completed_at"),
    *("sent_count", "delivered_count", "read_count", "failed_count", "pending_count"),
    *("template__name", "template__language", "template__status"),
    *("phone_number__display_phone_number", "phone_number__verified_name"),
)
# SendsFilter's fields, in its `shape()` order: each one's lookup and stand-in.
SENDS_FILTERS = (
    ("status", "status", STATUS),
    ("template", "template_id", TEMPLATE),
    ("created_from", "created_at__gte", CREATED_FROM),
    ("created_until", "created_at__lt", CREATED_UNTIL),
)


def _filtered_sends(
    shape: tuple[bool, bool, bool, bool],
) -> tuple[QuerySet[BulkSend], dict[str, Any]]:
    """The organization's bulk sends in the list's order with the filters of `shape`, as
    stand-ins, and the stand-ins by name."""
    # A list item shows the template and the number, not the creator.
    sends = BulkSend.objects.for_organization(ORGANIZATION).bulk()
    sends = sends.select_related("template", "phone_number")
    stand_ins: dict[str, Any] = {"organization": ORGANIZATION}
    for present, (name, lookup, stand_in) in zip(shape, SENDS_FILTERS, strict=True):
        if present:
            sends = sends.filter(**{lookup: stand_in})
            stand_ins[name] = stand_in
    return sends, stand_ins


@functools.cache
def _sends_count(shape: tuple[bool, bool, bool, bool]) -> CompiledCount:
    return compile_count(*_filtered_sends(shape))


@functools.lru_cache(maxsize=SENDS_PAGE_SHAPES_KEPT)
def _sends_page(
    shape: tuple[bool, bool, bool, bool], bottom: int, top: int
) -> CompiledQuery[BulkSend]:
    sends, stand_ins = _filtered_sends(shape)
    return compile_queryset(sends.only(*SENDS_PAGE_COLUMNS)[bottom:top], stand_ins)


def sends_count(organization_id: int, filters: SendsFilter) -> int:
    """How many of the organization's bulk sends `filters` lets through."""
    return _sends_count(filters.shape()).count(**filters.values(organization_id))


def sends_page(organization_id: int, filters: SendsFilter, bottom: int, top: int) -> list[BulkSend]:
    """Sends `bottom` to `top` of the organization's that `filters` lets through, newest first,
    with their template and number."""
    page = _sends_page(filters.shape(), bottom, top)
    return page.objects(**filters.values(organization_id))
