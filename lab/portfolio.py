"""A synthetic portfolio in the intake format, for the strategy lab (no real personal data).

    python -m lab portfolio --cases 500 --seed 7 --out /tmp/portfolio.csv

Loans across the three jurisdictions, six products, five risk grades and the DPD buckets, with amounts
in each product's usual range. Borrowers are obviously fictional: "Sim Borrower 000042", numbers from
ranges that reach nobody (the US 555-01xx block, the UK's 07700 900xxx drama range, a CN prefix no
carrier issues), addresses on "Simulation Street", e-mail at example.com. Every value is a seeded hash
(``lab.behaviour.draw``), so a seed gives the same file on every machine.
"""

from __future__ import annotations

import csv
import io
import math
from decimal import Decimal
from pathlib import Path

from domain.loan import REQUIRED_COLUMNS
from lab.behaviour import draw, pick

JURISDICTIONS = {"CN": 0.4, "US": 0.4, "UK": 0.2}
ZONES = {
    "CN": {"Asia/Shanghai": 0.9, "Asia/Urumqi": 0.1},
    "US": {"America/New_York": 0.4, "America/Chicago": 0.25, "America/Denver": 0.1, "America/Los_Angeles": 0.25},
    "UK": {"Europe/London": 1.0},
}
CURRENCY = {"CN": "CNY", "US": "USD", "UK": "GBP"}
# Local units per USD, to put every product's range (in USD) in the loan's currency.
RATE = {"CNY": Decimal(7), "USD": Decimal(1), "GBP": Decimal("0.8")}
PRODUCTS = {"credit_card": 0.3, "e_loan": 0.2, "bnpl": 0.15, "personal_loan": 0.15, "auto_loan": 0.1,
            "sme_loan": 0.1}
# Outstanding balance range in USD (drawn log-uniformly).
BALANCE = {"credit_card": (500, 20_000), "e_loan": (150, 5_000), "bnpl": (60, 1_200),
           "personal_loan": (2_000, 30_000), "auto_loan": (5_000, 50_000), "sme_loan": (15_000, 150_000)}
GRADES = {"A": 0.1, "B": 0.25, "C": 0.3, "D": 0.22, "E": 0.13}
# Days past due at intake: most loans are early in arrears.
DPD_BANDS = {"1-30": 0.6, "31-60": 0.2, "61-90": 0.1, "91-150": 0.1}


def _phone(jurisdiction: str, n: int) -> str:
    if jurisdiction == "US":
        return f"+12025550{100 + n % 100}"  # 555-0100 to 555-0199: reserved for fiction
    if jurisdiction == "UK":
        return f"+447700900{n % 1000:03d}"
    return f"+86100{n % 100_000_000:08d}"


def synthetic_rows(cases: int, seed: int) -> list[dict[str, str]]:
    """``cases`` loans as intake rows, the same for the same seed."""
    rows = []
    for n in range(1, cases + 1):
        def u(what: str, n: int = n) -> float:
            return draw(seed, "portfolio", n, what)

        jurisdiction = pick(JURISDICTIONS, u("jurisdiction"))
        currency = CURRENCY[jurisdiction]
        product = pick(PRODUCTS, u("product"))
        low, high = BALANCE[product]
        usd = math.exp(math.log(low) + u("balance") * (math.log(high) - math.log(low)))
        outstanding = (Decimal(str(round(usd, 2))) * RATE[currency]).quantize(Decimal("0.01"))
        # Past due: a share of the balance (an e-loan or BNPL past its term owes all of it).
        share = Decimal(1) if product in ("e_loan", "bnpl") and u("matured") < 0.15 else \
            Decimal(str(round(0.03 + 0.3 * u("share") ** 2, 4)))
        past_due = max(Decimal("1.00"), (outstanding * share).quantize(Decimal("0.01")))
        low_dpd, high_dpd = map(int, pick(DPD_BANDS, u("band")).split("-"))
        dpd = low_dpd + min(high_dpd - low_dpd, int(u("dpd") * (high_dpd - low_dpd + 1)))
        rows.append({
            "loan_id": f"SIM-{seed}-{n:06d}", "borrower_name": f"Sim Borrower {n:06d}", "phone": _phone(jurisdiction, n),
            "email": f"sim.borrower.{n:06d}@example.com", "address": f"{n} Simulation Street, Testville",
            "timezone": pick(ZONES[jurisdiction], u("zone")), "jurisdiction": jurisdiction, "currency": currency,
            "outstanding_amount": f"{outstanding}", "amount_past_due": f"{min(past_due, outstanding)}",
            "days_past_due": str(dpd), "product": product, "risk_grade": pick(GRADES, u("grade")),
        })
    return rows


def write_portfolio(path: Path, cases: int, seed: int) -> int:
    """Write the synthetic portfolio to ``path``; returns the number of loans."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(REQUIRED_COLUMNS), lineterminator="\n")
    writer.writeheader()
    rows = synthetic_rows(cases, seed)
    writer.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")
    return len(rows)
