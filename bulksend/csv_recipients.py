"""A send's recipients as CSV: `POST send-bulk/` with `Content-Type: text/csv`, or a multipart
form whose file field `recipients` holds the CSV.

The first line is a header: `phone` (or `user_id`, Meta's business-scoped user id, or both, each
row filling one of the two), one column per template variable (named as the template names
it), and `button_<index>` for a button's variable. Each following line is a recipient. The
send's other fields (`phone_number_id`, `template_name`, `language`, `send_at`, `send_window`
as `HH:MM-HH:MM`, `callback_url`) come as query parameters (or form fields). UTF-8 with or
without a byte-order mark; cells separated by commas or by semicolons (as spreadsheets write CSV
where the decimal mark is a comma), told by the header.

The rows become the JSON request's recipients, checked by the same code; every error is reported
by the CSV line it is on (`{"recipients": {"line 7": {"phone": [...]}}}`): a client fixes a file
by its line numbers, not by indexes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bulksend.recipients import BUTTON_KEY
from mindo.errors import InvalidFieldsError

CSV_MEDIA_TYPE = "text/csv"
# The fields of send-bulk/ other than its recipients, read from the query (or the form).
SEND_FIELDS = (
    "phone_number_id",
    "template_name",
    "language",
    "send_at",
    "send_window",
    "callback_url",
)
OPTIONAL_SEND_FIELDS = ("language", "send_at", "send_window", "callback_url")
PHONE_COLUMN = "phone"
USER_ID_COLUMN = "user_id"
RECIPIENTS = "recipients"
EMPTY_FILE = f"The CSV is empty: line 1 must be a header with `{PHONE_COLUMN}`."
MISSING_FILE = "Attach the CSV as the form's file field `recipients`."
# The key of the parsed data that carries the CSV rows' lines; no JSON field has this name.
CSV_ROWS = "__csv_rows__"


@dataclass(frozen=True)
class CsvRecipients:
    """The rows as JSON recipients, the CSV line each one starts on, and the problems of the
    lines that could not become a recipient (by `line N`)."""

    recipients: list[dict[str, Any]]
    lines: list[int]
    problems: dict[str, list[str]]

    def errors_by_line(self, errors: Mapping[str, Any]) -> dict[str, Any]:
        return errors_by_line(errors, self.lines, self.problems)


def errors_by_line(
    errors: Mapping[str, Any], lines: Sequence[int], problems: Mapping[str, list[str]]
) -> dict[str, Any]:
    """The request's errors with the recipients' keyed by CSV line instead of index (`lines`:
    each recipient's), and the lines that were not recipients among them (`problems`):
    everything wrong with the file at once."""
    by_index = errors.get(RECIPIENTS)
    if not problems and not isinstance(by_index, Mapping):
        return dict(errors)
    by_line: dict[str, Any] = dict(problems)
    if isinstance(by_index, Mapping):
        by_line.update(
            (f"line {lines[int(index)]}" if index.isdigit() else index, problem)
            for index, problem in by_index.items()
        )
    in_order = sorted(by_line.items(), key=lambda item: _line_number(item[0]))
    return {**errors, RECIPIENTS: dict(in_order)}


def _line_number(key: str) -> int:
    number = key.removeprefix("line ")
    return int(number) if number.isdigit() else 0


def refused(problems: dict[str, list[str]] | list[str]) -> InvalidFieldsError:
    return InvalidFieldsError({RECIPIENTS: problems})


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")  # drops the byte-order mark spreadsheets write
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise refused([f"The CSV must be UTF-8: line {line} is not."]) from None


def _header(names: list[str]) -> list[str]:
    header = [name.strip() for name in names]
    problems = []
    if PHONE_COLUMN not in header and USER_ID_COLUMN not in header:
        problems.append(
            f"The header (line 1) needs a `{PHONE_COLUMN}` column (or a `{USER_ID_COLUMN}` one)."
        )
    if any(not name for name in header):
        problems.append("The header (line 1) has a column without a name.")
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    if repeated:
        problems.append(f"The header (line 1) names {', '.join(repeated)} more than once.")
    if problems:
        raise refused(problems)
    return header


def _identity(cells: dict[str, str]) -> dict[str, Any]:
    """The row's `phone` or `user_id`, taken out of `cells`. With only one of the two columns,
    its cell as it is (an empty one is refused as such); with both, the cells that are filled
    (both or neither is refused by the recipients' check)."""
    identity = {
        column: cells.pop(column) for column in (PHONE_COLUMN, USER_ID_COLUMN) if column in cells
    }
    if len(identity) == 1:
        return identity
    return {column: value for column, value in identity.items() if value.strip()}


def csv_separator(first_line: str) -> str:
    return ";" if first_line.count(";") > first_line.count(",") else ","


# A row of the CSV: (its line, the recipient, None), or (its line, None, its problems).
CsvRow = tuple[int, dict[str, Any] | None, list[str] | None]


def csv_rows(lines: Iterable[str], separator: str) -> Iterator[CsvRow]:
    """The rows after the header, in order; InvalidFieldsError when there is no header or it
    names no `phone` or `user_id` column. A CSV no longer readable ends the rows with its
    problem."""
    reader = csv.reader(lines, delimiter=separator, strict=True)
    try:
        names = next(reader, None)
        if names is None:
            raise refused([EMPTY_FILE])
        header = _header(names)
        while True:
            line = reader.line_num + 1  # where the next record starts (a cell may span lines)
            row = next(reader, None)
            if row is None:
                break
            if not any(cell.strip() for cell in row):
                continue  # a blank line, such as the one a file ends with
            if len(row) != len(header):
                yield line, None, [f"{len(row)} cells, but the header has {len(header)} columns."]
                continue
            cells = dict(zip(header, row, strict=True))
            recipient = _identity(cells)
            buttons = {name: value for name, value in cells.items() if BUTTON_KEY.fullmatch(name)}
            variables = {name: value for name, value in cells.items() if name not in buttons}
            if variables:
                recipient["variables"] = variables
            if buttons:
                recipient["button_variables"] = buttons
            yield line, recipient, None
    except csv.Error as error:
        yield reader.line_num, None, [f"Not readable as CSV: {error}."]


def recipients_csv_read(raw: bytes) -> CsvRecipients:
    """The recipients of a CSV file and the problems of its other lines; InvalidFieldsError when
    it is no recipients' CSV at all (not UTF-8, empty, no `phone` or `user_id` column)."""
    text = _text(raw)
    separator = csv_separator(text.split("\n", 1)[0])
    recipients: list[dict[str, Any]] = []
    lines: list[int] = []
    problems: dict[str, list[str]] = {}
    for line, recipient, problem in csv_rows(io.StringIO(text, newline=""), separator):
        if recipient is None:
            problems[f"line {line}"] = problem or []
        else:
            recipients.append(recipient)
            lines.append(line)
    return CsvRecipients(recipients, lines, problems)


def send_bulk_csv_data(
    raw: bytes, fields: Mapping[str, Any]
) -> tuple[dict[str, Any], CsvRecipients]:
    """send-bulk/'s request data from a CSV file and the other fields given beside it."""
    rows = recipients_csv_read(raw)
    return {**csv_send_fields(fields), RECIPIENTS: rows.recipients}, rows


def csv_send_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The send's fields given beside a CSV (query parameters or form fields), as JSON has them."""
    data: dict[str, Any] = {name: fields[name] for name in SEND_FIELDS if name in fields}
    if isinstance(data.get("send_window"), str):
        data["send_window"] = send_window_from_text(data["send_window"])
    return data


def send_window_from_text(text: str) -> Any:
    """A query parameter's or form field's `send_window`, `HH:MM-HH:MM`, as the JSON body's
    object; anything else is left as it is, for the send's validation to name."""
    start, dash, end = text.partition("-")
    return {"start": start.strip(), "end": end.strip()} if dash else text
