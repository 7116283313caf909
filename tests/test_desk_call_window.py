"""Call tasks at the desk: when the agent may dial (UTC and the borrower's clock) in GET /api/v1/work, the
queue page and the ``arrears`` command; a task outside its window keeps its place, flagged "not callable
now"; the agent reports how many times they dialled, and when, through the API, the queue's form, the
case page's form and the command line."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from starlette.datastructures import FormData

from activities.models import CaseFacts, WorkItemRequest
from activities.outbox import safe_name
from desk.api import create_app
from desk.cases import CaseDesk, Refused, WorkOutcome, parsed
from desk.client import _item_line
from desk.config import DeskSettings
from desk.forms import command_forms, form_body
from desk.policy import load_policy
from desk.store import DeskStore
from infra.settings import Settings
from tests.conftest import events, make_loan, start_case, status
from tests.desk_fixtures import PASSWORD, Desk, desk_on
from worker import build_activities

NEW_YORK = ZoneInfo("America/New_York")
FACTS = CaseFacts(stage="contact", days_past_due=40, amount_past_due="450.00", outstanding="5000.00", agent="a1")


# -- the window, shown ----------------------------------------------------------------------------

class Queue:
    """A desk over a ledger on which the call activity queues tasks (no Temporal: listing work needs none)."""

    def __init__(self, http: httpx.AsyncClient, activities: Any) -> None:
        self.http, self.activities = http, activities
        self.headers: dict[str, str] = {}

    async def task(self, opens: datetime | None, closes: datetime | None) -> str:
        request = WorkItemRequest(idempotency_key=f"{uuid.uuid4().hex[:8]}/00009/contact/call", loan=make_loan(),
                                  facts=FACTS, callable_from=opens, callable_until=closes)
        return (await self.activities.create_call_task(request)).item_id

    async def closed_task(self, opens: datetime, closes: datetime) -> str:
        """A task queued in its window, which has closed since (the activity queues none after it)."""
        key = f"{uuid.uuid4().hex[:8]}/00009/contact/call"
        await self.activities.ledger.add_work(
            key, loan_id="T-closed", workflow_id="loan-T-closed", queue="calls", assigned_to="a1",
            retain_until=(datetime.now(UTC) + timedelta(days=30)).date(), case_ref=safe_name(key),
            payload={"queue": "calls", "timezone": "America/New_York", "facts": FACTS.model_dump(mode="json"),
                     "callable_from": opens.isoformat(), "callable_until": closes.isoformat()})
        return safe_name(key)

    async def items(self) -> dict[str, dict[str, Any]]:
        response = await self.http.get("/api/v1/work", params={"queue": "calls"}, headers=self.headers)
        assert response.status_code == 200, response.text
        return {item["item_id"]: item for item in response.json()["items"]}


@pytest_asyncio.fixture
async def queue(ledger, data_dir: Path) -> AsyncIterator[Queue]:
    activities = build_activities(Settings(data_dir=data_dir, letter_processes=0), ledger)
    store = DeskStore(ledger)
    await ledger.migrate()
    desk = CaseDesk(None, load_policy(), store, ledger, DeskSettings(base=Settings(data_dir=data_dir)))  # type: ignore[arg-type]
    await store.add_user("a1", "agent", team="t1", password=PASSWORD)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(desk)), base_url="http://desk") as http:
        fixture = Queue(http, activities)
        fixture.headers = {"Authorization": f"Bearer {await store.create_token('a1')}"}
        try:
            yield fixture
        finally:
            await activities.aclose()


def _hours(now: datetime, start: float, end: float) -> tuple[datetime, datetime]:
    base = now.replace(second=0, microsecond=0)
    return base + timedelta(hours=start), base + timedelta(hours=end)


async def test_work_items_say_when_the_agent_may_dial_in_utc_and_the_borrowers_time(queue: Queue) -> None:
    now = datetime.now(UTC)
    opens, closes = _hours(now, -1, 2)
    open_now = await queue.task(opens, closes)
    later = await queue.task(*_hours(now, 3, 10))
    closed = await queue.closed_task(*_hours(now, -5, -1))
    unbounded = await queue.task(None, None)
    items = await queue.items()
    shown = items[open_now]
    assert (shown["callable_from"], shown["callable_until"]) == (opens.isoformat(), closes.isoformat())
    assert shown["callable_from_local"] == opens.astimezone(NEW_YORK).isoformat()
    assert shown["callable_until_local"] == closes.astimezone(NEW_YORK).isoformat()
    assert shown["callable_from_local"].endswith(("-05:00", "-04:00")), "on the borrower's clock"
    assert [items[i]["callable_now"] for i in (open_now, later, closed, unbounded)] == [True, False, False, None]
    assert items[unbounded]["callable_from"] is None and items[unbounded]["callable_until_local"] is None
    # Nothing about the borrower beyond what the queue showed before: no phone, name or address.
    assert not {"phone", "borrower_name", "address", "email"} & set(shown)
    assert "+1555" not in str(items)
    # Those outside their window keep their place (due first), flagged rather than moved.
    assert list(items) == [open_now, later, closed, unbounded]


async def test_the_queue_page_shows_the_window_on_both_clocks_and_marks_what_is_not_callable_now(
        queue: Queue) -> None:
    now = datetime.now(UTC)
    opens, closes = _hours(now, -1, 2)
    open_now = await queue.task(opens, closes)
    later = await queue.task(*_hours(now, 3, 10))
    closed = await queue.closed_task(*_hours(now, -5, -1))
    page = await _queue_page(queue.http)
    rows = _rows(page)
    local = f"{opens.astimezone(NEW_YORK):%H:%M}–{closes.astimezone(NEW_YORK):%H:%M}"
    assert f"Dial {local}" in rows[open_now] and f"({opens:%H:%M}–{closes:%H:%M} UTC)" in rows[open_now]
    assert "Not callable now" not in rows[open_now] and "not-callable" not in rows[open_now].split(">")[0]
    for item in (later, closed):
        assert "Not callable now" in rows[item] and "not-callable" in rows[item].split(">")[0]
    assert 'name="dials"' in rows[open_now]


async def _queue_page(http: httpx.AsyncClient, user: str = "a1") -> str:
    await http.get("/login")
    logged = await http.post("/login", data={"username": user, "password": PASSWORD,
                                             "csrf_token": http.cookies["arrears_login_csrf"]})
    assert logged.status_code == 303, logged.text
    page = await http.get("/queue", params={"queue": "calls"})
    assert page.status_code == 200, page.text
    return page.text


def _rows(page: str) -> dict[str, str]:
    return {m.group(1): m.group(0) for m in re.finditer(r'<tr class="work-item[^"]*" data-item="([^"]+)".*?</tr>',
                                                        page, re.S)}


def test_the_command_line_shows_the_window_and_whether_it_is_open() -> None:
    item = {"item_id": "k", "loan_id": "L-1", "assigned_to": "a1", "due_at": "2031-03-04T13:00:00+00:00",
            "timezone": "America/New_York", "amount_past_due": "450.00",
            "callable_from": "2031-03-04T13:00:00+00:00", "callable_until": "2031-03-05T02:00:00+00:00",
            "callable_from_local": "2031-03-04T08:00:00-05:00", "callable_until_local": "2031-03-04T21:00:00-05:00",
            "callable_now": False}
    line = _item_line(item).split("\t")
    assert line[:6] == ["k", "L-1", "a1", "2031-03-04T13:00:00+00:00", "America/New_York", "450.00"]
    assert line[6] == "dial 2031-03-04T08:00:00-05:00 – 2031-03-04T21:00:00-05:00 (not callable now)"
    assert len(_item_line({**item, "callable_from": None, "callable_until": None}).split("\t")) == 6


# -- dials, reported ------------------------------------------------------------------------------

def test_a_report_names_one_time_per_dial_and_times_alone_say_how_many() -> None:
    times = ["2031-03-04T14:00:00+00:00", "2031-03-04T14:20:00"]
    report = parsed(WorkOutcome, {"outcome": "no_answer", "dialled_at": times})
    assert report.dialled_at is not None and [t.tzinfo for t in report.dialled_at] == [UTC, UTC]
    with pytest.raises(Refused) as mismatch:
        parsed(WorkOutcome, {"outcome": "no_answer", "dials": 3, "dialled_at": times})
    assert (mismatch.value.status, mismatch.value.field) == (422, "dialled_at")
    with pytest.raises(Refused, match="order the dials were made") as unordered:
        parsed(WorkOutcome, {"outcome": "no_answer", "dialled_at": times[::-1]})
    assert unordered.value.field == "dialled_at"
    for dials in (0, 21, "two"):
        with pytest.raises(Refused) as bad:
            parsed(WorkOutcome, {"outcome": "no_answer", "dials": dials})
        assert bad.value.field == "dials"


def test_the_case_pages_call_outcome_form_takes_dials_and_their_times() -> None:
    [form] = command_forms({"call_outcome"})
    fields = {f.name: f for f in form.fields}
    assert (fields["dials"].kind, fields["dials"].minimum, fields["dials"].maximum) == ("number", 1, 20)
    assert fields["dialled_at"].kind == "datetimes"
    body = form_body(form, FormData([("outcome", "no_answer"), ("dials", "2"),
                                     ("dialled_at", "2031-03-04T14:00\n\n2031-03-04T14:20:30+00:00\n")]))
    assert body == {"outcome": "no_answer", "dials": "2",
                    "dialled_at": ["2031-03-04T14:00:00+00:00", "2031-03-04T14:20:30+00:00"]}


async def _call_task(env, worker, desk: Desk) -> tuple[Any, dict[str, Any]]:
    loan = make_loan(days_past_due=5)
    handle = await start_case(env.client, worker, loan)
    await handle.execute_update("assign", {"agent": "a1", "by": "s1"})
    await handle.execute_update("escalate", {"reason": "to the agents", "by": "s1"})
    for _ in range(50):
        items = (await desk.get("a1", "/api/v1/work", params={"queue": "calls", "limit": 500})).json()["items"]
        mine = [i for i in items if i["loan_id"] == loan.loan_id]
        if mine:
            return handle, mine[0]
        await env.sleep(timedelta(hours=6))
    raise AssertionError("no call task appeared")


async def test_an_agent_reports_dials_through_the_api_and_the_queues_form(env, worker) -> None:
    async with desk_on(env, worker) as desk:
        handle, item = await _call_task(env, worker, desk)
        path = f"/api/v1/work/{item['item_id']}/outcome"
        times = [(datetime.now(UTC) - timedelta(minutes=m)).isoformat() for m in (30, 10)]
        wrong = await desk.post("a1", path, {"outcome": "no_answer", "dials": 3, "dialled_at": times})
        assert wrong.status_code == 422 and wrong.json()["field"] == "dialled_at"
        assert events(await status(handle), "call_outcome") == [], "refused at the desk, before the case"
        done = await desk.post("a1", path, {"outcome": "no_answer", "dialled_at": times})
        assert done.status_code == 200, done.text
        [accepted] = events(await status(handle), "call_outcome", "accepted")
        assert accepted["detail"]["dials"] == 2 and len(accepted["detail"]["dialled_at"]) == 2

        # The queue page's form: a number of dials beside the outcome buttons.
        second, task = await _call_task(env, worker, desk)
        async with httpx.AsyncClient(transport=desk.http._transport, base_url="http://desk") as browser:  # type: ignore[attr-defined]
            await _queue_page(browser)
            csrf = (await browser.get("/api/v1/me")).json()["csrf_token"]
            form = {"csrf_token": csrf, "queue": "calls", "outcome": "left_message"}
            refused = await browser.post(f"/work/{task['item_id']}/outcome", data={**form, "dials": "0"})
            assert refused.status_code == 422 and "dials" in refused.text
            sent = await browser.post(f"/work/{task['item_id']}/outcome", data={**form, "dials": "4"})
            assert sent.status_code == 303, sent.text
            # The case page's call-outcome form asks for the same.
            case_page = await browser.get(f"/cases/{task['loan_id']}")
            assert case_page.status_code == 200, case_page.text
            assert re.search(r'<input id="call_outcome-dials" name="dials" type="number"[^>]* min="1" max="20"',
                             case_page.text)
            assert '<textarea id="call_outcome-dialled_at" name="dialled_at"' in case_page.text
            assert "When dialled (UTC, one per line)" in case_page.text
        [accepted] = events(await status(second), "call_outcome", "accepted")
        assert accepted["detail"]["dials"] == 4 and accepted["actor"] == "a1"


def test_the_command_line_reports_dials_and_their_times(monkeypatch: pytest.MonkeyPatch) -> None:
    import desk.client as cli

    sent: list[tuple[str, str, Any]] = []

    def call(self: Any, method: str, path: str, body: Any = None, **params: Any) -> dict[str, Any]:
        sent.append((method, path, body))
        return {"item": {"item_id": "k", "outcome": body["outcome"]}}

    monkeypatch.setattr(cli.Desk, "call", call)
    monkeypatch.setenv("ARREARS_DESK_TOKEN", "arr_test_token")
    assert cli.main(["report", "k", "no_answer", "--dials", "2", "--dialled-at", "2031-03-04T14:00:00Z",
                     "--dialled-at", "2031-03-04T14:20:00Z"]) == 0
    assert cli.main(["report", "k", "left_message", "--dials", "3"]) == 0
    assert cli.main(["report", "k", "reached"]) == 0
    assert [body for _, _, body in sent] == [
        {"outcome": "no_answer", "dials": 2, "dialled_at": ["2031-03-04T14:00:00Z", "2031-03-04T14:20:00Z"]},
        {"outcome": "left_message", "dials": 3}, {"outcome": "reached"}]
    assert {path for _, path, _ in sent} == {"/api/v1/work/k/outcome"}
