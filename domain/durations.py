"""Durations as strategy files write them: ``"30s"``, ``"12h"``, ``"14d"``, ``"2w"``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return timedelta(seconds=value)
        if isinstance(value, str):
            match = _PATTERN.match(value)
            if match:
                return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
            # What the serializer below writes, so a strategy survives a round trip.
            return timedelta(seconds=float(value))
    except (ValueError, OverflowError):
        pass
    raise ValueError(f"{value!r} is not a duration such as '30s', '15m', '12h', '14d' or '2w'")


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda d: d.total_seconds(), return_type=float),
]
