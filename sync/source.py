"""The servicer's daily file: read whole, hashed, checked row by row before anything is applied.

Two sources give the same thing, a :class:`DailyFile` (CSV text in the intake contract's columns plus
an optional ``as_of`` and ``fees``): a drop folder's files, or a SQL query's result written as CSV.
A file that cannot be read as a whole (not UTF-8, no header, cut short) raises :class:`Unreadable`
and applies nothing; a bad row is a rejection with its line and field, and the others still apply.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from domain.errors import Rejected
from domain.loan import REQUIRED_COLUMNS, Loan
from domain.money import parse_amount
from domain.scorecard import Scorecard

_DATE_IN_NAME = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?!\d)")


class Unreadable(ValueError):
    """The file as a whole cannot be applied: nothing of it is."""


@dataclass(frozen=True)
class Row:
    """One valid row: the loan as of its day, and the servicer's fees when the file has them."""

    index: int          # among the valid rows, from 0: what the heartbeat counts
    line: int
    loan: Loan
    fees: Decimal | None


@dataclass
class DailyFile:
    name: str
    source: str         # folder, sql
    sha256: str
    text: str
    as_of: date
    # The servicer's whole delinquent book (ARREARS_SYNC_COMPLETE): loans it leaves out are cured.
    complete: bool = False
    rows: int = 0                       # data rows read
    valid: int = 0
    rejections: list[tuple[int, str]] = field(default_factory=list)
    # Every loan the file names, valid row or not: a loan whose row was rejected is still on the
    # servicer's book, and must not be taken for absent.
    present: set[str] = field(default_factory=set)
    # The risk scorecard grading rows without a risk_grade (ARREARS_SCORECARD), as intake's --scorecard.
    scorecard: Scorecard | None = None

    def loans(self, start: int = 0) -> Iterator[Row]:
        """The valid rows in file order, from the ``start``-th (a resumed run)."""
        for row in _checked(self.text, self.as_of, self.scorecard):
            if isinstance(row, Row) and row.index >= start:
                yield row


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def date_in_name(name: str) -> date | None:
    """The date a servicer stamps its file name with (``2026-12-01`` or ``20261201``), if any."""
    for match in _DATE_IN_NAME.finditer(name):
        try:
            return date(*(int(part) for part in match.groups()))
        except ValueError:
            continue
    return None


def read_file(data: bytes, *, name: str, source: str, run_date: date, scorecard: Scorecard | None = None) -> DailyFile:
    """Check the whole file (raises :class:`Unreadable`); its ``as_of`` is the latest of its rows'
    ``as_of`` column, else the date in its name, else ``run_date``. A row without a risk grade is graded
    by ``scorecard`` when there is one (and rejected, naming the field, when not)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise Unreadable(f"not UTF-8 text (byte {err.start})") from None
    if not text.strip():
        raise Unreadable("the file is empty")
    if not text.endswith(("\n", "\r")):
        # Every line of a CSV ends with a line break: a file without the last one was cut short
        # (a transfer that broke off) or is still being written.
        raise Unreadable("the last line has no line break: the file was cut short or is still being written")
    header = next(csv.reader(io.StringIO(text, newline="")), [])
    missing = [c for c in REQUIRED_COLUMNS if c not in {h.strip() for h in header}]
    if missing:
        raise Unreadable(f"header lacks required columns: {', '.join(missing)}")
    daily = DailyFile(name=name, source=source, sha256=sha256_of(data), text=text, as_of=run_date, scorecard=scorecard)
    latest: date | None = None
    try:
        for row in _checked(text, None, scorecard):
            daily.rows += 1
            if isinstance(row, Row):
                daily.valid += 1
                daily.present.add(row.loan.loan_id)
                if row.loan.as_of is not None and (latest is None or row.loan.as_of > latest):
                    latest = row.loan.as_of
            else:
                line, reason, loan_id = row
                daily.rejections.append((line, reason))
                if loan_id:
                    daily.present.add(loan_id)
    except csv.Error as err:
        raise Unreadable(f"not a CSV file: {err}") from None
    daily.as_of = latest or date_in_name(name) or run_date
    return daily


def _checked(text: str, as_of: date | None, scorecard: Scorecard | None = None) -> Iterator[Row | tuple[int, str, str]]:
    """Each data row: a valid :class:`Row` (its ``as_of`` defaulted to ``as_of``) or (line, reason,
    loan_id). The same text always gives the same answers in the same order."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    seen: dict[str, int] = {}
    index = 0
    for raw in reader:
        line = reader.line_num
        loan_id = (raw.get("loan_id") or "").strip()[:64]
        if None in raw:
            yield line, "row has more fields than the header", loan_id
            continue
        try:
            loan = Loan.from_row(raw, current_ok=True, scorecard=scorecard)
            fees = _fees(raw, loan.currency)
        except Rejected as err:
            yield line, str(err), loan_id
            continue
        if loan.loan_id in seen:
            yield line, f"loan_id: {loan.loan_id} repeats line {seen[loan.loan_id]}", loan_id
            continue
        seen[loan.loan_id] = line
        if loan.as_of is None and as_of is not None:
            loan = loan.model_copy(update={"as_of": as_of})
        yield Row(index=index, line=line, loan=loan, fees=fees)
        index += 1


def _fees(raw: dict[str, Any], currency: str) -> Decimal | None:
    text = (raw.get("fees") or "").strip()
    return parse_amount(text, currency, "fees", allow_zero=True) if text else None


def folder_files(folder: Path, pattern: str) -> list[Path]:
    """The drop folder's files, in name order (a servicer's date-stamped names sort by date)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"ARREARS_SYNC_FOLDER: {folder} is not a folder")
    return sorted(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("."))


def rows_as_csv(columns: list[str], rows: list[tuple[Any, ...]], run_date: date) -> bytes:
    """A query's result as the CSV the folder would hold; without an ``as_of`` column, the run's day
    is added as one (so the same figures on another day are another file)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    extra = [] if "as_of" in columns else ["as_of"]
    writer.writerow([*columns, *extra])
    for row in rows:
        writer.writerow([*(_cell(value) for value in row), *([run_date.isoformat()] if extra else [])])
    return out.getvalue().encode("utf-8")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
