"""Workflows: orchestration only. They ask the domain what to do and run it through activities."""
