"""CSV text of a table: the one writer of every CSV the project writes.

Here: ``csv_table`` (a header and rows of values) and ``csv_records`` (mappings, by column name).
Both use the standard ``csv`` module (quoting, embedded commas, quotes and newlines) and write the
same cells everywhere: None and non-finite floats as empty cells, floats in full (``repr``, so a
value reads back exactly), line breaks in text as newlines, and text that a spreadsheet would run
as a formula neutralised.

Formula injection: a spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and,
in some programs, a tab or carriage return) as a formula, so a player's nickname such as
``=HYPERLINK("http://x","y")`` would become a live link in the instructor's spreadsheet. Such
text gets a leading apostrophe, which spreadsheets show as text. Only text is neutralised:
numbers (negative ones too, and text that is exactly a number) stay numbers.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence

#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """Return one cell's text (see the module's docstring for the rules)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return repr(float(value)) if math.isfinite(value) else ""
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if text.startswith(FORMULA_STARTS) and not _is_number(text):
        text = "'" + text
    # Line breaks inside a cell are written as "\n", which the writer quotes (Python 3.11's
    # writer leaves a lone "\r" unquoted, and readers then split the row there).
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def csv_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Return CSV text: the header line, then one line per row, each ending in a newline."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([csv_cell(name) for name in header])
    writer.writerows([csv_cell(value) for value in row] for row in rows)
    return out.getvalue()


def csv_records(rows: Iterable[Mapping[str, object]], columns: Sequence[str] | None = None) -> str:
    """Return CSV text of mappings: the columns given, else the first row's keys, in order.

    A key missing from a row is an empty cell; keys not among the columns are left out.
    """
    rows = list(rows)
    header = list(columns) if columns is not None else list(rows[0]) if rows else []
    return csv_table(header, ([row.get(name) for name in header] for row in rows))
