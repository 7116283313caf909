"""A skeleton case: the shape of a simulated case (its timers, activities and signals), no domain logic.

The simulation benchmark (bench/lab.py) runs one skeleton per simulated case, with the counts that
case's family recorded in the real run (the case, its visit children and its borrower): the ratio of
the two runs' cases per second is what the real workflow's logic costs over Temporal's own work.

A skeleton sleeps its timers one after the other across the horizon; after each it runs its share of
the activities. The first ``signals`` activities are pokes: the activity signals the skeleton back
through the client, and the skeleton waits for that signal (as a case waits for its borrower).
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import Client

SKELETON_TIMEOUT = timedelta(seconds=30)


class Shape(BaseModel):
    """One case's family as the real run recorded it."""

    timers: int
    activities: int
    signals: int
    horizon_seconds: int


class Poke(BaseModel):
    workflow_id: str


@workflow.defn(name="LabSkeleton")
class SkeletonWorkflow:
    @workflow.init
    def __init__(self, shape: Shape) -> None:
        self._signals = 0

    @workflow.signal
    def poked(self) -> None:
        self._signals += 1

    @workflow.run
    async def run(self, shape: Shape) -> int:
        steps = max(1, shape.timers)
        every = timedelta(seconds=shape.horizon_seconds / (steps + 1))
        done = pokes = 0
        for step in range(steps):
            if step < shape.timers:
                await workflow.sleep(every)
            for _ in range(shape.activities * (step + 1) // steps - shape.activities * step // steps):
                if pokes < shape.signals:
                    pokes += 1
                    await workflow.execute_activity("skeleton_poke", Poke(workflow_id=workflow.info().workflow_id),
                                                    start_to_close_timeout=SKELETON_TIMEOUT)
                    await workflow.wait_condition(lambda wanted=pokes: self._signals >= wanted)
                else:
                    await workflow.execute_activity("skeleton_step", start_to_close_timeout=SKELETON_TIMEOUT)
                done += 1
        return done


class SkeletonActivities:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name="skeleton_step")
    async def step(self) -> None:
        return None

    @activity.defn(name="skeleton_poke")
    async def poke(self, poke: Poke) -> None:
        await self.client.get_workflow_handle(poke.workflow_id).signal(SkeletonWorkflow.poked)

    def all(self) -> list:
        return [self.step, self.poke]
