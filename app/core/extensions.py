"""Extension instances, created once and bound to the app in `create_app`.

Flask-Migrate is bound in `app/migrate.py`, imported only when a migration runs."""

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_mail import Mail

from app.auth.bearer import OneDecodeJWTManager
from app.openapi import ProblemApi, ProblemResponses

jwt = OneDecodeJWTManager()
mail = Mail()
# Every error response in /openapi.json is the problem body the server sends.
api = ProblemApi(spec_kwargs={"extra_plugins": [ProblemResponses()]})
limiter = Limiter(key_func=get_remote_address)
