"""The `taskhub` command: the platform from a terminal or a script (docs/cli.md).

    taskhub tasks submit example.sleep --context '{"seconds": 3, "steps": 3}' --wait
    taskhub tasks list --status failed --output json | jq '.[].id'

Exit codes: 0 done, 1 the API said no (its `detail` is printed) or could not be reached, 2 a usage
error, 3 a waited-for task failed, 4 it was cancelled, 5 it was not final within --timeout."""

from __future__ import annotations

from . import commands  # noqa: F401 - registers the subcommands on the root group
from .root import main, root

__all__ = ["main", "root"]
