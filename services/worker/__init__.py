"""The worker runtime (runs task handlers in child processes) and the handler SDK (`sdk.py`)."""
