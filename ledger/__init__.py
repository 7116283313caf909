"""The case ledger: the durable record of every contact attempt, document, work item and case
event, kept for the years each jurisdiction requires (Temporal histories expire with the
namespace's retention; this does not). SQLite under ``.data/`` by default, PostgreSQL when
``ARREARS_DATABASE_URL`` says so; the schema is migrated with Alembic (``python -m ledger upgrade``).
"""

from ledger.store import Attempt, Ledger, LedgerError, WorkItemRow

__all__ = ["Attempt", "Ledger", "LedgerError", "WorkItemRow"]
