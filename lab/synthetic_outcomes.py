"""A synthetic ledger of closed cases whose cure follows a known signal: what the scorecard's fit is
tested (and demonstrated) on. Seeded: the same seed writes the same events."""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from domain.scorecard import Features
from lab.scorecard import WINDOW_DAYS

PRODUCT_EFFECT = {"personal_loan": 0.4, "credit_card": 0.0, "bnpl": -0.4}


def chance_to_cure(features: Features) -> float:
    """The signal the synthetic ledger is drawn from: older and larger arrears cure less often, a payment
    and a conversation with the borrower more often, a broken promise less."""
    logit = (-0.2 - 0.025 * (features.days_past_due - 30) - 1.5 * (float(features.share_past_due) - 0.25)
             + 0.9 * min(features.payments, 2) - 1.0 * min(features.promises_broken, 2)
             + 1.4 * features.contact_reached + PRODUCT_EFFECT.get(features.product, 0.0))
    return 1 / (1 + math.exp(-logit))


def synthetic_events(cases: int, seed: int, window_days: int = WINDOW_DAYS,
                     start: date = date(2026, 1, 5)) -> list[dict[str, Any]]:
    """A ledger's case events for ``cases`` episodes whose cure follows :func:`chance_to_cure`, seeded.
    About one in ten closes inside the window and one in twenty is still open (both left out of a fit)."""
    draw = random.Random(seed)
    events: list[dict[str, Any]] = []
    for n in range(cases):
        loan_id = f"SYN-{n:06d}"
        opened = datetime.combine(start + timedelta(days=draw.randrange(180)), datetime.min.time(), UTC)
        outstanding = Decimal(draw.randrange(1000, 20000))
        share = Decimal(str(round(draw.uniform(0.02, 0.8), 3)))
        features = Features(days_past_due=draw.randint(1, 120), currency="USD",
                            amount_past_due=(outstanding * share).quantize(Decimal("0.01")), outstanding=outstanding,
                            product=draw.choice(sorted(PRODUCT_EFFECT)), payments=draw.choice((0, 0, 0, 1, 1, 2)),
                            promises_broken=draw.choice((0, 0, 0, 1, 2)), contact_reached=draw.random() < 0.5)
        episode = (opened.date() - timedelta(days=features.days_past_due)).isoformat()
        trail: list[tuple[datetime, str, str, dict[str, Any]]] = [(opened, "case_opened", "info", {
            "stage": "reminder", "strategy": "default", "days_past_due": features.days_past_due, "currency": "USD",
            "amount_past_due": str(features.amount_past_due), "outstanding": str(outstanding), "risk_grade": "C",
            "product": features.product, "jurisdiction": "US", "episode": episode, "skip": []})]

        def within_window(opened: datetime = opened) -> datetime:
            return opened + timedelta(days=draw.randint(1, window_days - 1), hours=draw.randint(9, 17))

        for _ in range(draw.randint(0, 2)):  # unanswered calls: not a right-party contact
            trail.append((within_window(), "call_outcome", "accepted", {"outcome": "no_answer"}))
        if features.contact_reached:
            trail.append((within_window(), "call_outcome", "accepted", {"outcome": "reached"}))
        for p in range(features.payments):
            trail.append((within_window(), "payment_received", "accepted", {"amount": "50.00", "reference": f"P{p}"}))
        for _ in range(features.promises_broken):
            trail.append((within_window(), "promise_broken", "info", {"amount": "100.00"}))
        fate = draw.random()
        if fate < 0.05:
            pass  # still open
        elif fate < 0.15:
            trail.append((opened + timedelta(days=draw.randint(2, window_days - 1)), "case_closed", "info",
                          {"outcome": "cured"}))
        else:
            cured = draw.random() < chance_to_cure(features)
            trail.append((opened + timedelta(days=window_days + draw.randint(1, 90)), "case_closed", "info",
                          {"outcome": "cured" if cured else draw.choice(("written_off", "settled", "closed"))}))
        trail.sort(key=lambda item: (item[0], item[1] != "case_opened"))
        for seq, (at, kind, status, detail) in enumerate(trail):
            events.append({"loan_id": loan_id, "episode": episode, "seq": seq, "at": at, "kind": kind,
                           "status": status, "reason": None, "actor": None, "detail": detail})
    return events


async def write_synthetic_ledger(url: str, cases: int, seed: int, window_days: int = WINDOW_DAYS) -> int:
    """Migrate the ledger at ``url`` and append :func:`synthetic_events` to it; returns how many events."""
    from ledger import Ledger
    from ledger.schema import case_events

    events = synthetic_events(cases, seed, window_days)
    ledger = Ledger.connect(url)
    try:
        await ledger.migrate()
        now = datetime.now(UTC)
        rows = [{**event, "workflow_id": f"loan-{event['loan_id']}", "recorded_at": now,
                 "retain_until": date(2099, 1, 1)} for event in events]
        async with ledger.engine.begin() as connection:
            for first in range(0, len(rows), 500):
                await connection.execute(case_events.insert(), rows[first:first + 500])
    finally:
        await ledger.close()
    return len(events)
