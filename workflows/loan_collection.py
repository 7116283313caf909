"""LoanCollectionWorkflow: one durable case per delinquent loan.

The loop asks the domain for the next step and carries it out; handlers apply
commands synchronously (no awaits, so no lock is needed) and bump a version the
loop waits on. All thresholds live in the strategy and the domain, none here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, RetryState
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from activities.channels import CollectionActivities
    from activities.models import CaseEventsRequest, CaseFacts, ContactRequest, ProfileRequest, WorkItemRequest
    from domain.case import MAX_EVENTS, SECOND_PASS, CaseState, adopt_second_pass, open_case, reopen, tick
    from domain.episodes import FOLLOWS_LOAN
    from domain.scorecard import RISK_REGRADE
    from domain.commands import handle, validate
    from domain.compliance import call_window, contact_deadline, send_stopped
    from domain.errors import BeyondLimit, Rejected
    from domain.decide import Act, Advance, Block, Defer, Finish, Wait, decide, mark_done, send_failed, settle
    from domain.stages import Channel
    from domain.status import status
    from workflows import search_attributes as sa
    from workflows.inputs import (
        ACTIVITY_TIMEOUT, CONTACT_RETRY, DOMAIN_FEATURES, ESSENTIAL_RETRY, FEATURES, CaseInput, FieldVisitInput,
        channel_queue,
    )
    from workflows.visits import VisitRunner

# Cases started before this change replay without compliance checks; from the first new workflow
# task on (a new case, or an old one's next run after continue-as-new) every contact is checked.
COMPLIANCE_PATCH = "compliance-checks"
# Cases started before the ledger's audit trail replay without writing it, and the SDK keeps that
# answer for the rest of the run: they write the trail from their next continue-as-new on (a case
# that closes before then keeps its events in its history only). New cases write it throughout.
LEDGER_PATCH = "ledger-events"
# Events ride along with the next activity where they can (fewer activities of their own).
RIDE_ALONG = "trail-rides-along"
# A wait a command interrupts keeps its timer when the case's next wake has not moved.
KEEP_TIMER = "timer-kept"
# The longest the case's own notes ("info": a stage entered, a promise broken) wait for an
# activity to ride with; what came from outside (a command, a verdict) never waits.
RIDE_WAIT = timedelta(days=1)
# Work the case ends reaches the ledger (which closes its item) before the case waits, so nobody
# dials or visits a borrower the case has stopped contacting.
WORK_FOLLOWS = "work-follows-case"
WORK_ENDS = frozenset({"call_task_withdrawn", "call_task_expired", "field_visit_cancelled",
                       "field_visit_completed", "field_visit_failed"})

_MESSAGES = {
    Channel.SMS: CollectionActivities.send_sms,
    Channel.EMAIL: CollectionActivities.send_email,
    Channel.LETTER: CollectionActivities.issue_letter,
}
# A provider's refusals that change what the case may do next (raised by the channel adapters).
PROVIDER_REFUSALS = ("OptedOut", "InvalidPhoneNumber")
# The contact's moment passed before it reached the borrower (raised past ``not_after``): tried again.
WINDOW_PASSED = "ContactWindowPassed"
# Messages a hold, a dispute or a cease request stops while they are on their way.
_STOPPABLE = (Channel.SMS, Channel.EMAIL)
_RETRY = {Channel.SMS: CONTACT_RETRY, Channel.EMAIL: CONTACT_RETRY}
_WORK = {
    Channel.CALL: CollectionActivities.create_call_task,
    Channel.LEGAL_HANDOFF: CollectionActivities.hand_off_to_legal,
}


def _signal(name: str):
    def handler(self, payload: Any = None) -> None:
        self._command(name, payload)

    handler.__name__ = name
    return workflow.signal(name=name)(handler)


def _update(name: str):
    def handler(self, payload: Any = None) -> dict[str, Any]:
        self._command(name, payload)
        return self._status()

    def validator(self, payload: Any = None) -> None:
        try:
            validate(name, payload, self._case, self._input.strategy, workflow.now())
        except Rejected as err:
            # The type tells callers (the desk) a proposal beyond its approver's limit from a refusal;
            # the details name the field and the reason apart.
            extra = (str(err.share), err.role, str(err.limit)) if isinstance(err, BeyondLimit) else ()
            raise ApplicationError(str(err), err.field, err.reason, *extra, type=type(err).__name__,
                                   non_retryable=True) from None

    handler.__name__ = f"{name}_update"
    update = workflow.update(name=name)(handler)
    update.validator(validator)
    return update


@workflow.defn(name="LoanCollectionWorkflow")
class LoanCollectionWorkflow:
    @workflow.init
    def __init__(self, input: CaseInput) -> None:
        self._input = input
        self._case: CaseState = input.state or open_case(
            input.loan, input.strategy, workflow.now(),
            features=[f for f in DOMAIN_FEATURES if f in (input.features or ())], episode=input.episode or "",
            assignment=input.assignment)
        if input.state is None and input.reopened is not None:
            reopen(self._case, input.reopened, workflow.now())
        self._version = 0
        self._visits = VisitRunner(self._case, input.strategy, self._changed)
        # What the attributes hold already: a continued case's own values, or what intake set at the
        # start (none for a case started without them), so only what differs is upserted.
        self._search_attributes = (sa.case_values(self._case, input.loan, workflow.now()) if input.state
                                   else sa.started_with(workflow.info().typed_search_attributes))
        self._timer: asyncio.Task[None] | None = None
        self._timer_until: datetime | None = None

    # -- the public contract: a signal and an update of the same name for each command ----
    payment_received = _signal("payment_received")
    payment_received_update = _update("payment_received")
    promise_to_pay = _signal("promise_to_pay")
    promise_to_pay_update = _update("promise_to_pay")
    hardship = _signal("hardship")
    hardship_update = _update("hardship")
    hardship_resolved = _signal("hardship_resolved")
    hardship_resolved_update = _update("hardship_resolved")
    dispute = _signal("dispute")
    dispute_update = _update("dispute")
    dispute_resolved = _signal("dispute_resolved")
    dispute_resolved_update = _update("dispute_resolved")
    cease_contact = _signal("cease_contact")
    cease_contact_update = _update("cease_contact")
    call_outcome = _signal("call_outcome")
    call_outcome_update = _update("call_outcome")
    field_visit_report = _signal("field_visit_report")
    field_visit_report_update = _update("field_visit_report")
    propose_arrangement = _signal("propose_arrangement")
    propose_arrangement_update = _update("propose_arrangement")
    escalate = _signal("escalate")
    escalate_update = _update("escalate")
    hold = _signal("hold")
    hold_update = _update("hold")
    release = _signal("release")
    release_update = _update("release")
    close = _signal("close")
    close_update = _update("close")
    assign = _signal("assign")
    assign_update = _update("assign")
    vulnerability = _signal("vulnerability")
    vulnerability_update = _update("vulnerability")
    breathing_space = _signal("breathing_space")
    breathing_space_update = _update("breathing_space")
    breathing_space_ended = _signal("breathing_space_ended")
    breathing_space_ended_update = _update("breathing_space_ended")
    notice_delivered = _signal("notice_delivered")
    notice_delivered_update = _update("notice_delivered")
    loan_update = _signal("loan_update")
    loan_update_update = _update("loan_update")
    payment_reversed = _signal("payment_reversed")
    payment_reversed_update = _update("payment_reversed")

    @workflow.signal(dynamic=True)
    def unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """A signal of no known name is recorded as rejected, not silently buffered."""
        self._command(name, None)

    @workflow.query(name="status")
    def status_query(self) -> dict[str, Any]:
        return self._status()

    # -- the loop ----------------------------------------------------------
    @workflow.run
    async def run(self, input: CaseInput) -> dict[str, Any]:
        case, strategy = self._case, input.strategy
        workflow.logger.info("case running", extra={"loan_id": case.loan_id, "stage": case.stage.value})
        while True:
            if case.compliance is None and self._uses(COMPLIANCE_PATCH):
                await self._apply_compliance()
            if case.compliance is not None and not case.uses(SECOND_PASS) and self._uses(SECOND_PASS):
                adopt_second_pass(case, input.loan, workflow.now())
            if not case.uses(FOLLOWS_LOAN) and self._uses(FOLLOWS_LOAN):
                case.features = sorted({*case.features, FOLLOWS_LOAN})  # its episode stays "": keys as they were
            if case.uses(FOLLOWS_LOAN) and case.ledger_behind >= MAX_EVENTS:
                # A burst of commands: the case lets no event go before the ledger holds it.
                await self._keep_record()
            now = workflow.now()
            tick(case, strategy, now)
            if input.scorecard is not None and self._uses(RISK_REGRADE):
                # After whatever fell due and whatever command woke the loop: a payment, a broken
                # promise, the borrower reached. A new grade is an event; the RiskGrade attribute follows.
                case.regrade(input.scorecard, input.loan, now)
            self._visits.reconcile()
            case.withdraw_call_tasks(now)
            self._publish()
            step = decide(case, strategy, now)
            if isinstance(step, Finish):
                break
            if isinstance(step, Advance):
                self._visits.leave_stage()
                case.enter_stage(step.to, now, step.reason)
                workflow.logger.info("stage entered", extra={"loan_id": case.loan_id, "stage": case.stage.value})
            elif isinstance(step, (Block, Defer)):
                settle(case, step, now)
            elif isinstance(step, Act):
                await self._act(step)
            elif isinstance(step, Wait):
                version = self._version  # a command arriving while the ledger is written ends the wait
                continuing = self._should_continue_as_new()
                await self._keep_record(all_of_it=continuing, wakes_at=step.until)
                if continuing:
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    workflow.continue_as_new(CaseInput(loan=input.loan, strategy=strategy, state=case,
                                                       history_limit=input.history_limit,
                                                       compliance=case.compliance, features=list(FEATURES),
                                                       assignment=input.assignment, scorecard=input.scorecard))
                await self._wait(step, version)
        self._visits.leave_stage()
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._publish()
        await self._keep_record()
        workflow.logger.info("case closed", extra={"loan_id": case.loan_id, "outcome": str(case.outcome)})
        return self._status()

    async def _apply_compliance(self) -> None:
        """Put the case under its compliance profile: the starter's, or (a case from before
        profiles, after its continue-as-new) the worker's for the loan's jurisdiction."""
        input = self._input
        profile = input.compliance
        if profile is None:
            profile = await workflow.execute_local_activity_method(
                CollectionActivities.resolve_compliance_profile,
                ProfileRequest(loan=input.loan, strategy=input.strategy),
                start_to_close_timeout=ACTIVITY_TIMEOUT)
        self._case.apply_compliance(profile, input.loan.timezone, input.loan.vulnerable, workflow.now())

    def _uses(self, feature: str) -> bool:
        """Whether this case runs with ``feature``: as its input says, or (a case started before
        inputs said) as its history says."""
        features = self._input.features
        return feature in features if features is not None else workflow.patched(feature)

    def _trail(self) -> CaseEventsRequest | None:
        """The events the ledger does not hold yet, as a request to append them (None: nothing to add,
        or a case from before the ledger's trail replaying its old history)."""
        case = self._case
        first, fresh = case.unrecorded_events()
        if not fresh or not self._uses(LEDGER_PATCH):
            return None
        return CaseEventsRequest(loan_id=case.loan_id, jurisdiction=self._input.loan.jurisdiction,
                                 workflow_id=workflow.info().workflow_id, first_seq=first, events=fresh,
                                 episode=case.episode)

    def _recorded(self, trail: CaseEventsRequest | None) -> None:
        if trail is not None:
            case = self._case
            case.ledger_seq = max(case.ledger_seq, trail.first_seq + len(trail.events))
            # A person's own words are the ledger's now (encrypted there): the case keeps none of them.
            for event in case.events[:max(0, case.ledger_seq - case.events_dropped)]:
                if event.private:
                    event.private = {}

    async def _keep_record(self, *, all_of_it: bool = True, wakes_at: datetime | None = None) -> None:
        """Append the events the ledger does not hold yet: the audit trail outlives the history.

        Events ride along with the next contact or work activity for free. Before a wait, only what
        the ledger holds nowhere else is worth an activity of its own: a message sent or work queued
        is already in the ledger's attempts and work items, and its event follows with the next one;
        the case's own notes (a stage entered) wait for it too when the case wakes within a day; a
        running visit's first plan carries the events up to its start. What came from outside (a
        command, a verdict) goes before the wait. At the end (closing, continue-as-new) everything goes."""
        trail = self._trail()
        if trail is None:
            return
        if not all_of_it:
            pending = [e for n, e in enumerate(trail.events, start=trail.first_seq) if n >= self._visits.carried_to]
            if all(e.status == "sent" for e in pending):
                return
            # The oldest note waiting bounds the wait: no note trails the case by more than a day (a
            # "sent" event's effect is in the ledger already; it rides whenever).
            notes = [e.at for e in pending if e.status == "info"]
            if (wakes_at is not None and wakes_at - min(notes, default=wakes_at) <= RIDE_WAIT
                    and all(e.status in ("sent", "info") for e in pending) and self._uses(RIDE_ALONG)
                    and not (any(e.kind in WORK_ENDS for e in pending) and self._uses(WORK_FOLLOWS))):
                return
        await workflow.execute_activity_method(
            CollectionActivities.record_case_events, trail,
            start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=ESSENTIAL_RETRY, summary="ledger")
        self._recorded(trail)

    async def _wait(self, step: Wait, version: int) -> None:
        if self._uses(KEEP_TIMER):
            await self._wait_on_kept_timer(step, version)
            return
        timeout = None
        if step.until is not None:
            timeout = max(step.until - workflow.now(), timedelta(seconds=1))
        try:
            await workflow.wait_condition(lambda: self._version != version, timeout=timeout,
                                          timeout_summary=step.reason)
        except TimeoutError:
            pass

    async def _wait_on_kept_timer(self, step: Wait, version: int) -> None:
        """Wait for a command or the next wake. A command that leaves the next wake where it was
        (an assignment, a call outcome) does not cost a new timer: the running one is kept."""
        if self._timer is not None and (self._timer.done() or self._timer_until != step.until):
            self._timer.cancel()
            self._timer = None
        if self._timer is None and step.until is not None:
            self._timer_until = step.until
            self._timer = asyncio.create_task(workflow.sleep(
                max(step.until - workflow.now(), timedelta(seconds=1)), summary=step.reason))
        timer = self._timer
        await workflow.wait_condition(lambda: self._version != version or (timer is not None and timer.done()))
        if timer is not None and timer.done():
            self._timer = None

    async def _act(self, step: Act) -> None:
        case, loan = self._case, self._input.loan
        key = case.next_key(case.stage, step.channel.value)
        facts = self._facts()
        trail = self._trail() if step.channel in _MESSAGES or step.channel in _WORK else None
        second_pass = case.uses(SECOND_PASS)
        decided_at = workflow.now()  # a letter is dated, and its response period runs, from here
        try:
            if step.channel in _MESSAGES:
                not_after = contact_deadline(case, step.channel, workflow.now()) if second_pass else None
                handle = workflow.start_activity_method(
                    _MESSAGES[step.channel],
                    ContactRequest(idempotency_key=key, loan=loan, template=step.template or "", facts=facts,
                                   trail=trail, not_after=not_after, episode=case.episode),
                    task_queue=channel_queue(workflow.info().task_queue, step.channel.value),
                    start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=_RETRY.get(step.channel, ESSENTIAL_RETRY),
                    # Past its moment the message is not sent late: the server gives up on it, and the case
                    # checks it again (a queue that waited out the night does not text at 03:00).
                    schedule_to_close_timeout=(max(not_after - workflow.now(), timedelta(seconds=1))
                                               if not_after is not None else None),
                    cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                    summary=f"{step.channel.value}: {step.template}")
                if second_pass and step.channel in _STOPPABLE:
                    # A hold, a dispute or a cease arriving meanwhile stops a message its provider has not taken.
                    await workflow.wait_condition(
                        lambda: handle.done() or send_stopped(case, step.channel, step.template) is not None)
                    if not handle.done():
                        handle.cancel()
                receipt = await handle
                self._recorded(trail)
                case.record(workflow.now(), f"{step.channel.value}_sent", "sent", template=step.template,
                            message_id=receipt.message_id, idempotency_key=key, sha256=receipt.sha256)
                case.contacted(step.channel, step.template, workflow.now())
            elif step.channel in _WORK:
                if step.channel is Channel.CALL and self._uses(RIDE_ALONG):
                    case.expire_call_tasks(workflow.now())  # recorded now, so it rides with the new task
                    trail = self._trail()
                # A call task says when the agent may dial: from now to the end of the borrower's hours today.
                dial_from, dial_until = (call_window(case, workflow.now()) if step.channel is Channel.CALL
                                         else (None, None))
                item = await workflow.execute_activity_method(
                    _WORK[step.channel], WorkItemRequest(idempotency_key=key, loan=loan, facts=facts, trail=trail,
                                                         callable_from=dial_from, callable_until=dial_until,
                                                         episode=case.episode),
                    start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=ESSENTIAL_RETRY,
                    summary=step.channel.value)
                self._recorded(trail)
                if step.channel is Channel.CALL:
                    case.open_call_task(item.item_id, workflow.now(), dial_from, dial_until)
                    case.contacted(step.channel, None, workflow.now())
                case.record(workflow.now(), f"{step.channel.value}_queued", "sent", item_id=item.item_id,
                            idempotency_key=key)
            elif step.channel is Channel.VISIT:
                plan = self._input.strategy.stages[case.stage].visit
                assert plan is not None, "the strategy validator requires a visit plan beside a visit treatment"
                self._visits.start(step.key, FieldVisitInput(loan=loan, plan=plan, facts=facts, key_prefix=key,
                                                              compliance=case.compliance, episode=case.episode),
                                   self._trail if self._uses(RIDE_ALONG) else None)
        except ActivityError as err:
            if second_pass and self._not_sent_yet(step, key, err):
                return  # the case decides again: a later moment, or the reason it may not go
            case.record(workflow.now(), f"{step.channel.value}_failed", "failed", reason=str(err.cause or err),
                        idempotency_key=key)
            if isinstance(err.cause, ApplicationError) and err.cause.type in PROVIDER_REFUSALS:
                case.provider_refused(step.channel, err.cause.type, workflow.now())
            if second_pass:
                send_failed(case, step.key, step.channel, workflow.now())
            else:
                mark_done(case, step.key, sent=False)
            return
        mark_done(case, step.key, now=decided_at, template=step.template)

    def _not_sent_yet(self, step: Act, key: str, err: ActivityError) -> bool:
        """A message stopped on its way (cancelled by a hold, a dispute or a cease) or whose moment
        passed before it reached the borrower (``not_after``): recorded, and not done, so the case
        checks it again instead of sending it late or counting it as sent."""
        case, now, cause = self._case, workflow.now(), err.cause
        if isinstance(cause, CancelledError):
            why = send_stopped(case, step.channel, step.template) or "stopped on its way"
            case.record(now, f"{step.channel.value}_cancelled", "blocked", reason=f"{why}: cancelled before it was sent",
                        treatment=step.key, idempotency_key=key)
            return True
        # Past its schedule-to-close the server gives up (a timeout, or the last failure with the retry
        # state TIMEOUT when the next try would start too late); past not_after the activity refuses.
        if (isinstance(cause, ActivityTimeout) or err.retry_state == RetryState.TIMEOUT
                or (isinstance(cause, ApplicationError) and cause.type == WINDOW_PASSED)):
            case.record(now, f"{step.channel.value}_late", "deferred", treatment=step.key, idempotency_key=key,
                        reason="its moment passed before it reached the borrower; it is checked again")
            return True
        return False

    # -- helpers -------------------------------------------------------------
    def _command(self, name: str, payload: Any) -> None:
        accepted = handle(name, payload, self._case, self._input.strategy, workflow.now())
        if not accepted:
            workflow.logger.warning("command rejected", extra={"loan_id": self._case.loan_id, "command": name})
        self._changed()

    def _changed(self) -> None:
        self._version += 1

    def _status(self) -> dict[str, Any]:
        return status(self._case, self._input.strategy, workflow.now())

    def _facts(self) -> CaseFacts:
        case, now = self._case, workflow.now()
        promise = case.promise if case.promise is not None and case.promise.state == "pending" else None
        dwell = self._input.strategy.stages[case.stage].dwell
        upcoming = case.arrangement.open[0] if case.arrangement_active and case.arrangement.open else None
        return CaseFacts(stage=case.stage.value, days_past_due=case.days_past_due(now),
                         amount_past_due=str(case.amount_past_due), outstanding=str(case.outstanding),
                         promise_amount=str(promise.amount) if promise else None,
                         promise_due_date=promise.due_date.isoformat() if promise else None,
                         response_days=max(1, dwell.days) if dwell else None, agent=case.agent,
                         instalment_amount=str(upcoming.remaining) if upcoming else None,
                         instalment_due_date=upcoming.due_date.isoformat() if upcoming else None,
                         reminders_sent=case.reminders_sent if case.uses(SECOND_PASS) else None)

    def _publish(self) -> None:
        """Keep the search attributes and the UI's current details in step with the case."""
        case, now = self._case, workflow.now()
        values = sa.case_values(case, self._input.loan, now)
        updates = sa.changes(self._search_attributes, values, self._input.strategy.dpd_buckets)
        if updates:
            workflow.upsert_search_attributes(updates)
            self._search_attributes = values
        # Kinds of hold only: a hold's free-text reason may be health or family data.
        pause = f" · paused ({', '.join(sorted(h.kind for h in case.holds))})" if case.paused else ""
        outcome = f" · outcome **{case.outcome.value}**" if case.outcome else ""
        plan = ""
        if case.arrangement is not None:
            upcoming = case.arrangement.open[0] if case.arrangement_active and case.arrangement.open else None
            plan = (f" · {case.arrangement.kind} plan {case.arrangement.state}"
                    + (f", next {upcoming.remaining} due {upcoming.due_date}" if upcoming else ""))
        waiting = ""
        if case.deferred:
            first = min(case.deferred, key=lambda d: d.until)
            waiting = f" · {first.channel.value} deferred to {first.until:%Y-%m-%d %H:%M} UTC ({first.reason})"
        workflow.set_current_details(
            f"**{case.stage.value}** · DPD {case.days_past_due(now)} · past due {case.amount_past_due} "
            f"{case.currency}{pause}{plan}{waiting}{outcome}")

    def _should_continue_as_new(self) -> bool:
        if self._visits.running:
            return False  # the visit child belongs to this run; continue once it has reported
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > self._input.history_limit
