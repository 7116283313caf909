"""A risk grade when the lender gives none: a scorecard, as data.

A scorecard is a sum of points anyone can check by hand: base points, plus the points of the bin each
attribute of the loan falls in (days past due and the amount past due at entry, the product, the
payments made on the case, the promises it broke, whether anyone has reached the borrower), the total
read against the grades' cut-offs. A supervisor sees why a case is graded D: its points per attribute.

Higher is better: a score counts for the case's chance to cure (lab/scorecard.py fits the points from
the ledger's outcomes so that the score is ``points + pdo * log2(odds of curing / odds)``). Grade A is
the best (most likely to cure), as a lender's grades run (domain.loan.RISK_GRADES).

Which cases it grades: a loan whose row leaves ``risk_grade`` blank, when intake is given a card (without
one, a blank grade is rejected as missing). Its grade picks the entry segment like a lender's would. The
card then rides in that case's input, and the case re-scores itself after whatever it saw (a payment, a
broken promise, the borrower reached): a new grade is a ``risk_grade_changed`` event and the RiskGrade
search attribute follows (feature ``risk-regrade``). A lender's grade is the lender's word: it stands for
the life of the case. The days and the amount past due are read as they were at entry (as the card was
fitted); the behaviour, as it is so far.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.errors import validation_problems
from domain.loan import RISK_GRADES

if TYPE_CHECKING:
    from domain.loan import Loan

# The feature name (workflows/inputs.py FEATURES) of cases that re-score on their own behaviour.
RISK_REGRADE = "risk-regrade"

# What counts as a right-party contact (someone reached the borrower): the same for the case that
# re-scores itself and for the fit that reads the ledger.
RIGHT_PARTY_CONTACTS: dict[str, tuple[str, ...]] = {"call_outcome": ("reached",),
                                                     "field_visit_report": ("met", "paid")}


def is_right_party_contact(kind: str, status: str, detail: dict[str, Any]) -> bool:
    """Whether an event of the case (a command's, as recorded) says the borrower was reached."""
    return status == "accepted" and detail.get("outcome") in RIGHT_PARTY_CONTACTS.get(kind, ())


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Band(_Card):
    """One bin of a numeric attribute: the values from ``from`` up to the next bin's ``from``."""

    start: Decimal = Field(alias="from", ge=0)
    points: int


def _label(bands: list[Band], index: int) -> str:
    start = bands[index].start
    if index + 1 == len(bands):
        return f"{start}+"
    end = bands[index + 1].start
    if start == start.to_integral_value() and end == end.to_integral_value():
        return f"{start}" if end - start == 1 else f"{start}-{end - 1}"
    return f"{start} to under {end}"


def band_of(bands: list[Band], value: Decimal) -> int:
    """The index of the bin ``value`` falls in (the first bin also takes anything below it)."""
    index = 0
    for n, band in enumerate(bands):
        if value >= band.start:
            index = n
    return index


def _rising(bands: list[Band]) -> list[Band]:
    if not bands:
        raise ValueError("name at least one bin")
    if bands[0].start != 0:
        raise ValueError(f"the first bin must start from 0, not {bands[0].start}")
    for before, after in itertools.pairwise(bands):
        if after.start <= before.start:
            raise ValueError(f"bins must rise: {after.start} follows {before.start}")
    return bands


class Amount(_Card):
    """The amount past due at entry: by currency bands where the card names the loan's currency,
    else relative (the share of the outstanding balance that is past due, 0 to 1)."""

    relative: list[Band]
    bands: dict[str, list[Band]] = {}

    @field_validator("relative")
    @classmethod
    def _relative_rises(cls, value: list[Band]) -> list[Band]:
        _rising(value)
        if any(band.start > 1 for band in value):
            raise ValueError("a share of the outstanding balance runs from 0 to 1")
        return value

    @field_validator("bands")
    @classmethod
    def _bands_rise(cls, value: dict[str, list[Band]]) -> dict[str, list[Band]]:
        for currency, bands in value.items():
            if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
                raise ValueError(f"{currency!r} is not an ISO 4217 currency code")
            try:
                _rising(bands)
            except ValueError as err:
                raise ValueError(f"{currency}: {err}") from None
        return value


class Products(_Card):
    """Points per product; products the card does not name get ``other``."""

    levels: dict[str, int] = {}
    other: int = 0

    @field_validator("levels")
    @classmethod
    def _lower_case(cls, value: dict[str, int]) -> dict[str, int]:
        odd = [name for name in value if name != name.lower()]
        if odd:
            raise ValueError(f"products are lower case, as intake reads them: {', '.join(odd)}")
        return value


class Reached(_Card):
    yes: int
    no: int


class Scaling(_Card):
    """How points read as odds: ``points`` at ``odds`` (cure : no cure), every ``pdo`` points double them."""

    points: int = 600
    odds: float = Field(default=1.0, gt=0)
    pdo: int = Field(default=20, gt=0)


class Fitted(_Card):
    """Where a fitted card came from, and how it did on cases it was not fitted on."""

    episodes: int
    cured: int
    window_days: int
    seed: int
    held_out: int
    auc: float
    ks: float


class Features(BaseModel):
    """What the card reads of a case: the loan at entry, and the case's behaviour so far."""

    days_past_due: int
    currency: str
    amount_past_due: Decimal
    outstanding: Decimal
    product: str
    payments: int = 0
    promises_broken: int = 0
    contact_reached: bool = False

    @classmethod
    def at_intake(cls, loan: "Loan") -> "Features":
        return cls(days_past_due=loan.days_past_due, currency=loan.currency, amount_past_due=loan.amount_past_due,
                   outstanding=loan.outstanding_amount, product=loan.product)

    @property
    def share_past_due(self) -> Decimal:
        """The share of the outstanding balance that is past due (1 when nothing else is owed)."""
        if self.outstanding <= 0:
            return Decimal(1)
        return min(Decimal(1), self.amount_past_due / self.outstanding)


class Points(BaseModel):
    """One attribute's part of a score: the bin the case fell in and what it is worth."""

    attribute: str
    bin: str
    points: int


class Scoring(BaseModel):
    score: int
    grade: str
    points: list[Points]

    def why(self) -> str:
        """The score as a sum, for a person: ``base 505 + days_past_due 0-30: 45 + ...``."""
        return " + ".join(f"{p.attribute} {p.bin}: {p.points}" if p.bin else f"{p.attribute} {p.points}"
                          for p in self.points) + f" = {self.score}"


ATTRIBUTES = ("days_past_due", "amount", "product", "payments", "promises_broken", "contact_reached")


class Scorecard(_Card):
    """Base points, points per attribute bin, and the least score of each grade (below D's: E)."""

    name: str = "scorecard"
    base: int
    days_past_due: list[Band]  # at entry
    amount: Amount  # past due at entry
    product: Products
    payments: list[Band]  # payments made on the case (not reversed)
    promises_broken: list[Band]
    contact_reached: Reached  # a right-party contact so far
    grades: dict[str, int]
    scaling: Scaling = Scaling()
    fitted: Fitted | None = None

    @field_validator("days_past_due", "payments", "promises_broken")
    @classmethod
    def _bins_rise(cls, value: list[Band]) -> list[Band]:
        return _rising(value)

    @field_validator("grades")
    @classmethod
    def _cut_offs_fall(cls, value: dict[str, int]) -> dict[str, int]:
        wanted = RISK_GRADES[:-1]
        if sorted(value) != sorted(wanted):
            raise ValueError(f"name the least score of {', '.join(wanted)} (below {wanted[-1]}'s: {RISK_GRADES[-1]}); "
                             f"got {', '.join(sorted(value)) or 'none'}")
        for better, worse in itertools.pairwise(wanted):
            if value[worse] >= value[better]:
                raise ValueError(f"{worse} ({value[worse]}) must be below {better} ({value[better]})")
        return {grade: value[grade] for grade in wanted}

    # -- reading --------------------------------------------------------------------------------
    def bins(self, features: Features) -> list[tuple[str, str, int]]:
        """(attribute, bin, points) for each attribute of ``features``."""
        found = []

        def numeric(attribute: str, bands: list[Band], value: Decimal) -> None:
            index = band_of(bands, value)
            found.append((attribute, _label(bands, index), bands[index].points))

        numeric("days_past_due", self.days_past_due, Decimal(features.days_past_due))
        bands = self.amount.bands.get(features.currency)
        if bands is None:
            bands, value, unit = self.amount.relative, features.share_past_due, "of the balance"
        else:
            value, unit = features.amount_past_due, features.currency
        index = band_of(bands, value)
        found.append(("amount", f"{_label(bands, index)} {unit}", bands[index].points))
        product = features.product.lower()
        if product in self.product.levels:
            found.append(("product", product, self.product.levels[product]))
        else:
            found.append(("product", "other", self.product.other))
        numeric("payments", self.payments, Decimal(features.payments))
        numeric("promises_broken", self.promises_broken, Decimal(features.promises_broken))
        reached = features.contact_reached
        found.append(("contact_reached", "yes" if reached else "no",
                      self.contact_reached.yes if reached else self.contact_reached.no))
        return found

    def score(self, features: Features) -> int:
        return self.base + sum(points for _, _, points in self.bins(features))

    def grade(self, score: int) -> str:
        for grade, least in self.grades.items():
            if score >= least:
                return grade
        return RISK_GRADES[-1]

    def explain(self, features: Features) -> Scoring:
        """The score, its grade and the points per attribute (the base first)."""
        points = [Points(attribute="base", bin="", points=self.base)] + [
            Points(attribute=a, bin=b, points=p) for a, b, p in self.bins(features)]
        total = sum(p.points for p in points)
        return Scoring(score=total, grade=self.grade(total), points=points)

    def grade_loan(self, loan: "Loan") -> "Loan":
        """``loan`` graded by this card at intake when the lender gave no grade (its own grade stands)."""
        if loan.risk_grade:
            return loan
        scoring = self.explain(Features.at_intake(loan))
        return loan.model_copy(update={"risk_grade": scoring.grade, "grade_source": "scorecard",
                                       "score": scoring.score})


def grade_loan(loan: "Loan", card: Scorecard | None) -> "Loan":
    """The loan intake starts: graded by ``card`` when the lender left its grade blank."""
    return card.grade_loan(loan) if card is not None else loan


def parse_scorecard(data: dict[str, Any]) -> Scorecard:
    """A card from its TOML's data; raises ``ValueError`` naming each bad key and why."""
    from pydantic import ValidationError

    try:
        return Scorecard.model_validate(data)
    except ValidationError as err:
        raise ValueError(validation_problems(err)) from None
