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

test: setup
	$(PY) -m ruff check jobs sandbox tests bench
	$(PY) -m mypy --strict jobs
	$(PY) -m pytest $(ARGS)

bench: setup
	$(PY) -m bench $(ARGS)

live: setup
	$(PY) -m bench live $(ARGS)

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules out .pytest_cache
