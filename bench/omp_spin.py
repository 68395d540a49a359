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

Rows are named "<condition> <setting>"; each holds the three timings and what the child saw: spin_count
(GOMP_SPINCOUNT, null when unset), passive (OMP_WAIT_POLICY=PASSIVE) and torch_loaded_first.

    python -m bench omp_spin                      # about 4 minutes on 2 cores
    python -m bench omp_spin --settings passive kit --conditions alone --repeats 1 --steps 2   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import hw3_utils
from bench import _common as C
from bench.record import write_record

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

    spin = os.environ.get("GOMP_SPINCOUNT")
    return {"spin_count": None if spin is None else int(spin),
            "passive": os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE",
            "torch_loaded_first": hw3_utils.TORCH_LOADED_FIRST,
            "train_ms": median_ms(train, steps), "preview_ms": median_ms(call(16), 2 * steps),
            "sample_ms": median_ms(call(cfg.sample_batch_size), max(1, steps // 4))}


def measure(setting: str, busy: bool, args) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in WAIT_VARS}
    env.update(SETTINGS[setting])
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        out = subprocess.run([sys.executable, "-m", "bench", "omp_spin", "--child", "--steps", str(args.steps),
                              "--repeats", str(args.repeats)], env=env, capture_output=True, text=True,
                             check=True, cwd=C.REPO).stdout
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    argv = C.argv_of(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--conditions", nargs="*", default=["alone", "busy"], choices=["alone", "busy"])
    p.add_argument("--steps", type=int, default=10, help="training steps per chunk (model calls: 2x, 1/4x)")
    p.add_argument("--repeats", type=int, default=3, help="chunks; each figure is their median")
    C.add_json_arg(p)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.steps, args.repeats)))
        return 0
    rows = []
    for cond in args.conditions:
        for s in args.settings:
            rows.append({"name": f"{cond} {s}", **measure(s, cond == "busy", args)})
            print(f"{cond} {s}: train {rows[-1]['train_ms']:.0f} ms/step", flush=True)
    if args.json:
        config = {"settings": {s: SETTINGS[s] for s in args.settings}, "kit_spin_count": hw3_utils.OMP_SPIN_COUNT,
                  "steps": args.steps, "repeats": args.repeats}
        write_record("omp_spin", rows, config, argv, path=args.json)
    print(f"\nms per call (speed-up over passive), `cpu` profile, {C.device_name('cpu')}")
    print(C.table(printed(rows), ["condition", "setting", "environment", "training step (64)", "model call (16)",
                                  "model call (500)"]))
    return 0


def printed(rows: list[dict]) -> list[list[str]]:
    """The table's lines: each row's timings beside passive's in the same condition."""
    base = {r["name"].split()[0]: r for r in rows if r["name"].endswith(" passive")}
    out = []
    for r in rows:
        cond, setting = r["name"].split()
        ref = base.get(cond)
        ratio = (lambda k, r=r, ref=ref: f" ({ref[k] / r[k]:.2f}x)" if ref else "")
        given = ("OMP_WAIT_POLICY=PASSIVE " if r["passive"] else "") + (
            f"GOMP_SPINCOUNT={r['spin_count']}" if r["spin_count"] is not None else "")
        out.append([cond, setting, given.strip() + ("" if SETTINGS[setting] else " (by hw3_utils)"),
                    f"{r['train_ms']:.0f}{ratio('train_ms')}", f"{r['preview_ms']:.1f}{ratio('preview_ms')}",
                    f"{r['sample_ms']:.0f}{ratio('sample_ms')}"])
    return out


if __name__ == "__main__":
    raise SystemExit(main())
