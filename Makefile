# Everything a user needs, from a machine with only Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint install migrate clean bench demo bench-crm bench-suppression check-samples screenshots bench-admin

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python config/first_run.py
	$(BIN)/python manage.py migrate --noinput

## run: the web server (Caddy on :8000 or WEB_PORT, granian behind it), the Celery workers and Celery beat, kept running
## by supervisord (config/supervisord/) with .env's settings (the environment wins); Ctrl-C stops them all cleanly
run: migrate
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py bootstrap_admin
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python config/supervise.py -c config/supervisord/run.conf

## demo: the app plus the provider simulator, and a demo campaign sent through it (receipts, polls, review items)
demo: migrate
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py bootstrap_admin
	PATH="$(CURDIR)/$(BIN):$$PATH" \
	SIM=http://127.0.0.1:$${SIMULATOR_PORT:-8100}; \
	GENESYS_CLOUD_BASE_URL=$$SIM GENESYS_CLOUD_LOGIN_URL=$$SIM \
	GENESYS_CLOUD_CLIENT_ID=demo GENESYS_CLOUD_CLIENT_SECRET=demo GENESYS_CLOUD_FROM_ADDRESS=+15559876543 \
	GENESYS_CLOUD_EMAIL_FROM=demo@example.com \
	GENESYS_SMS_MT_URL=$$SIM/httpapi/receiver GENESYS_SMS_LOGIN=demo GENESYS_SMS_PASSWORD=demo \
	GENESYS_SMS_SENDER=+15559876543 WEBEX_CONNECT_URL=$$SIM WEBEX_CONNECT_SERVICE_KEY=demo \
	WEBEX_CONNECT_SENDER_ID=DEMO WEBEX_CONNECT_EMAIL_FROM=demo@example.com \
	RECEIPT_TIMEOUT_HOURS=0.01 RECEIPT_TIMEOUT_CHECK_INTERVAL=10 BULK_RECONCILE_INTERVAL=30 \
	$(BIN)/python config/supervise.py -c config/supervisord/demo.conf

## test: the whole suite (embedded mode unless DATABASE_URL / CELERY_BROKER_URL say otherwise)
test: install
	$(BIN)/python -m pytest

## bench-admin: every admin page, API endpoint and background job timed at 10 M messages (PostgreSQL; the data set is
## built once by bench/dataset.py, about 15 min and 23 GB)
bench-admin: install
	$(BIN)/python bench/admin_scale.py

## screenshots: the admin's main pages as docs/screenshots/*.png, taken by the browser tests (needs chromium)
screenshots: install
	SAVE_SCREENSHOTS=1 REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q tests/browser

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	SECRET_KEY=lint $(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	SECRET_KEY=lint $(BIN)/python manage.py makemigrations --check --dry-run

bench: install
	$(BIN)/python bench/webhook_ingest.py

## bench-crm: status changes through the CRM outbox relay to the fake CRM (bench/README.md)
bench-crm: install
	$(BIN)/python bench/crm_relay.py

## bench-suppression: the check endpoint, 10,000 addresses against 1,000,000 suppressions (bench/README.md)
bench-suppression: install
	$(BIN)/python bench/suppression_check.py

## check-samples: the vendored provider samples (tests/samples) against the originals (SAMPLES_FROM, default ../shared/samples)
SAMPLES_FROM ?= ../shared/samples
check-samples:
	diff -r tests/samples $(SAMPLES_FROM) && echo "tests/samples matches $(SAMPLES_FROM)"

clean:
	rm -rf $(VENV) var .test-var .pytest_cache .hypothesis
