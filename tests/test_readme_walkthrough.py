"""The README's walk-through, run as a reader runs it: its bash blocks, in order, in one bash
session, against the service as `./dev up` starts it (gunicorn, a real Celery worker, the Meta
sandbox posting its webhooks back, the demo organization provisioned by `manage.py demo`).

Only what the README tells the reader to fill in is filled in: the API key `./dev up` printed,
and the server's address (this one's port is free, not 8000). Each step's answer is checked
against what the README promises of it, and against the example answer shown after it. Work
that happens in the background (the drain, Meta's webhooks) is waited for by running the
README's own read again until it shows what was promised, within a deadline.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from bulksend.export import COLUMNS
from callbacks.tasks import QUEUE as CALLBACKS_QUEUE
from callbacks.tasks import deliver_callbacks
from tests.delivery_support import (
    SandboxProcess,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    free_port,
    process_env,
    wait_for,
)
from tests.gunicorn_support import GunicornProcess
from tests.process_support import run_python
from tests.test_drain_workers import CeleryWorker, forget_broker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

README = Path(settings.BASE_DIR) / "README.md"
SECTION = "## Walk-through"
# What the README's first block asks the reader to replace.
KEY_PLACEHOLDER = "mindo_Xk3..."
BASE_AS_WRITTEN = "http://127.0.0.1:8000"
# The callbacks receiver's port, which the README says may be any free one.
HOOK_PORT_AS_WRITTEN = "HOOK_PORT=8090"
# A step that waits for background work runs its block again until this deadline: generous,
# for a machine busy with other work; a healthy run takes seconds.
BACKGROUND_DEADLINE = 180.0
BLOCK_TIMEOUT = 120.0
DEMO_NUMBER = "813497231850626"
MANAGE_PY = (
    "import sys; from django.core.management import execute_from_command_line; "
    "execute_from_command_line(['manage.py', *sys.argv[1:]])"
)


@dataclass(frozen=True)
class Block:
    language: str
    text: str


def walkthrough_blocks() -> list[Block]:
    """The fenced blocks of the README's walk-through section, in order."""
    readme = README.read_text()
    start = readme.index(f"\n{SECTION}\n")
    end = readme.index("\n## ", start + len(SECTION) + 2)
    fences = re.finditer(r"^```(\w*)\n(.*?)^```$", readme[start:end], flags=re.M | re.S)
    return [Block(match.group(1), match.group(2)) for match in fences]


def bash_steps() -> list[tuple[str, dict[str, Any] | None]]:
    """Each bash block, with the JSON example the README shows right after it, if any."""
    blocks = walkthrough_blocks()
    steps: list[tuple[str, dict[str, Any] | None]] = []
    for index, block in enumerate(blocks):
        if block.language != "bash":
            continue
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        example = None
        if following is not None and following.language == "json":
            # Elided ids and moments are written `"65b06f9c-..."` or `"..."`: still JSON.
            example = json.loads(following.text)
        steps.append((block.text, example))
    return steps


EXPORT_HEADER = [header for header, _ in COLUMNS]


# --- the processes `./dev up` runs --------------------------------------------------------------


def provision_demo(env: dict[str, str]) -> dict[str, Any]:
    """`manage.py demo --json`, as `./dev up` runs it: its last line is the organization."""
    done = run_python(MANAGE_PY, "demo", "--json", env=env)
    demo: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return demo


def sandbox_configure(sandbox: SandboxProcess, webhook_url: str) -> None:
    """The sandbox as `./dev up` runs it: its defaults (80/s a number, `delivered` after 1 s,
    `read` after 3 s for half, 9999 fails), posting its webhooks to the service. Its catalog is
    empty until `demo` registers the demo's account, number and templates with it."""
    sandbox.control(
        "config",
        {
            "webhook_url": webhook_url,
            "rate_per_number": 80,
            "delivered_after": 1.0,
            "read_after": 3.0,
            "read_share": 0.5,
            "fail_suffix": "9999",
        },
    )


