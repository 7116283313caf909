"""The desk's records in the ledger's database: users, tokens, sessions, approvals, payments."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import and_, select, update

from desk.policy import Identity
from desk.schema import desk_access_log, desk_approvals, desk_payments, desk_sessions, desk_tokens, desk_users
from domain.errors import Rejected
from ledger import Ledger

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
TOKEN_PREFIX = "arr_"
_HASHER = PasswordHasher()  # argon2id, the library's (RFC 9106) recommended parameters
# Verified when the user does not exist, so that an unknown name takes as long as a wrong password.
_DUMMY = _HASHER.hash(secrets.token_urlsafe(16))


class DeskError(Rejected):
    """A request the desk's records refuse; ``field`` names what, ``reason`` why."""


class LoginRefused(Exception):
    """A log-in refused; the reason is the same for every cause (see REFUSED)."""


REFUSED = "wrong name or password, or the account is locked after repeated failures"


@dataclass(frozen=True)
class User:
    name: str
    role: str
    team: str | None
    active: bool
    has_password: bool
    locked_until: datetime | None

    def identity(self, via: str) -> Identity:
        return Identity(self.name, self.role, self.team, via)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Session:
    identity: Identity
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class Approval:
    approval_id: str
    loan_id: str
    command: str
    payload: dict[str, Any]
    proposed_by: str
    proposer_role: str
    needs: str
    gives_up: dict[str, Any]
    justification: str | None
    state: str
    decided_by: str | None
    decided_at: datetime | None
    outcome: str | None
    created_at: datetime
    expires_at: datetime

    def view(self) -> dict[str, Any]:
        return {"approval_id": self.approval_id, "loan_id": self.loan_id, "command": self.command,
                "payload": self.payload, "proposed_by": self.proposed_by, "proposer_role": self.proposer_role,
                "needs_approval_because": self.needs, "gives_up": self.gives_up,
                "justification": self.justification, "state": self.state, "decided_by": self.decided_by,
                "decided_at": _iso(self.decided_at), "outcome": self.outcome,
                "created_at": _iso(self.created_at), "expires_at": _iso(self.expires_at)}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else _utc(value).isoformat()


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes for what was written as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check_name(name: str, field: str = "name") -> str:
    if not NAME.match(name or ""):
        raise DeskError(field, f"{name!r} is not a user name (letters, digits and . _ @ -, up to 64, "
                               "starting with a letter or digit)")
    return name


