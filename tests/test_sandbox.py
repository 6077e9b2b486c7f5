"""The Meta sandbox: Graph API answers, Meta's errors, status webhooks, faults and introspection.

The tests give the sandbox a catalog document, so they need no database; filling the catalog
through the Graph API is tested in test_sandbox_registration.py.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
import requests

from messaging.models import callback_data_for, message_id_from_callback_data
from meta.graph_version import GRAPH_VERSION
from meta.signature import signature_is_valid
from meta.webhook_payload import payload_read
from meta_sandbox import SandboxConfig, SandboxThread
from tests import factories

TOKEN = "sandbox-test-token"
OTHER_TOKEN = "other-business-token"
WABA = "102290129340398"
NUMBER = "813497231850626"
OTHER_WABA = "200000000000001"
OTHER_NUMBER = "900000000000001"
SECRET = "sandbox-test-secret"
TIMEOUT = 10.0

ORDER_COMPONENTS = [
    {"type": "HEADER", "format": "TEXT", "text": "Pedido {{1}}"},
    {"type": "BODY", "text": "Hola {{1}}, tu pedido llega el {{2}}."},
    {
        "type": "BUTTONS",
        "buttons": [
            {"type": "QUICK_REPLY", "text": "Gracias"},
            {"type": "COPY_CODE", "example": "SAVE10"},
        ],
    },
]
CATALOG: dict[str, Any] = {
    "accounts": [
        {
            "waba_id": WABA,
            "access_token": TOKEN,
            "phone_numbers": [
                {
                    "phone_number_id": NUMBER,
                    "display_phone_number": "+54 9 223 675-0780",
                    "verified_name": "Mindo Software",
                    "quality_rating": "GREEN",
                    "messaging_limit_tier": "TIER_1000",
                }
            ],
            "templates": [
                {
                    "id": "1001",
                    "name": "welcome_message",
                    "language": "es",
                    "category": "MARKETING",
                    "status": "APPROVED",
                    "components": factories.WELCOME_COMPONENTS,
                },
                {
                    "id": "1002",
                    "name": "order_update",
                    "language": "es",
                    "category": "UTILITY",
                    "status": "APPROVED",
                    "components": ORDER_COMPONENTS,
                },
                {
                    "id": "1004",
                    "name": "photo_offer",
                    "language": "es",
                    "category": "MARKETING",
                    "components": [
                        {"type": "HEADER", "format": "IMAGE"},
                        {"type": "BODY", "text": "Hola {{1}}, mira esto."},
                    ],
                },
                {
                    "id": "1003",
                    "name": "spring_promo",
                    "language": "es",
                    "category": "MARKETING",
                    "status": "PENDING",
                    "components": [{"type": "BODY", "text": "Promo"}],
                },
            ],
        },
        {
            "waba_id": OTHER_WABA,
            "access_token": OTHER_TOKEN,
            "phone_numbers": [{"phone_number_id": OTHER_NUMBER, "display_phone_number": "+1 555"}],
            "templates": [],
        },
    ]
}


# Our first message's callback data, signed as the service signs it.
FIRST_CALLBACK = callback_data_for(1)


def welcome(to: str = "5491112345678", callback: str | None = FIRST_CALLBACK) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": {
            "name": "welcome_message",
            "language": {"code": "es"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "parameter_name": "name", "text": "Juan"},
                        {"type": "text", "parameter_name": "code", "text": "A-1"},
                    ],
                },
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": "0",
                    "parameters": [{"type": "text", "text": "A-1"}],
                },
            ],
        },
    }
    if callback is not None:
        body["biz_opaque_callback_data"] = callback
    return body


def order_update() -> dict[str, Any]:
    body = welcome()
    body["template"] = {
        "name": "order_update",
        "language": {"code": "es"},
        "components": [
            {"type": "header", "parameters": [{"type": "text", "text": "#42"}]},
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "lunes"}],
            },
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": "0",
                "parameters": [{"type": "payload", "payload": "thanks"}],
            },
            {
                "type": "button",
                "sub_type": "copy_code",
                "index": 1,
                "parameters": [{"type": "coupon_code", "coupon_code": "SAVE10"}],
            },
        ],
    }
    return body


def config(**changes: Any) -> SandboxConfig:
    defaults: dict[str, Any] = {"catalog": CATALOG, "app_secret": SECRET, "seed": 7}
    return SandboxConfig(**{**defaults, **changes})


def send(
    sandbox: SandboxThread,
    body: dict[str, Any] | bytes,
    *,
    number: str = NUMBER,
    token: str | None = TOKEN,
    session: requests.Session | None = None,
    version: str = GRAPH_VERSION,
) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    poster = session.post if session is not None else requests.post
    return poster(
        f"{sandbox.url}/{version}/{number}/messages", data=data, headers=headers, timeout=TIMEOUT
    )


def error_of(response: requests.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "OAuthException"
    assert error["fbtrace_id"]
    assert error["error_data"]["messaging_product"] == "whatsapp"
    return error


def wait_for(condition: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


class Receiver:
    """A webhook endpoint in a thread: keeps every body with its signature header."""

    def __init__(self, fail_first: int = 0) -> None:
        self.posts: list[tuple[bytes, str | None]] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    failing = receiver.fail_first > 0
                    if failing:
                        receiver.fail_first -= 1
                    else:
                        receiver.posts.append((body, self.headers["X-Hub-Signature-256"]))
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/meta/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def statuses(self) -> list[dict[str, Any]]:
        with self.lock:
            documents = [orjson.loads(body) for body, _ in self.posts]
        return [
            status
            for document in documents
            for entry in document["entry"]
            for change in entry["changes"]
            for status in change["value"]["statuses"]
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[SandboxThread]:
    with SandboxThread(config()) as running:
        yield running


@pytest.fixture
def sandbox(shared_sandbox: SandboxThread) -> SandboxThread:
    """One sandbox for the tests of answers, reset and back to no rate limit and no faults."""
    shared_sandbox.control("reset")
    shared_sandbox.control("config", {"rate_per_number": 0, "error_share": 0.0})
    return shared_sandbox


# --- sends -------------------------------------------------------------------------------------


def test_a_valid_send_returns_a_wamid_and_records_the_exact_body(sandbox: SandboxThread) -> None:
    raw = orjson.dumps(welcome(to="+5491112345678"), option=orjson.OPT_INDENT_2)

    response = send(sandbox, raw, version="v24")

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["messaging_product"] == "whatsapp"
    assert answer["contacts"] == [{"input": "+5491112345678", "wa_id": "5491112345678"}]
    [message] = answer["messages"]
    assert message["message_status"] == "accepted"
    assert message["id"].startswith("wamid.")
    base64.b64decode(message["id"].removeprefix("wamid."), validate=True)
    [recorded] = sandbox.control("messages")["messages"]
    assert recorded["wamid"] == message["id"]
    assert recorded["phone_number_id"] == NUMBER
    assert recorded["template"] == "welcome_message"
    assert recorded["biz_opaque_callback_data"] == FIRST_CALLBACK
    assert recorded["request_body"] == orjson.loads(raw)


def test_wamids_are_unique_and_duplicate_callbacks_are_counted(sandbox: SandboxThread) -> None:
    with requests.Session() as session:
        wamids = [
            send(
                sandbox, welcome(f"54911{n:08d}", f"mindo-message:{n % 40}"), session=session
            ).json()["messages"][0]["id"]
            for n in range(50)
        ]

    assert len(set(wamids)) == 50
    listing = sandbox.control("messages")
    assert listing["count"] == 50
    assert listing["duplicate_sends"] == 10
    assert {
        "phone_number_id": NUMBER,
        "biz_opaque_callback_data": "mindo-message:3",
        "count": 2,
    } in (listing["duplicates"])


def test_a_positional_template_with_header_and_buttons_is_accepted(sandbox: SandboxThread) -> None:
    assert send(sandbox, order_update()).status_code == 200


@pytest.mark.parametrize(
    ("token", "number"),
    [(None, NUMBER), ("not-a-token", NUMBER), (OTHER_TOKEN, NUMBER)],
    ids=["missing", "unknown", "another-business"],
)
def test_a_bad_token_is_190(sandbox: SandboxThread, token: str | None, number: str) -> None:
    response = send(sandbox, welcome(), token=token, number=number)

    assert response.status_code == 401
    assert error_of(response)["code"] == 190
    assert sandbox.control("stats")["accepted"] == 0


def test_an_unknown_number_is_100(sandbox: SandboxThread) -> None:
    response = send(sandbox, welcome(), number="123456789")

    assert response.status_code == 400
    assert error_of(response)["code"] == 100


def test_malformed_json_is_100(sandbox: SandboxThread) -> None:
    response = send(sandbox, b'{"messaging_product": "whatsapp", "to": ')

    assert response.status_code == 400
    assert error_of(response)["code"] == 100
    assert sandbox.control("stats")["rejected_by_code"] == {"100": 1}


@pytest.mark.parametrize(
    ("name", "language"),
    [("no_such_template", "es"), ("welcome_message", "en_US"), ("spring_promo", "es")],
    ids=["unknown", "wrong-language", "not-approved"],
)
def test_a_template_meta_cannot_send_is_132001(
    sandbox: SandboxThread, name: str, language: str
) -> None:
    body = welcome()
    body["template"]["name"] = name
    body["template"]["language"]["code"] = language

    response = send(sandbox, body)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == 132001
    assert "Template name does not exist in the translation" in error["message"]


def _welcome_body(body: dict[str, Any]) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = body["template"]["components"][0]["parameters"]
    return parameters


def _without_parameter_names(body: dict[str, Any]) -> None:
    for parameter in _welcome_body(body):
        del parameter["parameter_name"]


def _order_update_with_parameter_names(body: dict[str, Any]) -> None:
    body["template"] = order_update()["template"]
    for n, parameter in enumerate(body["template"]["components"][1]["parameters"]):
        parameter["parameter_name"] = f"p{n}"


# (id, how the welcome send is spoiled, Meta's code), in the order of validation's docstring.
BROKEN_RULES: list[tuple[str, Callable[[dict[str, Any]], None], int]] = [
    ("to-letters", lambda body: body.update(to="not a number"), 100),
    ("to-too-short", lambda body: body.update(to="+54 911"), 100),
    ("language-code", lambda body: body["template"]["language"].update(code="spanish"), 100),
    ("recipient-type", lambda body: body.update(recipient_type="group"), 100),
    ("component-type", lambda body: body["template"]["components"].append({"type": "x"}), 100),
    ("one-parameter-short", lambda body: _welcome_body(body).pop(), 132000),
    (
        "unknown-parameter-name",
        lambda body: _welcome_body(body)[0].update(parameter_name="first_name"),
        132000,
    ),
    ("no-parameter-names-for-named", _without_parameter_names, 132012),
    ("parameter-names-for-positional", _order_update_with_parameter_names, 132012),
    ("text-without-text", lambda body: _welcome_body(body)[1].pop("text"), 131008),
    ("text-with-a-new-line", lambda body: _welcome_body(body)[0].update(text="A\nB"), 132018),
    (
        "button-sub-type",
        lambda body: body["template"]["components"][1].update(sub_type="x"),
        131009,
    ),
    ("url-button-missing", lambda body: body["template"]["components"].pop(), 132000),
]


@pytest.mark.parametrize(
    ("spoil", "code"),
    [pytest.param(spoil, code, id=name) for name, spoil, code in BROKEN_RULES],
)
def test_a_send_that_breaks_a_rule_gets_metas_code(
    sandbox: SandboxThread, spoil: Callable[[dict[str, Any]], None], code: int
) -> None:
    body = welcome()
    spoil(body)

    response = send(sandbox, body)

    assert response.status_code == 400
    assert error_of(response)["code"] == code
    assert sandbox.control("stats")["accepted"] == 0


def test_a_parameter_count_mismatch_says_so_in_metas_words(sandbox: SandboxThread) -> None:
    body = welcome()
    _welcome_body(body).pop()

    error = error_of(send(sandbox, body))

    assert error["message"] == (
        "(#132000) Number of parameters does not match the expected number of params"
    )
    assert error["error_data"]["details"] == (
        "body: number of localizable_params (1) does not match the expected number of params (2)"
    )


def test_a_to_with_spaces_and_dashes_is_read_as_its_digits(sandbox: SandboxThread) -> None:
    response = send(sandbox, welcome(to="+54 9 11 1234-5678"))

    assert response.json()["contacts"] == [
        {"input": "+54 9 11 1234-5678", "wa_id": "5491112345678"}
    ]


def test_a_media_header_takes_its_media(sandbox: SandboxThread) -> None:
    def with_header(header: dict[str, Any] | None) -> dict[str, Any]:
        body = welcome()
        body["template"]["name"] = "photo_offer"
        body["template"]["components"] = [
            {"type": "body", "parameters": [{"type": "text", "text": "Ana"}]},
            *([header] if header else []),
        ]
        return body

    image = {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://x/a"}}]}
    video = {"type": "header", "parameters": [{"type": "video", "video": {"link": "https://x/v"}}]}

    assert send(sandbox, with_header(image)).status_code == 200
    assert error_of(send(sandbox, with_header(None)))["code"] == 131008
    assert error_of(send(sandbox, with_header(video)))["code"] == 131009


def test_above_the_rate_a_number_gets_130429(sandbox: SandboxThread) -> None:
    sandbox.control("config", {"rate_per_number": 10})

    with requests.Session() as session:
        codes = [send(sandbox, welcome(), session=session).status_code for _ in range(15)]

    assert codes.count(200) == 10
    stats = sandbox.control("stats")
    assert stats["accepted"] == 10
    assert stats["rejected_by_code"] == {"130429": 5}
    assert stats["max_sends_in_one_second"] == {NUMBER: 10}


# --- listings ----------------------------------------------------------------------------------


def test_templates_are_listed_page_by_page(sandbox: SandboxThread) -> None:
    url = f"{sandbox.url}/{GRAPH_VERSION}/{WABA}/message_templates"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    names, params = [], {"limit": "2"}
    for _ in range(3):
        page = requests.get(url, params=params, headers=headers, timeout=TIMEOUT).json()
        names += [template["name"] for template in page["data"]]
        if "next" not in page.get("paging", {}):
            break
        params = {"limit": "2", "after": page["paging"]["cursors"]["after"]}

    assert names == ["order_update", "photo_offer", "spring_promo", "welcome_message"]
    first = requests.get(url, params={"name": "welcome_message"}, headers=headers, timeout=TIMEOUT)
    [template] = first.json()["data"]
    assert template == {
        "id": "1001",
        "name": "welcome_message",
        "language": "es",
        "status": "APPROVED",
        "category": "MARKETING",
        "parameter_format": "NAMED",
        "components": factories.WELCOME_COMPONENTS,
    }


def test_numbers_are_listed_only_to_their_business(sandbox: SandboxThread) -> None:
    url = f"{sandbox.url}/{GRAPH_VERSION}/{WABA}/phone_numbers"

    mine = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=TIMEOUT)
    theirs = requests.get(url, headers={"Authorization": f"Bearer {OTHER_TOKEN}"}, timeout=TIMEOUT)

    assert mine.json()["data"] == [
        {
            "id": NUMBER,
            "display_phone_number": "+54 9 223 675-0780",
            "verified_name": "Mindo Software",
            "quality_rating": "GREEN",
            "throughput": {"level": "STANDARD"},
            # The portfolio's limit: its numbers' highest tier, none having been set for it.
            "whatsapp_business_manager_messaging_limit": "TIER_1000",
        }
    ]
    assert theirs.status_code == 401
    assert error_of(theirs)["code"] == 190


# --- webhooks ----------------------------------------------------------------------------------


def test_statuses_arrive_signed_in_order_with_the_callback_data(receiver: Receiver) -> None:
    settings = config(webhook_url=receiver.url, delivered_after=1.0, read_after=2.0, read_share=1.0)
    with SandboxThread(settings) as sandbox:
        wamid = send(sandbox, welcome()).json()["messages"][0]["id"]
        wait_for(lambda: len(receiver.statuses()) == 3)
        stats = sandbox.control("stats")

    assert all(signature_is_valid(body, header, SECRET) for body, header in receiver.posts)
    statuses = receiver.statuses()
    assert [status["status"] for status in statuses] == ["sent", "delivered", "read"]
    assert [status["id"] for status in statuses] == [wamid] * 3
    assert {status["biz_opaque_callback_data"] for status in statuses} == {FIRST_CALLBACK}
    times = [int(status["timestamp"]) for status in statuses]
    assert times[0] < times[1] < times[2]
    assert statuses[0]["conversation"]["origin"]["type"] == "marketing"
    assert statuses[0]["pricing"]["category"] == "marketing"
    document = orjson.loads(receiver.posts[0][0])
    assert document["entry"][0]["id"] == WABA
    assert document["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] == NUMBER
    # The service's own reader understands every body.
    events = [e for body, _ in receiver.posts for e in payload_read(orjson.loads(body)).statuses]
    assert [message_id_from_callback_data(e.callback_data) for e in events] == [1, 1, 1]
    assert stats["webhook_statuses_posted"] == 3
    assert stats["pending_webhooks"] == 0


def test_a_fail_suffix_recipient_fails_with_131026(receiver: Receiver) -> None:
    settings = config(webhook_url=receiver.url, delivered_after=0.1, fail_suffix="9999")
    with SandboxThread(settings) as sandbox:
        assert send(sandbox, welcome(to="5491100009999")).status_code == 200
        wait_for(lambda: len(receiver.statuses()) == 2)

    sent, failed = receiver.statuses()
    assert sent["status"] == "sent"
    assert failed["status"] == "failed"
    [error] = failed["errors"]
    assert error["code"] == 131026
    assert error["title"] == "Message undeliverable"
    assert error["error_data"]["details"]


def test_statuses_of_a_burst_travel_together_in_bounded_posts(receiver: Receiver) -> None:
    settings = config(
        webhook_url=receiver.url,
        rate_per_number=0,
        delivered_share=0.0,
        webhook_linger=0.2,
        webhook_batch_size=25,
    )
    with SandboxThread(settings) as sandbox, requests.Session() as session:
        for n in range(300):
            send(sandbox, welcome(f"54911{n:08d}", f"mindo-message:{n}"), session=session)
        wait_for(lambda: len(receiver.statuses()) == 300)

    sizes = [
        len(orjson.loads(body)["entry"][0]["changes"][0]["value"]["statuses"])
        for body, _ in receiver.posts
    ]
    assert max(sizes) <= 25
    assert len(sizes) < 60


def test_a_failed_webhook_post_is_retried() -> None:
    endpoint = Receiver(fail_first=1)
    try:
        with SandboxThread(config(webhook_url=endpoint.url, delivered_share=0.0)) as sandbox:
            send(sandbox, welcome())
            wait_for(lambda: len(endpoint.statuses()) == 1)
            stats = sandbox.control("stats")
    finally:
        endpoint.close()

    assert stats["webhook_failures"] == 1
    assert stats["webhooks_posted"] == 1


# --- faults and runtime settings -------------------------------------------------------------


def test_error_share_answers_500_with_131000(sandbox: SandboxThread) -> None:
    sandbox.control("config", {"error_share": 1.0})

    response = send(sandbox, welcome())

    assert response.status_code == 500
    assert error_of(response)["code"] == 131000
    assert sandbox.control("stats")["accepted"] == 0


def test_http_5xx_share_answers_a_bare_502() -> None:
    with SandboxThread(config(http_5xx_share=1.0)) as sandbox:
        response = send(sandbox, welcome())
        assert sandbox.control("stats")["accepted"] == 0

    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")


def test_a_dropped_send_is_recorded_and_its_webhook_still_posted(receiver: Receiver) -> None:
    settings = config(webhook_url=receiver.url, drop_share=1.0, delivered_share=0.0)
    with SandboxThread(settings) as sandbox:
        with pytest.raises(requests.ConnectionError):
            send(sandbox, welcome())
        wait_for(lambda: len(receiver.statuses()) == 1)
        [message] = sandbox.control("messages")["messages"]

    [status] = receiver.statuses()
    assert status["status"] == "sent"
    assert status["id"] == message["wamid"]


def test_a_timed_out_send_is_not_recorded() -> None:
    with SandboxThread(config(timeout_share=1.0, timeout_seconds=0.3)) as sandbox:
        with pytest.raises(requests.ConnectionError):
            send(sandbox, welcome())
        assert sandbox.control("stats")["accepted"] == 0


def test_slow_share_answers_after_slow_seconds() -> None:
    with SandboxThread(config(slow_share=1.0, slow_seconds=0.4)) as sandbox:
        started = time.monotonic()
        response = send(sandbox, welcome())
        elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed >= 0.4


def test_config_changes_apply_at_once_and_bad_values_are_refused(sandbox: SandboxThread) -> None:
    assert send(sandbox, welcome()).status_code == 200

    changed = sandbox.control("config", {"error-share": 1.0})
    refused = requests.post(
        f"{sandbox.url}/_sandbox/config", json={"read_share": 2}, timeout=TIMEOUT
    )

    assert changed["error_share"] == 1.0
    assert send(sandbox, welcome()).status_code == 500
    assert refused.status_code == 400
    assert sandbox.control("config")["read_share"] == 0.5


def test_the_config_never_shows_the_app_secret(sandbox: SandboxThread) -> None:
    shown = requests.get(f"{sandbox.url}/_sandbox/config", timeout=TIMEOUT)
    changed = sandbox.control("config", {"app_secret": "another-secret"})

    assert shown.status_code == 200
    for answer in (shown.text, json.dumps(changed)):
        assert "app_secret" not in answer
        assert SECRET not in answer
        assert "another-secret" not in answer


def test_reset_forgets_messages_and_counters(sandbox: SandboxThread) -> None:
    send(sandbox, welcome())
    send(sandbox, welcome(), token="bad")

    sandbox.control("reset")

    stats = sandbox.control("stats")
    assert stats["accepted"] == 0
    assert stats["rejected_by_code"] == {}
    assert sandbox.control("messages")["messages"] == []
