"""Structured JSON logs for the worker, activities and workflows (through the stdlib bridge)."""

from __future__ import annotations

import logging
import sys

import structlog

_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class _WorkflowContext(logging.Filter):
    """Lift the ids Temporal attaches to workflow and activity records into top-level JSON keys."""

    def filter(self, record: logging.LogRecord) -> bool:
        for attr in ("temporal_workflow", "temporal_activity"):
            details = getattr(record, attr, None)
            if isinstance(details, dict):
                for key in ("workflow_id", "run_id", "workflow_type", "activity_type", "attempt"):
                    if key in details:
                        setattr(record, key, details[key])
        return True


def configure(level: str = "INFO") -> None:
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer(default=str)],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(_WorkflowContext())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
