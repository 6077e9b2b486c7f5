"""send-bulk's large JSON bodies, streamed from a spool (bulksend.json_stream): the same answers as
a body parsed whole, the send written completely or not at all.

The bodies here are small; `STREAM_FROM_BYTES` is lowered so they take the streamed path, and
each answer is compared with the one the whole-body path gives to the same request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from django.test import override_settings

from bulksend import json_stream
from bulksend.checked_spool import CheckedSpool
from bulksend.models import BulkSend
from messaging.models import Contact, Message
from meta.limits import TIER_UNLIMITED
from mindo.idempotency import HEADER, REPLAYED_HEADER
from tests.conftest import Tenant
from tests.test_send_bulk_validation import (
    INVALID_PHONE,
    NUMBER_ID,
    URL,
    assert_nothing_created,
    payload,
    phones,
    recipient,
)

Post = Callable[..., Any]


def sent_as(bulk_send_id: str) -> list[tuple[str | None, Any, Any]]:
    messages = Message.objects.filter(bulk_send_id=bulk_send_id).order_by("id")
    return [(m.recipient_phone, m.variables, m.button_variables) for m in messages]


@pytest.fixture
def post(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> Post:
    """POST a body (bytes, or JSON of an object) to send-bulk, `streamed` or parsed whole."""

    def posted(body: Any, *, streamed: bool = True, **headers: str) -> Any:
        monkeypatch.setattr("bulksend.parsers.STREAM_FROM_BYTES", 0 if streamed else 1 << 40)
        data = body if isinstance(body, bytes) else json.dumps(body)
        return tenant.client.post(URL, data, content_type="application/json", headers=headers)

    return posted


def both_ways(post: Post, body: Any) -> Any:
    """The streamed answer, checked equal (status and bytes) to the whole-body one."""
    whole = post(body, streamed=False)
    streamed = post(body)
    assert (streamed.status_code, streamed.content) == (whole.status_code, whole.content)
    return streamed


def test_a_late_error_is_named_by_its_index_in_a_later_batch(
    post: Post, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(json_stream, "BATCH", 7)
    items = [recipient(phone) for phone in phones(40)]
    items[3]["phone"] = "5491112345678x"
    items[38] = {"phone": None, "extra": 1}
    response = both_ways(post, payload(*items))

    assert response.status_code == 400
    body = response.json()
    assert list(body["recipients"]) == ["3", "38"]
    assert body["recipients"]["3"] == {"phone": [INVALID_PHONE]}
    assert_nothing_created()


def test_a_late_template_error_leaves_nothing_written(
    post: Post, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches 0-4, 5-9... are written as they come: the last one's error must undo them all.
    monkeypatch.setattr(json_stream, "BATCH", 5)
    items = [recipient(phone) for phone in phones(23)]
    items[22]["variables"] = {"name": "Juan"}
    response = both_ways(post, payload(*items))

    assert response.status_code == 400
    assert list(response.json()["recipients"]) == ["22"]
    assert_nothing_created()
    assert not Contact.objects.filter(organization=tenant.organization).exists()


@pytest.mark.parametrize("recipients_first", [True, False])
def test_recipients_may_come_before_or_after_the_other_fields(
    post: Post, recipients_first: bool
) -> None:
    given = payload(*(recipient(phone) for phone in phones(3)), language="es")
    order = ["recipients", "phone_number_id", "template_name", "language"]
    if not recipients_first:
        order.reverse()
    response = post({name: given[name] for name in order})

    assert response.status_code == 202, response.content
    assert response.json()["unique_recipients"] == 3
    assert Message.objects.count() == 3


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(payload(phone_number_id=""), id="blank-field"),
        pytest.param({"phone_number_id": "1", "template_name": "x"}, id="no-recipients"),
        pytest.param(payload(recipients=[]), id="empty"),
        pytest.param(payload(recipients={"a": 1}), id="not-a-list"),
        pytest.param(payload(recipients=None), id="null"),
        pytest.param([payload()], id="not-an-object"),
        pytest.param(b'{"recipients": [', id="not-json"),
        pytest.param(b'{"phone_number_id": "1"} trailing', id="trailing"),
        pytest.param(
            b'{"recipients": [{"phone": "+5491112345678"}], "phone_number_id": "1", '
            b'"template_name": "x", "recipients": {"a": [1, {"b": []}]}}',
            id="recipients-twice-the-last-wins",
        ),
        pytest.param(payload(phone_number_id="999"), id="unknown-number"),
        pytest.param(payload(send_window={"start": "25:00", "end": "08:00"}), id="send-window"),
    ],
)
def test_every_refusal_is_the_whole_body_paths_byte_for_byte(post: Post, body: Any) -> None:
    response = both_ways(post, body)

    assert response.status_code in (400, 404)
    assert_nothing_created()


def test_numbers_reach_the_messages_as_the_client_wrote_them(post: Post) -> None:
    text = json.dumps(payload(recipient(variables={"name": "N", "code": "C"})))
    body = text.replace('"N"', "10.50").replace('"C"', "12345678901234567890123").encode()
    for streamed in (False, True):
        assert post(body, streamed=streamed).status_code == 202

    variables = list(Message.objects.values_list("variables", flat=True))
    assert variables == [{"name": "10.50", "code": "12345678901234567890123"}] * 2


@pytest.mark.parametrize("streamed", [False, True])
def test_texts_copy_escapes_reach_the_messages_exactly(post: Post, streamed: bool) -> None:
    """Values holding what COPY's text format escapes (backslash, tab, newline, carriage
    return) or JSON escapes (quotes, backslash sequences), and text beyond ASCII."""
    values = [
        ("C:\\dir\\n\\t", 'say "hola"\\'),
        ("tab\there", "line\nbreak\r\nend"),
        ("\\N", "ñandú 🎉 \u2028 \\u0041"),
    ]
    items = [
        recipient(
            phone, variables={"name": name, "code": code}, button_variables={"button_0": code}
        )
        for phone, (name, code) in zip(phones(3), values, strict=True)
    ]
    assert post(payload(*items), streamed=streamed).status_code == 202

    stored = Message.objects.order_by("id").values_list("variables", "button_variables")
    assert list(stored) == [
        ({"name": name, "code": code}, {"button_0": code}) for name, code in values
    ]


def test_the_limit_and_one_more(post: Post) -> None:
    items = [recipient(phone) for phone in phones(6)]
    with override_settings(BULK_SEND_MAX_RECIPIENTS=5):
        refused = both_ways(post, payload(*items))
        accepted = post(payload(*items[:5]))

    assert refused.status_code == 400
    assert refused.json() == {"recipients": ["Ensure this field has no more than 5 elements."]}
    assert accepted.status_code == 202


def test_a_body_past_send_bulk_max_body_bytes_is_413(post: Post) -> None:
    body = json.dumps(payload())
    with override_settings(SEND_BULK_MAX_BODY_BYTES=len(body) - 1):
        response = post(body.encode())

    assert response.status_code == 413
    assert response.json() == {
        "error": f"El cuerpo de la solicitud supera el maximo de {len(body) - 1} bytes"
    }
    assert_nothing_created()


def test_an_idempotency_key_replays_a_streamed_send(post: Post) -> None:
    body = payload(*(recipient(phone) for phone in phones(4)))
    first = post(body, **{HEADER: "k-1"})
    again = post(body, **{HEADER: "k-1"})
    other = post(payload(*(recipient(phone) for phone in phones(3))), **{HEADER: "k-1"})

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers[REPLAYED_HEADER] == "true"
    assert other.status_code == 409
    assert BulkSend.objects.count() == 1


def test_thirty_thousand_recipients_make_one_complete_send(
    post: Post, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant.account.messaging_limit_tier = TIER_UNLIMITED
    tenant.account.save(update_fields=["messaging_limit_tier"])
    unique = phones(30_000)
    # Every 100th recipient repeats an earlier one: sent once, with the first one's variables.
    items = [
        recipient(phone, variables={"name": f"n{i}", "code": "c"}) for i, phone in enumerate(unique)
    ]
    repeats = [
        recipient(unique[i], variables={"name": "again", "code": "c"})
        for i in range(0, 30_000, 100)
    ]
    body = orjson.dumps(payload(*items, *repeats))
    assert len(body) > json_stream.BATCH * 10  # many batches

    response = post(body)

    assert response.status_code == 202, response.content[:500]
    answer = response.json()
    assert (answer["total_recipients"], answer["unique_recipients"]) == (30_300, 30_000)
    send = BulkSend.objects.get()
    assert (send.submitted_recipients, send.unique_recipients, send.pending_count) == (
        30_300,
        30_000,
        30_000,
    )
    messages = Message.objects.filter(bulk_send=send)
    assert messages.count() == 30_000
    assert set(messages.values_list("recipient_phone", flat=True)) == set(unique)
    assert messages.get(recipient_phone=unique[200]).variables == {"name": "n200", "code": "c"}
    assert Contact.objects.filter(organization=tenant.organization).count() == 30_000


# --- CSV bodies --------------------------------------------------------------------------------

CSV_QUERY = f"?phone_number_id={NUMBER_ID}&template_name=welcome_message"


def csv_both_ways(tenant: Tenant, monkeypatch: pytest.MonkeyPatch, body: bytes) -> Any:
    """The streamed CSV answer, checked equal to the whole-body one."""
    answers = []
    for threshold in (1 << 40, 0):
        monkeypatch.setattr("bulksend.parsers.STREAM_FROM_BYTES", threshold)
        answers.append(
            tenant.client.post(URL + CSV_QUERY, body, content_type="text/csv; charset=utf-8")
        )
    whole, streamed = answers
    assert streamed.status_code == whole.status_code
    if whole.status_code == 202:  # two sends: the same recipients, each its own ids
        sends = [answer.json()["bulk_send_id"] for answer in answers]
        assert sent_as(sends[1]) == sent_as(sends[0])
    else:
        assert streamed.content == whole.content
    return streamed


def csv_lines(count: int, separator: str = ",") -> list[str]:
    return [
        separator.join((phone, f"Cliente {n}", "ABC123", "ABC-123"))
        for n, phone in enumerate(phones(count))
    ]


def test_a_csv_with_a_bom_and_semicolons_streams_as_it_reads_whole(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = "\ufeffphone;name;code;button_0\r\n" + "\r\n".join(csv_lines(30, ";")) + "\r\n"
    first = csv_both_ways(tenant, monkeypatch, body.encode())

    assert first.status_code == 202, first.content
    assert Message.objects.filter(bulk_send_id=first.json()["bulk_send_id"]).count() == 30


def test_a_csvs_late_errors_are_named_by_line(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(json_stream, "BATCH", 4)
    lines = csv_lines(20)
    lines[2] = lines[2].replace("+54911", "54911")  # line 4
    lines[17] = "+5491144556677,Ana,JKL012"  # line 19: a cell short
    lines[18] = lines[18].replace("ABC-123", "")  # line 20: a blank button variable
    body = ("phone,name,code,button_0\n" + "\n".join(lines) + "\n").encode()
    response = csv_both_ways(tenant, monkeypatch, body)

    assert response.status_code == 400
    assert list(response.json()["recipients"]) == ["line 4", "line 19", "line 20"]
    assert_nothing_created()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            b"phone,name\n" + b"+5491112345678,Jose\n" * 3000 + b"+5491112345678,Jos\xe9\n",
            id="late-latin-1",
        ),
        pytest.param(b"name,code\nJuan,ABC123\n", id="no-phone-column"),
        pytest.param(b"phone,name,code,button_0\n", id="no-rows"),
        pytest.param(b'phone,name\n+5491112345678,"Jo\n', id="unclosed-quote"),
    ],
)
def test_a_csv_refused_whole_is_refused_streamed_alike(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch, body: bytes
) -> None:
    response = csv_both_ways(tenant, monkeypatch, body)

    assert response.status_code == 400
    assert_nothing_created()


# --- dry runs ----------------------------------------------------------------------------------


def test_a_dry_run_judges_a_streamed_body_batch_by_batch_as_a_whole_one(
    post: Post, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(json_stream, "BATCH", 6)
    items = [recipient(phone) for phone in phones(30)]
    items[4]["phone"] = "+54"  # invalid
    items[13]["variables"] = {"name": "x"}  # missing a variable
    items[27] = recipient(phones(30)[2])  # a duplicate of index 2, two batches later
    items[29] = {"user_id": "US.13491208655302741918", "variables": items[0]["variables"]}
    monkeypatch.setattr("bulksend.views.dry_run_requested", lambda request: True)
    response = both_ways(post, payload(*items))

    assert response.status_code == 200, response.content
    verdicts = {verdict["index"]: verdict["reasons"] for verdict in response.json()["verdicts"]}
    assert verdicts[4] == ["invalid_phone"]
    assert verdicts[13] == ["missing_variables"]
    assert verdicts[27] == ["duplicate_of"]
    assert_nothing_created()


def test_a_dry_run_of_one_more_than_the_limit_is_refused_alike(
    post: Post, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bulksend.views.dry_run_requested", lambda request: True)
    with override_settings(BULK_SEND_MAX_RECIPIENTS=2):
        response = both_ways(post, payload(*(recipient(phone) for phone in phones(3))))

    assert response.status_code == 400
    assert response.json() == {"recipients": ["Ensure this field has no more than 2 elements."]}


def test_a_failure_while_the_messages_are_written_leaves_nothing(
    post: Post, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process failing after some batches were COPYed (a read of the spool failing here)
    leaves no send, no message and no contact: the send is one transaction."""
    monkeypatch.setattr(json_stream, "BATCH", 5)
    read = CheckedSpool.batches
    copied: list[int] = []

    def failing_after_two(spool: CheckedSpool) -> Iterator[list[Any]]:
        for batch in read(spool):
            if len(copied) == 2:
                raise OSError("the disk went away")
            copied.append(len(batch))
            yield batch

    monkeypatch.setattr(CheckedSpool, "batches", failing_after_two)
    response = post(payload(*(recipient(phone) for phone in phones(23))))

    assert response.status_code == 500
    assert copied == [5, 5]
    assert_nothing_created()
    assert not Contact.objects.filter(organization=tenant.organization).exists()
