"""The daily sync with the loan servicing system: a Temporal Schedule runs :class:`DailySyncWorkflow`
every day at a configured local time; its one activity reads the servicer's delinquency file (a drop
folder's CSV, or a SQL query against the servicing database), checks every row, and then makes the
cases follow it: a case started (or a new episode) for a delinquent loan without a live case, the
servicer's figures (``loan_update``) for a running one, a case closed ``cured`` for a loan the file
reports current or, when the file is the whole delinquent book, leaves out.

    python -m sync schedule      create or update the schedule (the worker does it at start too)
    python -m sync run           run it now and print the report
    python -m sync status        the files seen lately, with their counts

Each file is applied once (its SHA-256, in the ledger's ``sync_files``), never half (the whole file is
read and checked before anything is applied), and survives a worker restart without starting
anything twice (the activity resumes from its heartbeat; every command it sends is idempotent).
"""

SCHEDULE_ID = "arrears-daily-sync"
# Who the cases' events name as the sender of the servicer's figures.
SYNC_IDENTITY = "system:daily-sync"
