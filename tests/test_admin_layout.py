"""The admin's lists as an operator sees them: a send's row fits 1,400 px, percentages read one
way, and the message list says when its total is an estimate."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import django.contrib.admin
import pytest
from django.test import Client

from bulksend.admin import percentage_text
from bulksend.models import BulkSend, BulkSendStatus
from messaging.admin import EstimatedCountPaginator
from messaging.models import MessageStatus
from tests import factories
from tests.conftest import Tenant

SENDS = "/admin/bulksend/bulksend/"
MESSAGES = "/admin/messaging/message/"
SCREEN_WIDTH = 1400
ADMIN_STATIC = Path(django.contrib.admin.__file__).parent / "static"
# Written into the page: once laid out, the widths go into its title, which --dump-dom prints.
MEASURE = """<script>
window.addEventListener("load", () => {
  const results = document.querySelector(".results");
  document.title = JSON.stringify({
    page: document.documentElement.scrollWidth,
    results: results.scrollWidth,
    shown: results.clientWidth,
  });
});
</script>"""


@pytest.fixture
def busy_send(tenant: Tenant) -> BulkSend:
    """A send as wide as a row gets: long names, seven-character counters, a fraction."""
    tenant.organization.name = "Distribuidora Mayorista del Litoral Sociedad Anonima"
    tenant.organization.save()
    template = factories.make_template(
        tenant.account, name="recordatorio_de_pago_con_vencimiento_proximo", language="es_AR"
    )
    bulk_send = factories.make_bulk_send(tenant.number, template, status=BulkSendStatus.PROCESSING)
    factories.make_message(bulk_send, status=MessageStatus.READ)
    factories.make_message(bulk_send, status=MessageStatus.FAILED)
    factories.make_message(bulk_send)
    # A million recipients (more than the API lets one send have), counters that add up as the
    # table's constraints require.
    BulkSend.objects.filter(pk=bulk_send.pk).update(
        unique_recipients=1_000_000,
        sent_count=666_666,
        delivered_count=555_555,
        read_count=444_444,
        failed_count=111_111,
        pending_count=222_223,
    )
    return bulk_send


def test_percentages_have_one_decimal_and_the_sign_attached() -> None:
    assert [percentage_text(value) for value in (0.0, 50.0, 33.33, 100.0)] == [
        "0.0%",
        "50.0%",
        "33.3%",
        "100.0%",
    ]


def test_a_sends_row_shows_status_progress_and_counters(
    admin_client: Client, busy_send: BulkSend
) -> None:
    page = admin_client.get(SENDS).content.decode()

    row = re.search(r'<tr[^>]*>\s*<td class="action-checkbox">.*?</tr>', page, re.S)
    assert row is not None
    cells = [
        re.sub(r"<[^>]+>|&nbsp;", " ", cell)
        for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row.group(0), re.S)
    ]
    texts = [" ".join(cell.split()) for cell in cells][1:]  # after the checkbox
    assert texts == [
        "recordatorio_de… Distribuidora M…",
        "Processing",
        "77.8% 77.8%",
        "666,666",
        "555,555",
        "444,444",
        "111,111",
        "222,223",
    ]


def test_the_send_list_needs_no_horizontal_scrolling_at_1400_px(
    admin_client: Client, busy_send: BulkSend, tmp_path: Path
) -> None:
    if shutil.which("chromium") is None:
        # .ci/run installs Debian's chromium: in CI a missing browser is a failure, not a skip.
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = admin_client.get(SENDS).content.decode()
    # The page as served, its stylesheets read from the installed admin (no server needed).
    page = page.replace('"/static/', f'"file://{ADMIN_STATIC}/').replace(
        "</body>", MEASURE + "</body>"
    )
    html = tmp_path / "sends.html"
    html.write_text(page)

    dumped = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            f"--window-size={SCREEN_WIDTH},900",
            "--virtual-time-budget=10000",
            "--dump-dom",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout

    title = re.search(r"<title>(\{.*?\})</title>", dumped)
    assert title is not None, dumped[:500]
    widths = json.loads(title.group(1))
    assert widths["page"] <= SCREEN_WIDTH, widths
    assert widths["results"] <= widths["shown"], widths


def test_the_unfiltered_message_list_says_its_total_is_an_estimate(
    admin_client: Client, busy_send: BulkSend
) -> None:
    page = admin_client.get(MESSAGES).content.decode()

    assert "The total is PostgreSQL&#x27;s estimate" in page


def test_a_filtered_message_list_under_the_cap_gives_an_exact_total(
    admin_client: Client, busy_send: BulkSend
) -> None:
    page = admin_client.get(MESSAGES, {"status__exact": MessageStatus.PENDING}).content.decode()

    assert "estimated-count" not in page


def test_a_filtered_message_list_over_the_cap_says_counting_stopped(
    admin_client: Client, busy_send: BulkSend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(EstimatedCountPaginator, "count_cap", 2)

    page = admin_client.get(MESSAGES, {"q": str(busy_send.pk)}).content.decode()

    assert "More than 2 messages match: counting stops there" in page
