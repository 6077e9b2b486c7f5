# The Python example of the contract page spec/004_e82892fde6b576e1.txt
# (Send bulk, request example), copied verbatim below.
# ruff: noqa
# fmt: off
import requests

response = requests.post(
    "https://api.mindosoftware.com/api/v1/meta-templates/send-bulk/",
    headers={"X-API-Key": "mindo_xxxxxxxxxxxxxxxxxxxxxxxx"},
    json={
        "phone_number_id": "813497231850626",
        "template_name": "welcome_message",
        "language": "es",
        "recipients": [
            {
                "phone": "+5491112345678",
                "variables": {"name": "Juan Perez", "code": "ABC123"},
                "button_variables": {"button_0": "ABC-123"}
            },
            {
                "phone": "+5491187654321",
                "variables": {"name": "Maria Garcia", "code": "DEF456"},
                "button_variables": {"button_0": "DEF-456"}
            },
            {
                "phone": "+5491199887766",
                "variables": {"name": "Carlos Lopez", "code": "GHI789"},
                "button_variables": {"button_0": "GHI-789"}
            }
        ]
    }
)

data = response.json()
print(f"Bulk Send ID: {data['bulk_send_id']}")
print(f"Recipients: {data['unique_recipients']}")
