"""send-bulk/'s recipients as CSV on the HTTP side: the `text/csv` parser, the multipart form's
file, and their OpenAPI description (the reading itself: bulksend.csv_recipients)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers
from rest_framework.parsers import BaseParser
from rest_framework.request import Request

from bulksend.csv_recipients import (
    CSV_MEDIA_TYPE,
    CSV_ROWS,
    EMPTY_FILE,
    MISSING_FILE,
    OPTIONAL_SEND_FIELDS,
    RECIPIENTS,
    SEND_FIELDS,
    CsvRecipients,
    refused,
    send_bulk_csv_data,
)
from bulksend.csv_stream import StreamedCsvRecipients, streamed_csv_data
from bulksend.json_stream import json_send_fields
from mindo.errors import InvalidFieldsError
from mindo.parsers import json_body_loads, read_bounded, too_large
from mindo.request_spool import body_spool, body_spool_read

JSON_MEDIA_TYPE = "application/json"
# Bodies larger than this are streamed (bulksend.json_stream, bulksend.csv_stream), smaller ones
# parsed whole, under API_MAX_BODY_BYTES: whole parsing is faster (100,000 recipients, 12 MB of
# JSON, accepted in 4.5 s against 5.2 s streamed), and below it streaming saves no memory worth
# having.
STREAM_FROM_BYTES = 16 * 1024 * 1024

# The OpenAPI description of the CSV forms of the request.
CSV_REQUEST = OpenApiTypes.BINARY
CSV_FORM_REQUEST = inline_serializer(
    "SendBulkCsvForm",
    fields={
        RECIPIENTS: serializers.FileField(help_text="The CSV file."),
        **{
            name: serializers.CharField(required=name not in OPTIONAL_SEND_FIELDS)
            for name in SEND_FIELDS
        },
    },
)
_CSV_FIELD_NOTES = {
    "language": " (`es` when not given).",
    "send_at": " (optional; ISO 8601 with its offset, as in the JSON body).",
    "send_window": " (optional; `HH:MM-HH:MM`, the JSON body's `start` and `end`).",
}
CSV_QUERY_PARAMETERS = [
    OpenApiParameter(
        name,
        OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        description=f"With a CSV body or form only: the send's `{name}`"
        + _CSV_FIELD_NOTES.get(name, "."),
    )
    for name in SEND_FIELDS
]


def large_body_spool(request: Request) -> None:
    """Spool a large JSON or CSV body (413 past SEND_BULK_MAX_BODY_BYTES), before anything reads
    it: the Idempotency-Key's fingerprint and the recipients' stream then read the spool."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    streamed = request.content_type.startswith((JSON_MEDIA_TYPE, CSV_MEDIA_TYPE))
    if not streamed or not declared.isdigit():
        return
    if int(declared) <= STREAM_FROM_BYTES:
        return
    # A chunked body was read by mindo.middleware up to API_MAX_BODY_BYTES (+1 to tell it over),
    # and given a Content-Length: only its Transfer-Encoding still says it came in chunks.
    chunked = "chunked" in str(request.META.get("HTTP_TRANSFER_ENCODING", "")).lower()
    limit = settings.API_MAX_BODY_BYTES if chunked else settings.SEND_BULK_MAX_BODY_BYTES
    body_spool_read(request, limit=limit)


def send_bulk_request_data(
    request: Request,
) -> tuple[Any, CsvRecipients | StreamedCsvRecipients | None]:
    """send-bulk/'s data however it came (JSON, a CSV body, a CSV file in a form), and the CSV's
    rows when there was one. A spooled JSON body's recipients come as a stream."""
    spool = body_spool(request)
    if spool is not None and request.content_type.startswith(CSV_MEDIA_TYPE):
        return streamed_csv_data(spool, request.query_params)
    if spool is not None:
        fields = json_send_fields(spool)
        if fields is None:  # no JSON object: parsed whole, for the errors small bodies get
            return json_body_loads(spool.reader().read(), request), None
        return fields, None
    if request.content_type.startswith("multipart/form-data"):
        upload = request.FILES.get(RECIPIENTS)
        if upload is None:
            raise InvalidFieldsError({RECIPIENTS: [MISSING_FILE]})
        if upload.size is not None and upload.size > settings.API_MAX_BODY_BYTES:
            raise too_large()
        fields = {**request.query_params.dict(), **request.POST.dict()}
        return send_bulk_csv_data(upload.read(), fields)
    data = request.data
    if request.content_type.startswith(CSV_MEDIA_TYPE) and CSV_ROWS not in data:
        raise refused([EMPTY_FILE])  # an empty body, which no parser is given
    if isinstance(data, dict) and CSV_ROWS in data:
        rows = data[CSV_ROWS]
        return {name: value for name, value in data.items() if name != CSV_ROWS}, rows
    return data, None


class RecipientsCsvParser(BaseParser):
    """`text/csv` bodies for send-bulk/: the data a JSON body would give, plus the rows' lines
    under CSV_ROWS (read by the view to name lines in errors)."""

    media_type = CSV_MEDIA_TYPE

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        request = (parser_context or {}).get("request")
        raw = read_bounded(stream, request, settings.API_MAX_BODY_BYTES)
        query = request.query_params if request is not None else {}
        data, rows = send_bulk_csv_data(raw, query)
        return {**data, CSV_ROWS: rows}
