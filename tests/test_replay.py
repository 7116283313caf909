"""Replay: recorded histories must replay without non-determinism under the current code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from infra.client import data_converter
from tests.histories.record import SCENARIOS, record
from worker import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def _load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem.split("--")[-1], json.loads(path.read_text()))


def test_recorded_histories_cover_every_scenario_and_the_visit_child():
    names = {path.name.split("--")[0] for path in HISTORIES}
    assert names >= set(SCENARIOS)
    types = {json.loads(p.read_text())["events"][0]["workflowExecutionStartedEventAttributes"]["workflowType"]["name"]
             for p in HISTORIES}
    assert types == {"LoanCollectionWorkflow", "FieldVisitWorkflow", "DailySyncWorkflow"}


@pytest.mark.parametrize("path", HISTORIES, ids=[p.name for p in HISTORIES])
async def test_a_recorded_history_replays_under_the_current_code(path: Path):
    replayer = Replayer(workflows=WORKFLOWS, data_converter=data_converter())
    result = await replayer.replay_workflow(_load(path), raise_on_replay_failure=True)
    assert result.replay_failure is None


async def test_a_fresh_recording_replays_and_a_changed_workflow_would_not(tmp_path: Path):
    paths = await record("operator_commands", tmp_path)
    replayer = Replayer(workflows=WORKFLOWS, data_converter=data_converter())
    for path in paths:
        assert (await replayer.replay_workflow(_load(path))).replay_failure is None
    # The replayer does catch a change in the sequence of commands: drop an activity from the history.
    history = json.loads(paths[0].read_text())
    scheduled = [i for i, e in enumerate(history["events"]) if "activityTaskScheduledEventAttributes" in e]
    history["events"][scheduled[0]]["activityTaskScheduledEventAttributes"]["activityType"]["name"] = "renamed"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(history))
    result = await replayer.replay_workflow(_load(broken), raise_on_replay_failure=False)
    assert result.replay_failure is not None
