"""A delinquent loan as intake hands it over (one row of the portfolio file)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict

from domain.errors import Rejected
from domain.money import parse_amount, validate_currency

if TYPE_CHECKING:
    from domain.scorecard import Scorecard

REQUIRED_COLUMNS = (
    "loan_id", "borrower_name", "phone", "email", "address", "timezone", "jurisdiction",
    "currency", "outstanding_amount", "amount_past_due", "days_past_due", "product", "risk_grade",
)
JURISDICTIONS = ("US", "CN", "UK")
RISK_GRADES = ("A", "B", "C", "D", "E")
_LOAN_ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


class Loan(BaseModel):
    """Immutable facts about the loan and its borrower, as of intake."""

    model_config = ConfigDict(frozen=True)

    loan_id: str
    borrower_name: str
    phone: str
    email: str
    address: str
    timezone: str
    jurisdiction: str
    currency: str
    outstanding_amount: Decimal
    amount_past_due: Decimal
    days_past_due: int
    product: str
    risk_grade: str
    # Known vulnerability (optional `vulnerable` column: yes/no): no field visits, gentler handling.
    vulnerable: bool = False
    # The borrower agreed to receive notices electronically (optional `esign_consent` column: yes/no,
    # E-SIGN Act): a notice owed in writing may then go by e-mail, e.g. where letters are ceased.
    esign_consent: bool = False
    # The day the servicer's figures are as of (optional `as_of` column, YYYY-MM-DD; absent: the day of
    # intake). With the days past due it names the delinquency episode (domain/episodes.py).
    as_of: date | None = None
    # Who graded the loan: the lender (the row's ``risk_grade``) or, where the row left it blank, the
    # scorecard intake was given (domain/scorecard.py), with the score it gave.
    grade_source: Literal["lender", "scorecard"] = "lender"
    score: int | None = None

    @property
    def is_current(self) -> bool:
        """The servicer reports nothing past due (a daily file's row for a loan that is current again)."""
        return self.days_past_due == 0 or self.amount_past_due == 0

    @classmethod
    def from_row(cls, row: dict[str, Any], *, current_ok: bool = False,
                 scorecard: "Scorecard | None" = None) -> "Loan":
        """Validate one intake row; raises :class:`Rejected` naming the first bad field. With
        ``current_ok`` (the servicer's daily file) a loan with nothing past due is a valid row too.
        With a ``scorecard``, a row whose ``risk_grade`` is blank is graded by it; without one, a
        blank grade is missing."""
        clean = {key.strip(): (value or "").strip() for key, value in row.items() if key}
        for column in REQUIRED_COLUMNS:
            if not clean.get(column) and not (column == "risk_grade" and scorecard is not None):
                raise Rejected(column, "is missing")
        loan_id = clean["loan_id"]
        if len(loan_id) > 64 or not set(loan_id) <= _LOAN_ID_CHARS:
            raise Rejected("loan_id", "use at most 64 letters, digits, '-', '_' or '.'")
        try:
            ZoneInfo(clean["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise Rejected("timezone", f"{clean['timezone']!r} is not an IANA time zone") from None
        jurisdiction = clean["jurisdiction"].upper()
        if jurisdiction not in JURISDICTIONS:
            raise Rejected("jurisdiction", f"{clean['jurisdiction']!r} is not one of {', '.join(JURISDICTIONS)}")
        currency = validate_currency(clean["currency"])
        outstanding = parse_amount(clean["outstanding_amount"], currency, "outstanding_amount", allow_zero=current_ok)
        past_due = parse_amount(clean["amount_past_due"], currency, "amount_past_due", allow_zero=current_ok)
        if past_due > outstanding:
            raise Rejected("amount_past_due", "is larger than outstanding_amount")
        try:
            dpd = int(clean["days_past_due"])
        except ValueError:
            raise Rejected("days_past_due", f"{clean['days_past_due']!r} is not a whole number") from None
        if dpd < 0 or (dpd < 1 and not current_ok):
            raise Rejected("days_past_due", "must be at least 1 for a delinquent loan")
        grade = clean.get("risk_grade", "").upper()
        if grade not in RISK_GRADES and not (grade == "" and scorecard is not None):
            raise Rejected("risk_grade", f"{clean['risk_grade']!r} is not one of {', '.join(RISK_GRADES)}")
        if "@" not in clean["email"]:
            raise Rejected("email", "is not an e-mail address")
        digits = clean["phone"].lstrip("+").replace(" ", "").replace("-", "")
        if not digits.isdigit() or not 7 <= len(digits) <= 15:
            raise Rejected("phone", "is not a phone number (7 to 15 digits, optional leading +)")
        vulnerable = _yes_or_no(clean, "vulnerable")
        esign_consent = _yes_or_no(clean, "esign_consent")
        as_of = None
        if clean.get("as_of"):
            try:
                as_of = date.fromisoformat(clean["as_of"])
            except ValueError:
                raise Rejected("as_of", f"{clean['as_of']!r} is not a date (YYYY-MM-DD)") from None
        # Extra columns are allowed and dropped: whatever they hold (national ids, notes) never
        # reaches workflow history.
        loan = cls(
            loan_id=loan_id, borrower_name=clean["borrower_name"], phone=clean["phone"],
            email=clean["email"], address=clean["address"], timezone=clean["timezone"],
            jurisdiction=jurisdiction, currency=currency, outstanding_amount=outstanding,
            amount_past_due=past_due, days_past_due=dpd, product=clean["product"].lower(),
            risk_grade=grade, vulnerable=vulnerable, esign_consent=esign_consent, as_of=as_of,
        )
        return scorecard.grade_loan(loan) if scorecard is not None else loan


def _yes_or_no(clean: dict[str, str], column: str) -> bool:
    """An optional yes/no column (blank or absent: no); any other value is rejected, naming it."""
    value = clean.get(column, "").lower()
    if value not in ("", "yes", "no", "true", "false", "1", "0", "y", "n"):
        raise Rejected(column, f"{clean[column]!r} is not yes or no")
    return value in ("yes", "true", "1", "y")
