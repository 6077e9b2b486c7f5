# The Python example of the contract page spec/003_df4438b71f958465.txt
# (Message status, request example), copied verbatim below.
# ruff: noqa
# fmt: off
import requests

message_id = "wamid.HBgNNTQ5MTEyMzQ1Njc4FQIAERgSQjVBN0YzRjQ2NzFCNDVBNQA="

response = requests.get(
    f"https://api.mindosoftware.com/api/v1/meta-templates/messages/{message_id}/",
    headers={"X-API-Key": "mindo_xxxxxxxxxxxxxxxxxxxxxxxx"}
)

data = response.json()
print(f"Current status: {data['delivery_status']['current']}")
print(f"Delivered: {data['delivery_status']['delivered_at']}")
print(f"Read: {data['delivery_status']['read_at']}")
