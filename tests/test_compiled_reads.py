"""The read endpoints' compiled statements (bulksend.reads, mindo.compiled) answer what the ORM's
querysets answer, for any mix of sends, messages and filters, and only ever the caller's rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.http import QueryDict
from hypothesis import given
from hypothesis import strategies as st

from bulksend.filters import PUBLIC_MESSAGE_STATUSES, messages_with_public_status, sends_filter_of
from bulksend.models import BulkSend, BulkSendKind, BulkSendStatus
from bulksend.quota import with_queued_ahead
from bulksend.reads import (
    messages_page,
    messages_send,
    send_messages,
    sends_count,
    sends_page,
    status_send,
)
from bulksend.retry import with_retry_ids
from bulksend.serializers import (
    bulk_send_detail_body,
    bulk_send_list_item_body,
    bulk_send_message_body,
)
from messaging.models import MessageStatus
from mindo.compiled import compile_queryset, stand_in_int
from tests import factories
from tests.conftest import Tenant
from tests.test_webhook_properties import PROPERTY_SETTINGS, rolled_back

API = "/api/v1/meta-templates"
DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
# Moments within a day, its first and last microseconds among them: the day filters' bounds.
WITHIN_DAY = st.sampled_from(
    [
        timedelta(0),
        timedelta(microseconds=1),
        timedelta(hours=12),
        timedelta(days=1, microseconds=-1),
    ]
)
SEND_STATUSES = list(BulkSendStatus)

sends_strategy = st.lists(
    st.tuples(
        st.sampled_from(SEND_STATUSES),
        st.booleans(),  # the other template
        st.integers(0, 4),  # created that many days after DAY0
        WITHIN_DAY,  # at that moment of the day
        st.booleans(),  # a single send, which the list leaves out
    ),
    max_size=8,
)


def make_sends(tenant: Tenant, other_template: Any, plans: list[Any]) -> list[BulkSend]:
    sends = []
    for status, other, days, moment, single in plans:
        bulk_send = factories.make_bulk_send(
            tenant.number,
            other_template if other else tenant.template,
            status=status,
            kind=BulkSendKind.SINGLE if single else BulkSendKind.BULK,
        )
        BulkSend.objects.filter(pk=bulk_send.pk).update(
            created_at=DAY0 + timedelta(days=days) + moment
        )
        sends.append(bulk_send)
    return sends


def orm_sends(tenant: Tenant, query: dict[str, str]) -> QuerySet[BulkSend]:
    """The list as the ORM reads it, filters written out plainly (whole UTC days, inclusive)."""
    sends = BulkSend.objects.filter(organization=tenant.organization, kind=BulkSendKind.BULK)
    if query.get("status"):
        sends = sends.filter(status=query["status"])
    if query.get("template"):
        sends = sends.filter(template_id=int(query["template"]))
    if query.get("created_after"):
        sends = sends.filter(created_at__date__gte=date.fromisoformat(query["created_after"]))
    if query.get("created_before"):
        sends = sends.filter(created_at__date__lte=date.fromisoformat(query["created_before"]))
    return sends.select_related("template", "phone_number").order_by("-created_at", "-id")


@pytest.mark.django_db
@PROPERTY_SETTINGS
@given(plans=sends_strategy, data=st.data())
def test_the_sends_list_reads_what_the_orm_reads_for_any_filters(
    tenant: Tenant, other_tenant: Tenant, plans: list[Any], data: st.DataObject
) -> None:
    with rolled_back():
        other_template = factories.make_template(tenant.account, name="other_template")
        make_sends(tenant, other_template, plans)
        # Another organization's sends, alike in every other way: never read.
        make_sends(other_tenant, other_tenant.template, plans)
        template = data.draw(st.sampled_from([tenant.template.pk, other_template.pk]))
        day = data.draw(st.integers(0, 4).map(lambda d: (DAY0 + timedelta(days=d)).date()))
        query = {
            name: value
            for name, value in {
                "status": data.draw(st.sampled_from(["", *SEND_STATUSES])),
                "template": data.draw(st.sampled_from(["", str(template)])),
                "created_after": data.draw(st.sampled_from(["", day.isoformat()])),
                "created_before": data.draw(st.sampled_from(["", day.isoformat()])),
            }.items()
            if value
        }
        filters = sends_filter_of(QueryDict(urlencode(query)))
        expected = list(orm_sends(tenant, query))
        size = data.draw(st.integers(1, 3))
        start = data.draw(st.integers(0, 4))

        organization_id = tenant.organization.pk
        assert sends_count(organization_id, filters) == len(expected)
        page = sends_page(organization_id, filters, start, start + size)
        assert [bulk_send_list_item_body(s) for s in page] == [
            bulk_send_list_item_body(s) for s in expected[start : start + size]
        ]


@pytest.mark.django_db
@PROPERTY_SETTINGS
@given(
    statuses=st.lists(st.sampled_from(list(MessageStatus)), min_size=1, max_size=12),
    cancelled=st.booleans(),
    public=st.sampled_from([None, *PUBLIC_MESSAGE_STATUSES]),
    data=st.data(),
)
def test_a_messages_page_reads_what_the_orm_reads_for_any_status_and_page(
    tenant: Tenant,
    statuses: list[MessageStatus],
    cancelled: bool,
    public: str | None,
    data: st.DataObject,
) -> None:
    with rolled_back():
        neighbour = factories.make_bulk_send(tenant.number, tenant.template)
        bulk_send = factories.make_bulk_send(tenant.number, tenant.template)
        for status in statuses:
            factories.make_message(bulk_send, status=status)
            factories.make_message(neighbour, status=status)  # another send's: never read
        if cancelled:
            BulkSend.objects.filter(pk=bulk_send.pk).update(status=BulkSendStatus.CANCELLED)
        read = messages_send(tenant.organization.pk, bulk_send.pk)
        assert read is not None
        # The reference: the whole filtered list, sliced in Python.
        expected = list(
            messages_with_public_status(
                send_messages(bulk_send.pk), public, send_cancelled=cancelled
            )
        )
        count = len(expected)
        bottom = data.draw(st.integers(0, max(count - 1, 0)))
        top = min(bottom + data.draw(st.integers(1, 4)), count)
        variables = read.template.variables

        def bodies(messages: list[Any]) -> list[dict[str, Any]]:
            return [
                bulk_send_message_body(m, variables, send_cancelled=cancelled) for m in messages
            ]

        # The whole list as one page, then a page of it, from the start or from the end.
        assert bodies(messages_page(read, public, 0, count, count)) == bodies(expected)
        assert bodies(messages_page(read, public, bottom, top, count)) == bodies(
            expected[bottom:top]
        )


@pytest.mark.django_db
def test_the_status_read_is_the_orms_and_only_the_organizations_bulk_sends(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    bulk_send = factories.make_bulk_send(
        tenant.number, tenant.template, status=BulkSendStatus.PROCESSING
    )
    factories.make_message(bulk_send)
    earlier = factories.make_bulk_send(tenant.number, tenant.template, status=BulkSendStatus.QUEUED)
    factories.make_message(earlier)
    BulkSend.objects.filter(pk=earlier.pk).update(created_at=DAY0)
    retry = factories.make_bulk_send(tenant.number, tenant.template, retry_of=bulk_send)
    single = factories.make_bulk_send(tenant.number, tenant.template, kind=BulkSendKind.SINGLE)
    organization_id = tenant.organization.pk

    read = status_send(organization_id, bulk_send.pk)

    orm = with_retry_ids(with_queued_ahead(BulkSend.objects.with_api_relations())).get(
        pk=bulk_send.pk
    )
    assert read is not None
    assert (read.queued_ahead_count, read.retry_ids) == (1, [retry.pk])  # type: ignore[attr-defined]
    assert bulk_send_detail_body(read) == bulk_send_detail_body(orm)
    assert status_send(other_tenant.organization.pk, bulk_send.pk) is None
    assert messages_send(other_tenant.organization.pk, bulk_send.pk) is None
    assert status_send(organization_id, single.pk) is None


@pytest.mark.django_db
def test_another_organizations_send_is_not_found_by_every_read(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = factories.make_bulk_send(other_tenant.number, other_tenant.template)
    factories.make_message(theirs)

    for path in (f"bulk-sends/{theirs.pk}/", f"bulk-sends/{theirs.pk}/messages/"):
        response = tenant.client.get(f"{API}/{path}")
        assert (response.status_code, response.json()) == (404, {"detail": "Not found."})
    listed = tenant.client.get(f"{API}/bulk-sends/?template={other_tenant.template.pk}")
    assert listed.json()["count"] == 0
    assert other_tenant.client.get(f"{API}/bulk-sends/").json()["count"] == 1


@pytest.mark.django_db
def test_a_stand_in_the_statement_does_not_take_is_refused() -> None:
    # Django writes a slice's bounds into the SQL text: a request's value could not go there.
    sends = BulkSend.objects.filter(organization_id=stand_in_int(1))

    with pytest.raises(ValueError, match="limit"):
        compile_queryset(
            sends[: stand_in_int(2)], {"organization": stand_in_int(1), "limit": stand_in_int(2)}
        )


@pytest.mark.django_db
def test_a_filter_value_the_quick_reading_skips_is_read_by_the_filterset(tenant: Tenant) -> None:
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template)
    BulkSend.objects.filter(pk=bulk_send.pk).update(created_at=DAY0)

    # "2026-3-1" is no ISO day but the form's format reads it; a bad one is its 400.
    found = tenant.client.get(f"{API}/bulk-sends/?created_after=2026-3-1")
    refused = tenant.client.get(f"{API}/bulk-sends/?created_after=2026-02-30")

    assert [item["id"] for item in found.json()["results"]] == [str(bulk_send.pk)]
    assert refused.status_code == 400
    assert list(refused.json()) == ["created_after"]


@pytest.mark.django_db
def test_reads_by_key_are_prepared_statements_and_pages_are_not(tenant: Tenant) -> None:
    # A page's plan must see its values: PostgreSQL's generic plan of a prepared page read a
    # deep page of a large send 8 times as slowly.
    bulk_send = factories.make_bulk_send(tenant.number, tenant.template)
    factories.make_message(bulk_send)
    for _ in range(8):
        for path in (f"bulk-sends/{bulk_send.pk}/", f"bulk-sends/{bulk_send.pk}/messages/"):
            assert tenant.client.get(f"{API}/{path}").status_code == 200
        assert tenant.client.get(f"{API}/bulk-sends/?status=QUEUED").status_code == 200

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        statements = [row[0] for row in cursor.fetchall()]
    assert any('AS "retry_ids"' in s for s in statements), statements  # the status read
    assert not any('"messaging_message"' in s for s in statements), statements
    assert not any("COUNT(*)" in s for s in statements), statements
