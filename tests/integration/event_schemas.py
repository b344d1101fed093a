"""The event contract as the tests read it (kept for the service tests that import it from here;
shared/testing/event_contract.py holds it and checks every published message)."""

from shared.testing.event_contract import event_types, problems, schema_files, validator

__all__ = ["event_types", "problems", "schema_files", "validator"]
