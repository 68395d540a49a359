"""python -m grader release|build-check-data|grade|merge|gradescope-bundle (instructor only)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import REPO


def main(argv=None) -> int:
    """Parse the command line and run its subcommand (COMMANDS); the exit status."""
    p = argparse.ArgumentParser(prog="python -m grader")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("release", help="write the student kit (solutions stubbed)")
    r.add_argument("--out", default=str(REPO / "release"))
    r.add_argument("--repo-url", default=None,
                   help="the git repository students clone (into the notebooks and Colab links); none: local only")
    r.add_argument("--fid-stats-url", default=None,
                   help="where students download mnist_train_all.npz and mnist_test_all.npz (a base URL)")
    r.add_argument("--fid-stats-dir", default=None,
                   help="your copies of those files, whose sha256 the release records (default: runs/fid_cache)")
    r.add_argument("--questions", default=None,
                   help="where the written questions are frozen for grading (default: grader/questions.json)")
    r.add_argument("--without", default="", help="optional extensions to leave out, e.g. 06 (notebook 06 and its "
                                                 "tasks): the kit and its grading as if they had never been")
    sub.add_parser("build-check-data", help="rebuild hw3_utils/check_data.pt from the solution")
    g = sub.add_parser("grade", help="grade a folder of submission zips")
    g.add_argument("submissions")
    g.add_argument("--out", default=str(REPO / "grades"))
    g.add_argument("--task-timeout", type=float, default=60.0)
    g.add_argument("--release", help="a prebuilt student kit (default: strip this repo into a temp dir)")
    g.add_argument("--reference", help="a prebuilt reference file (default: compute from the solution)")
    g.add_argument("--jobs", type=int, default=0,
                   help="submissions graded at once (default: the number of cores; 1 in the 'nobody' sandbox mode)")
    g.add_argument("--update", action="store_true",
                   help="regrade: replace these students' rows in OUT's grades.csv and grading sheet, keep the rest")
    g.add_argument("--without", default="", help="the extensions the release left out (as make release WITHOUT=)")
    m = sub.add_parser("merge", help="merge OUT/written/sheet.csv (filled in) with OUT/grades.csv into OUT/final/")
    m.add_argument("out", nargs="?", default=str(REPO / "grades"))
    b = sub.add_parser("gradescope-bundle", help="build autograder.zip for Gradescope")
    b.add_argument("out", nargs="?", default=str(REPO / "autograder.zip"))
    b.add_argument("--written", default=None,
                   help="OUT/final/gradescope_written.json (make merge): post the written points and comments too")
    b.add_argument("--without", default="", help="the extensions the release left out (as make release WITHOUT=)")
    sub.add_parser("check-patches", help="check that every known mistake and correct variant applies exactly once")
    sub.add_parser("tolerances", help="measure each task's tolerance against its variants and mistakes (README table)")
    args = p.parse_args(argv)
    return COMMANDS[args.cmd](args) or 0


def cmd_release(args) -> int | None:
    from .release import ReleaseError, make_release
    from .written import QUESTIONS_FILE

    try:
        make_release(args.out, repo_url=args.repo_url, fid_stats_url=args.fid_stats_url,
                     fid_stats_dir=args.fid_stats_dir, questions_out=Path(args.questions or QUESTIONS_FILE),
                     without=args.without, measured=True)
    except ReleaseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return None


def cmd_build_check_data(args) -> None:
    from .reference import write_check_data

    path = write_check_data()
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


def cmd_grade(args) -> int | None:
    from . import sandbox
    from .batch import grade_batch_detailed
    from .release import ReleaseError, check_without
    from .summary import headline, summarize
    from .written import release_without

    try:  # a WITHOUT that is no extension, or not the one the release was made with, is refused
        without = release_without(check_without(args.without), Path(args.out), args.release)
    except ReleaseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    mode = sandbox.detect_mode()
    print(sandbox.banner(mode), file=sys.stderr)
    try:
        graded = grade_batch_detailed(Path(args.submissions), Path(args.out), task_timeout=args.task_timeout,
                                      release_dir=args.release, reference=args.reference, jobs=args.jobs or None,
                                      progress=sys.stderr, update=args.update, without=without)
    except sandbox.StartError as err:  # the sandbox could not take the machine: nothing was graded or changed
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.update:
        print(f"regraded {', '.join(g.student for g in graded)}: their rows of grades.csv are replaced; in "
              "written/sheet.csv an unchanged answer keeps its points and a changed one is blanked and flagged "
              "(summary.md still describes the last full batch)")
    else:
        print("\n".join(headline(summarize(graded, graded[0].graded_tasks() if graded else {}))))
    print(f"-> {Path(args.out) / 'grades.csv'}; grade the written answers in {Path(args.out) / 'written'}, "
          "then `make merge`")
    return None


def cmd_merge(args) -> int | None:
    from .written import MergeError, merge

    try:
        final, lms = merge(Path(args.out))
    except (MergeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {final} (every part) and {lms} (student id, total, code, written: for the LMS); the written "
          f"points and comments are in each feedback/<student>.md and in final/gradescope_written.json")
    return None


def cmd_gradescope_bundle(args) -> None:
    from .gradescope import build_bundle

    print(f"wrote {build_bundle(Path(args.out), Path(args.written) if args.written else None, args.without)}")


def cmd_check_patches(args) -> int:
    from .patches import all_patches, check_patches

    problems = check_patches()
    print("\n".join(problems) or f"all {len(all_patches())} patches apply exactly once")
    return 1 if problems else 0


def cmd_tolerances(args) -> None:
    from .patches import all_patches, tolerance_markdown, tolerance_table

    rows = tolerance_table()
    print(tolerance_markdown(rows))
    n_var = sum(len(r["correct"]) - 1 for r in rows)
    n_mis = sum(len(r["mistakes"]) for r in rows)
    ok_var = sum(v <= 0.5 for r in rows for k, v in r["correct"].items() if k != "solution")
    ok_mis = sum(v >= 10 for r in rows for v in r["mistakes"].values())
    print(f"\n{ok_var} of {n_var} correct variants within half their tolerance; {ok_mis} of {n_mis} known "
          f"mistakes 10 times beyond it or of the wrong shape ({len(all_patches())} patches)")


# each subcommand's function: its exit status (None: 0)
COMMANDS = {"release": cmd_release, "build-check-data": cmd_build_check_data, "grade": cmd_grade,
            "merge": cmd_merge, "gradescope-bundle": cmd_gradescope_bundle, "check-patches": cmd_check_patches,
            "tolerances": cmd_tolerances}


if __name__ == "__main__":
    sys.exit(main())
