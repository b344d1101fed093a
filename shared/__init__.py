"""taskhub's shared library: what every service process imports (config, auth, errors, lists,
logging, health, the event envelope, the bus adapters, the outbox and the inbox)."""
