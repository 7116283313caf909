"""The collection activities: send messages, issue documents, put work on queues.

Every method takes one typed request carrying an idempotency key and writes
its effect under that key exactly once, so a retried activity never contacts
a borrower twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from email.utils import formatdate

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.models import (
    CaseEventsRequest, CaseFacts, ContactReceipt, ContactRequest, ProfileRequest, VisitPlanned, VisitRequest, WorkItem,
    WorkItemRequest,
)
from activities.letter_press import LetterPress
from activities.letters import LetterDocument, MissingGlyphs
from activities.outbox import CHANNEL_FOLDERS, FileOutbox, Kept, safe_name
from activities.sms_provider import HttpSmsProvider
from activities.smtp import SmtpMailer
from activities.templates import TemplateBook, language_for
from domain.compliance import Profile
from domain.loan import Loan
from domain.money import format_money
from infra.compliance import profile_for, records_years
from ledger import Ledger
from ledger.store import LedgerError, Trail, retain_until
from workflows.inputs import case_workflow_id

log = structlog.get_logger("arrears.activities")

# Headers are never folded inside a token: an idempotency key (loan, episode, sequence, action) is
# longer than the 78 columns the default folds at, and a folded key reads back with a space in it.
EMAIL_POLICY = policy.default.clone(max_line_length=998)


@dataclass(frozen=True)
class Sender:
    """Who the borrower hears from."""

    lender: str
    contact_point: str
    email_from: str
    sms_from: str = "ARREARS"


def _message_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _values(loan: Loan, facts: CaseFacts, sender: Sender, book: TemplateBook, *, channel: str,
            today: date | None = None) -> dict[str, object]:
    money = {
        "amount_past_due": format_money(Decimal(facts.amount_past_due), loan.currency),
        "outstanding": format_money(Decimal(facts.outstanding), loan.currency),
    }
    if facts.promise_amount is not None:
        money["promise_amount"] = format_money(Decimal(facts.promise_amount), loan.currency)
    if facts.instalment_amount is not None:
        money["instalment_amount"] = format_money(Decimal(facts.instalment_amount), loan.currency)
    return {
        "lender": sender.lender,
        "contact_point": sender.contact_point,
        "product": book.product_name(loan.product, loan.jurisdiction),
        "loan_tail": loan.loan_id[-4:],
        "days_past_due": str(facts.days_past_due),
        "promise_due_date": facts.promise_due_date or "",
        "response_days": str(facts.response_days or 15),
        "today": (today or datetime.now(UTC).date()).isoformat(),
        "promise_amount": "",
        "instalment_amount": "",
        "instalment_due_date": facts.instalment_due_date or "",
        # The wording follows the case's history: "despite our earlier reminders" only after some
        # (a case from before they were counted has None: the neutral wording).
        "earlier_reminders": bool(facts.reminders_sent),
        "channel": channel,
        **money,
    }


def _refuse_when_late(not_after: datetime | None, what: str) -> None:
    """Past ``not_after`` (on this worker's clock, just before the borrower would be reached) the
    contact is refused for good and reaches nobody; the case defers it again, under a new key."""
    if not_after is None:
        return
    deadline = not_after if not_after.tzinfo is not None else not_after.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    if now > deadline:
        raise ApplicationError(f"{what} may reach the borrower until {deadline.isoformat()}; it is "
                               f"{now.isoformat(timespec='seconds')}", deadline.isoformat(),
                               type="ContactWindowPassed", non_retryable=True)


def _utc_text(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def _trail(request: CaseEventsRequest | None) -> Trail | None:
    """The case's events riding along with an activity, as the ledger appends them."""
    if request is None:
        return None
    rows = [dict(seq=request.first_seq + n, at=e.at, kind=e.kind, status=e.status, reason=e.reason,
                 actor=e.actor, detail=e.model_dump(mode="json")["detail"], private=dict(e.private))
            for n, e in enumerate(request.events)]
    return Trail(request.loan_id, request.workflow_id, rows, _keep_until(request.jurisdiction), request.episode)


def _distinct(names: list[str]) -> list[str]:
    """``names`` without repeats (spelled differently or not), in their order."""
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.strip().casefold(), name.strip())
    return list(seen.values())


