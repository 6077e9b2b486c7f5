"""GET /api/v1/meta-templates/bulk-sends/{bulk_send_id}/messages/: one send's messages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from bulksend.models import BulkSend
from messaging.models import Message, MessageStatus
from tests import factories
from tests.conftest import Tenant

ITEM_KEYS = [
    "id",
    "recipient_phone",
    "status",
    "meta_message_id",
    "variables_used",
    "sent_at",
    "delivered_at",
    "read_at",
    "error_message",
]


def url(bulk_send_id: object) -> str:
    return f"/api/v1/meta-templates/bulk-sends/{bulk_send_id}/messages/"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def listed(tenant: Tenant, bulk_send: BulkSend, query: str = "") -> dict[str, Any]:
    response = tenant.client.get(f"{url(bulk_send.pk)}{query}")
    assert response.status_code == 200, response.content
    return response.json()


def ids(body: dict[str, Any]) -> list[int]:
    return [item["id"] for item in body["results"]]


def plan_nodes(node: dict[str, Any]) -> Iterator[tuple[str, str | None]]:
    """(node type, index name) of every node of an EXPLAIN (FORMAT JSON) plan."""
    yield node["Node Type"], node.get("Index Name")
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


@pytest.fixture
def bulk_send(tenant: Tenant) -> BulkSend:
    return factories.make_bulk_send(tenant.number, tenant.template)


def spec_messages(bulk_send: BulkSend) -> list[Message]:
    """The three messages of the contract's example: delivered, read and sent."""
    return [
        factories.make_message(
            bulk_send,
            phone="+5491112345678",
            status=MessageStatus.DELIVERED,
            wamid="wamid.HBgLNTU0MTE2NzU0Nzg1FQIAERgS",
            variables={"name": "Juan Perez", "code": "ABC123"},
            sent_at=at("2025-11-16T21:30:10"),
            delivered_at=at("2025-11-16T21:30:15"),
        ),
        factories.make_message(
            bulk_send,
            phone="+5491187654321",
            status=MessageStatus.READ,
            wamid="wamid.HBgLNTU0MTE2NzU0Nzg1FQIAERgT",
            variables={"name": "Maria Garcia", "code": "DEF456"},
            sent_at=at("2025-11-16T21:30:18"),
            delivered_at=at("2025-11-16T21:30:23"),
            read_at=at("2025-11-16T21:30:30"),
        ),
        factories.make_message(
            bulk_send,
            phone="+5491199887766",
            status=MessageStatus.SENT,
            wamid="wamid.HBgLNTU0MTE2NzU0Nzg1FQIAERgU",
            variables={"name": "Carlos Lopez", "code": "GHI789"},
            sent_at=at("2025-11-16T21:30:26"),
        ),
    ]


def make_messages(bulk_send: BulkSend, statuses: list[str]) -> list[Message]:
    return [factories.make_message(bulk_send, status=status) for status in statuses]


def test_it_lists_the_spec_example_messages(tenant: Tenant, bulk_send: BulkSend) -> None:
    delivered, read, sent = spec_messages(bulk_send)

    body = listed(tenant, bulk_send)

    assert body == {
        "count": 3,
        "next": None,
        "previous": None,
        "results": [
            {
                "id": delivered.pk,
                "recipient_phone": "+5491112345678",
                "status": "delivered",
                "meta_message_id": "wamid.HBgLNTU0MTE2NzU0Nzg1FQIAERgS",
                "variables_used": {"name": "Juan Perez", "code": "ABC123"},
                "sent_at": "2025-11-16T21:30:10Z",
                "delivered_at": "2025-11-16T21:30:15Z",
                "read_at": None,
                "error_message": None,
            },
            {
                "id": read.pk,
                "recipient_phone": "+5491187654321",
                "status": "read",
                "meta_message_id": "wamid.HBgLNTU0MTE2NzU0Nzg1FQIAERgT",
                "variables_used": {"name": "Maria Garcia", "code": "DEF456"},
                "sent_at": "2025-11-16T21:30:18Z",
                "delivered_at": "2025-11-16T21:30:23Z",
                "read_at": "2025-11-16T21:30:30Z",
                "error_message": None,
            },
            {
                "id": sent.pk,
                "recipient_phone": "+5491199887766",
                "status": "sent",
                "meta_message_id": "wamid.HBgLNTU0MTE2NzU0Nzg1FQIAERgU",
                "variables_used": {"name": "Carlos Lopez", "code": "GHI789"},
                "sent_at": "2025-11-16T21:30:26Z",
                "delivered_at": None,
                "read_at": None,
                "error_message": None,
            },
        ],
    }
    assert all(list(item) == ITEM_KEYS for item in body["results"])


