"""gunicorn entry point: `gunicorn services.monitoring.wsgi:app`."""

from .app import create_app

app = create_app()
