"""Fit the risk scorecard from the ledger's outcomes, and check it on cases it was not fitted on.

    python -m lab fit-scorecard --ledger URL --out FILE [--min-cases N] [--seed N] [--window-days N] [--bins FILE]

One training row per closed episode (a case from ``case_opened`` to ``case_closed``): what the card reads
of the loan at entry (days past due, the share of the balance past due, the product) and of the case's
first ``window`` days (payments made, promises broken, the borrower reached), and whether it then
cured. Only episodes still open at the end of the window are rows: the card grades a case from that
moment on, and a case that cured inside the window would teach it that paying means having paid.

Each attribute is cut into the bins of a template card (``--bins``, by default strategies/scorecard.toml),
one indicator per bin, and a logistic regression (scikit-learn, L2) fitted on a seeded, stratified 70 %
of the rows. Points are its coefficients scaled so that the score reads as odds: 600 points stand for
even odds of curing and every 20 more double them (the template's [scaling]); each attribute's worst
bin is worth 0 and the rest of its share is in the base. The grades' cut-offs are the scores of an 80,
60, 40 and 20 % chance to cure. The held-out 30 % is scored with the card as written (whole points), and
its AUC and KS are reported and written into the card. Too few cured or uncured episodes: refused.
lab/synthetic_outcomes.py writes a ledger whose outcomes follow a known signal, to try it on.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from domain.loan import RISK_GRADES
from domain.scorecard import (
    Amount, Band, Features, Fitted, Products, Reached, Scorecard, band_of, is_right_party_contact,
)

WINDOW_DAYS = 30
MIN_CASES = 50  # of each outcome, cured and not
HELD_OUT = 0.3
MIN_PRODUCT_ROWS = 20  # a product with fewer training rows is scored as "other"
GRADE_CHANCES = (0.8, 0.6, 0.4, 0.2)  # the chance to cure at the least score of A, B, C and D
DEFAULT_BINS = Path(__file__).resolve().parents[1] / "strategies" / "scorecard.toml"


class NotEnoughHistory(ValueError):
    """The ledger holds too few closed episodes of one outcome to fit a card worth trusting."""


@dataclass(frozen=True)
class TrainingRow:
    loan_id: str
    episode: str
    features: Features
    cured: bool


@dataclass
class Fit:
    card: Scorecard
    rows: int
    cured: int
    train: int
    held_out: int
    auc: float  # on the held-out rows, scored by the card as written
    ks: float
    train_auc: float
    by_grade: dict[str, tuple[int, int]] = field(default_factory=dict)  # held out: grade -> (cases, cured)
    skipped: dict[str, int] = field(default_factory=dict)  # episodes not used, by why


# -- training rows from the ledger's events -----------------------------------------------------------
def _get(event: Any, name: str) -> Any:
    return event[name] if isinstance(event, Mapping) else getattr(event, name)


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def training_rows(events: Iterable[Any], window_days: int = WINDOW_DAYS) -> tuple[list[TrainingRow], dict[str, int]]:
    """One row per closed episode still open after ``window_days``; and how many episodes were left out, by why.
    ``events``: the ledger's case events (mappings or objects with loan_id, episode, seq, at, kind, status, detail)."""
    episodes: dict[tuple[str, str], list[Any]] = {}
    for event in events:
        episodes.setdefault((_get(event, "loan_id"), _get(event, "episode") or ""), []).append(event)
    rows: list[TrainingRow] = []
    skipped = {"still open": 0, "closed within the window": 0, "no case_opened": 0}
    window = timedelta(days=window_days)
    for (loan_id, episode), trail in sorted(episodes.items()):
        trail.sort(key=lambda e: _get(e, "seq"))
        opened = next((e for e in trail if _get(e, "kind") == "case_opened"), None)
        closed = next((e for e in trail if _get(e, "kind") == "case_closed"), None)
        if opened is None:
            skipped["no case_opened"] += 1
            continue
        if closed is None:
            skipped["still open"] += 1
            continue
        start = _utc(_get(opened, "at"))
        if _utc(_get(closed, "at")) < start + window:
            skipped["closed within the window"] += 1
            continue
        payments, broken, reached = 0, 0, False
        for event in trail:
            if _utc(_get(event, "at")) >= start + window:
                break
            kind, status, detail = _get(event, "kind"), _get(event, "status"), _get(event, "detail") or {}
            if kind == "payment_received" and status == "accepted":
                payments += 1
            elif kind == "payment_reversed" and status == "accepted":
                payments = max(0, payments - 1)
            elif kind == "promise_broken":
                broken += 1
            reached = reached or is_right_party_contact(kind, status, detail)
        at_entry = _get(opened, "detail")
        features = Features(days_past_due=int(at_entry["days_past_due"]), currency=at_entry.get("currency") or "",
                            amount_past_due=Decimal(str(at_entry["amount_past_due"])),
                            outstanding=Decimal(str(at_entry["outstanding"])),
                            product=(at_entry.get("product") or "").lower(),
                            payments=payments, promises_broken=broken, contact_reached=reached)
        cured = (_get(closed, "detail") or {}).get("outcome") == "cured"
        rows.append(TrainingRow(loan_id, episode, features, cured))
    return rows, {why: n for why, n in skipped.items() if n}


