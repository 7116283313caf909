"""Agents' work through the desk (a thin client of its API; kept for scripts that call it).

    export ARREARS_DESK_URL=http://127.0.0.1:8000 ARREARS_DESK_TOKEN=arr_...   (python -m desk tokens create NAME)
    python agent.py list calls                  my open call tasks, due first (visits: `list visits`)
    python agent.py report ITEM OUTCOME [--note TEXT]

Who reports is the token's user: there is no --by any more (the desk refuses a payload that names
who acted). Exit 0 on success, 1 when the report was refused (the reason on stderr: the case
withdrew the task, the outcome is unknown, ...), 2 when the desk cannot be asked.
`arrears` (the same client, every command) is the fuller tool.
"""

from __future__ import annotations

import sys

from desk.client import main as arrears


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["list"]:
        return arrears(["work", *argv[1:2], "--all", *argv[2:]])
    if argv[:1] == ["report"]:
        return arrears(argv)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