def _keep_until(jurisdiction: str) -> date:
    """How long the ledger keeps what happened to a loan: its jurisdiction's record-keeping rule."""
    return retain_until(datetime.now(UTC).date(), records_years(jurisdiction))


class CollectionActivities:
    """Channel adapters behind activities; the worker injects the ledger, outbox, templates and sender.

    Every effect on the world is claimed in the ledger under its idempotency key first: a key that
    was sent before returns its receipt and touches nothing; a key claimed but never confirmed (the
    worker died mid-send) is sent again under the same key, which the outbox (and a provider's
    idempotency key) turns into the same single message."""

    def __init__(self, ledger: Ledger, outbox: FileOutbox, templates: TemplateBook, sender: Sender,
                 field_agents: list[str], *, press: LetterPress | None = None, mailer: SmtpMailer | None = None,
                 sms: HttpSmsProvider | None = None, outbox_copies: bool = False) -> None:
        self.ledger = ledger
        # Letters render in a thread unless the worker gives its press of processes.
        self.press = press or LetterPress(processes=0)
        self.mailer = mailer
        self.sms = sms
        self.outbox = outbox
        # With a provider, a copy of each message (it names the borrower) only when asked for.
        self.outbox_copies = outbox_copies
        self.templates = templates
        self.sender = sender
        self.field_agents = field_agents
        self._migrated = asyncio.Lock()
        self._ready = False

    async def aclose(self) -> None:
        """Release the ledger's connections, the SMS provider's client and the letter press
        (worker shutdown)."""
        if self.sms is not None:
            await self.sms.aclose()
        await self.press.aclose()
        await self.ledger.close()

    async def _ledger(self) -> Ledger:
        """The ledger, its schema brought up to date once per worker."""
        if not self._ready:
            async with self._migrated:
                if not self._ready:
                    await self.ledger.migrate()
                    self._ready = True
        return self.ledger

    async def _once(self, channel: str, request: ContactRequest,
                    send: Callable[[], Awaitable[ContactReceipt]]) -> ContactReceipt:
        ledger = await self._ledger()
        key, loan = request.idempotency_key, request.loan
        attempt = await ledger.claim(key, loan_id=loan.loan_id, jurisdiction=loan.jurisdiction, channel=channel,
                                     template=request.template, retain_until=_keep_until(loan.jurisdiction),
                                     trail=_trail(request.trail), episode=request.episode)
        if attempt.state == "sent":
            self._logged(f"{channel}_already_sent", key, loan, False, template=request.template)
            return ContactReceipt(idempotency_key=key, channel=channel, message_id=attempt.provider_message_id or "",
                                  location=attempt.location or "", sha256=attempt.sha256)
        try:
            receipt = await send()
        except ApplicationError as err:
            # A refusal for good (invalid number, opt-out at the provider, rejected address) is
            # recorded with its reason; anything retryable stays "sending" for the next try.
            if err.non_retryable:
                await ledger.failed(key, f"{err.type}: {err.message}")
            raise
        await ledger.sent(key, message_id=receipt.message_id, location=receipt.location, sha256=receipt.sha256)
        return receipt

    def _logged(self, event: str, key: str, loan: Loan, created: bool, **extra: object) -> None:
        # Loan id and key only: borrower names, phones and addresses never go into logs.
        log.info(event, loan_id=loan.loan_id, idempotency_key=key, duplicate=not created, **extra)

    async def _as_of(self, key: str) -> datetime:
        """When ``key`` was first claimed: the date a message under it carries on every try, so
        that a retry renders the same bytes (the same SHA-256) without a copy of the first."""
        return await (await self._ledger()).claimed_at(key) or datetime.now(UTC)

    async def _copy(self, channel: str, key: str, content: bytes) -> Kept:
        """The message as sent. Without a provider for the channel the outbox *is* the channel;
        with one, the outbox keeps a copy (it names the borrower) only if ARREARS_OUTBOX_COPIES asks."""
        folder, suffix = CHANNEL_FOLDERS[channel]
        if {"sms": self.sms, "email": self.mailer}[channel] is None or self.outbox_copies:
            return await self.outbox.keep(folder, key, suffix, content)
        return Kept(None, True, content)

    @activity.defn(name="send_sms")
    async def send_sms(self, request: ContactRequest) -> ContactReceipt:
        return await self._once("sms", request, lambda: self._sms(request))

    async def _sms(self, request: ContactRequest) -> ContactReceipt:
        as_of = await self._as_of(request.idempotency_key)
        text = self.templates.render(request.template, request.loan.jurisdiction,
                                     _values(request.loan, request.facts, self.sender, self.templates, channel="sms",
                                             today=as_of.date()))
        message_id = _message_id(request.idempotency_key)
        record = {"message_id": message_id, "to": request.loan.phone, "template": request.template,
                  "body": text.body, "loan_id": request.loan.loan_id, "idempotency_key": request.idempotency_key}
        _refuse_when_late(request.not_after, "the text")
        # A retry sends that same text again (kept, or rendered again as of the claim), under the
        # same Idempotency-Key, so a provider that honours it delivers once.
        kept = await self._copy("sms", request.idempotency_key,
                                json.dumps(record, ensure_ascii=False, indent=2).encode())
        if self.sms is not None:
            message = json.loads(kept.content)
            message_id = await self.sms.send(to=message["to"], body=message["body"], sender=self.sender.sms_from,
                                             idempotency_key=request.idempotency_key)
        self._logged("sms_sent", request.idempotency_key, request.loan, kept.created, template=request.template,
                     via=self.sms.url if self.sms else "outbox")
        return ContactReceipt(idempotency_key=request.idempotency_key, channel="sms", message_id=message_id,
                              location=kept.location, sha256=kept.sha256)

    @activity.defn(name="send_email")
    async def send_email(self, request: ContactRequest) -> ContactReceipt:
        return await self._once("email", request, lambda: self._email(request))

    async def _email(self, request: ContactRequest) -> ContactReceipt:
        as_of = await self._as_of(request.idempotency_key)
        text = self.templates.render(request.template, request.loan.jurisdiction,
                                     _values(request.loan, request.facts, self.sender, self.templates,
                                             channel="email", today=as_of.date()))
        message_id = _message_id(request.idempotency_key)
        message = EmailMessage(policy=EMAIL_POLICY)
        message["From"] = self.sender.email_from
        message["To"] = request.loan.email
        message["Subject"] = text.subject or f"{self.sender.lender}: your account"
        message["Date"] = formatdate(as_of.timestamp(), usegmt=True)
        message["Message-ID"] = f"<{message_id}@arrears>"
        message["X-Arrears-Idempotency-Key"] = request.idempotency_key
        message.set_content(text.body)
        _refuse_when_late(request.not_after, "the e-mail")
        # A retry sends those same bytes again (kept, or rendered again as of the claim).
        kept = await self._copy("email", request.idempotency_key, bytes(message))
        if self.mailer is not None:
            await self.mailer.send(kept.content, sender=self.sender.email_from, recipient=request.loan.email)
        self._logged("email_sent", request.idempotency_key, request.loan, kept.created, template=request.template,
                     via=self.mailer.address if self.mailer else "outbox")
        return ContactReceipt(idempotency_key=request.idempotency_key, channel="email", message_id=message_id,
                              location=kept.location, sha256=kept.sha256)

    @activity.defn(name="issue_letter")
    async def issue_letter(self, request: ContactRequest) -> ContactReceipt:
        return await self._once("letter", request, lambda: self._letter(request))

    async def _letter(self, request: ContactRequest) -> ContactReceipt:
        """The letter as a PDF under ``letters/``: itemised amounts, the borrower's rights, how to
        dispute, a contact point; in the loan's language. Referenced by path and hash, never by content."""
        values = _values(request.loan, request.facts, self.sender, self.templates, channel="letter")
        text = self.templates.render(request.template, request.loan.jurisdiction, values)
        document = LetterDocument(
            language=language_for(request.loan.jurisdiction), title=text.subject or "", sender=self.sender.lender,
            recipient=[request.loan.borrower_name, request.loan.address], date=str(values["today"]),
            reference=f"{request.loan.loan_id} · {request.idempotency_key.rsplit('/', 3)[-3]}", body=text.body)
        # A retry after the letter was written (the worker died before confirming it) issues that
        # letter, without rendering it again.
        kept = await self.outbox.kept("letters", request.idempotency_key, ".pdf")
        if kept is None:
            try:
                pdf = await self.press.render(document)
            except MissingGlyphs as err:  # the text cannot be set in the font: a retry would not change that
                raise ApplicationError(f"letter {request.template}: {err}", type="LetterUnprintable",
                                       non_retryable=True) from None
            _refuse_when_late(request.not_after, "the letter")
            kept = await self.outbox.keep("letters", request.idempotency_key, ".pdf", pdf)
        self._logged("letter_issued", request.idempotency_key, request.loan, kept.created, template=request.template)
        return ContactReceipt(idempotency_key=request.idempotency_key, channel="letter",
                              message_id=_message_id(request.idempotency_key), location=str(kept.path),
                              sha256=kept.sha256)

    async def _queue(self, queue: str, request: WorkItemRequest, *, assigned_to: str | None = None,
                     case_ref: str | None = None, due_at: datetime | None = None, **fields: object) -> WorkItem:
        """Put work for people on a ledger queue (agents pull it there) and in a queue folder.
        ``case_ref`` is what the case calls the item (its events about it close it), ``due_at`` when
        it is due (by default now)."""
        item_id = safe_name(request.idempotency_key)
        item = {"item_id": item_id, "queue": queue, "loan_id": request.loan.loan_id,
                "jurisdiction": request.loan.jurisdiction, "note": request.note,
                "facts": request.facts.model_dump(mode="json"), "assigned_to": assigned_to, **fields}
        payload = json.loads(json.dumps(item, ensure_ascii=False, default=str))
        ledger = await self._ledger()
        _, created = await ledger.add_work(request.idempotency_key, loan_id=request.loan.loan_id,
                                           workflow_id=case_workflow_id(request.loan.loan_id), queue=queue,
                                           payload=payload, assigned_to=assigned_to,
                                           retain_until=_keep_until(request.loan.jurisdiction),
                                           trail=_trail(request.trail), item_id=item_id,
                                           case_ref=case_ref, due_at=due_at, episode=request.episode)
        kept = await self.outbox.keep(f"queues/{queue}", request.idempotency_key, ".json",
                                      json.dumps(payload, ensure_ascii=False, indent=2).encode())
        self._logged("work_item_queued", request.idempotency_key, request.loan, created, queue=queue)
        return WorkItem(item_id=item_id, queue=queue, location=str(kept.path))

    @activity.defn(name="create_call_task")
    async def create_call_task(self, request: WorkItemRequest) -> WorkItem:
        # A task whose window has closed reaches no agent (ContactWindowPassed; the case defers the
        # call), unless this is a retry of one queued in time, which answers with that task.
        try:
            _refuse_when_late(request.callable_until, "the call task")
        except ApplicationError:
            if not await self._queued(request.idempotency_key):
                await self._record(request.trail)  # the case's events riding along are kept all the same
                raise
        # The case names the task by its item id (CallTask.task_id). The agent sees when to dial.
        return await self._queue("calls", request, assigned_to=request.facts.agent,
                                 case_ref=safe_name(request.idempotency_key),
                                 phone=request.loan.phone, timezone=request.loan.timezone,
                                 assigned_agent=request.facts.agent, callable_from=_utc_text(request.callable_from),
                                 callable_until=_utc_text(request.callable_until))

    async def _queued(self, key: str) -> bool:
        """Whether a work item was queued under ``key`` already."""
        ledger = await self._ledger()
        try:
            await ledger.work_item(key)
        except LedgerError:
            return False
        return True

    @activity.defn(name="hand_off_to_legal")
    async def hand_off_to_legal(self, request: WorkItemRequest) -> WorkItem:
        return await self._queue("legal", request, borrower_name=request.loan.borrower_name,
                                 address=request.loan.address, currency=request.loan.currency)

    @activity.defn(name="flag_overdue_visit")
    async def flag_overdue_visit(self, request: WorkItemRequest) -> WorkItem:
        return await self._queue("supervisor", request)

    @activity.defn(name="plan_field_visit")
    async def plan_field_visit(self, request: VisitRequest) -> VisitPlanned:
        # Distinct people: one name twice does not make two staff.
        team = _distinct(self.field_agents)
        if len(team) < request.staff:
            raise ApplicationError(f"the visit needs {request.staff} distinct field agents and "
                                   f"{len(team)} are available (ARREARS_FIELD_AGENTS)", type="NotEnoughStaff",
                                   non_retryable=True)
        # Spread visits over the field team deterministically, so a retry assigns the same people.
        start = int(hashlib.sha256(request.idempotency_key.encode()).hexdigest(), 16) % len(team)
        agents = [team[(start + i) % len(team)] for i in range(request.staff)]
        # The case knows the visit by its child workflow's id (each attempt's plan is one item of it).
        visit_id = activity.info().workflow_id
        item = await self._queue("visits", WorkItemRequest(idempotency_key=request.idempotency_key,
                                                           loan=request.loan, facts=request.facts,
                                                           trail=request.trail, episode=request.episode),
                                 assigned_to=",".join(agents), case_ref=visit_id, due_at=request.scheduled_for,
                                 visit_id=visit_id, address=request.loan.address,
                                 timezone=request.loan.timezone, agents=agents, attempt=request.attempt,
                                 scheduled_for=request.scheduled_for.isoformat(),
                                 report_due=request.report_due.isoformat())
        recorded_to = request.trail.first_seq + len(request.trail.events) if request.trail else 0
        return VisitPlanned(visit_id=item.item_id, agents=agents, scheduled_for=request.scheduled_for,
                            location=item.location, trail_recorded_to=recorded_to)

    @activity.defn(name="record_case_events")
    async def record_case_events(self, request: CaseEventsRequest) -> int:
        """Append what happened to the case to the ledger's audit trail; a retry adds nothing twice."""
        return await self._record(request)

    async def _record(self, request: CaseEventsRequest | None) -> int:
        trail = _trail(request)
        if trail is None:
            return 0
        ledger = await self._ledger()
        return await ledger.record_events(trail.loan_id, trail.workflow_id, trail.events, trail.retain_until,
                                          episode=trail.episode)

    @activity.defn(name="resolve_compliance_profile")
    async def resolve_compliance_profile(self, request: ProfileRequest) -> Profile:
        """For a case started before compliance profiles: its profile, from the worker's files."""
        return profile_for(request.loan, request.strategy)

    def all(self) -> list:
        return [self.send_sms, self.send_email, self.issue_letter, self.create_call_task,
                self.hand_off_to_legal, self.flag_overdue_visit, self.plan_field_visit,
                self.resolve_compliance_profile, self.record_case_events]