class DeskStore:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def _read(self, query: Any) -> list[Any]:
        async with self.ledger.engine.connect() as connection:
            return list(await connection.execute(query))

    async def _with_user(self, table: Any, where: Any) -> Any:
        """The one row of ``table`` (a token, a session) that ``where`` finds, with its user's role,
        team and whether the user is active; None when there is none."""
        rows = await self._read(select(table, desk_users.c.role, desk_users.c.team, desk_users.c.active)
                                .join(desk_users, desk_users.c.name == table.c.user_name).where(where))
        return rows[0] if rows else None

    # -- users ---------------------------------------------------------------------------------
    async def add_user(self, name: str, role: str, *, team: str | None = None, created_by: str | None = None,
                       password: str | None = None, subject: str | None = None) -> str | None:
        """Create a user; returns the password (generated unless given; none for an OIDC subject)."""
        check_name(name)
        if team is not None:
            check_name(team, "team")
        if subject is None and password is None:
            password = secrets.token_urlsafe(18)
        hashed = await asyncio.to_thread(_HASHER.hash, password) if password is not None else None
        async with self.ledger._write() as connection:
            exists = (await connection.execute(select(desk_users.c.id).where(desk_users.c.name == name))).first()
            if exists is not None:
                raise DeskError("name", f"a user {name!r} already exists")
            await _names_apart(connection, name, team)
            await connection.execute(desk_users.insert().values(
                name=name, role=role, team=team, password_hash=hashed, subject=subject, active=True,
                failed_logins=0, created_at=datetime.now(UTC), created_by=created_by))
        return password

    async def user(self, name: str) -> User | None:
        rows = await self._read(select(desk_users).where(desk_users.c.name == name))
        return _user(rows[0]) if rows else None

    async def users(self) -> list[User]:
        return [_user(row) for row in await self._read(select(desk_users).order_by(desk_users.c.name))]

    async def team_of(self, names: set[str]) -> dict[str, str | None]:
        if not names:
            return {}
        rows = await self._read(select(desk_users.c.name, desk_users.c.team).where(desk_users.c.name.in_(names)))
        return {row.name: row.team for row in rows}

    async def set_password(self, name: str, password: str) -> None:
        hashed = await asyncio.to_thread(_HASHER.hash, password)
        async with self.ledger._write() as connection:
            done = await connection.execute(update(desk_users).where(desk_users.c.name == name).values(
                password_hash=hashed, failed_logins=0, locked_until=None))
        if done.rowcount == 0:
            raise DeskError("name", f"no user {name!r}")

    async def oidc_user(self, subject: str, name: str, role: str, team: str | None) -> User:
        """The user the identity provider vouches for, created or brought up to date (its role and
        team come from the provider's claims at every login)."""
        check_name(name)
        async with self.ledger._write() as connection:
            row = (await connection.execute(select(desk_users).where(desk_users.c.subject == subject))).first()
            if row is None:
                if (await connection.execute(select(desk_users.c.id).where(desk_users.c.name == name))).first():
                    raise DeskError("name", f"a local user {name!r} already exists; it cannot be taken over "
                                            "by the identity provider")
                await _names_apart(connection, name, team)
                await connection.execute(desk_users.insert().values(
                    name=name, role=role, team=team, subject=subject, active=True, failed_logins=0,
                    created_at=datetime.now(UTC), created_by="oidc"))
            else:
                await connection.execute(update(desk_users).where(desk_users.c.subject == subject)
                                         .values(role=role, team=team))
                name = row.name
            row = (await connection.execute(select(desk_users).where(desk_users.c.name == name))).one()
        return _user(row)

    async def login(self, name: str, password: str, *, lockout_after: int, lockout_for: timedelta) -> User:
        """The user, if the password is theirs and they are not locked out. Every failure counts;
        ``lockout_after`` failures in a row lock the account for ``lockout_for``."""
        now = datetime.now(UTC)
        rows = await self._read(select(desk_users).where(desk_users.c.name == name))
        row = rows[0] if rows else None
        stored = row.password_hash if row is not None and row.password_hash else _DUMMY
        try:
            good = await asyncio.to_thread(_HASHER.verify, stored, password)
        except (VerificationError, InvalidHashError):
            good = False
        if row is None or not row.password_hash or not row.active:
            raise LoginRefused(REFUSED)
        if row.locked_until is not None and _utc(row.locked_until) > now:
            raise LoginRefused(REFUSED)
        if not good:
            # Counted in the database (a failure raised inside the transaction would undo the count).
            async with self.ledger._write() as connection:
                failures = (await connection.execute(
                    update(desk_users).where(desk_users.c.name == name)
                    .values(failed_logins=desk_users.c.failed_logins + 1)
                    .returning(desk_users.c.failed_logins))).scalar_one()
                locked = now + lockout_for if failures >= lockout_after else None
                if locked:
                    await connection.execute(update(desk_users).where(desk_users.c.name == name)
                                             .values(failed_logins=0, locked_until=locked))
            raise LoginRefused(REFUSED)
        async with self.ledger._write() as connection:
            await connection.execute(update(desk_users).where(desk_users.c.name == name)
                                     .values(failed_logins=0, locked_until=None))
        if _HASHER.check_needs_rehash(row.password_hash):
            await self.set_password(name, password)
        return _user(row)

    # -- API tokens ----------------------------------------------------------------------------
    async def create_token(self, user_name: str) -> str:
        user = await self.user(user_name)
        if user is None:
            raise DeskError("name", f"no user {user_name!r} (add it with `python -m desk users add`)")
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        async with self.ledger._write() as connection:
            await connection.execute(desk_tokens.insert().values(
                token_id=token_id, user_name=user_name, secret_sha256=_sha256(secret), created_at=datetime.now(UTC)))
        return f"{TOKEN_PREFIX}{token_id}_{secret}"

    async def revoke_tokens(self, user_name: str) -> int:
        async with self.ledger._write() as connection:
            done = await connection.execute(update(desk_tokens).where(
                desk_tokens.c.user_name == user_name, desk_tokens.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC)))
        return done.rowcount

    async def token_identity(self, token: str) -> Identity | None:
        if not token.startswith(TOKEN_PREFIX) or token.count("_") < 2:
            return None
        token_id, _, secret = token[len(TOKEN_PREFIX):].partition("_")
        row = await self._with_user(desk_tokens, desk_tokens.c.token_id == token_id)
        if row is None:
            return None
        if row.revoked_at is not None or not row.active or not hmac.compare_digest(row.secret_sha256, _sha256(secret)):
            return None
        return Identity(row.user_name, row.role, row.team, "token")

    # -- browser sessions ----------------------------------------------------------------------
    async def open_session(self, user: User, longest: timedelta, via: str = "session") -> tuple[str, str]:
        """A new session: the cookie's value and the session's CSRF token."""
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = datetime.now(UTC)
        async with self.ledger._write() as connection:
            await connection.execute(desk_sessions.insert().values(
                session_sha256=_sha256(session_id), user_name=user.name, csrf_token=csrf, created_at=now,
                last_seen_at=now, expires_at=now + longest))
        return session_id, csrf

    async def session(self, session_id: str, idle: timedelta) -> Session | None:
        """The live session with this cookie (its idle clock restarted), or None: unknown, idle too
        long, past its longest life, or its user disabled."""
        now = datetime.now(UTC)
        key = _sha256(session_id)
        row = await self._with_user(desk_sessions, desk_sessions.c.session_sha256 == key)
        if row is None:
            return None
        if not row.active or _utc(row.expires_at) <= now or _utc(row.last_seen_at) + idle <= now:
            await self.end_session(session_id)
            return None
        if now - _utc(row.last_seen_at) > timedelta(seconds=30):  # not a write per request
            async with self.ledger._write() as connection:
                await connection.execute(update(desk_sessions).where(desk_sessions.c.session_sha256 == key)
                                         .values(last_seen_at=now))
        return Session(Identity(row.user_name, row.role, row.team, "session"), row.csrf_token,
                       _utc(row.expires_at))

    async def end_session(self, session_id: str) -> None:
        async with self.ledger._write() as connection:
            await connection.execute(desk_sessions.delete().where(desk_sessions.c.session_sha256 == _sha256(session_id)))

    async def end_sessions_of(self, user_name: str) -> None:
        async with self.ledger._write() as connection:
            await connection.execute(desk_sessions.delete().where(desk_sessions.c.user_name == user_name))

    # -- four-eyes approvals -------------------------------------------------------------------
    async def propose(self, *, loan_id: str, command: str, payload: dict[str, Any], proposer: Identity,
                      needs: str, gives_up: dict[str, Any], justification: str | None,
                      expires_in: timedelta) -> Approval:
        now = datetime.now(UTC)
        approval_id = secrets.token_hex(8)
        async with self.ledger._write() as connection:
            await connection.execute(desk_approvals.insert().values(
                approval_id=approval_id, loan_id=loan_id, command=command, payload=payload,
                proposed_by=proposer.name, proposer_role=proposer.role, needs=needs, gives_up=gives_up,
                justification=justification, state="pending", created_at=now, expires_at=now + expires_in))
        approval = await self.approval(approval_id)
        assert approval is not None
        return approval

    async def approval(self, approval_id: str) -> Approval | None:
        await self.expire_approvals()
        rows = await self._read(select(desk_approvals).where(desk_approvals.c.approval_id == approval_id))
        return _approval(rows[0]) if rows else None

    async def approvals(self, *, state: str | None = "pending", limit: int = 100) -> list[Approval]:
        await self.expire_approvals()
        query = select(desk_approvals).order_by(desk_approvals.c.created_at, desk_approvals.c.id).limit(limit)
        if state is not None:
            query = query.where(desk_approvals.c.state == state)
        return [_approval(row) for row in await self._read(query)]

    async def expire_approvals(self) -> int:
        now = datetime.now(UTC)
        async with self.ledger._write() as connection:
            done = await connection.execute(update(desk_approvals).where(
                desk_approvals.c.state == "pending", desk_approvals.c.expires_at <= now)
                .values(state="expired", decided_at=now, outcome="expired before anyone decided"))
        return done.rowcount

    async def decide(self, approval_id: str, decider: str, *, to: str, outcome: str | None = None) -> bool:
        """Move a pending approval to ``to`` (approving, rejected), once: of two decisions at the same
        time, one wins. Also finishes an approving one (to applied or failed)."""
        now = datetime.now(UTC)
        source = "approving" if to in ("applied", "failed") else "pending"
        condition = and_(desk_approvals.c.approval_id == approval_id, desk_approvals.c.state == source)
        if source == "pending":
            condition = and_(condition, desk_approvals.c.expires_at > now)
        async with self.ledger._write() as connection:
            done = await connection.execute(update(desk_approvals).where(condition).values(
                state=to, decided_by=decider, decided_at=now, outcome=outcome))
        return done.rowcount == 1

    # -- who saw a borrower's personal data -----------------------------------------------------
    async def log_access(self, identity: Identity, loan_id: str, *, what: str, details: list[str], via: str) -> None:
        async with self.ledger._write() as connection:
            await connection.execute(desk_access_log.insert().values(
                at=datetime.now(UTC), user_name=identity.name, role=identity.role, loan_id=loan_id, what=what,
                details=",".join(details), via=via))

    async def access_log(self, *, loan_id: str | None = None, user: str | None = None,
                         limit: int = 100) -> list[dict[str, Any]]:
        query = select(desk_access_log).order_by(desk_access_log.c.id.desc()).limit(limit)
        if loan_id is not None:
            query = query.where(desk_access_log.c.loan_id == loan_id)
        if user is not None:
            query = query.where(desk_access_log.c.user_name == user)
        return [{"at": _iso(row.at), "user": row.user_name, "role": row.role, "loan_id": row.loan_id,
                 "what": row.what, "details": row.details.split(","), "via": row.via}
                for row in await self._read(query)]

    # -- payments by reference -----------------------------------------------------------------
    async def claim_payment(self, reference: str, *, loan_id: str, amount: str, currency: str,
                            paid_at: datetime | None, received_from: str) -> tuple[str, str | None]:
        """Claim a payment's reference before applying it: ("new", None), or the state and result of
        the earlier claim ("sending": it never finished, apply it again). A reference claimed for
        another loan, amount or currency is refused (DeskError naming reference)."""
        values = dict(reference=reference, loan_id=loan_id, amount=amount, currency=currency, paid_at=paid_at,
                      state="sending", received_from=received_from, received_at=datetime.now(UTC))
        async with self.ledger._write() as connection:
            inserted = await connection.execute(self.ledger._insert(desk_payments).values(**values)
                                                .on_conflict_do_nothing(index_elements=["reference"]))
            if inserted.rowcount == 1:
                return "new", None
            row = (await connection.execute(select(desk_payments).where(desk_payments.c.reference == reference))).one()
        if (row.loan_id, row.amount, row.currency) != (loan_id, amount, currency):
            raise DeskError("reference", f"{reference} was already received for loan {row.loan_id}, "
                                         f"{row.amount} {row.currency}")
        return row.state, row.result

    async def finish_payment(self, reference: str, state: str, result: str | None) -> None:
        async with self.ledger._write() as connection:
            await connection.execute(update(desk_payments).where(desk_payments.c.reference == reference)
                                     .values(state=state, result=result))


async def _names_apart(connection: Any, name: str, team: str | None) -> None:
    """Users and teams share one namespace (a case is assigned to either): a user may not be named
    like a team, nor a team like another user."""
    if (await connection.execute(select(desk_users.c.id).where(desk_users.c.team == name))).first():
        raise DeskError("name", f"{name!r} is the name of a team")
    if team is not None and team != name and (
            await connection.execute(select(desk_users.c.id).where(desk_users.c.name == team))).first():
        raise DeskError("team", f"{team!r} is the name of a user")


def _user(row: Any) -> User:
    return User(row.name, row.role, row.team, bool(row.active), bool(row.password_hash),
                _utc(row.locked_until) if row.locked_until else None)


def _approval(row: Any) -> Approval:
    return Approval(row.approval_id, row.loan_id, row.command, row.payload, row.proposed_by, row.proposer_role,
                    row.needs, row.gives_up, row.justification, row.state, row.decided_by,
                    _utc(row.decided_at) if row.decided_at else None, row.outcome, _utc(row.created_at),
                    _utc(row.expires_at))
