"""Instructor-only tools for the assignment (never shipped to students).

release   : strip the solution regions into a student kit (`make release`)
patches   : applies the tasks' known mistakes and correct variants (source patches) for the tests
reference : expected outputs of the solution (check_data.pt, the grader's reference)
sandbox   : how a submission's code is run (namespaces, a capped private /tmp, rlimits, another user)
zygote    : the fork server: Python and torch started once per batch, one forked sandbox per run
grade     : safe extraction, per-task runs with time limits, grades.csv and feedback
gradescope: the autograder.zip bundle and its run_autograder entry
"""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
