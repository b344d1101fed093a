"""Live task changes as server-sent events (docs/api.md §1: GET /tasks/stream/, GET /tasks/{id}/stream/),
read from core's own `tasks` table and woken by the database's change notifications."""
