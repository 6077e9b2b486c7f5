# The Python example of the contract page spec/004_e82892fde6b576e1.txt
# (Send bulk, use case: event reminders), copied verbatim below.
# ruff: noqa
# fmt: off
import requests

attendees = [
    {"phone": "+5491112345678", "name": "Juan Perez"},
    {"phone": "+5491187654321", "name": "Maria Garcia"},
]

response = requests.post(
    "https://api.mindosoftware.com/api/v1/meta-templates/send-bulk/",
    headers={"X-API-Key": "mindo_xxxxxxxxxxxxxxxxxxxxxxxx"},
    json={
        "phone_number_id": "813497231850626",
        "template_name": "event_reminder",
        "recipients": [
            {
                "phone": a["phone"],
                "variables": {
                    "name": a["name"],
                    "event_name": "Webinar: API Introduction",
                    "event_date": "November 28, 6:00 PM"
                }
            }
            for a in attendees
        ]
    }
)

bulk = response.json()
print(f"Reminders sent: {bulk['unique_recipients']}")
print(f"Estimated time: {bulk['estimated_time_minutes']} minutes")
