"""The WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi …`."""

import gc

from app import create_app
from app.core.config import check_environment_or_exit

check_environment_or_exit()
app = create_app()
# What is built by now lives as long as the process (the app, SQLAlchemy's mappers, zxcvbn's
# word lists: some 110,000 objects), so the collector need not walk it again at every full
# collection of every request's garbage.
gc.freeze()
