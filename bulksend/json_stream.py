"""send-bulk's JSON body read as a stream, for bodies too large to hold as Python objects.

A million recipients are ~70 MB of JSON, and over a gigabyte once parsed into dicts and strings.
The body is spooled (mindo.request_spool) and read with ijson's C parser (yajl2_c) instead:

1. `json_send_fields` walks the body's events once and builds every top-level field but
   `recipients`, whose array it skips: `recipients` may come before or after the other fields,
   so the template is known only once the whole body has been read. A walk of events costs about
   what orjson's full parse does, and holds nothing.
2. `StreamedRecipients.check` reads the array's items (ijson builds each in C) in batches of
   BATCH, checks their shape as a list's are checked (the same errors, by index), counts them
   and keeps the clean ones in a bulksend.checked_spool.CheckedSpool.
3. `StreamedRecipients.batches` reads them from that spool (not the body: parsing it again
   cost more than the check), for the send's creation to check against the template and COPY
   (bulksend.creation), a batch at a time.

A body whose top level is no object, or that is no JSON at all, is parsed whole by the caller as
before, so its errors are byte for byte those of the in-memory path.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

import ijson

from bulksend.checked_spool import CheckedSpool
from bulksend.recipients import Errors, Recipient, parse_recipients
from mindo.request_spool import CHUNK_BYTES, BodySpool

RECIPIENTS = "recipients"
# Recipients checked and written per batch: 10,000 keep a batch's objects to a few megabytes.
BATCH = 10_000
_OPENING = frozenset({"start_map", "start_array"})
_CLOSING = frozenset({"end_map", "end_array"})


class StreamedRecipients:
    """The `recipients` array of a spooled JSON body. Its shape is checked once (`check`), which
    keeps the clean recipients in a CheckedSpool; they are then read from there as batches
    (`batches`): a RecipientBatches."""

    def __init__(self, spool: BodySpool) -> None:
        self.spool = spool
        self.count = 0
        self._user_ids: set[str] = set()
        self._checked: CheckedSpool | None = None

    def item_batches(self) -> Iterator[tuple[int, list[Any]]]:
        items = ijson.items(
            self.spool.reader(), f"{RECIPIENTS}.item", use_float=False, buf_size=CHUNK_BYTES
        )
        first = 0
        while batch := list(islice(items, BATCH)):
            yield first, batch
            first += len(batch)

    def _counted_batches(self, max_length: int) -> Iterator[tuple[int, list[Any]]]:
        """The item batches while they are within `max_length`, counted as they are read (a
        list past it is refused for its length, before its items)."""
        self.count = 0
        for first, items in self.item_batches():
            self.count += len(items)
            if self.count > max_length:
                return
            yield first, items

    def _length_refusal(self, max_length: int) -> str | None:
        if self.count > max_length:
            return "max_length"
        return None if self.count else "empty"

    def length_refusal(self, max_length: int) -> str | None:
        """ "max_length" or "empty" as a list's length is refused, else None (a dry run's
        check: its recipients are judged one by one after, by bulksend.dry_run)."""
        for _ in self._counted_batches(max_length):
            pass
        return self._length_refusal(max_length)

    def check(self, max_length: int) -> tuple[str | None, dict[str, Errors]]:
        """Count and check the items: ("max_length" or "empty", {}) as a list's length is
        refused, before its items; else (None, the errors by index). The clean recipients are
        spooled while none failed, for `batches`."""
        errors: dict[str, Errors] = {}
        self._checked = CheckedSpool()
        for first, items in self._counted_batches(max_length):
            clean, batch_errors = parse_recipients(items, first_index=first, keep_valid=True)
            errors.update(batch_errors)
            self._user_ids.update(recipient.user_id for recipient in clean if recipient.user_id)
            if not errors:
                self._checked.append(clean)
        refusal = self._length_refusal(max_length)
        if refusal is not None or errors:
            self._checked.close()  # refused: nothing will be written
            return (refusal, {}) if refusal else (None, errors)
        return None, {}

    @property
    def total(self) -> int:
        return self.count

    def user_ids(self) -> set[str]:
        return self._user_ids

    def batches(self) -> Iterator[tuple[int, list[Recipient]]]:
        assert self._checked is not None, "check() comes first and found no error"
        first = 0
        for batch in self._checked.batches():
            yield first, batch
            first += len(batch)


def json_send_fields(spool: BodySpool) -> dict[str, Any] | None:
    """The body's top-level fields, `recipients` as StreamedRecipients when it is an array (any
    other value as it is); None when the body is not a JSON object (or not JSON at all: ijson's
    errors are not orjson's, so the caller parses it whole for the error the client gets now).
    """
    # basic_parse: events without their path, which costs a third of the walk and is not read.
    events = ijson.basic_parse(spool.reader(), use_float=True, buf_size=CHUNK_BYTES)
    try:
        event, _ = next(events)
        if event != "start_map":
            return None
        return _object_fields(events, spool)
    except (ijson.JSONError, StopIteration):
        return None


def _object_fields(events: Iterator[tuple[str, Any]], spool: BodySpool) -> dict[str, Any]:
    """The top-level object's fields from its events (after its start_map): values are built as
    orjson would build them (the last of a repeated key wins), the recipients' array skipped."""
    fields: dict[str, Any] = {}
    key = ""
    for event, value in events:
        if event == "map_key":
            key = value
        elif event == "end_map":
            break
        elif event not in _OPENING:
            fields[key] = value
        elif key == RECIPIENTS and event == "start_array":
            _value_skip(events)
            fields[key] = StreamedRecipients(spool)
        else:
            fields[key] = _value_built(events, event, value)
    # What follows the object: nothing, else the body is not JSON (as orjson would say).
    for _ in events:
        pass
    return fields


def _value_skip(events: Iterator[tuple[str, Any]]) -> None:
    """Read past the array or object just opened: most of a body's events, so only counted."""
    depth = 1
    for event, _ in events:
        if event in _OPENING:
            depth += 1
        elif event in _CLOSING:
            depth -= 1
            if not depth:
                return


def _value_built(events: Iterator[tuple[str, Any]], event: str, value: Any) -> Any:
    """The array or object opened by (`event`, `value`), built from its events."""
    builder = ijson.ObjectBuilder()
    builder.event(event, value)
    depth = 1
    for event, value in events:
        builder.event(event, value)
        if event in _OPENING:
            depth += 1
        elif event in _CLOSING:
            depth -= 1
            if not depth:
                break
    return builder.value