class BashSession:
    """One `bash` that runs blocks one after the other, so that the variables and functions a
    block defines are there for the next, as in the reader's terminal. Each block's output goes
    to files, and its exit status to a file written last: the test waits for that file."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.workdir = workdir
        self.runs = 0
        self.process = subprocess.Popen(
            ["bash", "--norc", "--noprofile"],
            cwd=workdir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )

    def run(self, block: str, *, timeout: float = BLOCK_TIMEOUT) -> str:
        """Runs `block`, fails the test unless it exits 0, and returns its standard output."""
        self.runs += 1
        name = f"block-{self.runs}"
        out, err, status = (self.workdir / f"{name}.{end}" for end in ("out", "err", "rc"))
        assert self.process.stdin is not None
        # Its own stdin is /dev/null: a command of the block cannot read the blocks after it.
        self.process.stdin.write(
            f"{{\n{block}\n}} </dev/null >{out} 2>{err}\n"
            f"echo $? >{status}.tmp && mv {status}.tmp {status}\n"
        )
        self.process.stdin.flush()
        wait_for(status.exists, timeout=timeout, interval=0.05, what=f"bash to run:\n{block}")
        code = status.read_text().strip()
        assert code == "0", f"exit {code} from:\n{block}\nstderr:\n{err.read_text()}"
        return out.read_text()

    def run_until(self, block: str, promised: Any, *, what: str) -> str:
        """Runs `block` again until `promised(output)` holds: the README's own way to watch
        background work. Returns the output that kept the promise."""
        outputs: list[str] = []

        def kept() -> bool:
            outputs.append(self.run(block))
            return bool(promised(outputs[-1]))

        try:
            wait_for(kept, timeout=BACKGROUND_DEADLINE, interval=0.5, what=what)
        except AssertionError as timed_out:
            raise AssertionError(f"{timed_out}; last answer: {outputs[-1:]}") from None
        return outputs[-1]

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@dataclass
class Service:
    key: str
    base: str
    sandbox: SandboxProcess


@pytest.fixture
def service(delivery_redis: redis.Redis, tmp_path: Path) -> Iterator[Service]:
    """`./dev up` on the test database and Redis: the sandbox, the demo organization (which
    registers itself with the sandbox), then gunicorn and a worker. Everything started is stopped
    at the end, the worker first."""
    forget_broker(delivery_redis)
    env = process_env()
    sandbox: SandboxProcess | None = None
    web: GunicornProcess | None = None
    workers: list[CeleryWorker] = []
    try:
        # The web server sends too (POST send/), to the sandbox, as `./dev up`'s does.
        sandbox = SandboxProcess(env, tmp_path)
        web = GunicornProcess(tmp_path, {"META_GRAPH_URL": sandbox.url})
        base = f"http://127.0.0.1:{web.port}"
        sandbox_configure(sandbox, f"{base}/webhooks/meta/")
        demo = provision_demo({**env, "META_GRAPH_URL": sandbox.url})
        assert demo["phone_number_id"] == DEMO_NUMBER
        worker_env = {**env, "META_GRAPH_URL": sandbox.url, "CELERY_TASK_ALWAYS_EAGER": "false"}
        # The default queue's worker, and the customer callbacks' one, as `./dev up` starts them.
        workers.append(CeleryWorker("walkthrough", worker_env, tmp_path))
        workers.append(
            CeleryWorker("walkthrough-callbacks", worker_env, tmp_path, queue=CALLBACKS_QUEUE)
        )
        for worker in workers:
            worker.wait_ready()
        yield Service(key=demo["api_key"], base=base, sandbox=sandbox)
    finally:
        for worker in workers:
            worker.kill()
        if sandbox is not None:
            sandbox.stop()
        if web is not None:
            web.stop()
        forget_broker(delivery_redis)
        delivery_redis.delete(CALLBACKS_QUEUE)


@pytest.fixture
def bash(service: Service, tmp_path: Path) -> Iterator[BashSession]:
    """A reader's shell: the secrets of the service it talks to are in its environment, as
    they would be from `.env` (the README's defaults are the development ones)."""
    workdir = tmp_path / "shell"
    workdir.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "META_APP_SECRET": settings.META_APP_SECRET,
        "META_VERIFY_TOKEN": settings.META_VERIFY_TOKEN,
    }
    session = BashSession(env, workdir)
    try:
        yield session
    finally:
        session.close()


