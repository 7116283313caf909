"""The ledger's work queues follow the case (SQLite and PostgreSQL): the case's own events close the
items they end, once, in the transaction that appends them; queues list open work by due time, a
page at a time; migration 0002 gives the items of a ledger at 0001 their id and due time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text

from ledger import Ledger
from ledger.migrate import upgrade_connection
from tests.ledger_fixtures import BACKENDS, drop_ledger, open_ledger

KEEP = date(2033, 1, 1)
AT = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
LOAN = "L-1"


async def _queue(ledger: Ledger, key: str, *, queue: str = "calls", loan: str = LOAN, case_ref: str | None = None,
                 due_at: datetime | None = None, assigned_to: str | None = "agent-1"):
    item, created = await ledger.add_work(key, loan_id=loan, workflow_id=f"loan-{loan}", queue=queue, payload={},
                                          assigned_to=assigned_to, retain_until=KEEP, case_ref=case_ref, due_at=due_at)
    assert created
    return item


def _event(seq: int, kind: str, status: str = "info", reason: str | None = None, actor: str | None = None,
           **detail: Any) -> dict[str, Any]:
    return dict(seq=seq, at=AT, kind=kind, status=status, reason=reason, actor=actor, detail=detail)


async def _record(ledger: Ledger, *events: dict[str, Any], loan: str = LOAN) -> int:
    return await ledger.record_events(loan, f"loan-{loan}", list(events), KEEP)


async def _state(ledger: Ledger, item_id: str) -> tuple[str, str | None, str | None]:
    item = await ledger.work_item_by_id(item_id)
    assert item is not None
    return item.state, item.outcome, item.reason


# -- the case's events close its work --------------------------------------------------------------

async def test_a_withdrawn_call_task_is_withdrawn_with_the_cases_reason_and_leaves_the_queue(ledger):
    call = await _queue(ledger, "L-1/00001/contact/call", case_ref="L-1_00001_contact_call")
    other = await _queue(ledger, "L-2/00001/contact/call", loan="L-2", case_ref="L-1_00001_contact_call")
    assert call.item_id == "L-1_00001_contact_call" and call.state == "open"
    await _record(ledger, _event(0, "call_task_withdrawn", reason="operator: complaint", task_id=call.item_id))
    assert await _state(ledger, call.item_id) == ("withdrawn", None, "operator: complaint")
    assert (await ledger.work_item_by_id(call.item_id)).completed_at is not None
    assert [i.item_id for i in await ledger.open_work("calls")] == [other.item_id]  # another loan's is not touched


async def test_an_expired_call_task_and_an_accepted_outcome_close_their_own_tasks(ledger):
    old = await _queue(ledger, "L-1/00001/contact/call", case_ref="L-1_00001_contact_call")
    new = await _queue(ledger, "L-1/00002/contact/call", case_ref="L-1_00002_contact_call")
    await _record(ledger, _event(0, "call_task_expired", reason="a newer call task replaced it", task_id=old.item_id))
    assert await _state(ledger, old.item_id) == ("expired", None, "a newer call task replaced it")
    assert (await _state(ledger, new.item_id))[0] == "open"
    await _record(ledger, _event(1, "call_outcome", "accepted", actor="agent-4", outcome="no_answer",
                                 task_id=new.item_id))
    done = await ledger.work_item_by_id(new.item_id)
    assert (done.state, done.outcome, done.reported_by) == ("done", "no_answer", "agent-4")
    # The agent who reported it closes it again with the same outcome: nothing changes, nothing is refused.
    again = await ledger.complete_work(new.item_key, outcome="no_answer", reported_by="agent-4")
    assert again.state == "done"


async def test_a_refused_outcome_closes_nothing(ledger):
    call = await _queue(ledger, "L-1/00001/contact/call", case_ref="L-1_00001_contact_call")
    await _record(ledger, _event(0, "call_outcome", "rejected", reason="outcome: 'busy' is not one of ...",
                                 task_id=call.item_id))
    assert (await _state(ledger, call.item_id))[0] == "open"


async def test_visits_end_as_the_case_says_and_a_supervisors_flag_stays(ledger):
    cancelled = await _queue(ledger, "L-1/00003/field_visit/visit/plan-1", queue="visits", case_ref="loan-L-1-visit-3")
    flag = await _queue(ledger, "L-1/00003/field_visit/visit/overdue-1", queue="supervisor")
    met = await _queue(ledger, "L-1/00005/field_visit/visit/plan-1", queue="visits", case_ref="loan-L-1-visit-5")
    late = await _queue(ledger, "L-1/00007/field_visit/visit/plan-1", queue="visits", case_ref="loan-L-1-visit-7")
    failed = await _queue(ledger, "L-1/00009/field_visit/visit/plan-1", queue="visits", case_ref="loan-L-1-visit-9")
    await _record(ledger,
                  _event(0, "field_visit_cancelled", reason="dispute: already paid", visit_id="loan-L-1-visit-3"),
                  _event(1, "field_visit_completed", visit_id="loan-L-1-visit-5", outcome="met", attempts=1),
                  _event(2, "field_visit_completed", visit_id="loan-L-1-visit-7", outcome="overdue", attempts=1),
                  _event(3, "field_visit_failed", "failed", reason="NotEnoughStaff", visit_id="loan-L-1-visit-9"))
    assert await _state(ledger, cancelled.item_id) == ("withdrawn", None, "dispute: already paid")
    assert await _state(ledger, met.item_id) == ("done", "met", None)
    assert (await _state(ledger, late.item_id))[:2] == ("expired", "overdue")
    assert await _state(ledger, failed.item_id) == ("withdrawn", None, "the visit failed: NotEnoughStaff")
    assert (await _state(ledger, flag.item_id))[0] == "open"


async def test_a_visits_next_attempt_replaces_the_last_ones_item(ledger):
    first = await _queue(ledger, "L-1/00003/field_visit/visit/plan-1", queue="visits", case_ref="loan-L-1-visit-3")
    second = await _queue(ledger, "L-1/00003/field_visit/visit/plan-2", queue="visits", case_ref="loan-L-1-visit-3")
    assert await _state(ledger, first.item_id) == ("expired", None, f"replaced by {second.item_id}")
    assert [i.item_id for i in await ledger.open_work("visits")] == [second.item_id]


async def test_a_new_stage_withdraws_the_last_stages_call_tasks(ledger):
    call = await _queue(ledger, "L-1/00004/contact/call", case_ref="L-1_00004_contact_call")
    visit = await _queue(ledger, "L-1/00005/field_visit/visit/plan-1", queue="visits", case_ref="loan-L-1-visit-5")
    await _record(ledger, _event(0, "stage_entered", reason="days past due reached 61", stage="field_visit",
                                 previous="contact"))
    assert await _state(ledger, call.item_id) == ("withdrawn", None, "the case moved on to the field_visit stage")
    assert (await _state(ledger, visit.item_id))[0] == "open"


async def test_closing_the_case_withdraws_all_its_open_work_legal_hand_off_included(ledger):
    legal = await _queue(ledger, "L-1/00008/litigation/legal_handoff", queue="legal", assigned_to=None)
    flag = await _queue(ledger, "L-1/00003/field_visit/visit/overdue-1", queue="supervisor", assigned_to=None)
    done = await _queue(ledger, "L-1/00001/contact/call", case_ref="L-1_00001_contact_call")
    await ledger.complete_work(done.item_key, outcome="reached", reported_by="agent-1")
    elsewhere = await _queue(ledger, "L-2/00008/litigation/legal_handoff", loan="L-2", queue="legal")
    await _record(ledger, _event(0, "close", "accepted", actor="sup-1", outcome="written_off", note="uneconomic"),
                  _event(1, "case_closed", reason="uneconomic", outcome="written_off"))
    assert await _state(ledger, legal.item_id) == ("withdrawn", None, "case closed: written_off: uneconomic")
    assert await _state(ledger, flag.item_id) == ("withdrawn", None, "case closed: written_off: uneconomic")
    assert (await _state(ledger, done.item_id))[:2] == ("done", "reached")
    assert (await _state(ledger, elsewhere.item_id))[0] == "open"


async def test_only_events_new_to_the_ledger_act_so_a_retry_or_replay_changes_nothing(ledger):
    # The event arrives (in real life: rides along) before this item exists; appended again once it
    # does (a retried activity, a replayed case), it is not new, and closes nothing.
    assert await _record(ledger, _event(0, "field_visit_cancelled", reason="hold", visit_id="loan-L-1-visit-3")) == 1
    visit = await _queue(ledger, "L-1/00003/field_visit/visit/plan-1", queue="visits", case_ref="loan-L-1-visit-3")
    assert await _record(ledger, _event(0, "field_visit_cancelled", reason="hold", visit_id="loan-L-1-visit-3")) == 0
    assert (await _state(ledger, visit.item_id))[0] == "open"


async def test_the_events_and_the_work_they_close_share_one_transaction(ledger):
    call = await _queue(ledger, "L-1/00001/contact/call", case_ref="L-1_00001_contact_call")
    # A second call task riding with the first one's expiry: both in one write.
    _, created = await ledger.add_work(
        "L-1/00002/contact/call", loan_id=LOAN, workflow_id="loan-L-1", queue="calls", payload={},
        assigned_to="agent-1", retain_until=KEEP, case_ref="L-1_00002_contact_call",
        trail=_trail(_event(0, "call_task_expired", reason="replaced", task_id=call.item_id)))
    assert created and (await _state(ledger, call.item_id))[0] == "expired"
    assert [e["kind"] for e in await ledger.events(LOAN)] == ["call_task_expired"]


def _trail(*events: dict[str, Any]):
    from ledger.store import Trail

    return Trail(LOAN, "loan-L-1", list(events), KEEP)


async def test_an_agent_closing_work_may_say_why(ledger):
    call = await _queue(ledger, "L-1/00001/contact/call")
    closed = await ledger.complete_work(call.item_key, outcome="withdrawn", reported_by="agent-1", state="withdrawn",
                                        reason="the borrower asked not to be called at work")
    assert (closed.state, closed.reason, closed.reported_by) == ("withdrawn", "the borrower asked not to be called "
                                                                 "at work", "agent-1")


# -- queues: by due time, a page at a time, for a person or a team ----------------------------------------

async def test_a_queue_lists_open_work_soonest_due_first_in_pages(ledger):
    base = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    new_york = timezone(timedelta(hours=-5))
    # Queued in one order, due in another (and written in different zones); two due at the same instant.
    dues = [base + timedelta(hours=5), base.astimezone(new_york) + timedelta(hours=1), base + timedelta(hours=3),
            base + timedelta(hours=1), base, base + timedelta(hours=4), base + timedelta(hours=2)]
    items = [await _queue(ledger, f"L-{n}/00001/field_visit/visit/plan-1", loan=f"L-{n}", queue="visits",
                          case_ref=f"loan-L-{n}-visit-1", due_at=due) for n, due in enumerate(dues)]
    closed = await _queue(ledger, "L-9/00001/field_visit/visit/plan-1", loan="L-9", queue="visits", due_at=base)
    await ledger.complete_work(closed.item_key, outcome="met", reported_by="field-01")
    expected = [items[4].item_id, items[1].item_id, items[3].item_id, items[6].item_id, items[2].item_id,
                items[5].item_id, items[0].item_id]

    pages, cursor = [], None
    for _ in range(3):
        page, cursor = await ledger.work_queue("visits", limit=3, after=cursor)
        pages.append([i.item_id for i in page])
        if cursor is None:
            break
    assert pages == [expected[:3], expected[3:6], expected[6:]] and cursor is None
    assert [i.due_at for i in (await ledger.work_queue("visits"))[0]] == sorted(d.astimezone(UTC) for d in dues)
    assert (await ledger.work_queue("calls"))[0] == []
    with pytest.raises(ValueError, match="not a cursor"):
        await ledger.work_queue("visits", after="garbage!")


async def test_a_queue_for_a_person_or_a_team_matches_names_exactly(ledger):
    mine = await _queue(ledger, "L-1/00001/contact/call", assigned_to="agent-1")
    tenth = await _queue(ledger, "L-2/00001/contact/call", loan="L-2", assigned_to="agent-10")
    pair = await _queue(ledger, "L-3/00001/field_visit/visit/plan-1", loan="L-3", queue="visits",
                        assigned_to="field-01,agent-1")
    team = await _queue(ledger, "L-4/00001/contact/call", loan="L-4", assigned_to="team-b")
    await _queue(ledger, "L-5/00001/contact/call", loan="L-5", assigned_to=None)

    def ids(found):
        return [i.item_id for i in found[0]]

    assert ids(await ledger.work_queue("calls", assigned_to="agent-1")) == [mine.item_id]
    assert ids(await ledger.work_queue("visits", assigned_to="agent-1")) == [pair.item_id]
    assert ids(await ledger.work_queue("calls", assigned_to=["agent-1", "team-b"])) == [mine.item_id, team.item_id]
    assert ids(await ledger.work_queue("calls", assigned_to="agent-")) == []
    assert ids(await ledger.work_queue("calls", assigned_to="agent-%")) == []
    assert ids(await ledger.work_queue("calls", assigned_to=[])) == []
    assert len(ids(await ledger.work_queue("calls"))) == 4
    assert [i.item_id for i in await ledger.open_work("calls", assigned_to="agent-10")] == [tenth.item_id]


async def test_an_item_is_found_by_its_public_id(ledger):
    item = await _queue(ledger, "L-1/00001/contact/call", case_ref="L-1_00001_contact_call")
    found = await ledger.work_item_by_id("L-1_00001_contact_call")
    assert found is not None and (found.item_key, found.case_ref) == (item.item_key, "L-1_00001_contact_call")
    assert found.due_at == found.created_at and found.due_at.tzinfo is not None
    assert await ledger.work_item_by_id("L-1/00001/contact/call") is None


# -- migration 0002 over a ledger at 0001 -------------------------------------------------------------

@pytest_asyncio.fixture(params=BACKENDS)
async def ledger_at_0001(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    opened, _ = await open_ledger(request.param, tmp_path, migrated=False)
    async with opened._write() as connection:
        await connection.run_sync(lambda sync: upgrade_connection(sync, "0001"))
    try:
        yield opened
    finally:
        await drop_ledger(opened)


async def test_migration_0002_gives_the_items_of_a_ledger_at_0001_their_id_due_time_and_case_name(ledger_at_0001):
    rows = [("L-1/00003/contact/call", "calls", "agent-1", '{"item_id": "L-1_00003_contact_call"}'),
            ("L-2/00007/field_visit/visit/plan-2", "visits", "field-01,field-02",
             '{"scheduled_for": "2026-12-01T10:00:00-05:00"}'),
            ("L-2/00009/litigation/legal_handoff", "legal", None, "{}")]
    async with ledger_at_0001.engine.begin() as connection:
        for key, queue, who, payload in rows:
            await connection.execute(text(
                "INSERT INTO work_items (item_key, loan_id, workflow_id, queue, state, assigned_to, payload, "
                "created_at, retain_until) VALUES (:key, :loan, :wf, :queue, 'open', :who, :payload, :at, :keep)"),
                dict(key=key, loan=key.split("/")[0], wf=f"loan-{key.split('/')[0]}", queue=queue, who=who,
                     payload=payload, at=AT, keep=KEEP))
    await ledger_at_0001.migrate()

    call = await ledger_at_0001.work_item_by_id("L-1_00003_contact_call")
    assert call is not None and (call.case_ref, call.due_at, call.reason) == ("L-1_00003_contact_call", AT, None)
    visit = await ledger_at_0001.work_item_by_id("L-2_00007_field_visit_visit_plan-2")
    assert visit is not None and visit.case_ref == "loan-L-2-visit-7"
    assert visit.due_at == datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    legal = await ledger_at_0001.work_item_by_id("L-2_00009_litigation_legal_handoff")
    assert legal is not None and (legal.case_ref, legal.due_at) == (None, AT)
    # The old items now follow their cases like new ones.
    await ledger_at_0001.record_events("L-2", "loan-L-2", [_event(0, "field_visit_cancelled", reason="hold",
                                                                  visit_id="loan-L-2-visit-7")], KEEP)
    assert (await ledger_at_0001.work_item_by_id(visit.item_id)).state == "withdrawn"
    page, _ = await ledger_at_0001.work_queue("calls")
    assert [i.item_id for i in page] == [call.item_id]
