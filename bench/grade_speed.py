"""Seconds per submission of `make grade`, one at a time and in parallel, in one or more sandbox modes.

    python -m bench grade_speed [--count 300] [--jobs 1 2] [--modes root nobody] [--json PATH]

The submissions cycle through the solution, the stubs and every known mistake (tests check the grades;
this only times them), each with the release's notebooks (one figure output each), a fid.json and a
manifest, as `make submit` packs them, so the grader's readers of handed-in files are timed too. The
reference is built once, outside the timings, as `make grade` does once per batch. `--modes` grades the same
batch in each mode named (default: the one this machine gives; "nobody" needs root, and the Python
installation readable by other users). It also times the fixed costs of one sandboxed run (in the first
mode), and, for comparison, what a new Python process importing torch costs (what every run would pay without
the fork server). It prints a table; it asserts nothing. Its record's rows: "fixed cost (<mode>): <what>"
(seconds), then "batch, <mode>, <jobs> jobs" (seconds, per submission, 300 projected); config keeps the sizes and
the distinct grade totals of each batch.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

from bench import _common as C
from bench.record import write_record
from grader import sandbox
from grader.batch import default_jobs, grade_batch_detailed
from grader.patches import patched_source
from grader.reference import build_reference, save_reference
from grader.release import make_release
from hw3_utils import get_config
from hw3_utils.runfolder import fid_record, submitted_fid_name
from hw3_utils.tasks import TASK_FILES, mistakes

REPO = C.REPO

TARGET = (300, 180.0)  # 300 submissions in 3 minutes on 2 cores


def handed_in(release: Path) -> dict[str, str]:
    """What `make submit` packs beside the task files: the release's notebooks, each with one figure output
    (50 kB of PNG as base64), a fid.json of the cpu profile, and a manifest of their checksums."""
    figure = {"output_type": "display_data", "metadata": {},
              "data": {"image/png": base64.b64encode(os.urandom(50_000)).decode(), "text/plain": ["<Figure>"]}}
    out = {}
    for path in sorted((release / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        if code:
            code[0].update(outputs=[figure], execution_count=1)
        out[f"notebooks/{path.name}"] = json.dumps(nb)
    table = {"fid_vs_mnist_train": 17.4, "fid_vs_mnist_test": 17.3, "fid_floor_test_vs_train": 8.9}
    out[submitted_fid_name("cpu")] = json.dumps(fid_record(get_config("cpu", verbose=False), table, "cpu"))
    sums = {n: hashlib.sha256(v.encode()).hexdigest() for n, v in out.items()}
    out["manifest.json"] = json.dumps({"kit_version": "bench", "files": sums})
    return out


def generate(subs: Path, release: Path, count: int) -> None:
    solution = {rel: (REPO / rel).read_text() for rel in TASK_FILES}
    kinds = [("solution", solution), ("stub", {rel: (release / rel).read_text() for rel in TASK_FILES})]
    kinds += [(m.name, {**solution, m.file: patched_source(m)}) for _, m in mistakes()]
    extra = handed_in(release)
    for i in range(count):
        name, members = kinds[i % len(kinds)]
        with zipfile.ZipFile(subs / f"s{i:03d}_{name}.zip", "w", zipfile.ZIP_DEFLATED) as z:
            for rel, text in {**members, **extra}.items():
                z.writestr(rel, text)


def use_mode(mode: str) -> None:
    """Grade in `mode` from now on (the grader reads HW3_GRADER_SANDBOX once, then keeps its answer)."""
    os.environ["HW3_GRADER_SANDBOX"] = mode
    sandbox.detect_mode.cache_clear()


def fixed_costs(root: Path, repeats: int = 3) -> dict[str, float]:
    """Median seconds of one sandboxed run forked by the fork server (an empty run; importing the kit), and of
    a new, unsandboxed Python process importing torch and the kit (what the fork server saves)."""
    import subprocess

    work = root / "fixed"
    kit = work / "kit"
    kit.mkdir(parents=True)
    make_release(root / "fixed-release", quiet=True, repo_url="none")
    os.rename(root / "fixed-release" / "hw3_utils", kit / "hw3_utils")
    sandbox.prepare_workdir(work)
    env = {**sandbox.BASE_ENV, "HOME": str(sandbox.home_path(work)), "PYTHONPATH": str(sandbox.kit_path(work)),
           "MPLCONFIGDIR": str(sandbox.home_path(work) / "mpl"), "PYTHONDONTWRITEBYTECODE": "1"}
    py = sandbox.python()
    forked = {"fork server: sandbox built, nothing run": [py, "-c", "pass"],
              "fork server: sandbox, import hw3_utils.checks": [py, "-c", "import hw3_utils.checks"]}
    fresh = {"new process (no sandbox): python, import torch": [py, "-c", "import torch"],
             "new process (no sandbox): import hw3_utils.checks": [py, "-c", "import hw3_utils.checks"]}
    zygote = sandbox.Zygote()
    out = {}

    def median(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]

    def one_forked(argv):
        run = sandbox.Run(argv, work, env, 300, zygote)
        run.wait(300)
        run.close()
        os.close(run.results)

    try:
        for name, argv in forked.items():
            out[name] = median(lambda argv=argv: one_forked(argv))
    finally:
        zygote.close()
    for name, argv in fresh.items():
        out[name] = median(lambda argv=argv: subprocess.run(argv, env={**env, "PYTHONPATH": str(kit)}, check=True,
                                                            capture_output=True))
    return out


def measure(root: Path, args) -> dict:
    """Fixed costs and batch times of grading args.count generated submissions, everything under `root`."""
    release = make_release(root / "release", quiet=True, repo_url="none")
    subs = root / "subs"
    subs.mkdir()
    generate(subs, release, args.count)
    ref = root / "reference" / "reference.pt"
    ref.parent.mkdir()
    save_reference(build_reference(), ref)
    modes = args.modes or [sandbox.detect_mode()]
    use_mode(modes[0])
    res = {"mode": modes[0], "modes": modes, "cores": default_jobs(), "count": args.count,
           "fixed_costs_s": fixed_costs(root, args.repeats), "batches": []}
    for mode in modes:
        use_mode(mode)
        for jobs in args.jobs:
            t0 = time.perf_counter()
            graded = grade_batch_detailed(subs, root / f"out-{mode}-{jobs}", task_timeout=60.0, release_dir=release,
                                          reference=ref, jobs=jobs)
            wall = time.perf_counter() - t0
            res["batches"].append({"mode": mode, "jobs": jobs, "seconds": wall, "per_submission": wall / len(graded),
                                   "projected_300_min": 300 * wall / len(graded) / 60,
                                   "totals": sorted({g.total for g in graded})})
    return res


def main(argv=None) -> int:
    argv = C.argv_of(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=300)
    p.add_argument("--jobs", type=int, nargs="+", default=[1, default_jobs()])
    p.add_argument("--modes", nargs="+", choices=sandbox.MODES, default=None,
                   help="sandbox modes to grade the batch in, one after the other (default: this machine's)")
    C.add_json_arg(p)
    p.add_argument("--repeats", type=int, default=3, help="runs per fixed cost (the median is shown)")
    args = p.parse_args(argv)
    # the release, the generated submissions and the graded outputs (a few MB) go when the bench ends
    with tempfile.TemporaryDirectory(prefix="hw3-grade-speed-", ignore_cleanup_errors=True) as tmp:
        res = measure(Path(tmp), args)
    n, limit = TARGET
    print(f"grading speed, {res['count']} generated submissions, sandbox {', '.join(res['modes'])}, "
          f"{res['cores']} cores")
    print(f"| fixed cost inside one run ({res['mode']}) | seconds |\n|---|---|")
    for k, v in res["fixed_costs_s"].items():
        print(f"| {k} | {v:.2f} |")
    print("\n| mode | jobs | batch s | s / submission | 300 submissions |\n|---|---|---|---|---|")
    for b in res["batches"]:
        print(f"| {b['mode']} | {b['jobs']} | {b['seconds']:.0f} | {b['per_submission']:.2f} | "
              f"{b['projected_300_min']:.1f} min (target {limit / 60:.0f} min for {n}) |")
    print(f"device: {C.device_name('cpu')}, {res['cores']} cores")
    if args.json:
        rows = [{"name": f"fixed cost ({res['mode']}): {k}", "seconds": v} for k, v in res["fixed_costs_s"].items()]
        batches = [({"name": f"batch, {b['mode']}, {b['jobs']} jobs", **b}, b["totals"]) for b in res["batches"]]
        rows += [{k: v for k, v in row.items() if k not in ("mode", "totals")} for row, _ in batches]
        config = {"count": res["count"], "modes": res["modes"], "jobs": args.jobs, "repeats": args.repeats,
                  "cores": res["cores"], "totals": {row["name"]: totals for row, totals in batches}}
        write_record("grade_speed", rows, config, argv, path=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
