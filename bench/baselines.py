"""The load benchmark's baselines: workflows with nothing to do, in a module of their own (the
workflow sandbox imports it afresh, so it holds nothing but them)."""

from __future__ import annotations

from typing import Any

from temporalio import workflow


@workflow.defn(name="BareStart")
class BareStart:
    """The intake baseline: a start with nothing to run (no worker polls its queue)."""

    @workflow.run
    async def run(self, _: str) -> None:
        return None


@workflow.defn(name="BenchEcho")
class BenchEcho:
    """The operators' baseline: an update and a query that do nothing."""

    def __init__(self) -> None:
        self._agent = ""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.update(name="assign")
    def assign(self, payload: dict[str, Any]) -> dict[str, Any]:
        self._agent = payload.get("agent", "")
        return {"assigned_agent": self._agent}

    @workflow.query(name="status")
    def status(self) -> dict[str, Any]:
        return {"assigned_agent": self._agent}
