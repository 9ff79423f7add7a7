# Image of the accounts service. One image serves every process of docker-compose.yml:
# web (the default command), migrator, RQ worker, scheduler and dashboard.
# A patch release on a named Debian: a rebuild gets the same interpreter and system, and an
# upgrade is a visible one-line change (3.11-slim moved from bookworm to trixie on its own).
FROM python:3.11.15-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONPATH=/app \
    GUNICORN_BIND=0.0.0.0:8000

WORKDIR /app

# Runs unprivileged; a home directory gives gunicorn a place for its control socket.
RUN useradd --create-home --uid 10001 --user-group app

# Dependencies first: this layer is rebuilt only when the lock changes, not on every code edit.
# The runtime lock holds pyproject's main dependencies at the versions of requirements.lock (the
# tests ran on them) and no test or lint tool: pytest, ruff, mypy, moto and schemathesis are
# attack surface and size a server never uses. The lock is complete, so --no-deps installs
# exactly it, and pip check fails the build if a regenerated lock ever misses a dependency.
COPY requirements-runtime.lock ./
RUN pip install --no-deps -r requirements-runtime.lock && pip check

# The source stays owned by root, so the running process cannot rewrite its own code.
# Run from /app (PYTHONPATH above): `wsgi` imports, Flask-Migrate finds ./migrations, gunicorn
# reads ./gunicorn.conf.py, and the app's instance folder resolves to /app/instance.
COPY app/ app/
COPY migrations/ migrations/
COPY wsgi.py gunicorn.conf.py pyproject.toml ./
# PYTHONDONTWRITEBYTECODE above means no process ever caches its compiled code (pip already
# compiled the libraries at install); compiled once here, every start of every process
# skips compiling the app.
RUN python -m compileall -q app migrations wsgi.py gunicorn.conf.py

# The only writable place: SQLite file, mail outbox and uploads of the embedded default.
RUN mkdir -p /app/instance && chown app:app /app/instance

# Numeric, so an orchestrator can verify "not root" without reading /etc/passwd.
USER 10001:10001

EXPOSE 8000

# slim has no curl; urlopen raises on a refused connection or a non-2xx status, so exit code 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

CMD ["gunicorn", "wsgi:app"]
