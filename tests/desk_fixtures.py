"""A desk in front of a real worker on the Temporal dev server, with one user (and token) per role.

``desk`` is module-scoped: the tests of a module share the server, the worker, the ledger and the
users; each test starts the cases it needs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from desk.api import create_app
from desk.cases import CaseDesk
from desk.config import DeskSettings
from desk.policy import load_policy
from desk.store import DeskStore
from infra.search_attributes import ensure_search_attributes
from infra.settings import Settings
from ledger import Ledger
from worker import build_activities, build_worker

# name: (role, team)
USERS = {
    "a1": ("agent", "t1"), "a2": ("agent", "t2"), "f1": ("field_agent", "t1"), "s1": ("supervisor", None),
    "s2": ("supervisor", None), "s3": ("supervisor", None), "c1": ("compliance", None), "ad": ("admin", None),
    "p1": ("payments", None),
}
PASSWORD = "correct horse battery staple"


@dataclass
class Desk:
    env: WorkflowEnvironment
    desk: CaseDesk
    store: DeskStore
    http: httpx.AsyncClient
    task_queue: str
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    async def post(self, user: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return await self.http.post(path, json=body if body is not None else {}, headers=self.auth(user), **kwargs)

    async def get(self, user: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(path, headers=self.auth(user), **kwargs)

    async def command(self, user: str, loan_id: str, name: str, body: Any = None) -> httpx.Response:
        return await self.post(user, f"/api/v1/cases/{loan_id}/{name}", body)

    async def case(self, **loan: Any) -> tuple[str, WorkflowHandle]:
        """A new case (default: DPD 5, in reminders) on the desk's worker."""
        from tests.conftest import make_loan, start_case

        made = make_loan(**{"days_past_due": 5, **loan})
        handle = await start_case(self.env.client, _Queue(self.task_queue), made)
        return made.loan_id, handle


@dataclass
class _Queue:
    task_queue: str


def soon(days: int) -> str:
    return (date.today() + timedelta(days=days)).isoformat()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def desk(dev_server: WorkflowEnvironment, tmp_path_factory: Any) -> AsyncIterator[Desk]:
    data: Path = tmp_path_factory.mktemp("desk")
    settings = Settings(data_dir=data, letter_processes=0)
    await ensure_search_attributes(dev_server.client)
    activities = build_activities(settings)
    task_queue = f"desk-{uuid.uuid4().hex[:8]}"
    store = DeskStore(Ledger.connect(settings.ledger_url))
    await store.ledger.migrate()
    case_desk = CaseDesk(dev_server.client, load_policy(), store, store.ledger, DeskSettings(base=settings))
    app = create_app(case_desk)
    try:
        async with build_worker(dev_server.client, settings, task_queue=task_queue, activities=activities):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://desk") as http:
                fixture = Desk(dev_server, case_desk, store, http, task_queue)
                for name, (role, team) in USERS.items():
                    await store.add_user(name, role, team=team, password=PASSWORD)
                    fixture.tokens[name] = await store.create_token(name)
                yield fixture
    finally:
        await activities.aclose()
        await store.ledger.close()


@asynccontextmanager
async def desk_on(env: WorkflowEnvironment, worker: Any, settings: Settings | None = None,
                  users: dict[str, tuple[str, str | None]] | None = None) -> AsyncIterator[Desk]:
    """A desk in front of ``worker`` (its ledger), with ``users`` (default: ``USERS``) and a token each."""
    store = DeskStore(worker.ledger)
    await store.ledger.migrate()
    case_desk = CaseDesk(env.client, load_policy(), store, store.ledger,
                         DeskSettings(base=settings or Settings(letter_processes=0)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(case_desk)),
                                 base_url="http://desk") as http:
        fixture = Desk(env, case_desk, store, http, worker.task_queue)
        for name, (role, team) in (users or USERS).items():
            await store.add_user(name, role, team=team, password=PASSWORD)
            fixture.tokens[name] = await store.create_token(name)
        yield fixture
