# The Python example of the contract page spec/001_4e77a51dd68d006f.txt
# (Send messages, request example), copied verbatim below.
# ruff: noqa
# fmt: off
import requests

bulk_send_id = "a3f2b8c9-4d5e-6f7a-8b9c-0d1e2f3a4b5c"

response = requests.get(
    f"https://api.mindosoftware.com/api/v1/meta-templates/bulk-sends/{bulk_send_id}/messages/",
    headers={"X-API-Key": "mindo_xxxxxxxxxxxxxxxxxxxxxxxx"},
    params={"status": "delivered", "page": 1, "page_size": 20}
)

data = response.json()
print(f"Total messages: {data['count']}")
for msg in data["results"]:
    print(f"  {msg['recipient_phone']}: {msg['status']}")
