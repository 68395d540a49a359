# make run   : create .venv if missing, install, run the whole pipeline (python -m hw3_utils all)
# make test  : create .venv if missing, install with dev extras, run every test (unit + notebooks)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PROFILE ?=

.PHONY: run test unit notebooks lint clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch torchvision
	$(PIP) install -q -c constraints.txt -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	touch $@

run: $(VENV)/.installed
	$(PY) -m hw3_utils all $(if $(PROFILE),--profile $(PROFILE),)

unit: $(VENV)/.installed-dev
	$(PY) -m pytest tests

notebooks: $(VENV)/.installed-dev
	HW3_PROFILE=$${HW3_PROFILE:-smoke} $(PY) -m pytest --nbval-lax -p no:randomly notebooks/

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check hw3_utils tests bench

test: lint unit notebooks

clean:
	rm -rf $(VENV) runs .pytest_cache
