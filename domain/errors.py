"""The one error the domain raises for bad input: it names the field and the reason."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class Rejected(ValueError):
    """A command, a row or a file was refused; ``field`` says where, ``reason`` why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


class BeyondLimit(Rejected):
    """An arrangement that fits every rule but gives up more than its approver's role may: someone
    with a higher limit can still agree it (``share`` given up, the role's ``limit``)."""

    def __init__(self, field: str, reason: str, *, share: object, limit: object, role: str) -> None:
        super().__init__(field, reason)
        self.share = share
        self.limit = limit
        self.role = role


def validation_problems(err: "ValidationError", prefix: str = "") -> str:
    """A pydantic validation error as ``key.path: reason; ...``, each key under ``prefix``: how every file
    the engine reads (strategies, scorecards, experiments, behaviour models) names what is wrong in it."""
    return "; ".join(f"{prefix}{'.'.join(str(p) for p in e['loc']) or '(top level)'}: "
                     f"{e['msg'].removeprefix('Value error, ')}" for e in err.errors())
