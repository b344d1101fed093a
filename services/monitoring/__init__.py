"""monitoring: metrics, analytics, alert rules and workers (docs/api.md §2)."""
