"""core: the hub of tasks (docs/api.md §1). Owns tasks, their status history and dispatch."""
