"""Extension instances of no particular package, created once and bound in `create_app`.

Each package keeps its own: the JWT manager (app/sessions/access_tokens.py), the API
(app/web/openapi.py); Flask-Migrate is bound in app/core/migrate.py, imported only when a
migration runs."""

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_mail import Mail

mail = Mail()
limiter = Limiter(key_func=get_remote_address)