# --- the walk-through ----------------------------------------------------------------------------


def answer(output: str) -> Any:
    return json.loads(output)


def lines(output: str) -> list[Any]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def same_shape(actual: Any, example: Any, path: str = "") -> None:
    """`actual` has exactly the keys of the README's example, at every depth."""
    if isinstance(example, dict):
        assert isinstance(actual, dict), path
        assert set(actual) == set(example), (path, sorted(actual), sorted(example))
        for key, value in example.items():
            same_shape(actual[key], value, f"{path}.{key}")


def test_every_step_of_the_readme_walkthrough_works_as_written(
    service: Service, bash: BashSession
) -> None:
    steps = bash_steps()
    blocks = [text for text, _ in steps]
    examples = [example for _, example in steps]
    # The steps this test knows, in the README's order; a new step needs its check here.
    expected = [
        "KEY=",
        "/send-bulk/",
        "/bulk-sends/$BULK_SEND_ID/ ",
        "/bulk-sends/?status=",
        "/messages/?status=delivered",
        "/messages/export/",
        "WAMID=$(",
        "post_status() {",
        '"$API/messages/$WAMID/"',
        "hub.challenge=123",
        "$API/send/",
        "Idempotency-Key: order-1042",
        "recipients.csv",
        '"send_at": "',
        "/contact-lookup/?phone=",
        "/business-info/",
        "/api/v1/business-accounts/",
        "MEDIA=$(",
        "/bulk-sends/$MEDIA_ID/",
        "/api/v1/suppressions/",
        "ENDPOINT=$(",
        "RECEIVER_PID=$!",
        'open("events.jsonl")',
        "kill $RECEIVER_PID",
        "send-bulk/?dry_run=true",
        "HELD=$(",
        "/bulk-sends/$HELD_ID/ ",
        "/bulk-sends/$HELD_ID/retry/",
        "field retries",
        '"recipient_user_id": "AR.',
        "TRIAL=$(",
        "/bulk-sends/$TRIAL_ID/",
        "/bulk-sends/$TRIAL_ID/pause/",
        "/bulk-sends/$TRIAL_ID/resume/",
        "/bulk-sends/$TRIAL_ID/cancel/",
    ]
    assert len(blocks) == len(expected), blocks
    for block, marker in zip(blocks, expected, strict=True):
        assert marker in block, (marker, block)
    (
        variables,
        create,
        follow,
        list_sends,
        list_messages,
        export,
        lookup,
        play_meta,
        lookup_again,
        handshake,
        send_one,
        send_twice,
        send_csv,
        schedule,
        contact_lookup,
        business_info,
        business_accounts,
        media_send,
        follow_media,
        suppressions,
        register_endpoint,
        receive_and_send,
        received_events,
        unregister_endpoint,
        dry_run,
        held,
        follow_held,
        retry,
        retry_links,
        to_user_id,
        trial,
        follow_trial,
        pause_trial,
        resume_trial,
        cancel_trial,
    ) = blocks

    # The key `./dev up` printed, and this server's address instead of :8000.
    assert KEY_PLACEHOLDER in variables, variables
    assert BASE_AS_WRITTEN in variables, variables
    filled = variables.replace(KEY_PLACEHOLDER, service.key).replace(BASE_AS_WRITTEN, service.base)
    assert bash.run(filled) == ""

    # Create a bulk send: 202's body, as the example shows it.
    accepted = answer(bash.run(create))
    same_shape(accepted, examples[1])
    for field in ("status", "template_name", "total_recipients", "unique_recipients"):
        assert accepted[field] == examples[1][field], field
    assert accepted["quota_info"] == examples[1]["quota_info"]
    number = {k: v for k, v in accepted["whatsapp_phone_number"].items() if k != "id"}
    assert number == {k: v for k, v in examples[1]["whatsapp_phone_number"].items() if k != "id"}
    bulk_send_id = accepted["bulk_send_id"]

    # Follow one send: COMPLETED, then every message delivered.
    status = answer(
        bash.run_until(
            follow,
            lambda out: (answer(out)["status"], answer(out)["delivered_count"]) == ("COMPLETED", 3),
            what="the send to be COMPLETED and its 3 messages delivered",
        )
    )
    same_shape(status, examples[2])
    counters = ("sent_count", "failed_count", "pending_count", "progress_percentage")
    for field in ("total_recipients", *counters):
        assert status[field] == examples[2][field], field
    assert status["id"] == bulk_send_id
    assert status["created_by"]["email"] == examples[2]["created_by"]["email"]
    assert status["started_at"]
    assert status["completed_at"]

    # List today's completed sends: ours among them.
    listing = answer(bash.run(list_sends))
    assert {"count", "next", "previous", "results"} <= set(listing)
    assert bulk_send_id in [send["id"] for send in listing["results"]]
    assert {send["status"] for send in listing["results"]} == {"COMPLETED"}

    # A send's messages, by status: only delivered ones (the others were read), each with its wamid.
    messages = answer(bash.run(list_messages))
    assert messages["count"] == len(messages["results"]) <= 3
    assert {m["status"] for m in messages["results"]} <= {"delivered"}
    assert all(m["meta_message_id"].startswith("wamid.") for m in messages["results"])

    # The send's messages as CSV: the README's header, and a row per message with its wamid.
    exported = list(csv.reader(io.StringIO(bash.run(export), newline="")))
    assert exported[0] == EXPORT_HEADER
    rows = [dict(zip(exported[0], row, strict=True)) for row in exported[1:]]
    assert len(rows) == 3
    assert "+5491112345678" in {row["phone"] for row in rows}
    assert {row["status"] for row in rows} <= {"delivered", "read"}
    assert all(row["wamid"].startswith("wamid.") for row in rows)

    # One message by the wamid Meta (the sandbox) gave it.
    message = answer(bash.run(lookup))
    assert message["recipient"]["phone"] == "+5491112345678"
    assert message["meta_message_id"].startswith("wamid.")
    assert message["delivery_status"]["current"] in ("delivered", "read")

    # Playing Meta: both signed statuses are taken, and the message ends read.
    assert [posted["received"] for posted in lines(bash.run(play_meta))] == [True, True]
    read = answer(
        bash.run_until(
            lookup_again,
            lambda out: answer(out)["delivery_status"]["current"] == "read",
            what="the posted read to be applied",
        )
    )
    assert read["meta_message_id"] == message["meta_message_id"]
    assert read["delivery_status"]["read_at"]

    # Meta's subscription handshake answers the challenge.
    assert bash.run(handshake).strip() == "123"

    # One message, sent within the request: the page's 200 body, and the lookup finds its wamid.
    single = answer(bash.run(send_one))
    single_example = examples[blocks.index(send_one)]
    same_shape(single, single_example)
    for field in ("success", "template_name", "recipient_phone", "status"):
        assert single[field] == single_example[field], field
    lookup_single = f'curl -s "$API/messages/{single["message_id"]}/" -H "X-API-Key: $KEY"'
    found = answer(bash.run(lookup_single))
    assert found["meta_message_id"] == single["message_id"]

    # The same single send twice with one Idempotency-Key: one message, the same answer twice.
    first_answer, second_answer = lines(bash.run(send_twice))
    assert first_answer == second_answer
    assert (first_answer["success"], first_answer["status"]) == (True, "sent")
    assert first_answer["recipient_phone"] == "+5491187654321"

    # Two recipients from a CSV file: accepted as a JSON send of the same two would be.
    from_csv = answer(bash.run(send_csv))
    assert (from_csv["status"], from_csv["total_recipients"]) == ("queued", 2)

    # A send for two hours from now, with quiet hours: QUEUED until then, nothing started, the
    # body as the example shows it (the moments and the wait are today's).
    scheduled = answer(bash.run(schedule))
    schedule_example = examples[blocks.index(schedule)]
    same_shape(scheduled, schedule_example)
    assert (scheduled["status"], scheduled["started_at"], scheduled["pending_count"]) == (
        "QUEUED",
        None,
        1,
    )
    assert scheduled["send_window"] == schedule_example["send_window"]
    assert scheduled["status_reason"].startswith(
        f"Scheduled: nothing goes out before {scheduled['send_at']}."
    )
    assert scheduled["estimated_time_minutes"] >= 119

    # The demo's contact, found by the page's example spelling of its phone.
    contact = answer(bash.run(contact_lookup))
    contact_example = examples[blocks.index(contact_lookup)]
    same_shape(contact, contact_example)
    assert contact["found"] is True
    assert contact["contact"]["phone"] == contact_example["contact"]["phone"]
    assert contact["contact"]["fullName"] == contact_example["contact"]["fullName"]
    assert contact["contact"]["contactListName"] == contact_example["contact"]["contactListName"]

    # The demo organization's profile, as the example shows it (but its id).
    business_example = examples[blocks.index(business_info)]
    assert business_example is not None
    profile = answer(bash.run(business_info))
    assert list(profile) == list(business_example)
    assert {k: v for k, v in profile.items() if k != "id"} == {
        k: v for k, v in business_example.items() if k != "id"
    }

    # Business accounts: the example's shape, the demo's number with the 3 recipients above in
    # its window, and the media template's typed variables exactly as shown.
    accounts = answer(bash.run(business_accounts))
    accounts_example = examples[blocks.index(business_accounts)]
    same_shape(accounts, accounts_example)
    assert (accounts["companyName"], accounts["apiKeyName"]) == ("Mindo Demo", "demo")
    [account] = accounts["businessAccounts"]
    [example_account] = accounts_example["businessAccounts"]
    same_shape(account, example_account)
    [number] = account["phoneNumbers"]
    same_shape(number, example_account["phoneNumbers"][0])
    assert number["phoneNumberId"] == DEMO_NUMBER
    assert number["quota"] == example_account["phoneNumbers"][0]["quota"]
    [launch] = [t for t in account["templates"] if t["name"] == "product_launch"]
    assert launch == example_account["templates"][0]
    assert [t["name"] for t in account["templates"]] == sorted(
        t["name"] for t in account["templates"]
    )

    # The media send: no new place in the quota, then out to Meta with its image and price.
    assert answer(bash.run(media_send))["quota_needed"] == 0
    bash.run_until(
        follow_media,
        lambda out: answer(out)["status"] == "COMPLETED",
        what="the media send to be COMPLETED",
    )
    sent = service.sandbox.control("messages")["messages"]
    [launch_sent] = [m for m in sent if m["template"] == "product_launch"]
    header, body = launch_sent["request_body"]["template"]["components"]
    assert header["parameters"] == [
        {"type": "image", "image": {"link": "https://mindo.example/launch.png"}}
    ]
    assert body["parameters"][-1]["currency"] == {
        "fallback_value": "$15,000.50",
        "code": "ARS",
        "amount_1000": 15000500,
    }

    # A phone goes on the suppression list, is found there, and comes off it.
    added, listed, removed = bash.run(suppressions).strip().splitlines()
    assert json.loads(added)["source"] == "api"
    assert [e["phone"] for e in json.loads(listed)["results"]] == ["+5491155550000"]
    assert removed == "204"

    # An endpoint registered with curl; a receiver on it gets the signed events of a send.
    hook_port = free_port()
    assert HOOK_PORT_AS_WRITTEN in register_endpoint, register_endpoint
    registered = answer(
        bash.run(register_endpoint.replace(HOOK_PORT_AS_WRITTEN, f"HOOK_PORT={hook_port}"))
    )
    same_shape(registered, examples[blocks.index(register_endpoint)])
    assert registered["events"] == ["bulk_send.status", "message.status"]
    assert registered["secret"].startswith("whsec_")
    assert bash.run(receive_and_send) == ""

    def send_told(out: str) -> bool:
        deliver_callbacks.apply_async()  # the test plays beat, which wakes a delivery run
        told = set(out.splitlines())
        return {"True message.status delivered", "True bulk_send.status COMPLETED"} <= told

    told = bash.run_until(
        received_events, send_told, what="the receiver to get the send's signed events"
    ).splitlines()
    assert all(line.startswith("True ") for line in told), told
    assert {"True bulk_send.status PROCESSING", "True message.status sent"} <= set(told)
    assert bash.run(unregister_endpoint).strip() == "204"
    # A dry run: the example's verdicts, figures and shape; nothing created.
    sends_before = answer(bash.run('curl -s "$API/bulk-sends/" -H "X-API-Key: $KEY"'))["count"]
    planned = answer(bash.run(dry_run))
    dry_run_example = examples[blocks.index(dry_run)]
    same_shape(planned, dry_run_example)
    for field in ("total_recipients", "unique_recipients", "sendable_recipients"):
        assert planned[field] == dry_run_example[field], field
    assert planned["quota_info"]["quota_needed"] == dry_run_example["quota_info"]["quota_needed"]
    assert [(v["index"], v["reasons"]) for v in planned["verdicts"]] == [
        (v["index"], v["reasons"]) for v in dry_run_example["verdicts"]
    ]
    assert answer(bash.run('curl -s "$API/bulk-sends/" -H "X-API-Key: $KEY"'))["count"] == (
        sends_before
    )

    # A send with an opted-out recipient: PARTIAL, one sent, one failed `opted_out`.
    bash.run(held)
    bash.run_until(
        follow_held,
        lambda out: (answer(out)["status"], answer(out)["sent_count"]) == ("PARTIAL", 1),
        what="the held send to end PARTIAL",
    )
    # Its retry: send-bulk's 202 and `retry_of`; then both links, and the retry goes out.
    retried = answer(bash.run(retry))
    retry_example = examples[blocks.index(retry)]
    same_shape(retried, retry_example)
    assert (retried["total_recipients"], retried["quota_info"]["quota_needed"]) == (1, 0)
    linked = bash.run_until(
        retry_links,
        lambda out: out.split()[-1] == "COMPLETED",
        what="the retry to be COMPLETED",
    ).split()
    assert linked[0] == retried["retry_of"]
    assert json.loads(linked[1]) == [retried["bulk_send_id"]]
    # A single send to a business-scoped user id: Meta gets it in `recipient`, no `to`.
    by_user_id = answer(bash.run(to_user_id))
    user_id_example = examples[blocks.index(to_user_id)]
    same_shape(by_user_id, user_id_example)
    for field in ("success", "recipient_phone", "recipient_user_id", "status"):
        assert by_user_id[field] == user_id_example[field], field
    [to_user] = [
        m
        for m in service.sandbox.control("messages")["messages"]
        if m["request_body"].get("recipient") == "AR.1502576394655843"
    ]
    assert "to" not in to_user["request_body"]

    # The 10,000-recipient trial fits the demo's quota after all of the above, and goes out.
    assert answer(bash.run(trial)) == {
        "can_send": True,
        "quota_needed": 10000,
        "quota_available": 89996,
        "quota_total": 100000,
        "tier": "TIER_100K",
    }
    sending = answer(
        bash.run_until(
            follow_trial,
            lambda out: answer(out)["sent_count"] > 0,
            what="the trial's first messages to go out",
        )
    )
    assert sending["total_recipients"] == 10000
    assert sending["failed_count"] == 0
    assert "status_reason" not in sending  # nothing waits for the quota window

    # Paused: it says so, and nothing of it goes out until it is resumed.
    reason, sent_when_paused = bash.run(pause_trial).strip().splitlines()
    assert reason == "paused"
    trial_id = sending["id"]
    paused = answer(bash.run(follow_trial))
    assert (paused["status_reason"], paused["sent_count"]) == ("paused", int(sent_when_paused))
    assert paused["paused_at"]
    # Resumed, then cancelled: nothing pending is left, and what went out is counted.
    assert bash.run(resume_trial).strip() == "PROCESSING"
    cancelled = answer(bash.run(cancel_trial))
    assert (cancelled["id"], cancelled["status"]) == (trial_id, "CANCELLED")
    assert cancelled["pending_count"] == 0
    assert cancelled["sent_count"] + cancelled["failed_count"] < 10000
