"""Monitoring: collection KPIs from the ledger's events (``reports.kpis``), read from the ledger by
``reports.source`` and priced by ``reports.costs``; rendered as tables, CSV, JSON and HTML for the
command line (``python -m reports``) and the desk."""