# -- the fit -------------------------------------------------------------------------------------------
def _columns(template: Scorecard, products: Sequence[str]) -> list[tuple[str, str]]:
    """(attribute, bin) of every indicator, in the card's order."""
    return ([("days_past_due", str(n)) for n in range(len(template.days_past_due))]
            + [("amount", str(n)) for n in range(len(template.amount.relative))]
            + [("product", name) for name in products] + [("product", "other")]
            + [("payments", str(n)) for n in range(len(template.payments))]
            + [("promises_broken", str(n)) for n in range(len(template.promises_broken))]
            + [("contact_reached", "yes"), ("contact_reached", "no")])


def _indicators(template: Scorecard, products: Sequence[str], features: Features) -> set[tuple[str, str]]:
    product = features.product if features.product in products else "other"
    return {("days_past_due", str(band_of(template.days_past_due, Decimal(features.days_past_due)))),
            ("amount", str(band_of(template.amount.relative, features.share_past_due))),
            ("product", product),
            ("payments", str(band_of(template.payments, Decimal(features.payments)))),
            ("promises_broken", str(band_of(template.promises_broken, Decimal(features.promises_broken)))),
            ("contact_reached", "yes" if features.contact_reached else "no")}


def _card_from(template: Scorecard, products: Sequence[str], columns: list[tuple[str, str]],
               coefficients: Sequence[float], intercept: float) -> Scorecard:
    scaling = template.scaling
    factor = scaling.pdo / math.log(2)
    offset = scaling.points - factor * math.log(scaling.odds)
    raw = {column: factor * float(c) for column, c in zip(columns, coefficients, strict=True)}
    floor = {attribute: min(v for (a, _), v in raw.items() if a == attribute) for attribute, _ in columns}
    points = {column: round(value - floor[column[0]]) for column, value in raw.items()}
    base = round(offset + factor * intercept + sum(floor.values()))

    def bands(attribute: str, template_bands: list[Band]) -> list[Band]:
        return [Band(start=b.start, points=points[(attribute, str(n))]) for n, b in enumerate(template_bands)]

    grades = {grade: round(offset + factor * math.log(chance / (1 - chance)))
              for grade, chance in zip(RISK_GRADES[:-1], GRADE_CHANCES, strict=True)}
    return Scorecard(
        name="fitted", base=base, days_past_due=bands("days_past_due", template.days_past_due),
        amount=Amount(relative=bands("amount", template.amount.relative)),
        product=Products(levels={name: points[("product", name)] for name in products},
                         other=points[("product", "other")]),
        payments=bands("payments", template.payments), promises_broken=bands("promises_broken", template.promises_broken),
        contact_reached=Reached(yes=points[("contact_reached", "yes")], no=points[("contact_reached", "no")]),
        grades=grades, scaling=scaling)


