"""The student's default path at its real size: notebooks 01 to 06 in order (06 where the kit has it), each in a
fresh kernel, with no profile set (so `cpu`, and `cpu-cond` for 06, on a machine without CUDA), timed one by one;
then the FID that notebook 05 wrote and the guidance sweep that notebook 06 wrote.

    python -m bench student_walk --kit /tmp/fresh-clone --runs /tmp/walk_runs [--json out.json]

--kit is the kit whose notebooks and hw3_utils run (a fresh clone, or a release with solved task files);
its notebooks are executed in place and saved with their outputs. --runs is the runs folder (created);
put MNIST's FID statistics in <runs>/fid_cache/ first, as a student who downloaded them has them, or the
kit stops at notebook 05 with the line that says so. MNIST comes from $HW3_DATA_DIR as usual.
Prints one table: notebook, seconds, and the FIDs beside the floor. Its record: one row per notebook
(seconds, ok), then "notebook 05's FID" (the FIDs, the floor, the sample count), then one row per guidance weight
of notebook 06's sweep ("06 w=2": requested-digit accuracy, classifier FID, Inception FID) with its training time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import _common as C
from bench.record import write_record
from hw3_utils.config import conditional_profile
from hw3_utils.runfolder import fid_json_paths, read_fid_json, sweep_json_path

NOTEBOOKS = ["01_data_prep", "02_unet", "03_forward_diffusion", "04_training", "05_sampling_and_fid", "06_guidance"]


def main(argv=None) -> int:
    argv = C.argv_of(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kit", type=Path, required=True)
    p.add_argument("--runs", type=Path, required=True)
    C.add_json_arg(p)
    args = p.parse_args(argv)
    kit, runs = args.kit.resolve(), args.runs.resolve()
    runs.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "HW3_PROFILE" and k != "MPLBACKEND"}
    env.update(HW3_RUNS_DIR=str(runs), PYTHONPATH=str(kit))
    rows = []
    notebooks = [n for n in NOTEBOOKS if (kit / "notebooks" / f"{n}.ipynb").exists()]  # 06 is optional
    for name in notebooks:
        path = kit / "notebooks" / f"{name}.ipynb"
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                            "--inplace", "--ExecutePreprocessor.timeout=3600", str(path)],
                           cwd=path.parent, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        rows.append({"name": name, "seconds": round(seconds, 1), "ok": r.returncode == 0})
        print(f"{name:<24} {seconds:8.1f} s  {'ok' if r.returncode == 0 else 'RAISED'}", flush=True)
        if r.returncode:
            print(r.stderr[-3000:], file=sys.stderr)
            break
    paths = fid_json_paths(runs)
    record = json.loads(paths[0].read_text()) if paths else {}
    fids = {k: record.get(k) for k in ("num_samples", "fid_vs_mnist_train", "fid_vs_mnist_test",
                                       "fid_floor_test_vs_train")}
    print(f"profile {record.get('profile')}, {fids['num_samples']} samples: FID {fids['fid_vs_mnist_train']} vs "
          f"train, {fids['fid_vs_mnist_test']} vs test, floor {fids['fid_floor_test_vs_train']}")
    print(f"device: {C.device_name('cpu')}")
    sweep = _sweep_rows(runs, record.get("profile"))
    if args.json:
        write_record("student_walk", [*rows, {"name": "notebook 05's FID", **fids}, *sweep],
                     {"kit": str(kit), "profile": record.get("profile")}, argv, path=args.json, repo=kit)
    return 0 if all(r["ok"] for r in rows) and len(rows) == len(notebooks) else 1


def _sweep_rows(runs: Path, profile: str | None) -> list[dict]:
    """Notebook 06's sweep (its run folder's guidance_sweep.json) as record rows, printed; [] without one."""
    path = sweep_json_path(runs / conditional_profile(profile, verbose=False)) if profile else None
    if path is None or not path.exists():
        return []
    sweep = read_fid_json(path)
    print(f"notebook 06 ({sweep['profile']}): trained in {sweep.get('train_seconds')} s; {sweep['num_samples']} "
          "samples per w")
    out = []
    for r in sweep["rows"]:
        print(f"  w={r['w']:g}: accuracy {r['digit_accuracy']:.4f}, classifier FID {r['classifier_fid']:.2f}, "
              f"FID {r.get('fid')}")
        out.append({"name": f"06 w={r['w']:g}", "w": r["w"], "digit_accuracy": r["digit_accuracy"],
                    "classifier_fid": r["classifier_fid"], "fid": r.get("fid"),
                    "train_seconds": sweep.get("train_seconds"), "num_samples": sweep["num_samples"]})
    return out


if __name__ == "__main__":
    raise SystemExit(main())
