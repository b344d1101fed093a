"""core: the hub of tasks (API.md §1). Owns tasks, their status history and dispatch."""
