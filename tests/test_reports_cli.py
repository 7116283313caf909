"""``python -m reports`` as a process, on a real SQLite ledger holding a few cases' events: each format,
the champion/challenger comparison when by strategy, and exit 2 naming the flag for a bad argument."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from ledger import Ledger
from reports.kpis import METRICS

ROOT = Path(__file__).resolve().parents[1]
START, END = "2026-10-01", "2026-11-01"


def at(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 10, day, hour, tzinfo=UTC)


def opened(day: int, strategy: str, past_due: str) -> dict[str, Any]:
    return {"kind": "case_opened", "status": "info", "at": at(day), "detail": {
        "stage": "reminder", "strategy": strategy, "days_past_due": 5, "currency": "USD", "amount_past_due": past_due,
        "outstanding": "1000.00", "risk_grade": "B", "product": "personal", "jurisdiction": "US"}}


def paid(day: int, amount: str, reference: str, left: str) -> dict[str, Any]:
    return {"kind": "payment_received", "status": "accepted", "at": at(day), "actor": "p1",
            "detail": {"amount": amount, "reference": reference, "amount_past_due": left}}


def cured(day: int) -> dict[str, Any]:
    return {"kind": "case_closed", "status": "info", "at": at(day, 11), "detail": {"outcome": "cured"}}


# Five cases in October 2026, by hand: "default" takes in three and cures one (D1, whose agent a1 was
# reached, took a promise of 100.00 and saw it kept); "early_contact" takes in two and cures both.
# Agent a2 dialled D3 once, unanswered. One of D3's texts waited for the contact window.
CASES: dict[str, list[dict[str, Any]]] = {
    "D1": [opened(2, "default", "100.00"),
           {"kind": "assign", "status": "accepted", "at": at(2, 11), "actor": "s1", "detail": {"agent": "a1"}},
           {"kind": "call_outcome", "status": "accepted", "at": at(3), "actor": "a1", "detail": {"outcome": "reached"}},
           {"kind": "promise_to_pay", "status": "accepted", "at": at(3, 11), "actor": "a1",
            "detail": {"amount": "100.00", "due_date": "2026-10-10"}},
           paid(9, "100.00", "R-D1", "0"),
           {"kind": "promise_kept", "status": "info", "at": at(9, 10), "detail": {"amount": "100.00"}},
           cured(9)],
    "D2": [opened(3, "default", "250.00"),
           {"kind": "sms_sent", "status": "sent", "at": at(4), "detail": {"template": "reminder"}},
           {"kind": "sms_sent", "status": "sent", "at": at(8), "detail": {"template": "reminder"}}],
    "D3": [opened(4, "default", "80.00"),
           {"kind": "assign", "status": "accepted", "at": at(4, 11), "actor": "s1", "detail": {"agent": "a2"}},
           {"kind": "call_outcome", "status": "accepted", "at": at(5), "actor": "a2", "detail": {"outcome": "no_answer"}},
           {"kind": "sms_deferred", "status": "deferred", "at": at(6), "reason": "outside the contact window",
            "detail": {}}],
    "E1": [opened(2, "early_contact", "200.00"), paid(4, "200.00", "R-E1", "0"), cured(4)],
    "E2": [opened(6, "early_contact", "150.00"), paid(20, "150.00", "R-E2", "0"), cured(20)],
}


async def write_ledger(ledger: Ledger, cases: dict[str, list[dict[str, Any]]] = CASES) -> None:
    """``cases`` into the ledger's case_events, as the workflow's trail activity writes them."""
    await ledger.migrate()
    for loan_id, events in cases.items():
        trail = [{"seq": seq, "reason": None, "actor": None, **event} for seq, event in enumerate(events, start=1)]
        await ledger.record_events(loan_id, f"loan-{loan_id}", trail, date(2030, 1, 1),
                                   episode=events[0]["at"].date().isoformat())


@pytest.fixture(scope="module")
def ledger_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('reports') / 'ledger.db'}"

    async def build() -> None:
        ledger = Ledger.connect(url)
        try:
            await write_ledger(ledger)
        finally:
            await ledger.close()

    asyncio.run(build())
    return url


def reports(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ARREARS_")}
    environment.update(PYTHONDONTWRITEBYTECODE="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "reports", *args], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=120)


def kpis(ledger_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    done = reports("kpis", "--from", START, "--to", END, "--ledger", ledger_url, *args)
    assert done.returncode == 0, done.stderr
    return done


def test_the_table_by_strategy_shows_each_arm_and_compares_them(ledger_url: str) -> None:
    out = kpis(ledger_url, "--by", "strategy").stdout
    assert "KPIs 2026-10-01 to 2026-11-01 · by strategy" in out
    header = next(line for line in out.splitlines() if line.startswith("metric"))
    assert [c.strip() for c in header.split("|")[1:]] == ["default", "early_contact"]
    cure = next(line for line in out.splitlines() if line.startswith("Cure rate"))
    assert [c.strip() for c in cure.split("|")[1:]] == ["33.3% (1/3)", "100.0% (2/2)"]
    assert "Champion / challenger" in out
    assert "early_contact (challenger) against default (champion)" in out
    assert "SIMULATED" not in out


def test_one_strategy_has_no_comparison(ledger_url: str) -> None:
    out = kpis(ledger_url).stdout
    cure = next(line for line in out.splitlines() if line.startswith("Cure rate"))
    assert cure.split("|")[1].strip() == "60.0% (3/5)"
    assert "Champion / challenger" not in out


def test_csv_parses_one_line_per_group_metric_and_part(ledger_url: str) -> None:
    rows = list(csv.DictReader(io.StringIO(kpis(ledger_url, "--by", "strategy", "--format", "csv").stdout)))
    assert rows and set(rows[0]) == {"start", "end", "strategy", "metric", "unit", "part", "value", "numerator",
                                     "denominator", "simulated"}
    found = {(r["strategy"], r["metric"], r["part"]): r for r in rows}
    assert found[("default", "cases_entered", "")]["value"] == "3"
    assert found[("early_contact", "cases_entered", "")]["value"] == "2"
    cure = found[("default", "cure_rate", "")]
    assert (cure["numerator"], cure["denominator"], cure["value"]) == ("1", "3", "0.333333")
    # Collected in October: D1's 100.00 for default, E1's 200.00 and E2's 150.00 for early_contact.
    assert found[("default", "amount_collected", "USD")]["value"] == "100.00"
    assert found[("early_contact", "amount_collected", "USD")]["value"] == "350.00"
    assert found[("default", "compliance_deferred", "outside the contact window")]["value"] == "1"
    assert {r["simulated"] for r in rows} == {"false"}


def test_json_names_every_metric_and_carries_the_comparison(ledger_url: str) -> None:
    body = json.loads(kpis(ledger_url, "--by", "strategy", "--format", "json").stdout)
    assert [m["name"] for m in body["metrics"]] == [m.name for m in METRICS]
    assert (body["start"], body["end"], body["by"], body["simulated"]) == (START, END, ["strategy"], False)
    by_strategy = {row["key"]["strategy"]: row["values"] for row in body["rows"]}
    assert set(by_strategy["default"]) == {m.name for m in METRICS}
    assert by_strategy["early_contact"]["cure_rate"] == {"value": "1", "numerator": "2", "denominator": "2"}
    compared = {c["metric"]: c for c in body["comparison"]}
    assert compared["cure_rate"]["champion"] == "default" and compared["cure_rate"]["challenger"] == "early_contact"
    assert (compared["cure_rate"]["n_champion"], compared["cure_rate"]["n_challenger"]) == (3, 2)


def test_by_period_and_another_dimension(ledger_url: str) -> None:
    body = json.loads(kpis(ledger_url, "--by", "period,strategy", "--period", "week", "--format", "json").stdout)
    weeks = {(row["key"]["period"], row["key"]["strategy"]): row["values"]["cases_entered"] for row in body["rows"]}
    # 2026-10-02 to -04 are in ISO week 40, the 6th in week 41.
    assert weeks[("2026-W40", "default")] == 3 and weeks[("2026-W40", "early_contact")] == 1
    assert weeks[("2026-W41", "early_contact")] == 1


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.links += [value or "" for name, value in attrs if name in ("src", "href", "xlink:href")]


def test_html_goes_to_the_file_named_and_stands_alone(ledger_url: str, tmp_path: Path) -> None:
    out = tmp_path / "kpis.html"
    done = kpis(ledger_url, "--by", "strategy", "--format", "html", "--out", str(out))
    assert done.stdout == "" and str(out) in done.stderr
    page = out.read_text(encoding="utf-8")
    parsed = _Links()
    parsed.feed(page)
    assert "svg" in parsed.tags and "script" not in parsed.tags
    assert not [link for link in parsed.links if link.startswith(("http:", "https:", "//"))]
    assert "Champion / challenger" in page and "early_contact" in page


def test_agents_as_table_csv_and_json(ledger_url: str) -> None:
    base = ("agents", "--from", START, "--to", END, "--ledger", ledger_url)
    table = reports(*base)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split("|")[0].strip() == "agent"
    rows = {r["agent"]: r for r in csv.DictReader(io.StringIO(reports(*base, "--format", "csv").stdout))}
    assert set(rows) == {"a1", "a2"}
    assert (rows["a1"]["worked_items"], rows["a1"]["right_party_contacts"], rows["a1"]["promises"],
            rows["a1"]["promises_kept"], rows["a1"]["amount_kept_USD"]) == ("1", "1", "1", "1", "100.00")
    assert (rows["a2"]["worked_items"], rows["a2"]["right_party_contacts"], rows["a2"]["promises"]) == ("1", "0", "0")
    body = json.loads(reports(*base, "--format", "json").stdout)
    assert sorted(a["agent"] for a in body["agents"]) == ["a1", "a2"]


def test_the_ledger_comes_from_the_settings_without_ledger(ledger_url: str) -> None:
    done = reports("kpis", "--from", START, "--to", END, env={"ARREARS_DATABASE_URL": ledger_url})
    assert done.returncode == 0, done.stderr
    assert "60.0% (3/5)" in done.stdout


def test_an_empty_window_is_reported_as_empty(ledger_url: str) -> None:
    out = reports("kpis", "--from", "2025-01-01", "--to", "2025-02-01", "--ledger", ledger_url)
    assert out.returncode == 0, out.stderr
    assert "(no cases in this window)" in out.stdout


@pytest.mark.parametrize(("args", "flag", "why"), [
    (["kpis", "--from", "2026-13-01", "--to", END], "--from", "not a date"),
    (["kpis", "--from", START, "--to", START], "--to", "not after --from"),
    (["kpis", "--from", START, "--to", "9999-12-31", "--by", "period"], "--to", "outside"),
    (["kpis", "--from", START, "--to", END, "--by", "strategy,colour"], "--by", "'colour' is not a dimension"),
    (["kpis", "--from", START, "--to", END, "--by", "grade,grade"], "--by", "named twice"),
    (["kpis", "--from", START, "--to", END, "--period", "year"], "--period", "invalid choice"),
    (["kpis", "--from", START, "--to", END, "--format", "xml"], "--format", "invalid choice"),
    (["agents", "--from", START, "--to", END, "--format", "html"], "--format", "invalid choice"),
    (["kpis", "--from", START, "--to", END, "--ledger", "mysql://db/x"], "--ledger", "not supported"),
    (["kpis", "--from", START, "--to", END, "--ledger", "sqlite:////nowhere/ledger.db"], "--ledger",
     "no SQLite ledger"),
    (["kpis", "--from", START, "--to", END, "--costs", "/nowhere/costs.toml"], "--costs", "cannot be read"),
    (["kpis", "--from", START, "--to", END, "--out", "/nowhere/kpis.txt"], "--out", "not a folder"),
    (["kpis", "--to", END], "--from", "required"),
])
def test_a_bad_argument_exits_2_naming_the_flag_and_the_reason(args: list[str], flag: str, why: str,
                                                                ledger_url: str) -> None:
    if "--ledger" not in args:
        args = [*args, "--ledger", ledger_url]
    done = reports(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert flag in done.stderr and why in done.stderr, done.stderr
    assert done.stdout == ""


def test_without_a_command_it_exits_2() -> None:
    done = reports()
    assert done.returncode == 2 and "kpis" in done.stderr


def test_a_ledger_that_cannot_be_read_exits_1(tmp_path: Path) -> None:
    broken = tmp_path / "not-a-ledger.db"
    broken.write_bytes(b"this is not a SQLite file" * 100)
    done = reports("kpis", "--from", START, "--to", END, "--ledger", f"sqlite:///{broken}")
    assert done.returncode == 1 and "cannot read the ledger" in done.stderr, done.stderr


def test_the_window_counts_days_up_to_to_not_including_it(ledger_url: str) -> None:
    # E2 opened on the 6th: a window ending on the 6th leaves it out, one ending on the 7th has it.
    before = json.loads(reports("kpis", "--from", START, "--to", "2026-10-06", "--ledger", ledger_url,
                                "--format", "json").stdout)
    after = json.loads(reports("kpis", "--from", START, "--to", (date(2026, 10, 6) + timedelta(days=1)).isoformat(),
                               "--ledger", ledger_url, "--format", "json").stdout)
    assert before["rows"][0]["values"]["cases_entered"] == 4
    assert after["rows"][0]["values"]["cases_entered"] == 5
