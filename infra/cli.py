"""What the project's commands share: an argparse parser whose errors name the flag (exit 2)."""

from __future__ import annotations

import argparse


class FlagParser(argparse.ArgumentParser):
    """argparse, with a way to refuse a flag's value after parsing as argparse refuses one while parsing:
    ``argument --flag: reason`` on standard error, exit status 2."""

    def flag_error(self, flag: str, reason: str) -> None:
        self.error(f"argument {flag}: {reason}")
