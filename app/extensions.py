"""Extension instances, created once and bound to the app in `create_app`."""

from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_mail import Mail
from flask_migrate import Migrate

from app.openapi import ProblemApi, ProblemResponses

migrate = Migrate()
jwt = JWTManager()
mail = Mail()
# Every error response in /openapi.json is the problem body the server sends.
api = ProblemApi(spec_kwargs={"extra_plugins": [ProblemResponses()]})
limiter = Limiter(key_func=get_remote_address)
