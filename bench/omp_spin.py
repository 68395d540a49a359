"""How OpenMP's idle threads wait, and what it costs: the cpu profile's step times under each wait setting.

PyTorch's CPU wheels use GNU OpenMP (libgomp). Between parallel regions a worker thread first spins
GOMP_SPINCOUNT times, then sleeps in the kernel (libgomp manual, "GOMP_SPINCOUNT"; unset, it spins
300,000 times, about 3 ms, and 0 times under OMP_WAIT_POLICY=PASSIVE). A small UNet's training step is
hundreds of short parallel regions, so sleeping threads pay a wake-up at each; but when another process
keeps a core busy (a browser, a second kernel), long spinning steals that core from the thread doing the
work. Each setting runs in a fresh child process (libgomp reads its environment once, when torch loads)
that imports hw3_utils first, as a notebook does, and times, for the `cpu` profile's UNet:
- one training step at the profile's batch (64): `TrainStep`, as train.py calls it;
- one model call at batch 16 (a preview grid's sampling step) and at the profile's sample batch (500).
Each figure is the median of --repeats chunks. Each setting runs `alone` and `busy` (beside one
pure-Python busy loop, standing in for whatever else the student's machine is doing).
The `kit` setting sets neither variable, so hw3_utils applies its own choice (`hw3_utils.OMP_SPIN_COUNT`)
as it does for a student; the child reports what libgomp was given. A benchmark: prints, asserts nothing.

    python bench/omp_spin.py                      # about 4 minutes on 2 cores
    python bench/omp_spin.py --settings passive kit --conditions alone --repeats 1 --steps 2   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import _common as C

import hw3_utils

# name -> the environment the child gets (every wait variable set explicitly, none inherited)
SETTINGS = {
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin3k": {"GOMP_SPINCOUNT": "3000"},
    "kit": {},  # neither variable set: what a student gets, hw3_utils sets GOMP_SPINCOUNT on import
    "spin30k": {"GOMP_SPINCOUNT": "30000"},
    "libgomp": {"GOMP_SPINCOUNT": "300000"},  # libgomp's own when neither variable is set
}
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def child(steps: int, repeats: int) -> dict:
    """The timings of this process's setting: {train_ms, preview_ms, sample_ms}, medians over chunks."""
    import torch  # after hw3_utils, as a notebook imports them

    from hw3_utils import DDPM, TrainStep, build_model, get_config
    from hw3_utils.train import make_optimizer

    cfg = get_config("cpu", verbose=False)
    model = build_model(cfg, "cpu")
    step = TrainStep(model, DDPM.from_config(cfg), make_optimizer(model, cfg))
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand((cfg.batch_size, *cfg.image_shape), generator=g) * 2 - 1

    def train():
        t = torch.randint(0, cfg.timesteps, (cfg.batch_size,), generator=g)
        step(x0, t, torch.randn(x0.shape, generator=g), None)

    def call(batch):
        x, t = torch.randn((batch, *cfg.image_shape), generator=g), torch.full((batch,), 500)

        def fn():
            with torch.no_grad():
                model(x, t)
        return fn

    def median_ms(fn, n):
        for _ in range(3):  # warm-up
            fn()
        return statistics.median(C.time_chunks(fn, n * repeats, repeats, torch.device("cpu")))

    return {"GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT"), "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "torch_loaded_first": hw3_utils._openmp.TORCH_LOADED_FIRST,
            "train_ms": median_ms(train, steps), "preview_ms": median_ms(call(16), 2 * steps),
            "sample_ms": median_ms(call(cfg.sample_batch_size), max(1, steps // 4))}


def measure(setting: str, busy: bool, args) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in WAIT_VARS}
    env.update(SETTINGS[setting])
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        out = subprocess.run([sys.executable, __file__, "--child", "--steps", str(args.steps),
                              "--repeats", str(args.repeats)], env=env, capture_output=True, text=True,
                             check=True, cwd=C.REPO).stdout
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--conditions", nargs="*", default=["alone", "busy"], choices=["alone", "busy"])
    p.add_argument("--steps", type=int, default=10, help="training steps per chunk (model calls: 2x, 1/4x)")
    p.add_argument("--repeats", type=int, default=3, help="chunks; each figure is their median")
    p.add_argument("--json", default=None, metavar="PATH")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.steps, args.repeats)))
        return 0
    import torch

    record = {"bench": "omp_spin", **C.environment(torch.device("cpu")), "kit_spin_count": hw3_utils.OMP_SPIN_COUNT,
              "rows": []}
    for cond in args.conditions:
        for s in args.settings:
            row = {"setting": s, "env": SETTINGS[s], "condition": cond, **measure(s, cond == "busy", args)}
            record["rows"].append(row)
            print(f"{cond} {s}: train {row['train_ms']:.0f} ms/step", flush=True)
    if args.json:
        C.write_json(args.json, record)
    base = {r["condition"]: r for r in record["rows"] if r["setting"] == "passive"}
    rows = []
    for r in record["rows"]:
        ref = base.get(r["condition"])
        ratio = (lambda k, r=r, ref=ref: f" ({ref[k] / r[k]:.2f}x)" if ref else "")
        given = " ".join(f"{k}={r[k]}" for k in WAIT_VARS if r.get(k))
        rows.append([r["condition"], r["setting"], given + ("" if r["env"] else " (by hw3_utils)"),
                     f"{r['train_ms']:.0f}{ratio('train_ms')}", f"{r['preview_ms']:.1f}{ratio('preview_ms')}",
                     f"{r['sample_ms']:.0f}{ratio('sample_ms')}"])
    print(f"\nms per call (speed-up over passive), `cpu` profile, {record['device']}")
    print(C.table(rows, ["condition", "setting", "environment", "training step (64)", "model call (16)",
                         "model call (500)"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