def _split_by_loan(rows: list[TrainingRow], seed: int) -> tuple[list[TrainingRow], list[TrainingRow]]:
    """About ``HELD_OUT`` of the loans, every episode of each, held out (seeded); the rest to train on."""
    from sklearn.model_selection import GroupShuffleSplit

    splitter = GroupShuffleSplit(n_splits=1, test_size=HELD_OUT, random_state=seed)
    train, held = next(splitter.split(rows, groups=[row.loan_id for row in rows]))
    return [rows[n] for n in train], [rows[n] for n in held]


def fit(rows: Sequence[TrainingRow], template: Scorecard, *, seed: int = 0, min_cases: int = MIN_CASES,
        window_days: int = WINDOW_DAYS) -> Fit:
    """Fit a card with ``template``'s bins and scaling; raises :class:`NotEnoughHistory` below
    ``min_cases`` episodes of either outcome."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score, roc_curve
    cured = sum(1 for row in rows if row.cured)
    if min(cured, len(rows) - cured) < min_cases:
        raise NotEnoughHistory(
            f"not enough history: {cured} cured and {len(rows) - cured} not cured episodes closed after their first "
            f"{window_days} days; at least {min_cases} of each are needed (--min-cases)")
    # Held out by loan, not by episode: a loan's episodes share a borrower, and one in each part would let
    # the check see the training rows again (an AUC too good to be true).
    train, held = _split_by_loan(list(rows), seed)
    counts: dict[str, int] = {}
    for row in train:
        counts[row.features.product] = counts.get(row.features.product, 0) + 1
    products = sorted(name for name, n in counts.items() if n >= MIN_PRODUCT_ROWS and name != "other")
    columns = _columns(template, products)
    index = {column: n for n, column in enumerate(columns)}

    def matrix(part: Sequence[TrainingRow]) -> list[list[float]]:
        out = []
        for row in part:
            line = [0.0] * len(columns)
            for column in _indicators(template, products, row.features):
                line[index[column]] = 1.0
            out.append(line)
        return out

    model = LogisticRegression(C=1.0, max_iter=1000)
    model.fit(matrix(train), [row.cured for row in train])
    card = _card_from(template, products, columns, model.coef_[0], float(model.intercept_[0]))

    def auc_ks(part: Sequence[TrainingRow]) -> tuple[float, float]:
        truth = [row.cured for row in part]
        scores = [card.score(row.features) for row in part]
        false_pos, true_pos, _ = roc_curve(truth, scores)
        return float(roc_auc_score(truth, scores)), float(max(t - f for t, f in zip(true_pos, false_pos, strict=True)))

    auc, ks = auc_ks(held)
    train_auc, _ = auc_ks(train)
    by_grade: dict[str, tuple[int, int]] = {grade: (0, 0) for grade in RISK_GRADES}
    for row in held:
        n, c = by_grade[card.grade(card.score(row.features))]
        by_grade[card.grade(card.score(row.features))] = (n + 1, c + int(row.cured))
    card = card.model_copy(update={"fitted": Fitted(episodes=len(rows), cured=cured, window_days=window_days, seed=seed,
                                                    held_out=len(held), auc=round(auc, 4), ks=round(ks, 4))})
    return Fit(card=card, rows=len(rows), cured=cured, train=len(train), held_out=len(held), auc=auc, ks=ks,
               train_auc=train_auc, by_grade=by_grade)


def summary(result: Fit) -> str:
    """What the fit found, for a person: the sample, the held-out AUC and KS, and the grades' cure rates."""
    lines = [f"fitted on {result.train} of {result.rows} closed episodes ({result.cured} cured); "
             f"held out {result.held_out}: AUC {result.auc:.3f}, KS {result.ks:.3f} (in sample AUC {result.train_auc:.3f})"]
    if result.skipped:
        lines.append("not used: " + ", ".join(f"{n} {why}" for why, n in result.skipped.items()))
    lines.append("grade  held-out cases  cured")
    for grade, (n, cured) in result.by_grade.items():
        rate = f"{cured / n:.0%}" if n else "-"
        lines.append(f"{grade:<6} {n:>14}  {rate:>5}")
    return "\n".join(lines)


