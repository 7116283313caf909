"""What the sync's workflow and activity exchange: one model each way (fields can be added later)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

# At most this many rejected rows (and refused cases) are listed in a report; the counts are whole.
LISTED = 100


class SyncRequest(BaseModel):
    """What the schedule starts the workflow with."""

    # A worker that dies mid-file is noticed after this long without a heartbeat; another resumes.
    heartbeat_seconds: int = Field(default=60, ge=2, le=3600)


class SyncRun(BaseModel):
    """One run of the sync, as the workflow asks its activity for it."""

    # The run's start (workflow time): a file without an as_of is as of this day in the sync's zone.
    started_at: datetime
    workflow_id: str = ""


class RowProblem(BaseModel):
    line: int
    reason: str


class CaseProblem(BaseModel):
    loan_id: str
    reason: str


class FileReport(BaseModel):
    """What one file did. ``status``: done (applied now), already processed (applied before, by its
    hash: nothing sent), unreadable (nothing applied: ``reason`` says why)."""

    name: str
    sha256: str = ""
    as_of: date | None = None
    complete: bool = False
    status: str = "done"
    reason: str | None = None
    rows: int = 0                 # data rows read
    started: int = 0              # a case started: the loan had none before
    new_episode: int = 0          # a case started: the loan's last one had closed
    already_existed: int = 0      # closed for this very delinquency: not started again
    already_running: int = 0      # live already: sent the servicer's figures
    updated: int = 0              # figures the case accepted
    cured_current: int = 0        # the file reports the loan current: its case closed cured
    cured_absent: int = 0         # left out of a complete file: its case closed cured
    current_without_case: int = 0  # reported current, no live case: nothing to do
    rejected: int = 0             # rows not valid: reported, not applied
    refused: int = 0              # commands a case refused (e.g. older figures than it has)
    rejections: list[RowProblem] = Field(default_factory=list)
    refusals: list[CaseProblem] = Field(default_factory=list)
    # Why absent loans' cases were not cured (too many of them, no rows at all), if they were not.
    absent_held_back: str | None = None

    @property
    def cured(self) -> int:
        return self.cured_current + self.cured_absent

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.rejections) < LISTED:
            self.rejections.append(RowProblem(line=line, reason=reason))

    def refuse(self, loan_id: str, reason: str) -> None:
        self.refused += 1
        if len(self.refusals) < LISTED:
            self.refusals.append(CaseProblem(loan_id=loan_id, reason=reason))

    def summary(self) -> str:
        if self.status != "done":
            return f"{self.name}: {self.status}" + (f" ({self.reason})" if self.reason else "")
        return (f"{self.name} (as of {self.as_of}): {self.rows} rows, {self.started} started, "
                f"{self.new_episode} new episode, {self.already_running} already running, {self.updated} updated, "
                f"{self.cured} cured ({self.cured_current} current, {self.cured_absent} absent), "
                f"{self.already_existed} already existed, {self.rejected} rejected, {self.refused} refused")


class SyncReport(BaseModel):
    """The run's files, oldest first."""

    files: list[FileReport] = Field(default_factory=list)

    def summary(self) -> str:
        if not self.files:
            return "sync: no file"
        return "\n".join(f"sync: {f.summary()}" for f in self.files)
