# Instructor-only targets, included by the Makefile with -include: they vanish from the student
# release, which has no grader/ folder.
#   make release REPO_URL=URL [FID_STATS_URL=URL [FID_STATS_DIR=DIR]] [WITHOUT=06]
#                                 : the student kit in release/ (solutions stubbed, hidden tests removed, the
#                                   repository students clone written into the notebooks; REPO_URL=none: local only;
#                                   FID_STATS_URL: where students download MNIST's FID statistics, whose sha256
#                                   the release takes from DIR, default runs/fid_cache;
#                                   the written questions frozen in grader/questions.json, which grading reads)
#   make grade SUBMISSIONS=DIR [JOBS=N] : grade DIR/*.zip into $(OUT) (grades.csv, feedback/<student>.md,
#                                   summary.md/png), N at once (default: the number of cores; 1 in nobody mode)
#   make regrade SUBMISSIONS=DIR : grade DIR/*.zip again, replacing only those students' rows in $(OUT)
#   make merge                    : $(OUT)/written/sheet.csv (filled in) + grades.csv -> $(OUT)/final/
#                                   grades.csv (every part) and lms.csv (student id, total, code, written);
#                                   the written points and comments into $(OUT)/feedback/<student>.md
#   make gradescope [WRITTEN=F]   : autograder.zip for Gradescope (WRITTEN=$(OUT)/final/gradescope_written.json,
#                                   from make merge: it posts the written points and comments too)
#   make check-data               : rebuild hw3_utils/check_data.pt from the solution
#   make quality [QUALITY_JSON=F] [QUALITY_GRIDS=DIR]
#                                 : train the cpu profile from scratch, sample, FID beside the floor; fails if
#                                   it stopped learning (tests/quality/, which the release has not; QUALITY_JSON:
#                                   its record, QUALITY_GRIDS: a folder for its figures)
#   WITHOUT=06 (release, grade, regrade, gradescope): leave out the optional extension, notebook 06, with its
#                                   tasks (points beyond the 100 of tasks 1-5b) and its student file; the kit,
#                                   grades.csv and Gradescope then hold tasks 1-5b only. Grade with the same
#                                   WITHOUT as the release the students got (default: empty, 06 included)
OUT ?= grades
WITHOUT ?=
TASK_TIMEOUT ?= 60
JOBS ?= 0

.PHONY: release grade regrade merge gradescope check-data quality

release: $(VENV)/.installed
	$(PY) -m grader release --out release --repo-url "$(REPO_URL)" --fid-stats-url "$(FID_STATS_URL)" \
	  --without "$(WITHOUT)" \
	  $(if $(FID_STATS_DIR),--fid-stats-dir "$(FID_STATS_DIR)",)

grade: $(VENV)/.installed-dev
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=DIR [OUT=grades] [JOBS=N]"; exit 2; }
	$(PY) -m grader grade "$(SUBMISSIONS)" --out "$(OUT)" --task-timeout $(TASK_TIMEOUT) --jobs $(JOBS) \
	  --without "$(WITHOUT)"

regrade: $(VENV)/.installed-dev
	@test -n "$(SUBMISSIONS)" || { echo "usage: make regrade SUBMISSIONS=DIR [OUT=grades]"; exit 2; }
	$(PY) -m grader grade "$(SUBMISSIONS)" --out "$(OUT)" --task-timeout $(TASK_TIMEOUT) --jobs $(JOBS) --update \
	  --without "$(WITHOUT)"

merge: $(VENV)/.installed
	$(PY) -m grader merge "$(OUT)"

gradescope: $(VENV)/.installed
	$(PY) -m grader gradescope-bundle autograder.zip $(if $(WRITTEN),--written "$(WRITTEN)",) --without "$(WITHOUT)"

check-data: $(VENV)/.installed
	$(PY) -m grader build-check-data

QUALITY_JSON ?= runs/quality.json
QUALITY_GRIDS ?=
quality: $(VENV)/.installed-dev
	HW3_QUALITY_JSON=$(QUALITY_JSON) HW3_QUALITY_GRIDS=$(QUALITY_GRIDS) $(PY) -m pytest tests/quality -m quality -s -q

# the browser test runs in the instructor's `make test` only
test: browser
