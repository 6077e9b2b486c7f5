# The Python example of the contract page spec/000_37af53b0b0ab26e5.txt
# (Send status, request example), copied verbatim below.
# ruff: noqa
# fmt: off
import requests

bulk_send_id = "a3f2b8c9-4d5e-6f7a-8b9c-0d1e2f3a4b5c"

response = requests.get(
    f"https://api.mindosoftware.com/api/v1/meta-templates/bulk-sends/{bulk_send_id}/",
    headers={"X-API-Key": "mindo_xxxxxxxxxxxxxxxxxxxxxxxx"}
)

data = response.json()
print(f"Status: {data['status']}")
print(f"Progress: {data['progress_percentage']}%")
print(f"Sent: {data['sent_count']}/{data['total_recipients']}")
