# make run   : create .venv if missing, install, run the whole pipeline (python -m hw3_utils all)
# make test  : create .venv if missing, install with dev extras, run every test (lint, unit, notebooks, browser)
# make unit-fast: the unit tests less those marked slow (a few minutes), for the loop while editing; make test
#              before a commit
# make lab   : install, then open JupyterLab at the kit's root with notebook 01 open (the task files
#              under hw3_utils/ open in its editor); LAB_ARGS adds options, e.g. LAB_ARGS=--no-browser
# make report: report.html from the notebooks as saved and the run folder (written answers, figures, FID)
# make submit: pack submission_$(STUDENT).zip (task files, notebooks, report, fid.json, manifest); STUDENT: $USER
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PROFILE ?=

.PHONY: run lab test unit unit-fast notebooks browser lint clean submit report

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

LAB_ARGS ?=
lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" $(LAB_ARGS) notebooks/01_data_prep.ipynb

unit: $(VENV)/.installed-dev
	$(PY) -m pytest tests -m "not browser and not quality"

# markers (pyproject.toml): slow tests take seconds each (subprocesses, releases, grading, training, Inception)
unit-fast: $(VENV)/.installed-dev
	$(PY) -m pytest tests -m "not browser and not quality and not slow"

# JupyterLab in headless Chromium (Debian's chromium; see .ci/run)
browser: $(VENV)/.installed-dev
	$(PY) -m pytest tests -m browser

# every cell of every notebook on both code paths, at test sizes (HW3_PROFILE=P picks one)
NB_PROFILES ?= $(or $(HW3_PROFILE),cpu-smoke full-smoke)
notebooks: $(VENV)/.installed-dev
	@set -e; for p in $(NB_PROFILES); do echo "== notebooks, profile $$p"; \
	  HW3_PROFILE=$$p $(PY) -m pytest --nbval-lax -p no:randomly notebooks/; done

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check hw3_utils tests $(wildcard bench grader)

# the browser stage is instructor-only: grader/grader.mk adds it (test: browser)
test: lint unit notebooks

submit: $(VENV)/.installed
	$(PY) -m hw3_utils.submit $(if $(STUDENT),--student $(STUDENT),)

report: $(VENV)/.installed
	$(PY) -m hw3_utils.report

-include grader/grader.mk

clean:
	rm -rf $(VENV) runs .pytest_cache
