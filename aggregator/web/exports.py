"""Tables as files: CSV that Excel opens with Vietnamese intact, and XLSX (openpyxl).

Excel reads a CSV as the system's code page unless it starts with a UTF-8
byte-order mark, so CSV here is always ``utf-8-sig``. Timestamps are written
in Vietnam time (what officers read on screen) without a zone suffix: Excel
has no aware datetimes and openpyxl refuses them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from enum import Enum
from typing import Literal
from urllib.parse import quote

from fastapi.responses import Response
from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from aggregator.auth.audit import LOCAL_TZ

Cell = str | int | float | date | datetime | None
ExportFormat = Literal["csv", "xlsx"]
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_SHEET_TITLE_MAX = 31  # Excel's limit
_SHEET_TITLE_FORBIDDEN = str.maketrans({c: "-" for c in "[]:*?/\\"})


def sheet_title(title: str) -> str:
    """``title`` as Excel accepts it: no ``[]:*?/\\``, at most 31 characters."""
    return title.translate(_SHEET_TITLE_FORBIDDEN)[:_SHEET_TITLE_MAX] or "Sheet"


def _local(value: datetime) -> datetime:
    return value.astimezone(LOCAL_TZ).replace(tzinfo=None) if value.tzinfo else value


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return _local(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return value


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """A CSV file (UTF-8 with byte-order mark, CRLF line ends) of ``header`` then ``rows``."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow([_csv_cell(v) for v in row])
    return out.getvalue().encode("utf-8-sig")


def _xlsx_cell(value: object) -> Cell:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime):
        return _local(value)
    if value is None or isinstance(value, str | int | float | date):
        return value
    return str(value)


Sheet = tuple[str, Sequence[str], Iterable[Sequence[object]]]


def xlsx_bytes(sheets: Sequence[Sheet]) -> bytes:
    """An XLSX workbook with one sheet per ``(title, header, rows)``; header row bold and frozen."""
    if not sheets:
        raise ValueError("an XLSX export needs at least one sheet")
    book = Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    for title, header, rows in sheets:
        sheet = book.create_sheet(title=sheet_title(title))
        sheet.append(list(header))
        widths = [len(h) for h in header]
        for row in rows:
            cells = [_xlsx_cell(v) for v in row]
            sheet.append(cells)
            for i, cell in enumerate(cells[: len(widths)]):
                widths[i] = max(widths[i], len(str(cell)) if cell is not None else 0)
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        sheet.freeze_panes = "A2"
        for i, width in enumerate(widths, start=1):
            sheet.column_dimensions[get_column_letter(i)].width = min(max(width, 6) + 2, 60)
        for column in range(1, len(header) + 1):
            for (cell,) in sheet.iter_rows(min_row=2, min_col=column, max_col=column):
                if isinstance(cell.value, datetime):
                    cell.number_format = "yyyy-mm-dd hh:mm:ss"
                elif isinstance(cell.value, date):
                    cell.number_format = "yyyy-mm-dd"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def download(content: bytes, *, filename: str, fmt: ExportFormat) -> Response:
    """A response that downloads ``content`` as ``filename`` (never cached: personal data)."""
    media = CSV_MEDIA_TYPE if fmt == "csv" else XLSX_MEDIA_TYPE
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_")
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
    return Response(
        content,
        media_type=media,
        headers={
            "Content-Disposition": disposition,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def export(
    fmt: ExportFormat,
    *,
    filename_stem: str,
    title: str,
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
) -> Response:
    """One table as a CSV or a one-sheet XLSX download named ``filename_stem.<fmt>``."""
    content = csv_bytes(header, rows) if fmt == "csv" else xlsx_bytes([(title, header, rows)])
    return download(content, filename=f"{filename_stem}.{fmt}", fmt=fmt)