def test_it_shows_variables_in_the_templates_order(tenant: Tenant, bulk_send: BulkSend) -> None:
    # Stored in whatever order; `code` sorts before `name`, the template says name, code.
    factories.make_message(bulk_send, variables={"code": "ABC123", "name": "Juan Perez"})

    item = listed(tenant, bulk_send)["results"][0]

    assert list(item["variables_used"].items()) == [("name", "Juan Perez"), ("code", "ABC123")]


def test_it_lists_the_messages_of_a_send_created_through_the_api(tenant: Tenant) -> None:
    created = tenant.client.post(
        "/api/v1/meta-templates/send-bulk/",
        {
            "phone_number_id": tenant.number.phone_number_id,
            "template_name": "welcome_message",
            "recipients": [
                {
                    "phone": "+5491112345678",
                    "variables": {"code": "ABC123", "name": "Juan Perez"},
                    "button_variables": {"button_0": "ABC-123"},
                },
                {
                    "phone": "+5491187654321",
                    "variables": {"name": "Maria Garcia", "code": "DEF456"},
                    "button_variables": {"button_0": "DEF-456"},
                },
            ],
        },
        format="json",
    ).json()

    response = tenant.client.get(url(created["bulk_send_id"]))

    assert response.status_code == 200
    results = response.json()["results"]
    assert [
        (item["recipient_phone"], item["status"], item["meta_message_id"], item["sent_at"])
        for item in results
    ] == [("+5491112345678", "pending", None, None), ("+5491187654321", "pending", None, None)]
    assert [list(item["variables_used"]) for item in results] == [["name", "code"]] * 2


def test_it_shows_a_failed_message_with_its_error(tenant: Tenant, bulk_send: BulkSend) -> None:
    factories.make_message(
        bulk_send,
        status=MessageStatus.FAILED,
        error_code="131026",
        error_message="Message undeliverable",
    )

    item = listed(tenant, bulk_send)["results"][0]

    assert item["status"] == "failed"
    assert item["error_message"] == "Message undeliverable"
    assert (item["meta_message_id"], item["sent_at"]) == (None, None)


def test_it_shows_a_message_being_sent_as_pending(tenant: Tenant, bulk_send: BulkSend) -> None:
    make_messages(bulk_send, [MessageStatus.SENDING])

    assert listed(tenant, bulk_send)["results"][0]["status"] == "pending"


# --- Filter and pagination --------------------------------------------------------------------

MIXED = ["sent", "delivered", "read", "failed", "pending", "sending", "read", "sent", "cancelled"]


@pytest.mark.parametrize(
    ("status", "positions"),
    [
        ("sent", [0, 7]),
        ("delivered", [1]),
        ("read", [2, 6]),
        ("failed", [3]),
        ("pending", [4, 5]),
        ("cancelled", [8]),
    ],
)
def test_it_filters_by_status_and_counts_the_matches(
    tenant: Tenant, bulk_send: BulkSend, status: str, positions: list[int]
) -> None:
    messages = make_messages(bulk_send, MIXED)

    body = listed(tenant, bulk_send, f"?status={status}")

    assert body["count"] == len(positions)
    assert ids(body) == [messages[p].pk for p in positions]
    assert {item["status"] for item in body["results"]} == {status}


