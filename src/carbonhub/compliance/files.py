"""Evidence files: a CSV (UTF-8 or GBK, as Chinese spreadsheets save it) or an Excel workbook,
read into the rows `ComplianceService.import_evidence` takes.

The file's shape is checked here, before any row is looked at: a missing or unknown column, a
column twice, or an encoding that is neither UTF-8 nor GBK refuses the whole file. Headers may be
English or Chinese. Each row keeps its line in the file, so a rejection names the line a person
sees in the spreadsheet, header included.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal

from carbonhub.compliance import model as m
from carbonhub.core.errors import InvalidInput
from carbonhub.core.textfile import decode_text

REQUIRED_COLUMNS = ("entity", "unit", "month", "kind", "item", "quantity")
PARAM_COLUMNS = frozenset().union(*m.EVIDENCE_PARAMS.values())
ALIASES = {
    "主体": "entity",
    "统一社会信用代码": "entity",
    "机组": "unit",
    "机组编号": "unit",
    "月份": "month",
    "类型": "kind",
    "品种": "item",
    "数量": "quantity",
    "低位发热量": "ncv",
    "单位热值含碳量": "carbon_per_gj",
    "元素碳含量": "element_carbon",
    "碳氧化率": "oxidation",
    "运行小时": "operating_hours",
    "供热比": "heat_ratio",
}
MAX_ROWS = 1_000_000


@dataclass(frozen=True)
class EvidenceFile:
    rows: list[dict[str, object]]
    lines: list[int]  # each row's line in the file (the header is line 1)
    rejected: list[dict[str, object]]  # lines refused by their shape alone
    encoding: str  # utf-8, gbk or xlsx


def _bad(code: str, message: str, message_zh: str) -> InvalidInput:
    return InvalidInput(code, message, message_zh)


def _columns(header: list[object]) -> list[str]:
    names = []
    for cell in header:
        name = str(cell if cell is not None else "").strip().lstrip("\ufeff")
        names.append(ALIASES.get(name, name.lower()))
    while names and not names[-1]:  # trailing empty header cells (Excel leaves them)
        names.pop()
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise _bad(
            "IMPORT_COLUMNS_MISSING",
            f"the file lacks the column(s) {', '.join(missing)}; it needs "
            f"{', '.join(REQUIRED_COLUMNS)} and the parameters it uses",
            f"文件缺少列 {', '.join(missing)}",
        )
    unknown = [c for c in names if c not in REQUIRED_COLUMNS and c not in PARAM_COLUMNS]
    if unknown:
        raise _bad(
            "IMPORT_COLUMN_UNKNOWN",
            f"unknown column(s) {', '.join(repr(c) for c in unknown)}; parameters are "
            f"{', '.join(sorted(PARAM_COLUMNS))}",
            f"未知列 {', '.join(unknown)}",
        )
    twice = sorted({c for c in names if names.count(c) > 1})
    if twice:
        raise _bad(
            "IMPORT_COLUMN_DUPLICATE",
            f"column(s) {', '.join(twice)} appear twice",
            f"列 {', '.join(twice)} 重复",
        )
    return names


def _cell(value: object) -> object:
    """Spreadsheet numbers become the decimal text the sheet shows (never a float)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        return format(Decimal(repr(value)), "f")
    text = str(value).strip()
    return text or None


def _rows(table: list[list[object]], encoding: str) -> EvidenceFile:
    if not table:
        raise _bad("IMPORT_EMPTY", "the file is empty", "文件为空")
    names = _columns(table[0])
    rows: list[dict[str, object]] = []
    lines: list[int] = []
    rejected: list[dict[str, object]] = []
    for n, raw in enumerate(table[1:], start=2):
        cells = [_cell(c) for c in raw]
        if all(c is None for c in cells):
            continue  # blank lines are not rows
        if any(c is not None for c in cells[len(names) :]):
            rejected.append(
                {
                    "line": n,
                    "code": "ROW_EXTRA_CELLS",
                    "message": f"{len(cells)} cells under {len(names)} columns",
                    "message_zh": "单元格多于列数",
                }
            )
            continue
        rows.append({name: cells[i] if i < len(cells) else None for i, name in enumerate(names)})
        lines.append(n)
        if len(rows) > MAX_ROWS:
            raise _bad(
                "IMPORT_TOO_LARGE",
                f"more than {MAX_ROWS:,} rows: split the file",
                "行数过多, 请拆分文件",
            )
    if not rows and not rejected:
        raise _bad("IMPORT_EMPTY", "the file has a header and no rows", "文件无数据行")
    return EvidenceFile(rows, lines, rejected, encoding)


def read_evidence(data: bytes) -> EvidenceFile:
    """A CSV or an .xlsx workbook (its first sheet), told apart by content, not by name."""
    if data[:4] == b"PK\x03\x04":
        return _workbook(data)
    content, encoding = decode_text(data, "IMPORT_ENCODING")
    if "\x00" in content:
        raise _bad("IMPORT_ENCODING", "binary content is not a CSV", "非 CSV 文本文件")
    try:
        table: list[list[object]] = [list(r) for r in csv.reader(io.StringIO(content))]
    except csv.Error as exc:
        raise _bad("IMPORT_MALFORMED", f"malformed CSV: {exc}", "CSV 格式错误") from exc
    return _rows(table, encoding)


def _workbook(data: bytes) -> EvidenceFile:
    import openpyxl  # imported only when a workbook comes

    malformed = _bad(
        "IMPORT_MALFORMED", "the workbook cannot be read (.xlsx expected)", "工作簿无法读取"
    )
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # a damaged or foreign file: openpyxl has no single error type
        raise malformed from exc
    try:
        if not book.worksheets:
            raise _bad("IMPORT_EMPTY", "the workbook has no sheet", "工作簿无工作表")
        table: list[list[object]] = []
        for row in book.worksheets[0].iter_rows(values_only=True):  # parsed as it is read
            table.append(list(row))
            if len(table) > MAX_ROWS + 1:
                raise _bad(
                    "IMPORT_TOO_LARGE",
                    f"more than {MAX_ROWS:,} rows: split the file",
                    "行数过多, 请拆分文件",
                )
    except InvalidInput:
        raise
    except Exception as exc:  # damage found while the sheet's XML is parsed
        raise malformed from exc
    finally:
        book.close()
    return _rows(table, "xlsx")
