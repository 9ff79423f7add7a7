# Two commands do the whole set-up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi

.PHONY: run test lint install worker scheduler dashboard bench clean

# The virtual environment, rebuilt when the lock file changes.
$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	touch $@

install: $(VENV)/.installed

# Serves the API on 127.0.0.1:8000 (GUNICORN_BIND=0.0.0.0:8000 opens it to the network) with
# the embedded default: SQLite in instance/, signing keys made once into
# instance/dev-secrets.json, jobs in-process, emails printed and kept in instance/outbox/.
# One process with threads, so the in-memory rate limits and the SQLite file are shared by
# every request.
run: install
	$(BIN)/flask db upgrade
	$(BIN)/flask seed-groups
	$(BIN)/gunicorn wsgi:app --workers 1 --threads 4

# The whole suite, on SQLite and on PostgreSQL, with Redis, an SMTP server and S3.
test: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The background processes, for a local stack with REDIS_URL set.
worker: install
	$(BIN)/flask rq worker

scheduler: install
	$(BIN)/flask rq scheduler

# The RQ dashboard on http://127.0.0.1:9181 (no authentication, so never on 0.0.0.0 here).
DASHBOARD_PORT ?= 9181
dashboard: install
	$(BIN)/rq-dashboard --bind 127.0.0.1 --port $(DASHBOARD_PORT) --redis-url $${REDIS_URL:-redis://127.0.0.1:6379/0}

# Throughput and latency figures against PostgreSQL, Redis (db 10), gunicorn, an RQ worker and
# an SMTP server; needs wrk. It cleans up after itself; see bench/run.py and bench/RESULTS.md.
bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