def test_it_counts_every_message_without_a_filter(tenant: Tenant, bulk_send: BulkSend) -> None:
    messages = make_messages(bulk_send, MIXED)

    body = listed(tenant, bulk_send)

    assert body["count"] == len(MIXED)
    assert ids(body) == [m.pk for m in messages]


@pytest.mark.parametrize("status", ["SENT", "queued", "sending", "bogus"])
def test_it_rejects_an_invalid_status_filter(
    tenant: Tenant, bulk_send: BulkSend, status: str
) -> None:
    make_messages(bulk_send, ["sent"])

    response = tenant.client.get(f"{url(bulk_send.pk)}?status={status}")

    assert response.status_code == 400
    body = response.json()
    assert list(body) == ["status"]
    assert body["status"]


def test_it_ignores_an_empty_status_filter(tenant: Tenant, bulk_send: BulkSend) -> None:
    messages = make_messages(bulk_send, ["sent", "failed"])

    body = listed(tenant, bulk_send, "?status=")

    assert body["count"] == 2
    assert ids(body) == [m.pk for m in messages]


def test_it_pages_by_20_by_default_in_id_order(tenant: Tenant, bulk_send: BulkSend) -> None:
    messages = make_messages(bulk_send, ["pending"] * 21)
    base = f"http://testserver{url(bulk_send.pk)}"

    first = listed(tenant, bulk_send)
    second = listed(tenant, bulk_send, "?page=2")

    assert first["count"] == 21
    assert ids(first) == [m.pk for m in messages[:20]]
    assert (first["next"], first["previous"]) == (f"{base}?page=2", None)
    assert ids(second) == [messages[20].pk]
    assert (second["next"], second["previous"]) == (None, base)


def test_it_pages_the_spec_example_query(tenant: Tenant, bulk_send: BulkSend) -> None:
    messages = make_messages(bulk_send, ["delivered", "sent", "delivered", "delivered", "read"])
    base = f"http://testserver{url(bulk_send.pk)}"

    body = listed(tenant, bulk_send, "?status=delivered&page=1&page_size=2")

    assert body["count"] == 3
    assert ids(body) == [messages[0].pk, messages[2].pk]
    assert body["next"] == f"{base}?page=2&page_size=2&status=delivered"
    assert body["previous"] is None
    assert ids(listed(tenant, bulk_send, "?status=delivered&page=2&page_size=2")) == [
        messages[3].pk
    ]


def test_it_caps_the_page_size_at_100(tenant: Tenant, bulk_send: BulkSend) -> None:
    Message.objects.bulk_create(
        Message(
            bulk_send=bulk_send,
            business_account_id=bulk_send.phone_number.business_account_id,
            recipient_phone=f"+54911{30_000_000 + n:08d}",
        )
        for n in range(101)
    )
    BulkSend.objects.filter(pk=bulk_send.pk).update(unique_recipients=101, pending_count=101)

    body = listed(tenant, bulk_send, "?page_size=1000")

    assert body["count"] == 101
    assert len(body["results"]) == 100


@pytest.mark.parametrize("page", ["2", "1000"])
def test_it_answers_404_for_a_page_out_of_range(
    tenant: Tenant, bulk_send: BulkSend, page: str
) -> None:
    make_messages(bulk_send, ["sent"])

    response = tenant.client.get(f"{url(bulk_send.pk)}?page={page}")

    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid page."}


def test_it_lists_only_the_messages_of_that_send(tenant: Tenant, bulk_send: BulkSend) -> None:
    other_send = factories.make_bulk_send(tenant.number, tenant.template)
    make_messages(other_send, ["sent", "sent"])
    mine = make_messages(bulk_send, ["sent"])

    body = listed(tenant, bulk_send, "?status=sent")

    assert (body["count"], ids(body)) == (1, [mine[0].pk])


