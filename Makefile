# Two commands: `make demo` and `make test`. Each sets itself up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean sysdeps container-test

$(STAMP): pyproject.toml scripts/ensure_sysdeps.sh
	bash scripts/ensure_sysdeps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/alliance-psi demo

test: $(STAMP)
	bash scripts/ensure_chromium.sh
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff (lint and format) over everything, mypy --strict over the package.
lint: $(STAMP)
	$(VENV)/bin/ruff check alliance_psi tests bench scripts deploy
	$(VENV)/bin/ruff format --check alliance_psi tests bench scripts deploy
	$(VENV)/bin/mypy

# The image and docker-compose.yml run for real with podman: scripts/container_test.sh.
container-test: $(STAMP)
	bash scripts/container_test.sh

BENCH_VENV := .venv-bench

$(BENCH_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet 'openmined-psi==2.0.6'
	touch $@

bench: $(STAMP) $(BENCH_VENV)/.installed
	$(PY) bench/oprf_throughput.py --openmined-python $(BENCH_VENV)/bin/python $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) build *.egg-info .pytest_cache .hypothesis
