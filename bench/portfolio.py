"""Portfolio benchmark: the desk's portfolio figures over 10,000 live cases, vs counting the book.

    .venv/bin/python bench/portfolio.py [--json] [--cases 10000] [--runs 21] [--appends 300] [--no-postgres]

A scratch ledger (a SQLite file; and a schema of its own on PostgreSQL at ``ARREARS_TEST_POSTGRES_URL``
when one answers) is migrated and filled with ``--cases`` synthetic case-book rows (five stages, three
currencies, grades A-E, DPD 1-240, holds, promises, plans, some closed) and their open work items and
pending approvals. ``desk.portfolio.portfolio()`` is timed, median of ``--runs`` runs after a warm-up,
against a baseline in the same run on the same database: ``SELECT count(*) FROM case_book``, the
cheapest question one can ask the book. The book is also what every append of a case's events now
keeps up to date: ``--appends`` appends of three events are timed against the bare insert of the
same events into the trail (no book, no work closing), each in a transaction of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402

from bench.harness import show  # noqa: E402
from desk.portfolio import portfolio  # noqa: E402
from desk.schema import desk_approvals  # noqa: E402
from ledger import Ledger  # noqa: E402
from ledger.book import HOLD_KINDS, blank  # noqa: E402
from ledger.schema import case_book, case_events, work_items  # noqa: E402

POSTGRES_URL = os.environ.get("ARREARS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
STAGES = ("reminder", "contact", "field_visit", "legal_letter", "litigation")
CURRENCIES = ("USD", "CNY", "GBP")
QUEUE_OF_STAGE = {"contact": "calls", "field_visit": "visits", "litigation": "legal"}
KEEP = date(2033, 1, 1)


def synthetic_rows(count: int, seed: int = 13) -> list[dict[str, Any]]:
    """``count`` book rows as the fold would leave them, drawn from a fixed seed."""
    pick = random.Random(seed)
    now = datetime.now(UTC)
    rows = []
    for n in range(count):
        intake = now - timedelta(days=pick.randint(0, 60), minutes=pick.randint(0, 1439))
        dpd = pick.randint(1, 240)
        stage = STAGES[min(4, dpd // 31)]
        outstanding = pick.randint(10_000, 5_000_000)  # in thousandths
        past_due = 0 if pick.random() < 0.03 else pick.randint(1, outstanding // 1000) * 1000
        holds = [kind for kind in HOLD_KINDS if pick.random() < 0.06]
        closed = pick.random() < 0.15
        row = {**blank(f"P-{n:06d}", f"loan-P-{n:06d}"),
               "stage": stage, "stage_entered_at": intake, "currency": pick.choice(CURRENCIES),
               "amount_past_due_milli": past_due, "outstanding_milli": outstanding,
               "risk_grade": pick.choice("ABCDE"), "product": pick.choice(("personal_loan", "credit_card")),
               "jurisdiction": pick.choice(("US", "CN", "UK")), "assigned_agent": f"agent-{pick.randint(1, 40)}",
               "dpd_at_intake": dpd, "intake_at": intake, "overdue_since": intake.date() - timedelta(days=dpd),
               "paused": bool(holds), "holds": ",".join(holds), "last_seq": pick.randint(1, 400),
               "last_event_at": intake, "updated_at": now, "retain_until": KEEP}
        if "promise" in holds:
            row.update(promise_state="pending", promise_due_date=(now + timedelta(days=7)).date())
        if "arrangement" in holds:
            row.update(arrangement_kind="instalments", arrangement_state="active")
        if closed:
            row.update(outcome=pick.choice(("cured", "settled", "written_off")), closed_at=now)
        rows.append(row)
    return rows


async def fill(ledger: Ledger, count: int) -> dict[str, int]:
    """The book, the open work of the open cases (and some done), and pending approvals."""
    rows = synthetic_rows(count)
    pick = random.Random(7)
    now = datetime.now(UTC)
    items, approvals = [], []
    for row in rows:
        queue = QUEUE_OF_STAGE.get(row["stage"])
        if queue is not None:
            key = f"{row['loan_id']}/{row['last_seq']:05d}/{row['stage']}/{queue}"
            state = "open" if row["outcome"] is None and pick.random() < 0.7 else "done"
            items.append(dict(item_key=key, item_id=key.replace("/", "_"), loan_id=row["loan_id"],
                              workflow_id=row["workflow_id"], queue=queue, case_ref=key, state=state,
                              assigned_to=row["assigned_agent"], payload={}, created_at=now, due_at=now,
                              retain_until=KEEP))
        if row["outcome"] is None and pick.random() < 0.02:
            key = f"{row['loan_id']}/flag"
            items.append(dict(item_key=key, item_id=key.replace("/", "_"), loan_id=row["loan_id"],
                              workflow_id=row["workflow_id"], queue="supervisor", case_ref=None, state="open",
                              assigned_to=None, payload={}, created_at=now, due_at=now, retain_until=KEEP))
        if row["outcome"] is None and pick.random() < 0.03:
            approvals.append(dict(approval_id=uuid.uuid4().hex, loan_id=row["loan_id"], command="propose_arrangement",
                                  payload={}, proposed_by="agent-1", proposer_role="agent", needs="beyond limit",
                                  gives_up={}, state="pending", created_at=now, expires_at=now + timedelta(days=2)))
    async with ledger.engine.begin() as connection:
        for table, batch in ((case_book, rows), (work_items, items), (desk_approvals, approvals)):
            for start in range(0, len(batch), 1000):
                await connection.execute(insert(table), batch[start:start + 1000])
    if ledger.dialect == "postgresql":
        # What autovacuum does soon after a bulk load: statistics, and the visibility map an
        # index-only scan needs.
        async with ledger.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("case_book", "work_items", "desk_approvals"):
                await connection.execute(text(f"VACUUM ANALYZE {table}"))
    return {"book_rows": len(rows), "work_items": len(items), "approvals": len(approvals)}


async def median_ms(run: Callable[[], Awaitable[Any]], runs: int) -> float:
    await run()  # warm-up: the connection, the statement caches
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def count_book(ledger: Ledger) -> int:
    async with ledger.engine.connect() as connection:
        return (await connection.execute(text("SELECT count(*) FROM case_book"))).scalar_one()


async def appends(ledger: Ledger, n: int) -> dict[str, float]:
    """Median ms of appending three events of a case with the book kept, vs the bare insert."""
    at = datetime.now(UTC)

    def events(loan: str, first: int) -> list[dict[str, Any]]:
        return [{"seq": first + k, "at": at, "kind": kind, "status": "accepted", "actor": None,
                 "detail": {"reference": f"R-{first}", "amount": "10.00", "amount_past_due": "90.00",
                            "outstanding": "990.00", "reason": "complaint"}}
                for k, kind in enumerate(("payment_received", "hold", "release"))]

    async def kept() -> None:
        nonlocal done
        loan = f"A-{done % 50}"
        await ledger.record_events(loan, f"loan-{loan}", events(loan, 3 * (done // 50)), KEEP)
        done += 1

    async def bare() -> None:
        nonlocal done
        loan = f"B-{done % 50}"
        rows = [dict(loan_id=loan, workflow_id=f"loan-{loan}", seq=e["seq"], at=e["at"], kind=e["kind"],
                     status=e["status"], detail=e["detail"], recorded_at=at, retain_until=KEEP)
                for e in events(loan, 3 * (done // 50))]
        async with ledger._write() as connection:  # the ledger's own write transaction, as record_events
            await connection.execute(ledger._insert(case_events).values(rows).on_conflict_do_nothing(
                index_elements=["loan_id", "episode", "seq"]).returning(case_events.c.seq))
        done += 1

    done = 0
    with_book = await median_ms(kept, n)
    done = 0
    without = await median_ms(bare, n)
    return {"append_ms": round(with_book, 3), "bare_insert_ms": round(without, 3),
            "append_ratio": round(with_book / without, 2)}


async def measure(ledger: Ledger, cases: int, runs: int, n_appends: int) -> dict[str, Any]:
    await ledger.migrate()
    started = time.perf_counter()
    filled = await fill(ledger, cases)
    fill_seconds = time.perf_counter() - started
    figures = await portfolio(ledger)
    baseline = await median_ms(lambda: count_book(ledger), runs)
    timed = await median_ms(lambda: portfolio(ledger), runs)
    return {"filled": filled, "fill_seconds": round(fill_seconds, 2), "open_cases": figures["cases"]["open"],
            "portfolio_ms": round(timed, 2), "baseline_ms": round(baseline, 3), "ratio": round(timed / baseline, 1),
            **(await appends(ledger, n_appends) if n_appends else {})}


async def on_sqlite(cases: int, runs: int, n_appends: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="arrears-portfolio-") as folder:
        ledger = Ledger.connect(f"sqlite:///{Path(folder) / 'ledger.db'}")
        try:
            return await measure(ledger, cases, runs, n_appends)
        finally:
            await ledger.close()


async def on_postgres(cases: int, runs: int, n_appends: int) -> dict[str, Any]:
    admin = Ledger.connect(POSTGRES_URL)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        async with admin.engine.begin() as connection:
            await connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except Exception as err:  # noqa: BLE001 - any failure to connect means "no server here"
        await admin.close()
        return {"skipped": f"no PostgreSQL at {POSTGRES_URL}: {str(err).splitlines()[0] if str(err) else err!r}"}
    ledger = Ledger.connect(POSTGRES_URL, schema=schema)
    try:
        return await measure(ledger, cases, runs, n_appends)
    finally:
        await ledger.close()
        async with admin.engine.begin() as connection:
            await connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


async def run(cases: int, runs: int, n_appends: int, postgres: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "portfolio", "cases": cases, "runs": runs,
                              "baseline": "SELECT count(*) FROM case_book, same database, same run",
                              "sqlite": await on_sqlite(cases, runs, n_appends)}
    if postgres:
        result["postgresql"] = await on_postgres(cases, runs, n_appends)
    return result


def print_table(result: dict[str, Any]) -> None:
    print(f"portfolio: {result['cases']} cases in the book, median of {result['runs']} runs; "
          f"baseline {result['baseline']}")
    for backend in ("sqlite", "postgresql"):
        r = result.get(backend)
        if r is None:
            continue
        if "skipped" in r:
            print(f"  {backend:<10} skipped: {r['skipped']}")
            continue
        print(f"  {backend:<10} portfolio {r['portfolio_ms']:>8.2f} ms   count(*) {r['baseline_ms']:>7.3f} ms   "
              f"ratio {r['ratio']:>6}   ({r['open_cases']} open; {r['filled']['work_items']} work items, "
              f"{r['filled']['approvals']} approvals; filled in {r['fill_seconds']} s)")
        if "append_ms" in r:
            print(f"  {'':<10} append of 3 events with the book {r['append_ms']:.3f} ms   bare insert "
                  f"{r['bare_insert_ms']:.3f} ms   ratio {r['append_ratio']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=21, help="timed runs of each query (the median is reported)")
    parser.add_argument("--appends", type=int, default=300, help="timed appends (0: skip the append figures)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    result = asyncio.run(run(args.cases, args.runs, args.appends, not args.no_postgres))
    show(result, args.json, print_table)


if __name__ == "__main__":
    main()
