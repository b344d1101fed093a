"""monitoring: metrics, analytics, alert rules and workers (API.md §2)."""
