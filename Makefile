# Encore — `make run` starts the product on embedded defaults; `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
DEMO_CUSTOMERS ?= 20000
DEMO_SEED ?= 7
export DEBUG ?= true

.PHONY: setup run migrate demo admin lint test test-fast browser check-deploy audit bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed ($(PYTHON) not found); set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

migrate: setup
	$(PY) manage.py migrate --noinput

demo: migrate
	@if [ "$$($(PY) manage.py shell -c 'from audiences.models import Customer; print(Customer.objects.exists())' 2>/dev/null | tail -1)" = "True" ]; then \
	  echo "Demo data already loaded."; \
	else \
	  $(PY) manage.py seed_demo --customers $(DEMO_CUSTOMERS) --seed $(DEMO_SEED); \
	fi
	@# Idempotent: adds the demo campaigns when they are missing, also to listeners seeded before.
	$(PY) manage.py seed_campaigns
	$(PY) manage.py seed_music

admin: migrate
	@mkdir -p var
	@$(PY) manage.py ensure_admin --reset | tee var/admin-login.txt

run: demo admin
	bin/run

browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "Browser tests need Debian's chromium: sudo apt-get install chromium chromium-driver"; exit 1; fi; }

# Tests get their own var/ (SQLite test database, filesystem broker), apart from a running `make run`.
TEST_VAR = ENCORE_VAR_DIR=$${ENCORE_VAR_DIR:-$$(mktemp -d /tmp/encore-test-XXXXXX)}

lint: setup
	$(VENV)/bin/ruff check .

test: setup browser lint
	$(PY) manage.py makemigrations --check --dry-run >/dev/null
	$(TEST_VAR) $(PY) -m pytest

test-fast: setup
	$(TEST_VAR) $(PY) -m pytest -m "not e2e and not worker"

check-deploy: setup
	DEBUG=false SECRET_KEY=$$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=')-deploy-check-key ALLOWED_HOSTS=encore.example.com \
	  $(PY) manage.py check --deploy --fail-level WARNING

# Known vulnerabilities in the pinned dependencies (PyPI's advisory data, via pip-audit). The report
# goes to test-artifacts/; a dependency with a known vulnerability fails the target.
audit: setup
	@mkdir -p test-artifacts
	$(PY) bin/audit-deps test-artifacts/pip-audit.txt

bench: setup
	$(PY) bench/imports.py

clean:
	rm -rf var staticfiles
