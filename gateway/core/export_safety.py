"""CSV exports that a spreadsheet opens as text, never as formulas (OWASP "CSV Injection").

A cell whose first character is ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return is prefixed with a single quote, so that Excel, LibreOffice and Google
Sheets show it as text; every cell holding a separator, quote or line break is
quoted (RFC 4180, ``csv.QUOTE_MINIMAL``). Every CSV the gateway writes (the
citizen's copy, the reports) goes through ``csv_text``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

__all__ = ["FORMULA_STARTS", "csv_cell", "csv_text"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """``value`` as a cell that cannot start a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A whole CSV document (CRLF line ends), every cell neutralised."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([csv_cell(h) for h in header])
    writer.writerows([csv_cell(v) for v in row] for row in rows)
    return out.getvalue()