# -- the ledger ---------------------------------------------------------------------------------------
async def read_ledger(url: str) -> list[dict[str, Any]]:
    """Every case event in the ledger at ``url`` (SQLite or PostgreSQL), as the fit reads them."""
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from ledger import Ledger
    from ledger.schema import case_events
    from ledger.store import LedgerError

    try:
        ledger = Ledger.connect(url)
    except LedgerError as err:
        raise LedgerUnreadable(f"--ledger: {err}") from None
    columns = [case_events.c[name] for name in ("loan_id", "episode", "seq", "at", "kind", "status", "detail")]
    try:
        async with ledger.engine.connect() as connection:
            result = await connection.execute(select(*columns))
            return [dict(row._mapping) for row in result]
    except (SQLAlchemyError, OSError) as err:
        raise LedgerUnreadable(f"--ledger: cannot read case events: {str(err).splitlines()[0]}") from None
    finally:
        await ledger.close()


class LedgerUnreadable(RuntimeError):
    """The ledger cannot be read (no such database, no case_events table)."""


# -- the command --------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab fit-scorecard",
                                     description="Fit the risk scorecard from the ledger's outcomes.")
    parser.add_argument("--ledger", default=None, help="the ledger's URL (default: ARREARS_DATABASE_URL or .data's)")
    parser.add_argument("--out", required=True, type=Path, help="where to write the card (TOML)")
    parser.add_argument("--min-cases", type=int, default=MIN_CASES, help="least episodes of each outcome")
    parser.add_argument("--seed", type=int, default=0, help="seeds the held-out split")
    parser.add_argument("--window-days", type=int, default=WINDOW_DAYS, help="days of behaviour the card reads")
    parser.add_argument("--bins", type=Path, default=DEFAULT_BINS, help="a card whose bins and scaling to fit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lab fit-scorecard``: 0 with the card written, 1 when the ledger holds too little
    history, 2 for bad arguments or an unreadable ledger (the message names the flag)."""
    args = _parser().parse_args(argv)
    if args.min_cases < 2:
        print("error: --min-cases: at least 2 (each outcome needs cases in both the fit and the check)", file=sys.stderr)
        return 2
    if args.window_days < 1:
        print("error: --window-days: at least 1", file=sys.stderr)
        return 2
    from infra.scorecards import ScorecardError, load_scorecard, to_toml
    from infra.settings import Settings

    try:
        template = load_scorecard(args.bins)
    except ScorecardError as err:
        print(f"error: --bins: {err}", file=sys.stderr)
        return 2
    url = args.ledger or Settings.from_env().ledger_url
    try:
        events = asyncio.run(read_ledger(url))
    except (LedgerUnreadable, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows, skipped = training_rows(events, args.window_days)
    try:
        result = fit(rows, template, seed=args.seed, min_cases=args.min_cases, window_days=args.window_days)
    except NotEnoughHistory as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    result.skipped = skipped
    header = (f"Fitted by `python -m lab fit-scorecard` from {result.rows} closed episodes ({result.cured} cured), "
              f"behaviour of their first {args.window_days} days, seed {args.seed}.\n"
              f"On {result.held_out} held-out episodes: AUC {result.auc:.3f}, KS {result.ks:.3f}.\n"
              "Check it before use: intake grades with it when given --scorecard or ARREARS_SCORECARD.")
    args.out.write_text(to_toml(result.card, header), encoding="utf-8")
    print(summary(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
