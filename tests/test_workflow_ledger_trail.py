"""The ledger's audit trail: every event a case records reaches the ledger once, in order, signed by
who sent the command, across continue-as-new, and outlives the workflow history."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import make_loan, start_case, status
from tests.ledger_fixtures import BACKENDS

# Every test here reads the ledger: on SQLite and on PostgreSQL.
pytestmark = pytest.mark.parametrize("worker", BACKENDS, indirect=True)


async def _trail(worker, loan_id: str) -> list[dict]:
    return await worker.ledger.events(loan_id)


def _comparable(events: list[dict]) -> list[tuple]:
    return [(e["kind"], e["status"], e.get("reason")) for e in events]


async def test_every_event_of_a_case_reaches_the_ledger_once_in_order_with_who_sent_each_command(env, worker):
    loan = make_loan()
    handle = await start_case(env.client, worker, loan)
    await handle.execute_update("assign", {"agent": "agent-1", "by": "sup-7"})
    await handle.signal("hold", {"reason": "complaint", "by": "sup-7"})
    await handle.signal("payment_received", {"amount": "-5", "reference": "BAD", "by": "clerk-2"})
    await env.sleep(timedelta(days=2))
    await handle.execute_update("release", {"by": "sup-7"})
    await handle.signal("payment_received", {"amount": "450.00", "reference": "P-1"})
    result = await handle.result()
    trail = await _trail(worker, loan.loan_id)
    # Everything the case recorded, in its order, numbered without gaps, nothing twice.
    assert [e["seq"] for e in trail] == list(range(len(result["events"])))
    assert _comparable(trail) == _comparable(result["events"])
    assert trail[-1]["kind"] == result["events"][-1]["kind"] and result["outcome"] == "cured"
    signed = {(e["kind"], e["status"]): e["actor"] for e in trail if e["actor"]}
    assert signed == {("assign", "accepted"): "sup-7", ("hold", "accepted"): "sup-7",
                      ("release", "accepted"): "sup-7", ("payment_received", "rejected"): "clerk-2"}
    payment = next(e for e in trail if e["kind"] == "payment_received" and e["status"] == "accepted")
    assert payment["detail"]["reference"] == "P-1" and payment["detail"]["amount"] == "450.00"
    assert payment["actor"] is None and all(e["workflow_id"] == handle.id for e in trail)


async def test_contacts_and_documents_are_in_the_trail_with_their_keys(env, worker):
    loan = make_loan(days_past_due=5)
    handle = await start_case(env.client, worker, loan)
    await env.sleep(timedelta(days=3))
    state = await status(handle)
    trail = await _trail(worker, loan.loan_id)
    sent = [e for e in trail if e["status"] == "sent"]
    assert sent and {e["detail"]["idempotency_key"] for e in sent} <= {
        a["idempotency_key"] for a in await worker.ledger.attempts(loan.loan_id)}
    # The case is waiting. Everything before the wait is recorded, except messages sent just before
    # it: those are in the ledger's attempts already, and their events ride with the next activity.
    late = state["events"][len(trail):]
    assert late and all(e["status"] == "sent" for e in late)
    assert {e["detail"]["idempotency_key"] for e in late} <= {
        a["idempotency_key"] for a in await worker.ledger.attempts(loan.loan_id) if a["state"] == "sent"}
    await handle.execute_update("hold", {"reason": "complaint", "by": "sup-1"})  # not in the ledger otherwise
    await env.sleep(timedelta(hours=1))
    state = await status(handle)
    assert _comparable(await _trail(worker, loan.loan_id)) == _comparable(state["events"])


async def test_the_trail_continues_across_continue_as_new_without_gaps_or_repeats(env, worker):
    loan = make_loan(days_past_due=5)
    handle = await start_case(env.client, worker, loan, history_limit=40)
    first_run = handle.result_run_id
    await env.sleep(timedelta(days=40))
    latest = env.client.get_workflow_handle(handle.id)
    assert (await latest.describe()).run_id != first_run, "the case should have continued as new"
    state = await latest.query("status")
    trail = await _trail(worker, loan.loan_id)
    assert [e["seq"] for e in trail] == list(range(len(trail)))
    everything = len(state["events"]) + state["events_dropped"]
    assert _comparable(trail[-len(state["events"]):]) == _comparable(state["events"][:len(trail) - everything or None])
    # What the trail lacks yet is work queued just before the wait: the ledger holds it as a work
    # item already, and its event rides with the next activity.
    late = state["events"][len(trail) - everything:] if len(trail) < everything else []
    assert all(e["status"] == "sent" for e in late)
    for event in late:
        assert (await worker.ledger.work_item(event["detail"]["idempotency_key"])).state == "open"


async def test_the_trail_is_kept_as_long_as_the_loans_jurisdiction_requires(env, worker):
    """The history goes with the namespace retention; the ledger keeps the trail for years."""
    from datetime import UTC, datetime

    from infra.compliance import records_years
    from ledger.store import retain_until

    loan = make_loan(jurisdiction="CN", currency="CNY", timezone="Asia/Shanghai", phone="+8613800138000")
    handle = await start_case(env.client, worker, loan)
    await handle.execute_update("close", {"outcome": "written_off", "note": "uneconomic", "by": "sup-7"})
    await handle.result()
    trail = await _trail(worker, loan.loan_id)
    closing = [e for e in trail if e["kind"] == "close"]
    assert closing and closing[0]["actor"] == "sup-7" and closing[0]["detail"]["outcome"] == "written_off"
    today = datetime.now(UTC).date()
    assert records_years("CN") >= 2
    assert {e["retain_until"] for e in trail} == {retain_until(today, records_years("CN"))}


async def test_what_an_operator_sends_cannot_stop_the_trail(env, worker):
    """Names and ids quoted back in events are fitted to the ledger (PostgreSQL refuses NUL and
    over-long keys): one bad signal is recorded as rejected and the trail goes on."""
    loan = make_loan(days_past_due=35)
    handle = await start_case(env.client, worker, loan)
    await handle.signal("x" * 100, {"by": "night\x00shift"})
    await handle.signal("hold", {"reason": "complaint", "by": "sup\x00-7"})
    await handle.signal("call_outcome", {"outcome": "reached", "task_id": "T\x00-1", "by": "agent-1"})
    await handle.signal("release", {"by": "sup-7"})
    await env.sleep(timedelta(days=2))
    state = await status(handle)
    trail = await _trail(worker, loan.loan_id)
    assert len(trail) >= len(state["events"]) - 1 and len(trail) > 5
    kinds = {(e["kind"], e["status"]) for e in trail}
    assert ("x" * 64, "rejected") in kinds and ("hold", "rejected") in kinds and ("release", "rejected") in kinds
    assert ("call_outcome", "rejected") in kinds
    assert all("\x00" not in (e["reason"] or "") and "\x00" not in (e["actor"] or "") for e in trail)
    # A `by` that is not a plausible id is refused; the rejection still names who, made printable.
    assert [e["actor"] for e in trail if (e["kind"], e["status"]) == ("hold", "rejected")] == ["sup-7"]
