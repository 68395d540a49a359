"""python -m grader release|build-check-data|grade|gradescope-bundle (instructor only)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import REPO


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m grader")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("release", help="write the student kit (solutions stubbed)")
    r.add_argument("--out", default=str(REPO / "release"))
    sub.add_parser("build-check-data", help="rebuild hw3_utils/check_data.pt from the solution")
    g = sub.add_parser("grade", help="grade a folder of submission zips")
    g.add_argument("submissions")
    g.add_argument("--out", default=str(REPO / "grades"))
    g.add_argument("--task-timeout", type=float, default=60.0)
    g.add_argument("--release", help="a prebuilt student kit (default: strip this repo into a temp dir)")
    g.add_argument("--reference", help="a prebuilt reference file (default: compute from the solution)")
    b = sub.add_parser("gradescope-bundle", help="build autograder.zip for Gradescope")
    b.add_argument("out", nargs="?", default=str(REPO / "autograder.zip"))
    sub.add_parser("check-mutants", help="check that every mutant applies exactly once")
    args = p.parse_args(argv)

    if args.cmd == "release":
        from .release import make_release

        make_release(args.out)
    elif args.cmd == "build-check-data":
        from .reference import write_check_data

        path = write_check_data()
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    elif args.cmd == "grade":
        from .grade import grade_batch

        rows = grade_batch(Path(args.submissions), Path(args.out), task_timeout=args.task_timeout,
                           release_dir=args.release, reference=args.reference)
        print(f"graded {len(rows)} submission(s) -> {Path(args.out) / 'grades.csv'}")
    elif args.cmd == "gradescope-bundle":
        from .gradescope import build_bundle

        print(f"wrote {build_bundle(Path(args.out))}")
    elif args.cmd == "check-mutants":
        from .mutants import MUTANTS, check_mutants

        problems = check_mutants()
        print("\n".join(problems) or f"all {len(MUTANTS)} mutants apply exactly once")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
