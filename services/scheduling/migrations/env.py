from shared.alembic_env.run import run_migrations

run_migrations()
