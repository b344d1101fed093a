"""gunicorn entry point: `gunicorn services.core.wsgi:app`."""

from .app import create_app

app = create_app()
