"""gunicorn entry point: `gunicorn services.persistence.wsgi:app`."""

from .app import create_app

app = create_app()
