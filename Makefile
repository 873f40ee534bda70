# The two commands of the README: `make demo` and `make test`. Each sets everything up itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NODE_DIR := sandbox/sanity

.PHONY: demo test bench live setup clean

setup: $(VENV)/.installed $(NODE_DIR)/node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	npm ci --silent --no-audit --no-fund --prefix $(NODE_DIR)
	touch $@

demo: setup
	$(PY) -m sandbox.demo $(ARGS)

CORE := jobs/core/model.py jobs/core/rules.py jobs/core/classify.py jobs/core/planner.py jobs/core/runreport.py \
	jobs/adapters/retry.py jobs/run/reconcile.py jobs/run/segments.py jobs/run/batches.py jobs/run/service.py \
	jobs/adapters/ledger.py jobs/adapters/stripe_source.py jobs/run/memory.py jobs/adapters/http_session.py jobs/adapters/metrics.py \
	jobs/run/progress.py jobs/commands/help.py jobs/reports/student_notice.py jobs/run/student_mail.py jobs/adapters/notice_ledger.py \
	jobs/core/recheck.py \
	jobs/run/refunds.py jobs/run/rhythm.py jobs/run/gather.py \
	jobs/adapters/ledger_db.py jobs/adapters/pg_dialect.py jobs/adapters/pg_lock.py jobs/run/state.py jobs/run/leader.py

test: setup
	$(PY) -m ruff check jobs sandbox tests bench
	$(PY) -m mypy --strict $(CORE)
	$(PY) -m pytest $(ARGS)

bench: setup
	$(PY) -m bench $(ARGS)

live: setup
	$(PY) -m bench live $(ARGS)

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules out .pytest_cache
