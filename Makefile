# Two commands do the whole set-up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi

.PHONY: run test lint install lock worker scheduler dashboard bench clean test-tools

# The virtual environment, rebuilt when the lock file or this recipe changes.
# Then every installed module is compiled: uv (unlike pip) writes no .pyc at install, and
# where PYTHONDONTWRITEBYTECODE is set (CI images, the Dockerfile) Python never caches one
# either, so every `flask` command compiled SQLAlchemy and friends from source again: 2.3 s
# to import the app instead of 1.1 s. compileall also covers a venv installed before, which
# uv's --compile-bytecode would not; a few packages ship test data that is not Python 3,
# which it reports and skips (hence the || true). A venv without pip (python3-venv was
# missing) is made again rather than left half-built.
$(VENV)/.installed: requirements.lock pyproject.toml Makefile
	test -x $(BIN)/pip || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/python -m compileall -q -j 0 $$($(BIN)/python -c "import sysconfig; print(sysconfig.get_path('purelib'))") >/dev/null || true
	touch $@

install: $(VENV)/.installed

# Regenerates both locks after a change to pyproject.toml. uv keeps the pins a lock already
# has unless pyproject.toml rules them out; the runtime lock (the image's: main dependencies
# only, no test or lint tools) is constrained to the dev lock, so the image runs the versions
# the tests ran. `make install` still installs the dev lock.
lock: install
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev -o requirements.lock --python-version 3.11
	$(BIN)/uv pip compile --quiet pyproject.toml --constraint requirements.lock -o requirements-runtime.lock --python-version 3.11

# Serves the API on 127.0.0.1:8000 (GUNICORN_BIND=0.0.0.0:8000 opens it to the network) with
# the embedded default: SQLite in instance/ (migrated, seeded, with a key that signs access
# tokens), secret keys made once into
# instance/dev-secrets.json, jobs in-process, emails printed and kept in instance/outbox/.
# A PostgreSQL database that DATABASE_URL names and that does not exist yet is created first
# (in development only). gunicorn takes every setting from gunicorn.conf.py, as everywhere
# else: without REDIS_URL one process with threads, so the in-memory rate limits and the
# SQLite file are shared by every request; WEB_CONCURRENCY and GUNICORN_THREADS, from the
# environment or .env, decide when set.
run: install
	$(BIN)/python -m app.core.createdb
	$(BIN)/flask db upgrade
	$(BIN)/flask seed-groups
	$(BIN)/flask keys ensure
	$(BIN)/gunicorn wsgi:app

# The whole suite, on SQLite and on PostgreSQL, with Redis, an SMTP server, S3 and chromium,
# on every core: pytest-xdist starts a worker per CPU and one more (-n auto, see
# tests/support/parallel.py), each with databases, a redis-server, ports and a temporary
# folder of its own. The slowest tests are listed at the end. A later -n wins:
# PYTEST_ARGS="-n0 tests/…" runs in this process alone (for one test, or pdb).
test: install test-tools
	$(BIN)/pytest -n auto --dist worksteal --durations=20 $(PYTEST_ARGS)

# The programs the tests drive, from Debian's packages: chromium for the page tests (Playwright
# never downloads a browser), redis-server for the run's private Redis and the fault tests,
# docker-compose to validate docker-compose.yml. As root each is installed when missing;
# otherwise the tests that need one say they were skipped, and why (a failure in CI, where
# TEST_REQUIRE_SERVICES=1).
TEST_TOOLS := chromium redis-server docker-compose  # each Debian package installs its command
test-tools:
	@missing=""; for tool in $(TEST_TOOLS); do \
		command -v $$tool >/dev/null || missing="$$missing $$tool"; \
	done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The background processes, for a local stack with REDIS_URL set.
worker: install
	$(BIN)/flask rq worker

scheduler: install
	$(BIN)/flask rq scheduler

# The RQ dashboard on http://127.0.0.1:9181 (no authentication, so never on 0.0.0.0 here), of
# the Redis the worker uses: REDIS_URL read as every process reads it, .env included.
DASHBOARD_PORT ?= 9181
dashboard: install
	$(BIN)/flask rq dashboard --port $(DASHBOARD_PORT)

# Throughput and latency figures against PostgreSQL, Redis, gunicorn, an RQ worker and an SMTP
# server; needs wrk. It uses a database and a Redis database of its own and cleans up after
# itself; see bench/README.md and bench/RESULTS.md. Options: BENCH_ARGS="--duration 6".
# The load benchmark, the worst cases of a password check and of a hostile upload, the email
# worker's figures (bench/courier.py: throughput, registration to SMTP, an SMTP outage's
# backlog), then the scale section (a million users, three million login rows: the admin
# list and the scheduled clean-up; SCALE_ARGS="--users 50000 --tokens 150000" runs it
# small); each prints its figures, and a missed target fails the target only after all of
# them have run.
bench: install
	rc=0; \
	$(BIN)/python bench/run.py $(BENCH_ARGS) || rc=1; \
	$(BIN)/python bench/strength.py || rc=1; \
	$(BIN)/python bench/upload_rss.py || rc=1; \
	$(BIN)/python bench/courier.py || rc=1; \
	$(BIN)/python bench/scale.py $(SCALE_ARGS) || rc=1; \
	exit $$rc

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
