"""Money parsing and intake validation of one portfolio row (pure domain, no Temporal)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from domain.errors import Rejected
from domain.loan import REQUIRED_COLUMNS, Loan
from domain.money import format_money, parse_amount, validate_currency
from starter import read_portfolio


def _row(**overrides: Any) -> dict[str, str]:
    row = {
        "loan_id": "L-0001", "borrower_name": "Ada Example", "phone": "+1 555-555-0123",
        "email": "ada@example.com", "address": "1 Test Street, Springfield", "timezone": "America/New_York",
        "jurisdiction": "us", "currency": "usd", "outstanding_amount": "5000.00", "amount_past_due": "450.5",
        "days_past_due": "5", "product": "Personal_Loan", "risk_grade": "b",
    }
    row.update({key: str(value) for key, value in overrides.items()})
    return row


def _rejection(**overrides: Any) -> Rejected:
    with pytest.raises(Rejected) as caught:
        Loan.from_row(_row(**overrides))
    return caught.value


# -- parse_amount ----------------------------------------------------------------

@pytest.mark.parametrize(("text", "currency", "expected"), [
    ("12.30", "USD", Decimal("12.30")),
    ("12.3", "USD", Decimal("12.30")),
    (" 7 ", "EUR", Decimal("7.00")),
    ("1000", "JPY", Decimal("1000")),
    ("1.234", "KWD", Decimal("1.234")),
    (Decimal("9.99"), "GBP", Decimal("9.99")),
    (250, "USD", Decimal("250.00")),
])
def test_parse_amount_accepts_decimal_strings_and_quantizes_to_the_currency(text, currency, expected):
    amount = parse_amount(text, currency, "amount")
    assert amount == expected
    assert amount.as_tuple().exponent == expected.as_tuple().exponent
    assert isinstance(amount, Decimal)


@pytest.mark.parametrize("value", [12.5, 12.0, 0.1])
def test_parse_amount_refuses_floats_naming_the_field(value):
    with pytest.raises(Rejected) as caught:
        parse_amount(value, "USD", "outstanding_amount")
    assert caught.value.field == "outstanding_amount"
    assert "floating-point" in caught.value.reason


def test_parse_amount_refuses_booleans():
    with pytest.raises(Rejected) as caught:
        parse_amount(True, "USD", "amount")
    assert caught.value.field == "amount"


@pytest.mark.parametrize(("text", "currency", "places"), [
    ("10.5", "JPY", "0"), ("10.001", "USD", "2"), ("1.2345", "KWD", "3"),
])
def test_parse_amount_refuses_more_decimals_than_the_currency_allows(text, currency, places):
    with pytest.raises(Rejected) as caught:
        parse_amount(text, currency, "amount")
    assert caught.value.field == "amount"
    assert currency in caught.value.reason and f"({places})" in caught.value.reason


@pytest.mark.parametrize("text", ["-1.00", "-0.01", "0", "0.00", "-0"])
def test_parse_amount_refuses_negative_and_zero_amounts(text):
    with pytest.raises(Rejected) as caught:
        parse_amount(text, "USD", "amount_past_due")
    assert caught.value.field == "amount_past_due"
    assert "positive" in caught.value.reason


def test_parse_amount_allows_zero_only_when_asked_and_still_refuses_negatives():
    assert parse_amount("0", "USD", "amount", allow_zero=True) == Decimal("0.00")
    with pytest.raises(Rejected) as caught:
        parse_amount("-1", "USD", "amount", allow_zero=True)
    assert "negative" in caught.value.reason


@pytest.mark.parametrize("text", ["abc", "", "12,50", "NaN", "Infinity", "1.2.3"])
def test_parse_amount_refuses_text_that_is_not_a_finite_decimal_number(text):
    with pytest.raises(Rejected) as caught:
        parse_amount(text, "USD", "amount")
    assert caught.value.field == "amount"
    assert "not a decimal number" in caught.value.reason


@pytest.mark.parametrize("value", ["1e30", "1" * 40, 10**30])
def test_parse_amount_refuses_absurdly_large_amounts_with_a_rejection(value):
    # Beyond the 28-digit decimal context, quantize() raises decimal.InvalidOperation;
    # callers (intake, command handlers) only catch Rejected.
    with pytest.raises(Rejected) as caught:
        parse_amount(value, "USD", "amount")
    assert caught.value.field == "amount"


def test_rejected_names_the_field_and_the_reason_in_its_message():
    err = Rejected("amount", "must be positive")
    assert str(err) == "amount: must be positive"
    assert (err.field, err.reason) == ("amount", "must be positive")
    assert str(Rejected("", "unknown command 'x'")) == "unknown command 'x'"


def test_validate_currency_normalises_case_and_refuses_non_codes():
    assert validate_currency(" gbp ") == "GBP"
    for bad in ("US", "US$", "DOLLAR", "", "12A"):
        with pytest.raises(Rejected) as caught:
            validate_currency(bad)
        assert caught.value.field == "currency" and "ISO 4217" in caught.value.reason


def test_format_money_uses_the_currency_minor_units():
    assert format_money(Decimal("1234.5"), "USD") == "USD 1,234.50"
    assert format_money(Decimal("1234"), "JPY") == "JPY 1,234"


# -- Loan.from_row -----------------------------------------------------------------

def test_a_valid_row_becomes_a_normalised_loan():
    loan = Loan.from_row({**_row(), " branch ": " north ", "": "ignored"})
    assert loan.loan_id == "L-0001"
    assert loan.jurisdiction == "US" and loan.currency == "USD" and loan.risk_grade == "B"
    assert loan.outstanding_amount == Decimal("5000.00")
    assert loan.amount_past_due == Decimal("450.50")
    assert loan.days_past_due == 5
    assert loan.product == "personal_loan"
    # Extra columns are accepted and dropped, so nothing unvetted reaches workflow history.
    assert "north" not in loan.model_dump_json()


def test_a_loan_is_immutable():
    loan = Loan.from_row(_row())
    with pytest.raises(ValidationError, match="frozen"):
        loan.days_past_due = 10  # type: ignore[misc]


@pytest.mark.parametrize("column", REQUIRED_COLUMNS)
def test_a_row_missing_a_required_column_is_rejected_naming_it(column):
    row = _row()
    del row[column]
    with pytest.raises(Rejected) as caught:
        Loan.from_row(row)
    assert caught.value.field == column
    assert "missing" in caught.value.reason


def test_a_blank_required_value_counts_as_missing():
    err = _rejection(email="   ")
    assert err.field == "email" and "missing" in err.reason


@pytest.mark.parametrize("loan_id", ["has space", "x" * 65, "semi;colon", "ünïcode"])
def test_a_loan_id_with_unsafe_characters_or_too_long_is_rejected(loan_id):
    err = _rejection(loan_id=loan_id)
    assert err.field == "loan_id" and "64" in err.reason


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../etc/passwd", "EST5EDT/"])
def test_a_bad_timezone_is_rejected(zone):
    err = _rejection(timezone=zone)
    assert err.field == "timezone"
    assert "IANA time zone" in err.reason and zone in err.reason


def test_an_unknown_jurisdiction_is_rejected_listing_the_known_ones():
    err = _rejection(jurisdiction="FR")
    assert err.field == "jurisdiction"
    assert "'FR'" in err.reason and "US, CN, UK" in err.reason


def test_a_bad_currency_is_rejected():
    err = _rejection(currency="US$")
    assert err.field == "currency" and "ISO 4217" in err.reason


def test_a_float_style_amount_with_too_many_decimals_for_the_currency_is_rejected():
    err = _rejection(currency="JPY", outstanding_amount="5000.5", amount_past_due="100")
    assert err.field == "outstanding_amount" and "JPY" in err.reason


def test_a_zero_amount_past_due_is_rejected():
    err = _rejection(amount_past_due="0.00")
    assert err.field == "amount_past_due" and "positive" in err.reason


def test_past_due_larger_than_outstanding_is_rejected():
    err = _rejection(outstanding_amount="100.00", amount_past_due="100.01")
    assert err.field == "amount_past_due"
    assert "larger than outstanding_amount" in err.reason


def test_past_due_equal_to_outstanding_is_accepted():
    loan = Loan.from_row(_row(outstanding_amount="100.00", amount_past_due="100"))
    assert loan.amount_past_due == loan.outstanding_amount


@pytest.mark.parametrize("dpd", ["five", "5.0", "1e2"])
def test_non_integer_days_past_due_is_rejected(dpd):
    err = _rejection(days_past_due=dpd)
    assert err.field == "days_past_due" and "whole number" in err.reason


@pytest.mark.parametrize("dpd", ["0", "-3"])
def test_days_past_due_below_one_is_rejected(dpd):
    err = _rejection(days_past_due=dpd)
    assert err.field == "days_past_due" and "at least 1" in err.reason


def test_a_bad_risk_grade_is_rejected_listing_the_grades():
    err = _rejection(risk_grade="F")
    assert err.field == "risk_grade"
    assert "'F'" in err.reason and "A, B, C, D, E" in err.reason


def test_a_bad_email_is_rejected():
    err = _rejection(email="ada.example.com")
    assert err.field == "email" and "e-mail address" in err.reason


@pytest.mark.parametrize("phone", ["call me", "12345", "+1234567890123456", "+1 (555) 555-0123"])
def test_a_bad_phone_is_rejected(phone):
    err = _rejection(phone=phone)
    assert err.field == "phone" and "7 to 15 digits" in err.reason


def test_a_phone_with_spaces_dashes_and_a_plus_is_accepted_as_written():
    loan = Loan.from_row(_row(phone="+44 20-7946-0958"))
    assert loan.phone == "+44 20-7946-0958"


def test_the_first_bad_field_is_the_one_reported():
    err = _rejection(timezone="Nowhere/City", risk_grade="Z")
    assert err.field == "timezone"


# -- read_portfolio (starter) --------------------------------------------------------

_HEADER = ",".join(REQUIRED_COLUMNS)


def _csv_line(**overrides: Any) -> str:
    row = _row(**overrides)
    return ",".join(row[c] if "," not in row[c] else f'"{row[c]}"' for c in REQUIRED_COLUMNS)


def test_read_portfolio_reports_each_bad_row_with_its_line_and_keeps_the_good_ones(tmp_path: Path):
    path = tmp_path / "portfolio.csv"
    path.write_text("\n".join([
        _HEADER,
        _csv_line(loan_id="L-1"),
        _csv_line(loan_id="L-2", risk_grade="Q"),
        _csv_line(loan_id="L-1"),
        _csv_line(loan_id="L-3"),
    ]) + "\n", encoding="utf-8")
    loans, rejected = read_portfolio(path)
    assert [(line, loan.loan_id) for line, loan in loans] == [(2, "L-1"), (5, "L-3")]
    assert rejected[0][0] == 3 and rejected[0][1].startswith("risk_grade:")
    assert rejected[1] == (4, "loan_id: L-1 repeats line 2")


def test_read_portfolio_rejects_a_row_with_an_absurd_amount_instead_of_crashing(tmp_path: Path):
    path = tmp_path / "portfolio.csv"
    path.write_text("\n".join([
        _HEADER,
        _csv_line(loan_id="L-1", outstanding_amount="1e30"),
        _csv_line(loan_id="L-2"),
    ]) + "\n", encoding="utf-8")
    loans, rejected = read_portfolio(path)
    assert [loan.loan_id for _, loan in loans] == ["L-2"]
    assert len(rejected) == 1 and rejected[0][0] == 2
    assert rejected[0][1].startswith("outstanding_amount:")