# --- Not found --------------------------------------------------------------------------------


@pytest.mark.parametrize("bulk_send_id", ["a3f2b8c9-4d5e-6f7a-8b9c-0d1e2f3a4b5c", "nope", "123"])
def test_it_answers_404_for_an_unknown_or_malformed_send(tenant: Tenant, bulk_send_id: str) -> None:
    response = tenant.client.get(url(bulk_send_id))

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_it_answers_404_for_another_organizations_send(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = factories.make_bulk_send(other_tenant.number, other_tenant.template)
    factories.make_message(theirs, status=MessageStatus.SENT)

    response = tenant.client.get(url(theirs.pk))

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_it_answers_404_before_validating_the_filter(tenant: Tenant) -> None:
    response = tenant.client.get(f"{url('nope')}?status=bogus")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


# --- Pages read through their keys -----------------------------------------------------------


def test_every_page_holds_the_next_messages_of_that_send_and_status(tenant: Tenant) -> None:
    # Two sends whose messages interleave by id, the pending ones partly claimed (`sending`):
    # each page is the filter's next slice in id order, whatever the other send holds.
    mine = factories.make_bulk_send(tenant.number, tenant.template)
    other = factories.make_bulk_send(tenant.number, tenant.template)
    statuses = ["pending", "sending", "sent", "delivered", "pending", "read", "failed"]
    messages = []
    for n in range(35):
        factories.make_message(other, status=statuses[(n + 3) % len(statuses)])
        messages.append(factories.make_message(mine, status=statuses[n % len(statuses)]))
    pending = [m.pk for m in messages if m.status in ("pending", "sending")]
    assert len(pending) == 15

    pages = [listed(tenant, mine, f"?page_size=4&page={page}") for page in range(1, 10)]
    pending_pages = [
        listed(tenant, mine, f"?status=pending&page_size=4&page={page}") for page in range(1, 5)
    ]

    assert [ids(page) for page in pages] == [
        [m.pk for m in messages[i : i + 4]] for i in range(0, 35, 4)
    ]
    assert [ids(page) for page in pending_pages] == [pending[i : i + 4] for i in range(0, 16, 4)]
    assert {page["count"] for page in pending_pages} == {len(pending)}
    assert {item["status"] for page in pending_pages for item in page["results"]} == {"pending"}


@pytest.mark.parametrize("query", ["", "?status=pending", "?page=3&page_size=2"])
def test_a_page_takes_three_queries(
    tenant: Tenant, bulk_send: BulkSend, django_assert_max_num_queries: Any, query: str
) -> None:
    # The key, the send, the page: no COUNT (the counters answer it), nothing per message.
    make_messages(bulk_send, ["pending", "sent", "delivered", "read", "failed", "sending"] * 2)
    listed(tenant, bulk_send)  # the key's `last_used_at` is written once, on first use

    with django_assert_max_num_queries(3):
        body = listed(tenant, bulk_send, query)

    assert body["results"]


def test_a_page_reads_its_keys_from_the_sends_id_index(tenant: Tenant, bulk_send: BulkSend) -> None:
    # OFFSET reads every row it skips: the page's keys come from an index-only scan of
    # (bulk_send, id), which skips index entries, and only the page's rows are read from the table.
    make_messages(bulk_send, ["sent", "pending"] * 10)
    with CaptureQueriesContext(connection) as queries:
        listed(tenant, bulk_send, "?page=3&page_size=4")
    page_sql = next(q["sql"] for q in queries.captured_queries if "messaging_message" in q["sql"])

    with transaction.atomic(), connection.cursor() as cursor:
        # A table this small is cheapest to read whole, or through a bitmap of whatever the earlier
        # tests left in it: plan as for a large one, whose pages are read in index order.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {page_sql}")
        plan = cursor.fetchone()[0]

    scans = list(plan_nodes(plan[0]["Plan"]))
    assert ("Index Only Scan", "message_send_id") in scans
