"""Events between services: the envelope, the bus port and its adapters, the outbox and the inbox."""
