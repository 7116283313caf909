"""Read a risk scorecard file (TOML) into a validated :class:`Scorecard`, and write one.

Intake grades the loans a lender sent without a grade only when it is given a card: ``--scorecard
NAME|FILE`` or ``ARREARS_SCORECARD`` (a name under strategies/, e.g. ``scorecard``, or a path). Without
one, a blank ``risk_grade`` is rejected as missing, as it always was.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

from domain.scorecard import Band, Scorecard, parse_scorecard
from infra.toml_files import read_toml

SCORECARD_ENV = "ARREARS_SCORECARD"


class ScorecardError(ValueError):
    """A scorecard file is unusable; the message names the file, the key and the reason."""


def load_scorecard(name_or_path: str | Path, strategies_dir: Path | None = None) -> Scorecard:
    path = Path(name_or_path)
    if path.suffix != ".toml" and strategies_dir is not None:
        path = strategies_dir / f"{name_or_path}.toml"
    if not path.exists():
        raise ScorecardError(f"{path}: no such scorecard")
    data = read_toml(path, ScorecardError)
    try:
        return parse_scorecard(data)
    except ValueError as err:
        raise ScorecardError(f"{path}: {err}") from None


def configured_scorecard(strategies_dir: Path, chosen: str | None = None,
                         env: Mapping[str, str] | None = None) -> Scorecard | None:
    """The card intake grades with: ``chosen`` (a command-line flag), else ``ARREARS_SCORECARD``, else none."""
    name = chosen or (os.environ if env is None else env).get(SCORECARD_ENV) or None
    return load_scorecard(name, strategies_dir) if name else None


def to_toml(card: Scorecard, header: str = "") -> str:
    """The card as TOML that :func:`parse_scorecard` reads back (``header``: comment lines above it)."""

    def bands(values: list[Band]) -> str:
        return "[" + ", ".join(f"{{ from = {_number(b.start)}, points = {b.points} }}" for b in values) + "]"

    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"name = {_string(card.name)}", f"base = {card.base}", "",
              "# Days past due at entry.", f"days_past_due = {bands(card.days_past_due)}",
              "# Payments made on the case (not reversed).", f"payments = {bands(card.payments)}",
              f"promises_broken = {bands(card.promises_broken)}", "",
              "# The least score of each grade; below D's: E.", "[grades]"]
    lines += [f"{grade} = {least}" for grade, least in card.grades.items()]
    lines += ["", "# The amount past due at entry: the share of the outstanding balance past due, unless the "
                  "loan's currency has bands below.", "[amount]", f"relative = {bands(card.amount.relative)}"]
    if card.amount.bands:
        lines += ["", "[amount.bands]"] + [f"{currency} = {bands(b)}" for currency, b in card.amount.bands.items()]
    lines += ["", "[product]", f"other = {card.product.other}", "", "[product.levels]"]
    lines += [f"{_key(name)} = {points}" for name, points in card.product.levels.items()]
    lines += ["", "# A right-party contact so far (a call reached the borrower, a visit met them).",
              "[contact_reached]", f"yes = {card.contact_reached.yes}", f"no = {card.contact_reached.no}", "",
              "[scaling]", f"points = {card.scaling.points}", f"odds = {card.scaling.odds!r}",
              f"pdo = {card.scaling.pdo}"]
    if card.fitted is not None:
        lines += ["", "[fitted]"] + [f"{key} = {value!r}" for key, value in card.fitted.model_dump().items()]
    return "\n".join(lines) + "\n"


def _number(value: Decimal) -> str:
    return str(int(value)) if value == value.to_integral_value() else str(value.normalize())


def _string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _key(value: str) -> str:
    bare = value and all(ch.isalnum() or ch in "-_" for ch in value) and value.isascii()
    return value if bare else _string(value)
