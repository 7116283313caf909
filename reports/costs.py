"""What collecting costs: the unit costs the KPI report prices a case's work with.

The file (``reports/costs.toml`` by default, or the one ``ARREARS_COSTS`` or ``--costs`` names) says
how many Temporal billable actions a case and a command cost, and per currency what an action, a
text, an e-mail, a letter, a call and a visit cost. Read once by the caller and handed to
:func:`reports.kpis.compute`, which stays pure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from infra.toml_files import read_toml

DEFAULT_PATH = Path(__file__).with_name("costs.toml")
ENVIRONMENT = "ARREARS_COSTS"
# What a currency's table prices, in the order the file lists them.
UNITS = ("action", "sms", "email", "letter", "call", "visit")


class CostsError(ValueError):
    """A cost file is unusable: the message names the file, the key and the reason."""


@dataclass(frozen=True)
class UnitCosts:
    """One currency's prices."""

    action: Decimal
    sms: Decimal
    email: Decimal
    letter: Decimal
    call: Decimal
    visit: Decimal

    def of(self, unit: str) -> Decimal:
        return getattr(self, unit)


@dataclass(frozen=True)
class Costs:
    """How many billable actions a case and a command cost, and each currency's prices."""

    actions_per_case: int
    actions_per_command: int
    currencies: dict[str, UnitCosts] = field(default_factory=dict)
    source: str = ""

    def for_currency(self, currency: str) -> UnitCosts | None:
        """The currency's prices; None when the file has none (its cases get no cost figures)."""
        return self.currencies.get(currency)


def load_costs(path: str | Path | None = None) -> Costs:
    """The costs in ``path``, else in the file ``ARREARS_COSTS`` names, else the defaults."""
    chosen = Path(path or os.environ.get(ENVIRONMENT) or DEFAULT_PATH)
    data = read_toml(chosen, CostsError)
    return parse_costs(data, str(chosen))


def parse_costs(data: dict[str, Any], source: str = "") -> Costs:
    """Costs from the TOML's tables, each value checked."""
    where = source or "costs"
    counts = {}
    for key in ("actions_per_case", "actions_per_command"):
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CostsError(f"{where}: {key} must be a whole number of actions, 0 or more (got {value!r})")
        counts[key] = value
    tables = data.get("currencies", {})
    if not isinstance(tables, dict):
        raise CostsError(f"{where}: currencies must be a table of currency tables")
    currencies = {}
    for currency, table in tables.items():
        if not isinstance(table, dict):
            raise CostsError(f"{where}: currencies.{currency} must be a table")
        unknown = sorted(set(table) - set(UNITS))
        if unknown:
            raise CostsError(f"{where}: currencies.{currency}: unknown unit {unknown[0]!r} (units: {', '.join(UNITS)})")
        currencies[currency] = UnitCosts(**{unit: _price(table, unit, f"{where}: currencies.{currency}.{unit}")
                                            for unit in UNITS})
    return Costs(counts["actions_per_case"], counts["actions_per_command"], currencies, source)


def _price(table: dict[str, Any], unit: str, where: str) -> Decimal:
    value = table.get(unit)
    if value is None:
        raise CostsError(f"{where}: missing")
    if isinstance(value, (bool, float)) or not isinstance(value, (str, int)):
        raise CostsError(f"{where}: write the amount as a decimal string such as \"0.05\" (got {value!r})")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise CostsError(f"{where}: {value!r} is not an amount") from None
    if not amount.is_finite() or amount < 0:
        raise CostsError(f"{where}: {value!r} is not an amount of 0 or more")
    return amount
