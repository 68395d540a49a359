# make run   : create .venv if missing, install, run the whole pipeline (python -m hw3_utils all)
# make test  : create .venv if missing, install with dev extras, run every test (lint, unit, notebooks, browser)
# make lab   : install, then open the notebooks in JupyterLab
# make submit: pack submission_$(STUDENT).zip (task files, notebooks, fid.json, manifest); STUDENT defaults to $USER
# make quality: train the cpu profile from scratch, sample, FID beside the floor; fails if it stopped learning
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PROFILE ?=

.PHONY: run lab test unit notebooks browser lint clean submit quality

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

lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks/

unit: $(VENV)/.installed-dev
	$(PY) -m pytest tests -m "not browser"

# JupyterLab in headless Chromium (Debian's chromium; see .ci/run)
browser: $(VENV)/.installed-dev
	$(PY) -m pytest tests -m browser

notebooks: $(VENV)/.installed-dev
	HW3_PROFILE=$${HW3_PROFILE:-smoke} $(PY) -m pytest --nbval-lax -p no:randomly notebooks/

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check hw3_utils tests $(wildcard bench grader)

# the browser stage is instructor-only: grader/grader.mk adds it (test: browser)
test: lint unit notebooks

QUALITY_JSON ?= runs/quality.json
quality: $(VENV)/.installed
	$(PY) bench/cpu_quality.py --json $(QUALITY_JSON)

submit: $(VENV)/.installed
	$(PY) -m hw3_utils.submit $(if $(STUDENT),--student $(STUDENT),)

-include grader/grader.mk

clean:
	rm -rf $(VENV) runs .pytest_cache
