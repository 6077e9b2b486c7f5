from __future__ import annotations

from tests.conftest import Tenant


def test_it_accepts_the_spec_example(tenant: Tenant) -> None:
    response = tenant.client.post(
        "/api/v1/meta-templates/send-bulk/",
        {
            "phone_number_id": "813497231850626",
            "template_name": "welcome_message",
            "recipients": [
                {
                    "phone": "+5491112345678",
                    "variables": {"name": "Juan", "code": "A"},
                    "button_variables": {"button_0": "A-1"},
                }
            ],
        },
        format="json",
    )
    assert response.status_code == 202, response.json()
    assert response.json()["unique_recipients"] == 1
