"""The student's default path at its real size: notebooks 01 to 05 in order, each in a fresh kernel, with no
profile set (so `cpu` on a machine without CUDA), timed one by one; then the FID that notebook 05 wrote.

    python bench/student_walk.py --kit /tmp/fresh-clone --runs /tmp/walk_runs [--json out.json]

--kit is the kit whose notebooks and hw3_utils run (a fresh clone, or a release with solved task files);
its notebooks are executed in place and saved with their outputs. --runs is the runs folder (created);
put MNIST's FID statistics in <runs>/fid_cache/ first, as a student who downloaded them has them, or the
kit stops at notebook 05 with the line that says so. MNIST comes from $HW3_DATA_DIR as usual.
Prints one table: notebook, seconds, and the FIDs beside the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _common as C

from hw3_utils.runfolder import fid_json_paths

NOTEBOOKS = ["01_data_prep", "02_unet", "03_forward_diffusion", "04_training", "05_sampling_and_fid"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kit", type=Path, required=True)
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    kit, runs = args.kit.resolve(), args.runs.resolve()
    runs.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "HW3_PROFILE" and k != "MPLBACKEND"}
    env.update(HW3_RUNS_DIR=str(runs), PYTHONPATH=str(kit))
    rows = []
    for name in NOTEBOOKS:
        path = kit / "notebooks" / f"{name}.ipynb"
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                            "--inplace", "--ExecutePreprocessor.timeout=3600", str(path)],
                           cwd=path.parent, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        rows.append({"notebook": name, "seconds": round(seconds, 1), "ok": r.returncode == 0})
        print(f"{name:<24} {seconds:8.1f} s  {'ok' if r.returncode == 0 else 'RAISED'}", flush=True)
        if r.returncode:
            print(r.stderr[-3000:], file=sys.stderr)
            break
    fids = fid_json_paths(runs)
    record = json.loads(fids[0].read_text()) if fids else {}
    result = {"bench": "student_walk", **C.environment("cpu"), "rows": rows,
              "profile": record.get("profile"), "num_samples": record.get("num_samples"),
              **{k: record.get(k) for k in ("fid_vs_mnist_train", "fid_vs_mnist_test", "fid_floor_test_vs_train")}}
    print(f"profile {result['profile']}, {result['num_samples']} samples: FID {result['fid_vs_mnist_train']} vs train, "
          f"{result['fid_vs_mnist_test']} vs test, floor {result['fid_floor_test_vs_train']}")
    print(f"device: {result['device']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if all(r["ok"] for r in rows) and len(rows) == len(NOTEBOOKS) else 1


if __name__ == "__main__":
    sys.exit(main())
