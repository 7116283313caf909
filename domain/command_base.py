"""What every command shares: the base class and the field types of payloads."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

if TYPE_CHECKING:
    from domain.case import CaseState
    from domain.strategy import Strategy

Text = Field(min_length=1, max_length=500)


def _amount_text(value: Any) -> str:
    if isinstance(value, float):
        raise ValueError("amounts are decimal strings, not floating-point numbers")
    if isinstance(value, (str, int, Decimal)) and not isinstance(value, bool):
        return str(value)
    raise ValueError("must be a decimal string such as \"120.50\"")


# Checked against the case currency in each command's check(); floats never get that far.
AmountText = Annotated[str, BeforeValidator(_amount_text)]
Name = Field(min_length=1, max_length=64)


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: ClassVar[str]
    # Who sent the command (an agent or operator id, never a borrower's name): the audit trail's "who".
    by: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")

    def check(self, case: CaseState, strategy: Strategy, now: datetime) -> None:
        """Raise :class:`Rejected` when the command does not fit the case as it stands."""

    def apply(self, case: CaseState, strategy: Strategy, now: datetime) -> None:
        raise NotImplementedError

    def audit(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, exclude={"by"})

    # Fields a person writes freely (a reason, a note): possibly health or family data, kept in the
    # ledger only (``CaseEvent.private``).
    PRIVATE: ClassVar[tuple[str, ...]] = ("reason", "note")
    # Tighter bounds for a list field than the commands' own (domain/commands.py): (items, characters each).
    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {}

    def private_fields(self) -> tuple[str, ...]:
        return tuple(name for name in self.PRIVATE if name in type(self).model_fields)
