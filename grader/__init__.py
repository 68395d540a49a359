"""Instructor-only tools for the assignment (never shipped to students).

release   : strip the solution regions into a student kit (`make release`)
patches   : applies the tasks' known mistakes and correct variants (source patches) for the tests
reference : expected outputs of the solution (check_data.pt, the grader's reference)
sandbox   : how a submission's code runs: modes, the allowlist of its file system, cgroups, one run
zygote    : the fork server, the one launch path: torch imported once per batch, a sandbox forked per run
nobody    : the "nobody" mode's hold on the machine: a uid per run, the instructor's files hidden, leftovers swept
host      : the machine as the "nobody" mode meets it: the scan, free ids, what a uid leaves behind
extract   : a submission zip's allowlisted members, extracted safely; notes on notebooks, fid.json, manifest
            (read only through hw3_utils.student_files: bounded in size, depth and type)
runner    : one submission's run, task by task, with time limits; its outputs validated
render    : typed task results, `untrusted` (text from a submission made safe once), the feedback
batch     : the batch: grade_one, grades.csv, the feedback files, the summary
gradescope: the autograder.zip bundle and its run_autograder entry
"""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
