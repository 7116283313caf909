"""Champion/challenger: which strategy a loan's case starts with when an experiment runs.

``strategies/assignment.toml`` names the experiment, its champion (the strategy in force) and the
challengers with their shares of the portfolio, optionally per segment. Each loan's arm is drawn
from a hash of the experiment's name and the loan id, never from a random generator: the same loan
gets the same arm on every rerun, on every worker and in any order of the file, and a new
experiment name reshuffles the whole portfolio. The arm is pinned for the episode (it rides in the
case's input and is written to its ``case_opened`` record), so a change to the file never moves a
running case.
"""

from __future__ import annotations

import hashlib
import math
from decimal import Decimal, localcontext
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from domain.loan import Loan
from domain.strategy import Segment

Role = Literal["champion", "challenger"]


class PlanError(ValueError):
    """An assignment file is unusable; the message names the file, the key and the reason."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Arm(BaseModel):
    """The arm a case was drawn into: the experiment, the strategy it runs and that strategy's role."""

    # In every case's input: a field a later version adds must not fail an older worker's decoding.
    model_config = ConfigDict(frozen=True, extra="ignore")

    experiment: str
    strategy: str
    role: Role


class Challenger(_Model):
    strategy: str = Field(min_length=1)
    share: Decimal = Field(gt=0, le=1)


class _Arms(_Model):
    """A champion and its challengers; the champion takes what the challengers' shares leave."""

    champion: str | None = Field(default=None, min_length=1)
    challengers: list[Challenger] = []

    @model_validator(mode="after")
    def _shares_fit(self) -> "_Arms":
        total = sum((c.share for c in self.challengers), Decimal(0))
        if total > 1:
            raise ValueError(f"challengers: the shares sum to {total}, more than 1")
        seen = {self.champion} if self.champion else set()
        for challenger in self.challengers:
            if challenger.strategy in seen:
                role = "the champion" if challenger.strategy == self.champion else "named twice"
                raise ValueError(f"challengers: {challenger.strategy!r} is {role}; each strategy is one arm")
            seen.add(challenger.strategy)
        return self


class PlanSegment(Segment, _Arms):
    """Loans this rule matches (the same fields as a strategy's segments: dpd, grades, products,
    amounts per currency) get these arms instead of the plan's; the first matching segment applies.
    Without ``champion`` the plan's champion is kept."""

    @model_validator(mode="after")
    def _chooses_arms_not_stages(self) -> "PlanSegment":
        if self.enter is not None or self.skip:
            raise ValueError("'enter' and 'skip' belong in a strategy's segments; an assignment segment "
                             "chooses arms")
        return self


class Plan(_Arms):
    """The experiment as ``strategies/assignment.toml`` states it.

    With per-segment shares the arms' mixes of loans differ: compare the arms within each segment."""

    experiment: str = Field(min_length=1)
    description: str = ""
    # An experiment is started on purpose: a file that says ``active = false`` is written down, not
    # running (every loan starts on the champion, no arm is drawn or recorded).
    active: bool = True
    champion: str = Field(min_length=1)
    segments: list[PlanSegment] = []

    def strategies(self) -> list[str]:
        """Every strategy some loan may be drawn into, the champion first (each to be loaded once)."""
        names = [self.champion, *(c.strategy for c in self.challengers)]
        for segment in self.segments:
            names += [segment.champion or self.champion, *(c.strategy for c in segment.challengers)]
        return list(dict.fromkeys(names))

    def arms_for(self, loan: Loan) -> tuple[str, list[Challenger]]:
        """The champion and the challengers (with their shares) that apply to ``loan``."""
        segment = next((s for s in self.segments if s.matches(loan)), None)
        if segment is None:
            return self.champion, self.challengers
        return segment.champion or self.champion, segment.challengers


_SPACE = 1 << 64  # the draw's points: the first 64 bits of the hash


def position(experiment: str, loan_id: str) -> int:
    """Where the loan falls for this experiment, a whole number in [0, 2**64): the first 64 bits of
    sha256("<experiment>:<loan_id>"). Its share of the way from 0 to 2**64 decides the arm."""
    return int.from_bytes(hashlib.sha256(f"{experiment}:{loan_id}".encode()).digest()[:8], "big")


def draw(plan: Plan, loan: Loan) -> Arm:
    """The loan's arm: the challengers' shares laid end to end from 0 in the order the file lists
    them, the champion after them up to 1. Compared in whole numbers (no float rounding at an edge)."""
    champion, challengers = plan.arms_for(loan)
    at = position(plan.experiment, loan.loan_id)
    edge = Decimal(0)
    with localcontext(prec=60):  # a share times 2**64, exactly
        for challenger in challengers:
            edge += challenger.share
            if at < math.ceil(edge * _SPACE):
                return Arm(experiment=plan.experiment, strategy=challenger.strategy, role="challenger")
    return Arm(experiment=plan.experiment, strategy=champion, role="champion")


def parse_plan(data: dict, source: str = "assignment") -> Plan:
    """Validate an assignment's data; ``PlanError`` names ``source`` and each bad key."""
    try:
        return Plan.model_validate(data)
    except ValidationError as err:
        raise PlanError(f"{source}: " + "; ".join(_problem(e["loc"], e["msg"]) for e in err.errors())) from None


def _problem(loc: tuple, message: str) -> str:
    """``key.path: reason``; a rule's own message that starts with its key ("challengers: ...")
    extends the path instead of repeating it."""
    path = [str(part) for part in loc]
    message = message.removeprefix("Value error, ")
    key, sep, rest = message.partition(": ")
    if sep and key.isidentifier():
        path, message = [*path, key], rest
    return f"{'.'.join(path)}: {message}" if path else message
