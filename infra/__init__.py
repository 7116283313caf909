"""Wiring shared by worker, starter, dev stack and tests: settings, client, logging."""
