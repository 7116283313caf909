"""The daily sync without a server: reading and checking the servicer's file, what each row means
for the cases (a fake door), resuming from a heartbeat, and the ledger's record of files (both databases)."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from domain.loan import Loan
from sync import SYNC_IDENTITY
from sync.activity import query_rows
from sync.apply import Applier, Progress, Refused
from sync.files import SyncFiles
from sync.models import FileReport
from sync.settings import SyncSettings
from sync.source import Unreadable, date_in_name, read_file, rows_as_csv

HEADER = ("loan_id,borrower_name,phone,email,address,timezone,jurisdiction,currency,outstanding_amount,"
          "amount_past_due,days_past_due,product,risk_grade")


def row(loan_id: str, past_due: str = "450.00", dpd: int = 5, outstanding: str = "5000.00", **extra: str) -> str:
    base = (f"{loan_id},Ada Example,+15555550123,ada@example.com,\"1 Test St, Springfield\",America/New_York,US,USD,"
            f"{outstanding},{past_due},{dpd},personal_loan,B")
    return ",".join([base, *extra.values()])


def csv_bytes(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


RUN_DATE = date(2026, 12, 2)


def test_a_file_is_read_whole_with_each_bad_row_named_by_line_and_field():
    data = csv_bytes(row("L-1"), row("L-2", past_due="lots"), row("L-3", past_due="0.00", dpd=0), row("L-1"),
                     row("L-4", dpd=-2))
    daily = read_file(data, name="delinquency.csv", source="folder", run_date=RUN_DATE)
    assert (daily.rows, daily.valid) == (5, 2)
    assert daily.rejections == [(3, "amount_past_due: 'lots' is not a decimal number"),
                                (5, "loan_id: L-1 repeats line 2"),
                                (6, "days_past_due: must be at least 1 for a delinquent loan")]
    # A loan whose row was rejected is still on the servicer's book: never taken for absent.
    assert daily.present == {"L-1", "L-2", "L-3", "L-4"}
    loans = list(daily.loans())
    assert [(r.index, r.line, r.loan.loan_id, r.loan.is_current) for r in loans] == [
        (0, 2, "L-1", False), (1, 4, "L-3", True)]
    assert all(r.loan.as_of == RUN_DATE for r in loans)  # no as_of column, no date in the name: the run's day
    assert [r.loan.loan_id for r in daily.loans(start=1)] == ["L-3"]


def test_the_day_a_file_is_as_of_comes_from_its_rows_then_its_name_then_the_run():
    with_column = csv_bytes(row("L-1", as_of="2026-11-30"), row("L-2", as_of="2026-12-01"), header=HEADER + ",as_of")
    assert read_file(with_column, name="x.csv", source="folder", run_date=RUN_DATE).as_of == date(2026, 12, 1)
    assert read_file(csv_bytes(row("L-1")), name="dq_20261129.csv", source="folder", run_date=RUN_DATE).as_of == \
        date(2026, 11, 29)
    assert date_in_name("book-2026-11-28-v2.csv") == date(2026, 11, 28)
    assert date_in_name("book-2026-13-45.csv") is None
    fees = read_file(csv_bytes(row("L-1", fees="12.50"), header=HEADER + ",fees"), name="f.csv", source="folder",
                     run_date=RUN_DATE)
    assert next(fees.loans()).fees == Decimal("12.50")


@pytest.mark.parametrize(("data", "reason"), [
    (csv_bytes(row("L-1"))[:-30], "the last line has no line break: the file was cut short or is still being written"),
    (b"", "the file is empty"),
    (csv_bytes(row("L-1")).replace(b"Ada", b"\xe9da"), "not UTF-8 text (byte"),
    (b"loan_id,amount\nX,1\n", "header lacks required columns: borrower_name"),
])
def test_a_file_that_cannot_be_read_whole_applies_nothing(data: bytes, reason: str):
    with pytest.raises(Unreadable) as refused:
        read_file(data, name="f.csv", source="folder", run_date=RUN_DATE)
    assert str(refused.value).startswith(reason)


class FakeCases:
    """Cases as the door sees them: live ones with their figures, closed ones, and what was sent."""

    def __init__(self, running: dict[str, str] | None = None, closed: set[str] | None = None,
                 fail_after: int | None = None) -> None:
        self.running = dict(running or {})   # loan id -> episode
        self.closed = set(closed or ())
        self.starts: list[str] = []
        self.updates: list[tuple[str, dict[str, Any], str]] = []
        self.seen_updates: set[str] = set()
        self.fail_after = fail_after
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0

    async def _step(self) -> None:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise ConnectionError("the worker died")
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0)
        self.in_flight -= 1

    async def admit(self, loan: Loan, *, as_of: date) -> str:
        await self._step()
        if loan.loan_id in self.running:
            return "already running"
        self.starts.append(loan.loan_id)
        self.running[loan.loan_id] = as_of.isoformat()
        return "new episode" if loan.loan_id in self.closed else "started"

    async def update(self, loan_id: str, payload: dict[str, Any], *, update_id: str) -> dict[str, Any]:
        await self._step()
        if loan_id not in self.running:
            raise Refused("no live case", no_case=True)
        if payload["as_of"] < self.running[loan_id]:
            raise Refused(f"as_of: {payload['as_of']} is older than the figures applied already")
        if update_id not in self.seen_updates:  # the case answers an update id once
            self.seen_updates.add(update_id)
            self.updates.append((loan_id, payload, update_id))
        if payload.get("current"):
            del self.running[loan_id]
            self.closed.add(loan_id)
            return {"outcome": "cured"}
        return {"outcome": None}

    async def running_loans(self):
        for loan_id in list(self.running):
            yield loan_id


def daily_file(*rows: str, complete: bool = True, name: str = "dq-2026-12-02.csv"):
    daily = read_file(csv_bytes(*rows), name=name, source="folder", run_date=RUN_DATE)
    daily.complete = complete
    return daily


def fresh_report(daily) -> FileReport:
    report = FileReport(name=daily.name, sha256=daily.sha256, as_of=daily.as_of, rows=daily.rows)
    for line, reason in daily.rejections:
        report.reject(line, reason)
    return report


async def test_each_row_starts_updates_or_cures_and_a_complete_file_cures_the_absent():
    cases = FakeCases(running={"RUN-1": "2026-11-20", "RUN-2": "2026-11-20", "GONE": "2026-11-20",
                               "PAID": "2026-11-20"}, closed={"BACK"})
    daily = daily_file(row("NEW"), row("BACK", dpd=3), row("RUN-1", past_due="300.00", dpd=12),
                       row("RUN-2"), row("PAID", past_due="0.00", dpd=0), row("NOCASE", past_due="0", dpd=0),
                       row("BAD", past_due="x"))
    report = await Applier(cases, concurrency=3).apply(daily, fresh_report(daily))
    assert (report.started, report.new_episode, report.already_running, report.updated) == (1, 1, 2, 2)
    assert (report.cured_current, report.cured_absent, report.current_without_case, report.rejected) == (1, 1, 1, 1)
    assert cases.starts == ["NEW", "BACK"]
    figures = {loan: payload for loan, payload, _ in cases.updates}
    assert figures["RUN-1"] == {"as_of": "2026-12-02", "amount_past_due": "300.00", "outstanding": "5000.00",
                                "days_past_due": 12, "by": SYNC_IDENTITY}
    assert figures["PAID"] == {"as_of": "2026-12-02", "current": True, "outstanding": "5000.00", "by": SYNC_IDENTITY,
                               "reason": "the servicer reports the loan current on 2026-12-02"}
    assert figures["GONE"] == {"as_of": "2026-12-02", "current": True, "by": SYNC_IDENTITY,
                               "reason": "absent from the servicer's complete file of 2026-12-02"}
    # BAD's row was rejected, but the servicer named it: not cured as absent (it has no case here anyway).
    assert set(cases.running) == {"NEW", "BACK", "RUN-1", "RUN-2"}
    assert cases.most_in_flight <= 3


async def test_an_incomplete_file_cures_nobody_who_is_absent_and_a_mostly_empty_one_is_held_back():
    cases = FakeCases(running={"A": "2026-11-20", "B": "2026-11-20", "C": "2026-11-20"})
    partial = daily_file(row("A"), complete=False)
    report = await Applier(cases).apply(partial, fresh_report(partial))
    assert report.cured_absent == 0 and set(cases.running) == {"A", "B", "C"}

    cut_short = daily_file(row("A"), name="other-2026-12-02.csv")  # 2 of 3 live cases absent: > 50 %
    report = await Applier(cases, max_absent_share=0.5).apply(cut_short, fresh_report(cut_short))
    assert report.cured_absent == 0 and set(cases.running) == {"A", "B", "C"}
    assert report.absent_held_back.startswith("2 of 3 live cases are absent from the file, more than 50%")


async def test_a_case_refusing_older_figures_is_reported_not_fatal():
    cases = FakeCases(running={"A": "2026-12-05"})
    daily = daily_file(row("A"), row("B"), complete=False)
    report = await Applier(cases).apply(daily, fresh_report(daily))
    assert report.refused == 1 and report.started == 1
    assert report.refusals[0].loan_id == "A" and "older than the figures" in report.refusals[0].reason


async def test_a_row_the_server_refuses_is_reported_and_a_passing_outage_fails_the_attempt():
    from temporalio.service import RPCError, RPCStatusCode

    class Picky(FakeCases):
        status = RPCStatusCode.INVALID_ARGUMENT

        async def admit(self, loan: Loan, *, as_of: date) -> str:
            if loan.loan_id == "BAD":
                raise RPCError("static summary too long", self.status, b"")
            return await super().admit(loan, as_of=as_of)

    cases = Picky()
    daily = daily_file(row("A"), row("BAD"), row("C"), complete=False)
    report = await Applier(cases).apply(daily, fresh_report(daily))
    assert report.started == 2 and report.refused == 1 and "static summary too long" in report.refusals[0].reason
    cases = Picky()
    cases.status = RPCStatusCode.UNAVAILABLE  # the server, not the row: the attempt fails and is tried again
    with pytest.raises(RPCError):
        await Applier(cases).apply(daily, fresh_report(daily))


@pytest.mark.parametrize("loans", [400, 100_000])
async def test_a_run_resumed_from_its_heartbeat_starts_nothing_twice_and_counts_each_row_once(loans: int):
    ids = [f"L-{n:06d}" for n in range(loans)]
    cases = FakeCases(running={loan_id: "2026-11-20" for loan_id in ids[::2]}, fail_after=loans * 6 // 10)
    daily = daily_file(*(row(loan_id) for loan_id in ids), complete=False)
    beats: list[Progress] = []
    with pytest.raises(ConnectionError):  # the worker dies mid-file
        await Applier(cases, concurrency=32).apply(daily, fresh_report(daily), beat=beats.append)
    # The last heartbeat, as the server keeps it: what a new worker's attempt starts from.
    last = Progress.from_details(beats[-1].details())
    assert 0 < last.applied < loans
    # What the heartbeat carries agrees with itself: every row before `applied` counted, none after.
    assert last.report.started + last.report.already_running == last.applied
    cases.fail_after = None
    report = await Applier(cases, concurrency=32).apply(daily, last.report, start=last.applied)
    assert len(cases.starts) == len(set(cases.starts)) == loans // 2  # nothing started twice
    assert report.started + report.already_running == loans
    # At most the rows in flight at the crash are counted as running instead of started.
    assert loans // 2 - 32 <= report.started <= loans // 2
    assert len({u for _, _, u in cases.updates}) == len(cases.updates)


async def test_the_ledger_records_each_file_once_by_its_hash(ledger):
    files = SyncFiles(ledger)
    assert await files.begin(sha256="a" * 64, name="dq-1.csv", source="folder", as_of=date(2026, 12, 1),
                             workflow_id="arrears-daily-sync-1") is None
    # The same file again while it runs (a retried attempt, another run after a crash): go on.
    assert await files.begin(sha256="a" * 64, name="dq-1.csv", source="folder", as_of=date(2026, 12, 1),
                             workflow_id="arrears-daily-sync-2") is None
    report = FileReport(name="dq-1.csv", sha256="a" * 64, as_of=date(2026, 12, 1), rows=3, started=2,
                        cured_absent=1, rejected=1)
    report.reject(4, "phone: is not a phone number")
    await files.finish(report)
    already = await files.begin(sha256="a" * 64, name="renamed.csv", source="folder", as_of=date(2026, 12, 1),
                                workflow_id="arrears-daily-sync-3")
    assert already is not None and already.startswith("applied ") and already.endswith("as dq-1.csv")
    await files.unreadable(sha256="b" * 64, name="dq-2.csv", source="folder", reason="cut short",
                           workflow_id="arrears-daily-sync-3")
    await files.unreadable(sha256="a" * 64, name="dq-1.csv", source="folder", reason="never",
                           workflow_id="arrears-daily-sync-3")  # a done file stays done
    recent = {r["sha256"][0]: r for r in await files.recent()}
    assert recent["a"]["state"] == "done" and recent["a"]["cured"] == 1 and recent["a"]["rows"] == 3
    assert recent["a"]["report"]["rejections"] == [{"line": 4, "reason": "phone: is not a phone number"}]
    assert recent["b"]["state"] == "unreadable" and recent["b"]["reason"] == "cut short"
    # Unreadable is not done: the same bytes are read (and reported) again next time.
    assert await files.begin(sha256="b" * 64, name="dq-2.csv", source="folder", as_of=None,
                             workflow_id="arrears-daily-sync-4") is None


async def test_a_query_against_the_servicing_database_reads_as_the_folder_would(tmp_path: Path):
    database = tmp_path / "servicing.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE arrears (loan_id TEXT, borrower_name TEXT, phone TEXT, email TEXT, "
                           "address TEXT, timezone TEXT, jurisdiction TEXT, currency TEXT, outstanding_amount TEXT, "
                           "amount_past_due TEXT, days_past_due INTEGER, product TEXT, risk_grade TEXT)")
        connection.execute("INSERT INTO arrears VALUES ('S-1', 'Ada', '+15555550123', 'a@example.com', '1 St', "
                           "'UTC', 'US', 'USD', '900.00', '120.00', 4, 'bnpl', 'A')")
    columns, rows = await query_rows(f"sqlite:///{database}", "SELECT * FROM arrears")
    data = rows_as_csv(columns, rows, RUN_DATE)
    daily = read_file(data, name="sql 2026-12-02", source="sql", run_date=RUN_DATE)
    assert daily.valid == 1 and daily.as_of == RUN_DATE
    loan = next(daily.loans()).loan
    assert (loan.loan_id, loan.days_past_due, loan.as_of) == ("S-1", 4, RUN_DATE)
    # The same figures on another day are another file (the run's day is in it).
    assert rows_as_csv(columns, rows, date(2026, 12, 3)) != data


def test_sync_settings_name_what_is_wrong():
    assert not SyncSettings.from_env({}).configured
    settings = SyncSettings.from_env({"ARREARS_SYNC_FOLDER": "/srv/drop", "ARREARS_SYNC_AT": "05:30",
                                      "ARREARS_SYNC_TIMEZONE": "Europe/London", "ARREARS_SYNC_COMPLETE": "no"})
    assert settings.configured and settings.at.hour == 5 and settings.at.minute == 30 and not settings.complete
    for env, message in [
        ({"ARREARS_SYNC_AT": "25:00"}, "ARREARS_SYNC_AT: '25:00' is not a time of day"),
        ({"ARREARS_SYNC_TIMEZONE": "Mars/Base"}, "ARREARS_SYNC_TIMEZONE: 'Mars/Base' is not an IANA time zone"),
        ({"ARREARS_SYNC_FOLDER": "/x", "ARREARS_SYNC_SQL_URL": "sqlite:///x.db", "ARREARS_SYNC_SQL_QUERY": "SELECT 1"},
         "choose one source"),
        ({"ARREARS_SYNC_SQL_URL": "sqlite:///x.db"}, "go together"),
        ({"ARREARS_SYNC_CONCURRENCY": "0"}, "ARREARS_SYNC_CONCURRENCY: must be between 1 and 1000"),
        ({"ARREARS_SYNC_COMPLETE": "perhaps"}, "ARREARS_SYNC_COMPLETE: 'perhaps' is not yes or no"),
    ]:
        with pytest.raises(ValueError, match=message):
            SyncSettings.from_env(env)
    assert "secret" not in repr(SyncSettings.from_env({"ARREARS_SYNC_SQL_URL": "postgresql://u:secret@h/db",
                                                       "ARREARS_SYNC_SQL_QUERY": "SELECT 1"}))


def test_a_row_without_a_grade_is_graded_by_the_scorecard_the_worker_names_and_rejected_without_one(monkeypatch):
    from infra.scorecards import load_scorecard
    from infra.settings import Settings
    from sync.activity import SyncActivities

    ungraded = row("L-2").removesuffix(",B") + ","
    data = csv_bytes(row("L-1"), ungraded)
    without = read_file(data, name="f.csv", source="folder", run_date=RUN_DATE)
    assert (without.valid, without.rejections) == (1, [(3, "risk_grade: is missing")])
    card = load_scorecard("scorecard", Settings().strategies_dir)
    daily = read_file(data, name="f.csv", source="folder", run_date=RUN_DATE, scorecard=card)
    assert daily.valid == 2 and daily.rejections == []
    graded = {r.loan.loan_id: (r.loan.grade_source, r.loan.risk_grade) for r in daily.loans()}
    assert graded["L-1"] == ("lender", "B") and graded["L-2"][0] == "scorecard" and graded["L-2"][1] in "ABCDE"
    monkeypatch.setenv("ARREARS_SCORECARD", "scorecard")
    chosen = SyncActivities(None, Settings(), SyncSettings(strategy="default"), None)._strategy()  # type: ignore[arg-type]
    assert chosen.scorecard == card  # and TemporalDoor.admit hands it to intake's admit with each new loan
    monkeypatch.setenv("ARREARS_SCORECARD", "no-such-card")
    with pytest.raises(Exception, match="ARREARS_SCORECARD: .*no such scorecard"):
        SyncActivities(None, Settings(), SyncSettings(strategy="default"), None)._strategy()  # type: ignore[arg-type]
