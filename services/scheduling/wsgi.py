"""gunicorn entry point: `gunicorn services.scheduling.wsgi:app`."""

from .app import create_app

app = create_app()
