"""No server-side request forgery: a customer's URL reaches only public addresses, checked when
it is registered and again, on the addresses connected to, at each delivery."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
from django.test import override_settings

from callbacks.addresses import AddressRefused, address_is_public, url_check
from callbacks.delivery import callbacks_deliver
from callbacks.endpoints import endpoint_test_event
from callbacks.models import CallbackEvent, DeliveryAttempt, WebhookEndpoint
from callbacks.signing import secret_generate
from tests.callback_receiver import CallbackReceiver
from tests.conftest import Tenant

REFUSED = [
    "127.0.0.1",
    "127.5.5.5",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.1.1",
    "100.64.0.1",
    "100.127.255.254",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "0.0.0.0",
    "255.255.255.255",
    "::1",
    "::",
    "fd00::1",
    "fc00::1",
    "fe80::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "fd00:ec2::254",
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.fixture
def private_refused() -> Iterator[None]:
    with override_settings(CALLBACKS_ALLOW_PRIVATE_HOSTS=False):
        yield


@pytest.mark.parametrize("address", REFUSED)
def test_a_non_public_address_is_refused(address: str) -> None:
    assert not address_is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_a_public_address_is_allowed(address: str) -> None:
    assert address_is_public(ipaddress.ip_address(address))


@pytest.mark.usefixtures("private_refused")
@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8000/hook",  # a name that resolves to 127.0.0.1
        "http://127.0.0.1/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http://user:pass@93.184.216.34/",
    ],
)
def test_registration_refuses_it(url: str, tenant: Tenant) -> None:
    response = tenant.client.post(
        "/api/v1/webhook-endpoints/", {"url": url, "events": ["message.status"]}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()) == ["url"]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.usefixtures("private_refused")
def test_a_public_literal_address_passes_the_check() -> None:
    url_check("https://93.184.216.34/hook")


def test_the_setting_lets_development_use_loopback() -> None:
    url_check("http://localhost:8000/hook")
    with override_settings(CALLBACKS_ALLOW_PRIVATE_HOSTS=False), pytest.raises(AddressRefused):
        url_check("http://localhost:8000/hook")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_delivery_refuses_an_address_that_became_private(tenant: Tenant, host: str) -> None:
    """Registered while the name was allowed (DNS may change after the check): delivery checks
    the addresses it connects to, and the receiver gets nothing."""
    receiver = CallbackReceiver().start()
    try:
        endpoint = WebhookEndpoint.objects.create(
            organization=tenant.organization,
            url=f"http://{host}:{receiver.port}/hook",
            events=["message.status"],
            secret=secret_generate(),
        )
        receiver.secrets = [endpoint.secret]
        event = endpoint_test_event(organization=tenant.organization, endpoint_id=str(endpoint.pk))

        with override_settings(CALLBACKS_ALLOW_PRIVATE_HOSTS=False):
            callbacks_deliver(budget_seconds=0)
    finally:
        receiver.stop()

    assert receiver.requests == 0
    refreshed = CallbackEvent.objects.get(pk=event.pk)
    assert refreshed.failed_at is not None
    assert "no pública" in refreshed.last_error
    [attempt] = DeliveryAttempt.objects.filter(endpoint=endpoint)
    assert attempt.status_code is None
    assert attempt.outcome == "failed"
