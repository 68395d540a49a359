"""nbgrader settings for this kit: copy this file into your nbgrader course directory (docs/instructors.md,
"nbgrader and formgrader"). tests/test_nbgrader.py runs nbgrader with it."""

c = get_config()  # noqa: F821 (nbgrader's config loader defines get_config)

# The notebooks hold no autograded code cells: the code tasks are graded by `make grade`, sandboxed, against
# the solution's outputs. Executing them under nbgrader would retrain the model for every student (notebook
# 04 runs for minutes, past nbgrader's 30 s cell timeout) with the student's code unsandboxed, and grade nothing.
c.Execute.enabled = False
