"""The HTTP side every package shares: how requests and bodies are read, errors as problem
responses, the OpenAPI document and its docs page, rate-limit decorators, health, the
access log. It imports no domain package; importing it loads nothing (gunicorn's master
imports app.web.access_log alone)."""
