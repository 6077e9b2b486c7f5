"""send-bulk's large CSV bodies read as a stream from their spool, a batch of rows at a time,
as bulksend.json_stream reads a JSON body's array: the rows are the same recipients, with the
same errors by line, as bulksend.csv_recipients reads from a body held whole."""

from __future__ import annotations

import codecs
import io
from array import array
from collections.abc import Iterator, Mapping
from itertools import chain
from typing import Any

from bulksend.csv_recipients import (
    CsvRow,
    csv_rows,
    csv_send_fields,
    csv_separator,
    errors_by_line,
    refused,
)
from bulksend.json_stream import BATCH, RECIPIENTS, StreamedRecipients
from mindo.request_spool import BodySpool

ENCODING = "utf-8-sig"  # drops the byte-order mark spreadsheets write


def _rows(spool: BodySpool) -> tuple[io.TextIOWrapper, Iterator[CsvRow]]:
    """The body's rows, and the text reader to detach once they are read (the spool stays open)."""
    text = io.TextIOWrapper(spool.reader(), encoding=ENCODING, newline="")
    first_line = text.readline()
    return text, csv_rows(chain([first_line], text), csv_separator(first_line))


class StreamedCsvRecipients(StreamedRecipients):
    """The recipients of a spooled CSV body. Its first read (`check`) also keeps each
    recipient's line and the lines that were none, for `errors_by_line`, as CsvRecipients."""

    def __init__(self, spool: BodySpool) -> None:
        super().__init__(spool)
        self.lines = array("q")
        self.problems: dict[str, list[str]] = {}
        self._read_once = False

    def item_batches(self) -> Iterator[tuple[int, list[Any]]]:
        text, rows = _rows(self.spool)
        keep = not self._read_once
        self._read_once = True
        batch: list[Any] = []
        first = 0
        for line, recipient, problem in rows:
            if recipient is None:
                if keep:
                    self.problems[f"line {line}"] = problem or []
                continue
            if keep:
                self.lines.append(line)
            batch.append(recipient)
            if len(batch) == BATCH:
                yield first, batch
                first, batch = first + len(batch), []
        text.detach()  # the spool stays open for the next read
        if batch:
            yield first, batch

    def errors_by_line(self, errors: Mapping[str, Any]) -> dict[str, Any]:
        return errors_by_line(errors, self.lines, self.problems)


def csv_decoding_check(spool: BodySpool) -> None:
    """Refuse a body that is not UTF-8, naming the line of its first bad byte, as a whole body
    is refused; read in chunks."""
    decoder = codecs.getincrementaldecoder(ENCODING)()
    newlines = 0
    for part in chain(spool.chunks(), [b""]):
        try:
            decoder.decode(part, final=not part)
        except UnicodeDecodeError as error:
            line = newlines + part[: error.start].count(b"\n") + 1
            raise refused([f"The CSV must be UTF-8: line {line} is not."]) from None
        newlines += part.count(b"\n")


def streamed_csv_data(
    spool: BodySpool, fields: Mapping[str, Any]
) -> tuple[dict[str, Any], StreamedCsvRecipients]:
    """send-bulk/'s request data from a spooled CSV body and the fields given beside it, as
    bulksend.csv_recipients.send_bulk_csv_data gives them for a body held whole."""
    csv_decoding_check(spool)
    text, header_and_first = _rows(spool)
    next(header_and_first, None)  # the header's refusals, before the fields are checked
    text.detach()
    rows = StreamedCsvRecipients(spool)
    return {**csv_send_fields(fields), RECIPIENTS: rows}, rows
