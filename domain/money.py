"""Money is a Decimal with an ISO 4217 currency; never a float."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from domain.errors import Rejected

# Minor units of the currencies lenders using Arrears report in; anything else
# defaults to two decimals, the ISO 4217 norm.
_MINOR_UNITS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3, "TND": 3}


def minor_units(currency: str) -> int:
    return _MINOR_UNITS.get(currency, 2)


def validate_currency(value: str, field: str = "currency") -> str:
    code = (value or "").strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise Rejected(field, f"{value!r} is not an ISO 4217 currency code")
    return code


def parse_amount(value: object, currency: str, field: str, *, allow_zero: bool = False) -> Decimal:
    """A decimal string (or Decimal/int) as money in ``currency``; floats are refused."""
    if isinstance(value, float) or isinstance(value, bool):
        raise Rejected(field, "amounts are decimal strings, not floating-point numbers")
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise Rejected(field, f"{value!r} is not a decimal number") from None
    if not amount.is_finite():
        raise Rejected(field, f"{value!r} is not a decimal number")
    if amount.adjusted() >= 18:
        raise Rejected(field, f"{value} is too large for an amount")
    exponent = -minor_units(currency)
    if amount != amount.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_EVEN):
        raise Rejected(field, f"{value} has more decimals than {currency} allows ({-exponent})")
    if amount < 0 or (amount == 0 and not allow_zero):
        raise Rejected(field, "must be positive" if not allow_zero else "must not be negative")
    return amount.quantize(Decimal(1).scaleb(exponent))


def format_money(amount: Decimal, currency: str) -> str:
    return f"{currency} {amount:,.{minor_units(currency)}f}"
