"""The WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi …`."""

from app import create_app
from app.config import check_environment_or_exit

check_environment_or_exit()
app = create_app()
